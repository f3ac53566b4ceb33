"""Planning at scale: `plan_paths` and `choose_story` on synthetic songs (pure logic, no files),
and the whole `sdmorph transitions SONG --plan-only` process on a song folder of that size."""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from _song import SongSpec, write_song

from sdmorph.core.ids import ImageId, pair_key
from sdmorph.core.paths import SceneSpec, build_graph, choose_story, plan_paths

PATHS = 3  # paths planned (what `transitions --paths 3` renders)
EXTRA_SHARE = 0.2  # share of all other graph edges also rendered, so the story has choices
T = TypeVar("T")


@dataclass(frozen=True)
class PlanTiming:
    scenes: int
    seeds: int
    edges: int
    available: int
    plan_seconds: float  # plan_paths, PATHS paths
    story_seconds: float  # choose_story, the slower of the sparse and the dense case
    sparse_seconds: float  # choose_story over the planned transitions only
    dense_seconds: float  # choose_story over those plus EXTRA_SHARE of all edges
    graph_seconds: float  # build_graph (the picture and .gexf of the plan need it)
    story_hops: int


def synthetic_scenes(n_scenes: int, n_seeds: int) -> list[SceneSpec]:
    """One prompt per scene, `n_seeds` images each, up to 4 hops inside, 10 scenes a section."""
    duration = min(4, n_seeds - 1)
    return [
        SceneSpec(
            name=f"scene{i}",
            images=tuple(ImageId(f"prompt{i}", 10_000 * i + k) for k in range(n_seeds)),
            duration=duration,
            section=1 + i // 10,
            row=i,
        )
        for i in range(n_scenes)
    ]


def _available(scenes: list[SceneSpec], planned: set[frozenset[ImageId]],
               seed: int) -> tuple[int, set[frozenset[ImageId]]]:
    """The planned transitions plus a seeded random share of the rest of the graph."""
    graph = build_graph(scenes)
    rng = random.Random(seed)
    edges = sorted(graph.edges())  # sorted: the sample must not depend on set order
    extra = rng.sample(edges, int(EXTRA_SHARE * len(edges)))
    return len(edges), planned | {frozenset(e) for e in extra}


def best_time(repeats: int, run: Callable[[], T]) -> tuple[float, T]:
    """The shortest wall time of `repeats` runs, and the last run's result."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def time_planning(n_scenes: int, n_seeds: int, repeats: int = 3, seed: int = 7) -> PlanTiming:
    scenes = synthetic_scenes(n_scenes, n_seeds)
    plan_seconds, paths = best_time(repeats, lambda: plan_paths(scenes, seed, PATHS))
    planned = {pair_key(hop.a, hop.b) for path in paths for hop in path}
    graph_seconds, _ = best_time(1, lambda: build_graph(scenes))
    edges, dense = _available(scenes, planned, seed)
    sparse_seconds, story = best_time(repeats, lambda: choose_story(scenes, planned, seed))
    dense_seconds, _ = best_time(repeats, lambda: choose_story(scenes, dense, seed))
    return PlanTiming(n_scenes, n_seeds, edges, len(dense), plan_seconds,
                      max(sparse_seconds, dense_seconds), sparse_seconds, dense_seconds,
                      graph_seconds, len(story))


@dataclass(frozen=True)
class PlanOnlyRun:
    scenes: int
    seeds: int
    seconds: float  # wall time of the whole process, the best of the runs
    cpu_seconds: float  # user + system time of that run (less sensitive to other load)
    gexf_bytes: int
    picture_bytes: int


def time_plan_only(root: Path, n_scenes: int, n_seeds: int, repeats: int = 2) -> PlanOnlyRun:
    """`sdmorph transitions song --plan-only` in a child process, as an artist runs it.

    One prompt per scene with `n_seeds` seeds, 4 hops inside each scene: the graph of
    `synthetic_scenes`. Every run plans again and rewrites every plan file.
    """
    spec = SongSpec(prompts=n_scenes, seeds_per_prompt=n_seeds, duration=min(4, n_seeds - 1))
    meta, media = write_song(root, spec)
    env = {**os.environ, "meta_dir": str(meta.parent), "media_dir": str(media.parent),
           "NO_COLOR": "1", "COLUMNS": "120"}
    command = [sys.executable, "-m", "sdmorph", "transitions", meta.name, "--plan-only"]
    runs = [_timed_child(command, root, env) for _ in range(repeats)]
    seconds, cpu = min(runs)
    story = media / "story"
    gexf = story / "graph.gexf"  # left out unasked past 50,000 edges
    return PlanOnlyRun(n_scenes, n_seeds, seconds, cpu,
                       gexf.stat().st_size if gexf.is_file() else 0,
                       (story / "plan_graph.png").stat().st_size)


def _timed_child(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process; fails with its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n"
                           f"{done.stdout}{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu
