"""sdmorph's benchmark suite (`make bench`): measures, prints a table, saves JSON.

    .venv/bin/python benchmarks/run.py            # the full run (~5-10 min on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # a short smoke run (~1 min)
    .venv/bin/python benchmarks/run.py --only throughput planning
    .venv/bin/python benchmarks/run.py --only scan
    .venv/bin/python benchmarks/run.py --only cluster   # Ray cluster vs local (issue 27)
    .venv/bin/python benchmarks/run.py --only sharing   # shared denoising (issue 23)
    .venv/bin/python benchmarks/run.py --only guidance  # the trained tiny's guidance (issue 21)

Every timing that is compared is a ratio of two timings taken in the same run, so the
machine's speed cancels; steady throughput is measured at the margin (time for 2N frames
minus time for N), so start-up cancels too. Results go to benchmarks/results/latest.json.
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from _common import Figure, LoadMeter, check, machine_info, mb  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

# Wide enough for the detail column when the output is a file or a pipe.
console = Console(width=max(Console().width, 140))
SECTIONS = ("throughput", "counts", "planning", "movie", "memory", "scan", "smoothness",
            "cluster", "sharing", "guidance")
THREADS = 2
SIZES = (128, 256)
SPEEDUP_TARGET = {128: 3.5, 256: 1.25}
OVERHEAD_TARGET = 1.10
PLAN_SIZES = ((10, 5), (50, 20), (200, 30))
PLAN_TARGET = {(50, 20): 1.0}
# Issue 20: the whole `sdmorph transitions SONG --plan-only` process at 200 scenes x 30 seeds.
PLAN_ONLY_SIZE = (200, 30)
PLAN_ONLY_TARGET = 2.0
MOVIE_MEMORY_TARGET = 1.2
# Issue 14: 2,000 legacy folders of 60 frames scan in "seconds, not minutes". Pass lines in
# seconds for SCAN_TARGET_FOLDERS folders; --quick's smaller folder is held to them pro rata.
SCAN_TARGET_FOLDERS = 2000
SCAN_COLD_TARGET = 60.0
SCAN_WARM_TARGET = 10.0
BUSY = 0.10  # share of the CPUs other processes may use before timings are flagged


@dataclass(frozen=True)
class Scale:
    """How much work each section does: --quick shrinks it."""

    frames: dict[int, int]  # size -> N: transitions of N and 2N frames are timed
    repeats: int  # each timing is the best of this many (interleaved) runs
    movie_frames: tuple[int, int]
    memory_size: int
    memory_frames: int
    scan_folders: int  # legacy transition folders of 60 frames in the scanned media folder


# N is a multiple of sdmorph's default batch at each size, so the margin is whole batches.
FULL = Scale(frames={128: 32, 256: 16}, repeats=3, movie_frames=(500, 5000), memory_size=256,
             memory_frames=18, scan_folders=2000)
QUICK = Scale(frames={128: 8, 256: 4}, repeats=1, movie_frames=(100, 1000), memory_size=128,
              memory_frames=6, scan_folders=200)


def log(text: str) -> None:
    console.print(f"[dim]{text}[/dim]", highlight=False)


# ----------------------------------------------------------------------------- sections


def bench_throughput(scale: Scale, batch_size: int | None) -> list[Figure]:
    """Figures 1 and 2: sdmorph vs the old loop, and sdmorph's wall time over model time."""
    from _throughput import compare

    figures: list[Figure] = []
    for size in SIZES:
        n = scale.frames[size]
        log(f"transitions at {size}x{size}: old loop vs sdmorph, {n} and {2 * n} frames")
        c = compare(size, n, scale.repeats, batch_size=batch_size, log=log)
        target = SPEEDUP_TARGET[size]
        extra = {"old_fps": c.old.steady_fps, "sdmorph_fps": c.new.steady_fps,
                 "batch_size": c.batch_size, "max_pixel_diff": c.max_pixel_diff,
                 "old_seconds": [c.old.short.seconds, c.old.long.seconds],
                 "sdmorph_seconds": [c.new.short.seconds, c.new.long.seconds],
                 "sdmorph_model_seconds": [c.new.short.model_seconds, c.new.long.model_seconds],
                 "frames": [c.new.short.frames, c.new.long.frames]}
        figures.append(Figure(
            f"speedup_{size}", f"transition throughput {size}px, sdmorph / old loop", c.ratio,
            "x", f">= {target}", check(c.ratio, ">=", target),
            f"{c.new.steady_fps:.1f} vs {c.old.steady_fps:.1f} frames/s, batch {c.batch_size}, "
            f"max pixel diff {c.max_pixel_diff}", extra))
        overhead = c.new.steady_overhead
        whole = c.new.long.seconds / c.new.long.model_seconds
        figures.append(Figure(
            f"overhead_{size}", f"sdmorph wall / model time {size}px", overhead, "x",
            f"<= {OVERHEAD_TARGET}", check(overhead, "<=", OVERHEAD_TARGET),
            f"steady; whole {2 * n}-frame run incl. keyframes: {whole:.2f}",
            {"whole_run": whole}))
    return figures


