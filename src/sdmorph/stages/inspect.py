"""`inspect`: how smooth each rendered transition is, the jumpiest first.

Every rendered transition folder of the song (sdmorph's and the old scripts' alike) is
measured from its frames (`sdmorph.media.frame_scores`: distances between consecutive
frames, cached under `<song media>/.sdmorph/`, nothing written into the folders), ranked by
its jump ratio J, and drawn in `story/smoothness.png`. No model is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdmorph.core.ids import ImageId
from sdmorph.core.progress import SILENT, Listener
from sdmorph.core.smoothness import JUMP_THRESHOLD, Smoothness, measure, sparkline
from sdmorph.formats.song import Song
from sdmorph.media.frame_distance import METRIC
from sdmorph.media.frame_scores import FolderScore, cached_scores, score_folders
from sdmorph.media.smoothness_plot import Series, draw_smoothness
from sdmorph.media.store import FolderInfo
from sdmorph.stages.plan import open_store

PLOT_FILE = Path("story") / "smoothness.png"
# Folders whose frames are all there: complete, or complete with other settings than now.
RENDERED = ("complete", "stale")
PLOTTED = 8  # transitions drawn along t in the picture


@dataclass(frozen=True)
class TransitionSmoothness:
    """One rendered transition folder and its measures."""

    folder: Path
    kind: str
    a: ImageId | None
    b: ImageId | None
    times: tuple[float, ...] | None  # each frame's t when an even-paced render chose them
    smooth: Smoothness

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def jump_at(self) -> tuple[float, float]:
        """The t's of the two frames around the largest step."""
        return self.smooth.jump_at(self.times)

    @property
    def step_t(self) -> list[float]:
        """The t in the middle of each step."""
        n = len(self.smooth.d) + 1
        times = self.times if self.times and len(self.times) == n else [
            i / (n - 1) for i in range(n)]
        return [(x + y) / 2 for x, y in zip(times, times[1:], strict=False)]

    def as_json(self) -> dict[str, Any]:
        s = self.smooth
        return {"folder": self.name, "kind": self.kind,
                "from": None if self.a is None else {"prompt": self.a.prompt, "seed": self.a.seed},
                "to": None if self.b is None else {"prompt": self.b.prompt, "seed": self.b.seed},
                "frames": len(s.d) + 1, "jump": _finite(s.jump), "gini": s.gini,
                "path_length": s.length, "directness": _finite(s.directness),
                "jump_at": list(self.jump_at), "times": list(self.times) if self.times else None,
                "d": list(s.d)}


@dataclass
class InspectReport:
    song: str
    media_dir: Path
    threshold: float
    ranked: list[TransitionSmoothness]  # jumpiest first
    unscored: list[tuple[Path, str]] = field(default_factory=list)  # folder, why
    plot: Path | None = None

    @property
    def jumpy(self) -> list[TransitionSmoothness]:
        return [t for t in self.ranked if t.smooth.jump > self.threshold]

    def as_json(self) -> dict[str, Any]:
        return {"song": self.song, "metric": METRIC, "threshold": self.threshold,
                "transitions": [t.as_json() for t in self.ranked],
                "jumpy": len(self.jumpy),
                "unscored": [{"folder": f.name, "reason": why} for f, why in self.unscored],
                "plot": None if self.plot is None else str(self.plot)}


def _finite(x: float) -> float | None:
    """JSON has no infinity: an unbounded ratio (a median step of 0) is null."""
    return x if math.isfinite(x) else None


def _rendered(song: Song) -> tuple[list[FolderInfo], list[str]]:
    """The rendered transition folders, and the names of every folder there is."""
    infos = open_store(song).scan()
    return [i for i in infos if i.state in RENDERED], [i.name for i in infos]


def _ranked(infos: list[FolderInfo], scores: dict[Path, FolderScore | str]
            ) -> tuple[list[TransitionSmoothness], list[tuple[Path, str]]]:
    ranked, unscored = [], []
    for info in infos:
        score = scores.get(info.path)
        if not isinstance(score, FolderScore):
            unscored.append((info.path, score or "not scored"))
            continue
        times = info.manifest.times if info.manifest is not None else None
        ranked.append(TransitionSmoothness(info.path, info.kind, info.a, info.b,
                                           tuple(times) if times else None,
                                           measure(score.d, score.end_to_end)))
    # Jumpiest first; equal J by name, so the order is the same every time.
    ranked.sort(key=lambda t: (-t.smooth.jump if not math.isnan(t.smooth.jump) else 0, t.name))
    return ranked, unscored


def inspect_song(song: Song, *, threshold: float = JUMP_THRESHOLD, plot: bool = True,
                 listener: Listener = SILENT) -> InspectReport:
    """Score every rendered transition (cached), rank them, and draw the picture."""
    infos, names = _rendered(song)
    with listener.bars(("transitions scored", len(infos))) as (advance,):
        scores = score_folders(song.media_dir, [i.path for i in infos], on_folder=advance,
                               existing=names)
    ranked, unscored = _ranked(infos, scores)
    report = InspectReport(song.name, song.media_dir, threshold, ranked, unscored)
    if plot and ranked:
        report.plot = song.media_dir / PLOT_FILE
        series = [Series(t.name, t.step_t, t.smooth.d, t.smooth.jump) for t in ranked[:PLOTTED]]
        draw_smoothness(series, [t.smooth.jump for t in ranked], threshold, report.plot)
    return report


@dataclass(frozen=True)
class JumpCount:
    """For `status`: of the transitions scored so far, how many jump."""

    scored: int
    jumpy: int
    unscored: int
    threshold: float


def jump_count(song: Song, infos: list[FolderInfo],
               threshold: float = JUMP_THRESHOLD) -> JumpCount:
    """Count from the cached scores only: no frame is decoded, so `status` stays quick."""
    rendered = [i.path for i in infos if i.state in RENDERED]
    found = cached_scores(song.media_dir, rendered)
    jumpy = sum(1 for s in found.values() if measure(s.d, s.end_to_end).jump > threshold)
    return JumpCount(len(found), jumpy, len(rendered) - len(found), threshold)


def spark(t: TransitionSmoothness, width: int = 32) -> str:
    return sparkline(t.smooth.d, width)
