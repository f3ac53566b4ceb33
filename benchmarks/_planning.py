"""Planning at scale: `plan_paths` and `choose_story` on synthetic songs (pure logic, no files)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sdmorph.core.ids import ImageId
from sdmorph.core.paths import SceneSpec, build_graph, choose_story, plan_paths, union_transitions

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
    planned = {frozenset(pair) for pair in union_transitions(paths)}
    graph_seconds, _ = best_time(1, lambda: build_graph(scenes))
    edges, dense = _available(scenes, planned, seed)
    sparse_seconds, story = best_time(repeats, lambda: choose_story(scenes, planned, seed))
    dense_seconds, _ = best_time(repeats, lambda: choose_story(scenes, dense, seed))
    return PlanTiming(n_scenes, n_seeds, edges, len(dense), plan_seconds,
                      max(sparse_seconds, dense_seconds), sparse_seconds, dense_seconds,
                      graph_seconds, len(story))