def bench_counts(scale: Scale) -> list[Figure]:
    """Figure 3: UNet evaluations and VAE decodes per output frame, from the engine counters."""
    from _throughput import count_model_calls

    log("model calls per frame: a 3x3-image song whose 3 planned paths share keyframes")
    with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
        c = count_model_calls(Path(tmp), frames=8 if scale is FULL else 5)
    shared = (f"{c.transitions} transitions of {c.frames // c.transitions} frames on "
              f"{c.keyframes} keyframes")
    return [
        Figure("unet_per_frame", "UNet evaluations per output frame", c.unet_evals / c.frames,
               "", f"= {c.expected_unet / c.frames:.2f}", c.unet_evals == c.expected_unet,
               f"{c.unet_evals} in all; {shared}", asdict(c)),
        Figure("vae_per_frame", "VAE decodes per output frame (keyframes once)",
               c.vae_decodes / c.frames, "", f"= {c.expected_vae / c.frames:.2f}",
               c.vae_decodes == c.expected_vae,
               f"{c.vae_decodes} decodes = {c.keyframes} keyframes + frames between"),
    ]


def bench_planning(scale: Scale) -> list[Figure]:
    """Figure 4: plan_paths and choose_story on synthetic songs of growing size, then the
    whole plan-only process."""
    from _planning import time_planning

    figures: list[Figure] = []
    previous = None
    for scenes, seeds in PLAN_SIZES:
        log(f"planning {scenes} scenes x {seeds} seeds")
        t = time_planning(scenes, seeds, repeats=1 if scale is QUICK else 3)
        total = t.plan_seconds + t.story_seconds
        growth = ""
        if previous is not None:
            growth = (f"; x{total / (previous.plan_seconds + previous.story_seconds):.1f} time "
                      f"for x{t.edges / previous.edges:.1f} graph edges")
        limit = PLAN_TARGET.get((scenes, seeds))
        figures.append(Figure(
            f"plan_{scenes}x{seeds}", f"plan_paths + choose_story, {scenes}x{seeds}",
            total, "s", f"< {limit:g} s" if limit else "", total < limit if limit else None,
            f"plan {t.plan_seconds * 1e3:.1f} ms, story {t.story_seconds * 1e3:.1f} ms, "
            f"graph {t.graph_seconds * 1e3:.0f} ms{growth}", asdict(t)))
        previous = t
    return figures + [bench_plan_only(scale)]


def bench_plan_only(scale: Scale) -> Figure:
    """`sdmorph transitions SONG --plan-only` as a whole process: start-up, plan files, the
    Gephi file of the full graph and the plan picture."""
    from _planning import time_plan_only

    scenes, seeds = PLAN_ONLY_SIZE
    log(f"`sdmorph transitions --plan-only` on a song of {scenes} scenes x {seeds} seeds")
    with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
        r = time_plan_only(Path(tmp), scenes, seeds, repeats=1 if scale is QUICK else 3)
    return Figure(
        f"plan_only_{scenes}x{seeds}", f"`transitions --plan-only` process, {scenes}x{seeds}",
        r.seconds, "s", f"<= {PLAN_ONLY_TARGET:g} s", r.seconds <= PLAN_ONLY_TARGET,
        f"wall, best of runs; CPU {r.cpu_seconds:.2f} s; graph.gexf {mb(r.gexf_bytes):.0f} MB, "
        f"plan_graph.png {mb(r.picture_bytes):.1f} MB", asdict(r))


