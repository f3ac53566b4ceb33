"""Issue 27: what rendering through a Ray cluster costs against rendering here.

The same transitions (`tiny-random`, the random-weight built-in model the other throughput
figures use, 512x512, 10 steps, guidance 7.5) go through sdmorph's real path (song folder,
`render_keyframes`, `TransitionRenderer` + `render_all` writing PNGs) twice: on a local
`Engine`, and on a `RemoteEngine` of one worker in a Ray cluster started on this machine
(`--cluster local`), holding as many CPUs as the local engine has torch threads. The driver
prepares every frame's inputs, sends them to the worker and writes the PNGs of the pixels
that come back; the local engine does all of it in one process.

Each repeat renders them locally, with no Ray running (a local run has none), then starts Ray,
renders them on the cluster and stops Ray: the two sides alternate, so a machine whose speed
drifts (a shared VM) drifts both. The figure is the whole longer transition's time per frame
(its keyframes included, Ray's start and the worker's model load not), best of the repeats;
the steady frames/s at the margin, as `_throughput` measures them ((2N - N) frames / (time for
2N - time for N)), go into the detail. The long runs' frames are compared byte for byte.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _song import SongSpec
from _throughput import Run, Side, sdmorph_transitions

from sdmorph.render.cluster import EngineSpec, start_cluster
from sdmorph.render.engine import Engine

MODEL = "tiny-random"  # as the song folders of `_song` name it: recipes match the engine


@dataclass
class ClusterComparison:
    size: int
    local: Side
    cluster: Side
    identical: bool
    start_seconds: float  # starting Ray and loading the worker's model, the quickest start
    batch_size: int

    @property
    def cost(self) -> float:
        """Cluster time over local time for the whole longer transition (1.0: no cost)."""
        return self.cluster.long.seconds / self.local.long.seconds

    @property
    def steady_cost(self) -> float:
        """The same at the margin: local steady frames/s over the cluster's."""
        return self.local.steady_fps / self.cluster.steady_fps


def _frames(folder: Path | None) -> list[bytes]:
    assert folder is not None
    return [path.read_bytes() for path in sorted(folder.glob("frame*.png"))]


def _render(engine: object, specs: dict[int, SongSpec], runs: dict[int, list[Run]], root: Path,
            label: str, log: Callable[[str], None]) -> None:
    for n, spec in specs.items():
        runs[n].append(sdmorph_transitions(engine, spec, root / f"{label}-{n}"))  # type: ignore[arg-type]
        log(f"  {spec.size}px {n} frames, {label}: {runs[n][-1].seconds:.2f}s")


def _best(runs: dict[int, list[Run]], frames: int) -> Side:
    return Side(*(min(runs[n], key=lambda r: r.seconds) for n in (frames, 2 * frames)))


def compare(size: int, frames: int, repeats: int, threads: int, steps: int = 10,
            log: Callable[[str], None] = print) -> ClusterComparison:
    """Transitions of `frames` and `2 * frames` frames, locally then on the cluster, in turn."""
    batch = 4
    specs = {n: SongSpec(size=size, frames=n, steps=steps, batch_size=batch)
             for n in (frames, 2 * frames)}
    local: dict[int, list[Run]] = {n: [] for n in specs}
    cluster: dict[int, list[Run]] = {n: [] for n in specs}
    starts = []
    engine = Engine(MODEL, device="cpu")
    with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
        for rep in range(repeats):
            _render(engine, specs, local, Path(tmp) / str(rep), "local", log)
            started = time.perf_counter()
            remote = start_cluster("local", EngineSpec(MODEL, device="cpu"), cpus=threads)
            starts.append(time.perf_counter() - started)
            try:
                if remote.workers != 1:
                    raise RuntimeError(f"expected one worker, Ray started {remote.workers}")
                _render(remote, specs, cluster, Path(tmp) / str(rep), "cluster", log)
            finally:
                remote.close()
        best = {"local": _best(local, frames), "cluster": _best(cluster, frames)}
        identical = _frames(best["local"].long.folder) == _frames(best["cluster"].long.folder)
    return ClusterComparison(size, best["local"], best["cluster"], identical, min(starts),
                             batch)