def bench_movie(scale: Scale) -> list[Figure]:
    """Figure 5: encode_story frames/s and peak memory, short vs long story."""
    from _movie import measure

    timings = []
    for frames in scale.movie_frames:
        log(f"encoding {frames} frames of 128x128 (mjpeg + h264, 4 sections)")
        with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
            timings.append(measure(Path(tmp), frames))
    short, long = timings
    ratio = long.peak_rss / short.peak_rss
    figures = [
        Figure(f"movie_fps_{t.frames}", f"movie encoding, {t.frames} frames", t.fps, "frames/s",
               "", None, f"{t.seconds:.1f} s, {t.videos} videos, peak {mb(t.peak_rss):.0f} MB",
               asdict(t))
        for t in timings
    ]
    figures.append(Figure(
        "movie_memory", f"movie peak memory {long.frames} / {short.frames} frames", ratio, "x",
        f"<= {MOVIE_MEMORY_TARGET}", check(ratio, "<=", MOVIE_MEMORY_TARGET),
        f"{mb(long.peak_rss):.0f} MB vs {mb(short.peak_rss):.0f} MB (encoder + ffmpegs)"))
    return figures


def bench_memory(scale: Scale) -> list[Figure]:
    """Figure 6: peak memory of a whole `sdmorph transitions` run at the default batch size."""
    from _memory import transitions_run
    from _song import SongSpec

    spec = SongSpec(size=scale.memory_size, frames=scale.memory_frames, prompts=2,
                    seeds_per_prompt=2, duration=1)
    log(f"`sdmorph transitions` on a 2x2-image song at {spec.size}px, {spec.frames} frames each")
    with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
        r = transitions_run(Path(tmp), spec)
    return [Figure("transitions_peak_rss", f"peak memory of `sdmorph transitions`, {r.size}px",
                   mb(r.peak_rss), "MB", "", None,
                   f"{r.transitions} transitions, {r.frames} frames in {r.seconds:.1f} s, "
                   "default batch size", asdict(r))]


def bench_scan(scale: Scale) -> list[Figure]:
    """Figure 7: `TransitionStore.scan` of a media folder of legacy folders, cold and cached."""
    from _scan import FRAMES, time_scan

    folders = scale.scan_folders
    log(f"scanning {folders} legacy transition folders of {FRAMES} 512x512 PNG frames")
    with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
        t = time_scan(Path(tmp) / "media" / "song", folders)
    share = folders / SCAN_TARGET_FOLDERS
    cold_limit, warm_limit = SCAN_COLD_TARGET * share, SCAN_WARM_TARGET * share
    all_complete = t.complete_cold == t.complete_warm == folders
    complete = ("all complete" if all_complete else
                f"only {t.complete_cold} / {t.complete_warm} of {folders} complete")
    files = f"{t.frames:,} frames of {t.frame_bytes / 1e3:.0f} KB"
    plural = "s" if t.inodes > 1 else ""
    source = (f"from the page cache (hard links to {t.inodes} file{plural})" if t.linked
              else "(hard links refused: copies, maybe read from disk)")
    extra = asdict(t) | {"cold_fps": t.frames / t.cold_seconds,
                         "warm_fps": t.frames / t.warm_seconds,
                         "cold_mb_per_s": mb(t.total_bytes) / t.cold_seconds}
    return [
        Figure("scan_cold", f"scan {folders} legacy folders x {FRAMES}, no cache",
               t.cold_seconds, "s", f"< {cold_limit:g} s",
               all_complete and t.cold_seconds < cold_limit,
               f"{t.frames / t.cold_seconds:,.0f} frames/s, {files}: every byte read once "
               f"(PNG chunk CRCs via Pillow verify), {mb(t.total_bytes) / t.cold_seconds:,.0f} "
               f"MB/s {source}; {complete}", extra),
        Figure("scan_warm", f"scan {folders} legacy folders x {FRAMES}, cached",
               t.warm_seconds, "s", f"< {warm_limit:g} s",
               all_complete and t.warm_seconds < warm_limit,
               f"{t.frames / t.warm_seconds:,.0f} frames/s: a new TransitionStore, verdicts "
               f"from .sdmorph/framecheck.json ({mb(t.cache_bytes):.1f} MB) by size and mtime; "
               f"{complete}"),
    ]


# Issue 22: even pacing against linear, on the built-in model.
SMOOTH_MEDIAN_J = 2.0
SMOOTH_SHARE_J = 0.7
SMOOTH_GINI_RATIO = 0.7
SMOOTH_PASSES_RATIO = 1.5
STRIP = HERE.parent / "docs" / "smoothness-strip.png"


def bench_smoothness(scale: Scale) -> list[Figure]:
    """Figure 8: J and Gini per transition, linear vs even pacing, and the UNet passes."""
    from _smoothness import Spec, compare

    spec = Spec() if scale is FULL else Spec(transitions=6, frames=9, steps=4)
    log(f"{spec.transitions} transitions of {spec.frames} frames at {spec.size}px, "
        f"{spec.steps} steps, linear and even pacing, built-in model")
    import torch

    # This section counts UNet passes and measures pictures, it times nothing: one torch
    # thread renders the same frames and never stalls spin-waiting on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
            linear, even, shown = compare(Path(tmp), spec, STRIP if scale is FULL else None,
                                          log)
    finally:
        torch.set_num_threads(threads)
    lin, evn = linear.summary(), even.summary()
    kind = linear.model
    where = f"{spec.transitions} transitions, {kind}"
    both = {"linear": lin | {"jumps": linear.jumps, "ginis": linear.ginis},
            "even": evn | {"jumps": even.jumps, "ginis": even.ginis},
            "spec": asdict(spec), "model": kind, "strip_transition": shown}
    gini_ratio = evn["median_gini"] / lin["median_gini"] if lin["median_gini"] else 0.0
    passes = evn["passes_per_frame"] / lin["passes_per_frame"]
    return [
        Figure("smooth_median_j", "median jump ratio J, even pacing", evn["median_j"], "",
               f"<= {SMOOTH_MEDIAN_J}", evn["median_j"] <= SMOOTH_MEDIAN_J,
               f"linear {lin['median_j']:.2f}; p90 {evn['p90_j']:.2f} vs {lin['p90_j']:.2f}; "
               f"{where}", both),
        Figure("smooth_share_j", "share of transitions with J <= 2, even", evn["share_j_le_2"],
               "", f">= {SMOOTH_SHARE_J}", evn["share_j_le_2"] >= SMOOTH_SHARE_J,
               f"linear {lin['share_j_le_2']:.2f}"),
        Figure("smooth_gini", "median Gini, even / linear", gini_ratio, "x",
               f"<= {SMOOTH_GINI_RATIO}", gini_ratio <= SMOOTH_GINI_RATIO,
               f"{evn['median_gini']:.3f} vs {lin['median_gini']:.3f}; p90 "
               f"{evn['p90_gini']:.3f} vs {lin['p90_gini']:.3f}"),
        Figure("smooth_passes", "UNet passes per output frame, even / linear", passes, "x",
               f"<= {SMOOTH_PASSES_RATIO}", passes <= SMOOTH_PASSES_RATIO,
               f"{evn['passes_per_frame']:.1f} vs {lin['passes_per_frame']:.1f} per frame "
               f"(keyframes shared, not counted); {even.seconds:.0f} s vs "
               f"{linear.seconds:.0f} s"),
    ]


def bench_guidance() -> list[Figure]:
    """Figure 11: how often the trained tiny follows the words, per scheduler and guidance;
    the target: guidance 7.5 beats guidance 1 (issue 21) with DDIM."""
    from _guidance import sweep

    log("the evaluation prompts x seeds (10 x 4), 64x64, 20 steps, trained tiny")
    scores = {(s.scheduler, s.guidance): s for s in sweep(log)}
    figures = []
    for (name, g), score in scores.items():
        unguided = scores[name, 1.0]
        held = name == "ddim" and g == 7.5
        beats = score.total > unguided.total
        figures.append(Figure(
            f"guidance_{name}_{g:g}", f"{name}, guidance {g:g}: colour + background",
            score.total, "", "> guidance 1" if held else "", beats if held else None,
            f"colour {score.colour:.3f}, background {score.background:.3f} (guidance 1: "
            f"{unguided.colour:.3f}, {unguided.background:.3f})"))
    return figures


# Issue 27: rendering through a one-worker Ray cluster on this machine against rendering here.
CLUSTER_SIZE = 512
CLUSTER_TARGET = 1.10


def bench_cluster(scale: Scale) -> list[Figure]:
    """Figure 9: frames/s through a one-worker local Ray cluster against a local engine."""
    try:
        import ray  # noqa: F401 - only to tell whether the extra is installed
    except ImportError:
        log("cluster: Ray is not installed (pip install 'sdmorph[cluster]'): skipped")
        return []
    from _cluster import compare

    n = 8 if scale is FULL else 4
    repeats = 3 if scale is FULL else 1
    log(f"{CLUSTER_SIZE}x{CLUSTER_SIZE} transitions of {n} and {2 * n} frames, {repeats} times: "
        f"a local engine, then a one-worker Ray cluster started here ({THREADS} CPUs)")
    c = compare(CLUSTER_SIZE, n, repeats, THREADS, log=log)
    return [Figure(
        "cluster_cost", f"cluster / local time per frame, {CLUSTER_SIZE}px, one worker", c.cost,
        "x", f"<= {CLUSTER_TARGET}", check(c.cost, "<=", CLUSTER_TARGET) and c.identical,
        f"{2 * n} frames: {c.cluster.long.seconds:.1f} vs {c.local.long.seconds:.1f} s; "
        f"steady {c.cluster.steady_fps:.3f} vs {c.local.steady_fps:.3f} frames/s "
        f"({c.steady_cost:.2f}x); batch {c.batch_size}; frames "
        f"{'identical' if c.identical else 'DIFFER'}; Ray start + model load "
        f"{c.start_seconds:.1f} s (not counted); Ray's own processes count as other load",
        {"steady_cost": c.steady_cost, "local_fps": c.local.steady_fps,
         "cluster_fps": c.cluster.steady_fps, "identical": c.identical,
         "start_seconds": c.start_seconds,
         "local_seconds": [c.local.short.seconds, c.local.long.seconds],
         "cluster_seconds": [c.cluster.short.seconds, c.cluster.long.seconds],
         "frames": [c.local.short.frames, c.local.long.frames]})]


# Issue 23: shared denoising at the recommended s against s = 0, and against the peer's walk.
SHARING_PASSES_TARGET = 0.4
SHARING_SHARE_J_TARGET = 0.8
SHARING_J_SLACK, SHARING_GINI_SLACK = 0.2, 0.05
SHARING_DETAIL_FLOOR = 0.7
SHARING_SPEED_TARGET = 2.0


def bench_sharing(scale: Scale) -> list[Figure]:
    """Figure 10: UNet passes, J, Gini, detail with sharing; marginal frames/s vs the peer."""
    import torch
    from _sharing import RECOMMENDED, detail_share, smoothness, throughput
    from _smoothness import Spec

    s = RECOMMENDED
    spec = Spec() if scale is FULL else Spec(transitions=4, frames=9, steps=4)
    log(f"{spec.transitions} transitions of {spec.frames} frames at {spec.size}px, "
        f"{spec.steps} steps, linear and even pacing at s = 0 and {s}, built-in tiny")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # counts and pictures, not times (as the smoothness section)
    try:
        with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
            runs = smoothness(Path(tmp), spec, s, log)
            figures = _sharing_smoothness(runs, s, detail_share)  # reads the frames
    finally:
        torch.set_num_threads(threads)
    from _sharing import tree_memory

    frames, size, steps = (60, 512, 25) if scale is FULL else (9, 128, 4)
    held, seconds = tree_memory(frames, size, steps, s)
    figures.append(Figure("sharing_memory", f"states a {frames}-frame tree keeps, {size}px, "
                          f"{steps} steps (PNDM)", held / 2**20, "MiB", "reported", None,
                          f"float32 latents, s = {s}; grown in {seconds:.0f} s on tiny-random"))
    n = 30 if scale is FULL else 4
    speed = throughput(n, 2 if scale is FULL else 1, s, "even", log)
    if speed is not None:
        figures.append(Figure(
            "sharing_speed", f"marginal frames/s, s = {s} even / the peer's walk (batch 30)",
            speed.ratio, "x", f">= {SHARING_SPEED_TARGET}", speed.ratio >= SHARING_SPEED_TARGET,
            f"{speed.sdmorph_fps:.2f} vs {speed.peer_fps:.2f} frames/s; 128px, 10 steps, "
            f"guidance 7.5, {n} and {2 * n} frames, trained tiny, best of repeats",
            {"sdmorph_seconds": speed.sdmorph, "peer_seconds": speed.peer,
             "sdmorph_unet_passes": speed.passes}))
    return figures


def _sharing_smoothness(runs: Any, s: float, detail_share: Callable[..., float]
                        ) -> list[Figure]:
    summary = {key: run.summary() for key, run in runs.runs.items()}
    even0, even = summary["even", 0.0], summary["even", s]
    data = {f"{p}-{k}": v | {"jumps": runs.runs[p, k].jumps, "ginis": runs.runs[p, k].ginis,
                             "detail": runs.runs[p, k].detail}
            for (p, k), v in summary.items()}
    out = [Figure(f"sharing_passes_{pacing}", f"UNet passes per output frame, s = {s} / s = 0, "
                  f"{pacing}", runs.passes_ratio(pacing, s), "x", f"<= {SHARING_PASSES_TARGET}",
                  runs.passes_ratio(pacing, s) <= SHARING_PASSES_TARGET,
                  f"{summary[pacing, s]['passes_per_frame']:.2f} vs "
                  f"{summary[pacing, 0.0]['passes_per_frame']:.2f}",
                  data if pacing == "linear" else None)
           for pacing in ("linear", "even")]
    out.append(Figure("sharing_share_j", f"share of transitions with J <= 2, even, s = {s}",
                      even["share_j_le_2"], "", f">= {SHARING_SHARE_J_TARGET}",
                      even["share_j_le_2"] >= SHARING_SHARE_J_TARGET,
                      f"s = 0: {even0['share_j_le_2']:.2f}; linear s = {s}: "
                      f"{summary['linear', s]['share_j_le_2']:.2f}"))
    out.append(Figure("sharing_median_j", f"median J, even, s = {s} minus s = 0",
                      even["median_j"] - even0["median_j"], "", f"<= +{SHARING_J_SLACK}",
                      even["median_j"] - even0["median_j"] <= SHARING_J_SLACK,
                      f"{even['median_j']:.2f} vs {even0['median_j']:.2f}; p90 "
                      f"{even['p90_j']:.2f} vs {even0['p90_j']:.2f}"))
    out.append(Figure("sharing_gini", f"median Gini, even, s = {s} minus s = 0",
                      even["median_gini"] - even0["median_gini"], "",
                      f"<= +{SHARING_GINI_SLACK}",
                      even["median_gini"] - even0["median_gini"] <= SHARING_GINI_SLACK,
                      f"{even['median_gini']:.3f} vs {even0['median_gini']:.3f}"))
    from _sharing import detail_vs_full

    versus = np.asarray(detail_vs_full(runs.runs["linear", 0.0], runs.runs["linear", s]))
    kept = float(np.mean(versus >= SHARING_DETAIL_FLOOR))
    out.append(Figure("sharing_detail_vs_full", f"in-betweens with >= {SHARING_DETAIL_FLOOR}x "
                      f"the detail of the same frame rendered in full, linear, s = {s}", kept,
                      "", ">= 0.9", kept >= 0.9,
                      f"median ratio {np.median(versus):.2f}, 10th pct "
                      f"{np.percentile(versus, 10):.2f}, over {len(versus)} frames",
                      {"ratios": versus.tolist()}))
    from _sharing import crossfade_ratios

    fades = np.asarray(crossfade_ratios(runs.runs["linear", 0.0]))
    shares = {key: detail_share(run, SHARING_DETAIL_FLOOR) for key, run in runs.runs.items()}
    out.append(Figure("sharing_detail", f"in-betweens with >= {SHARING_DETAIL_FLOOR}x their "
                      f"keyframes' detail, even, s = {s}", shares["even", s], "", "1.0",
                      shares["even", s] >= 1.0,
                      f"s = 0: {shares['even', 0.0]:.2f}; linear {shares['linear', s]:.2f} vs "
                      f"{shares['linear', 0.0]:.2f}; min ratio {even['min_detail']:.2f} vs "
                      f"{even0['min_detail']:.2f}; a cross-fade of the keyframes: "
                      f"{float(np.mean(fades >= SHARING_DETAIL_FLOOR)):.2f}"))
    out.append(_detail_at_t(runs, s))
    return out


def _detail_at_t(runs: Any, s: float) -> Figure:
    """The same with the keyframes' detail interpolated at each frame's t (reported)."""
    from _sharing import crossfade_ratios, kept_share

    kept = {key: kept_share(run.detail_at_t, SHARING_DETAIL_FLOOR)
            for key, run in runs.runs.items()}
    fades = kept_share(crossfade_ratios(runs.runs["even", 0.0], at_t=True), SHARING_DETAIL_FLOOR)
    return Figure("sharing_detail_at_t", f"in-betweens with >= {SHARING_DETAIL_FLOOR}x their "
                  f"keyframes' detail at their t, even, s = {s}", kept["even", s], "",
                  "reported", None,
                  f"s = 0: {kept['even', 0.0]:.2f}; linear {kept['linear', s]:.2f} vs "
                  f"{kept['linear', 0.0]:.2f}; a cross-fade of the keyframes at even's t's: "
                  f"{fades:.2f}")


# ----------------------------------------------------------------------------- output


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.2f}"


def print_table(figures: list[Figure], title: str) -> None:
    table = Table(title=title, show_lines=False)
    for column in ("figure", "measured", "target", "result", "detail"):
        table.add_column(column, overflow="fold", justify="right" if column == "measured"
                         else "left")
    for f in figures:
        result = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "[dim]-[/dim]"}
        table.add_row(f.name, f"{_fmt(f.measured)} {f.unit}".strip(), f.target,
                      result[f.passed], f.detail)
    console.print(table)


def save(figures: list[Figure], args: argparse.Namespace, seconds: float,
         load: dict[str, float]) -> Path:
    from sdmorph.formats.fsio import write_text

    data = {"machine": machine_info(), "quick": args.quick, "seconds": seconds,
            "other_load": load, "figures": [f.as_dict() for f in figures]}
    write_text(args.json, json.dumps(data, indent=2, default=str) + "\n")
    return args.json


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="sdmorph benchmarks (CPU, tiny model)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~1 min)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--batch-size", type=int, default=None,
                        help="sdmorph's frames per model call (default: sdmorph's default)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    torch.set_num_threads(THREADS)  # both sides alike, whatever the machine has
    scale = QUICK if args.quick else FULL
    runners: dict[str, Callable[[], list[Figure]]] = {
        "throughput": lambda: bench_throughput(scale, args.batch_size),
        "counts": lambda: bench_counts(scale),
        "planning": lambda: bench_planning(scale),
        "movie": lambda: bench_movie(scale),
        "memory": lambda: bench_memory(scale),
        "scan": lambda: bench_scan(scale),
        "smoothness": lambda: bench_smoothness(scale),
        "cluster": lambda: bench_cluster(scale),
        "sharing": lambda: bench_sharing(scale),
        "guidance": bench_guidance,
    }
    started = time.perf_counter()
    figures: list[Figure] = []
    load: dict[str, float] = {}
    for name in SECTIONS:
        if name in args.only:
            with LoadMeter() as meter:
                figures += runners[name]()
            load[name] = meter.other_share
    seconds = time.perf_counter() - started
    info = machine_info()
    print_table(figures, f"sdmorph benchmarks{' (quick)' if args.quick else ''}: "
                f"{info['cpu_count']} CPUs, torch {info.get('torch')} x{THREADS} threads, "
                f"{seconds:.0f} s")
    busy = {name: share for name, share in load.items() if share > BUSY}
    if busy:
        console.print("[yellow]other processes kept the CPUs busy during "
                      + ", ".join(f"{name} ({100 * share:.0f}%)" for name, share in busy.items())
                      + ": those timings are not trustworthy; run again on a quiet machine"
                      "[/yellow]")
    console.print(f"saved {save(figures, args, seconds, load)}")
    return 1 if args.strict and any(f.passed is False for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
