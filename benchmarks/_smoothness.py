"""Smooth morphs (issue 22): jump ratio J and Gini of transitions, linear vs even pacing.

The same transitions (different prompts of the built-in model's vocabulary, different seeds)
are rendered with `pacing: linear` and `pacing: even` at 64x64; each is measured from its
frames with sdmorph's own distance (`media/frame_distance`) and the UNet passes spent on the
frames between the keyframes are counted by the engine (keyframes are shared and rendered
once, before counting). Issue 22's targets for even: median J <= 2.0, J <= 2.0 on >= 70% of
the transitions, median Gini <= 0.7x linear's, UNet passes <= 1.5x linear's.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sdmorph.core import interp
from sdmorph.core.ids import ImageId
from sdmorph.core.smoothness import measure
from sdmorph.formats.fsio import write_text
from sdmorph.formats.song import load_song
from sdmorph.media.frame_scores import score_frames
from sdmorph.media.store import MANIFEST_NAME, TransitionManifest
from sdmorph.render.renderer import FrameWriter, Renderer, open_renderer
from sdmorph.stages.plan import open_store
from sdmorph.stages.transitions import TransitionRenderer

PROMPTS = ("a red sun over a blue sea", "a white moon at night", "a green tree in a forest",
           "a red house in the snow", "a purple mountain in the desert",
           "a yellow star over the sea at night")
SEEDS = (11, 22, 33, 44)


@dataclass(frozen=True)
class Spec:
    transitions: int = 24
    frames: int = 17
    steps: int = 10
    size: int = 64
    guidance: float = 3.0  # its PNDM overshoots from 4 on (weights/tiny/TRAINING.md)
    batch_size: int = 8
    model: str = "tiny"  # trained: pictures that snap; `tiny-random` morphs smoothly


@dataclass
class PacingRun:
    pacing: str
    model: str = ""  # "trained" or "random weights"
    sharing: float = 0.0
    detail: list[float] = field(default_factory=list)  # per in-between: sharpness / keyframes'
    detail_at_t: list[float] = field(default_factory=list)  # ... / keyframes' lerped at its t
    jumps: list[float] = field(default_factory=list)
    ginis: list[float] = field(default_factory=list)
    unet_evals: int = 0
    frames: int = 0
    folders: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passes_per_frame(self) -> float:
        return self.unet_evals / self.frames if self.frames else 0.0

    def summary(self) -> dict[str, float]:
        j, g = np.asarray(self.jumps), np.asarray(self.ginis)
        return {"median_j": float(np.median(j)), "p90_j": float(np.percentile(j, 90)),
                "median_gini": float(np.median(g)), "p90_gini": float(np.percentile(g, 90)),
                "share_j_le_2": float(np.mean(j <= 2.0)),
                "min_detail": float(min(self.detail, default=0.0)),
                "p10_detail": float(np.percentile(self.detail, 10)) if self.detail else 0.0,
                "passes_per_frame": self.passes_per_frame}


def sharpness(path: Path) -> float:
    """Variance of the Laplacian of the luma: a cross-fade of two pictures loses it."""
    luma = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    lap = (luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:]
           - 4 * luma[1:-1, 1:-1])
    return float(lap.var())


def detail_ratios(frames: list[Path]) -> list[float]:
    """Each in-between's sharpness over the mean of its two keyframes' (no ghosting: >= 0.7)."""
    ends = (sharpness(frames[0]) + sharpness(frames[-1])) / 2
    return [sharpness(p) / ends for p in frames[1:-1]] if ends else []


def detail_ratios_at(frames: list[Path], times: list[float]) -> list[float]:
    """Each in-between's sharpness over its keyframes' interpolated at its t: fairer than
    their mean when one keyframe is much plainer (a frame near it may be as plain); a
    cross-fade still fails it mid-transition."""
    a, b = sharpness(frames[0]), sharpness(frames[-1])
    return [sharpness(p) / max((1 - t) * a + t * b, 1e-9)
            for p, t in zip(frames[1:-1], times[1:-1], strict=True)]


def frame_times(folder: Path, frames: int) -> list[float]:
    """The t's of a transition's frames: the manifest's (even pacing), else evenly spaced."""
    return TransitionManifest.read(folder / MANIFEST_NAME).times or interp.frame_times(frames)


def model_kind(renderer: Renderer) -> str:
    """Which built-in model ran: its weights say whether any picture can snap."""
    return "trained" if renderer.model == "tiny" else f"{renderer.model} (random weights)"


def pairs(spec: Spec) -> list[tuple[ImageId, ImageId]]:
    """Transitions between different prompts with different seeds, spread over all prompts."""
    names = [f"p{k}" for k in range(len(PROMPTS))]
    out = []
    for n, (a, b) in enumerate(itertools.cycle(itertools.combinations(names, 2))):
        if len(out) == spec.transitions:
            return out
        sa, sb = SEEDS[n % len(SEEDS)], SEEDS[(n + 1 + n // 15) % len(SEEDS)]
        out.append((ImageId(a, sa), ImageId(b, sb)))
    return out


def write_song(root: Path, spec: Spec, pacing: str,
               sharing: float = 0.0) -> tuple[Path, Path]:
    meta, media = root / "meta" / "song", root / "media" / "song"
    meta.mkdir(parents=True)
    media.mkdir(parents=True)
    seeds = " ".join(map(str, SEEDS))
    rows = ["name,prompt,seeds,guidance_scale"] + [
        f'p{k},"{prompt}",{seeds},{spec.guidance}' for k, prompt in enumerate(PROMPTS)]
    scenes = [",scene,duration,section,start,avoid"] + [
        f"{k},p{k},0,1,," for k in range(len(PROMPTS))]
    profile = {"model_string": spec.model, "res_width": spec.size, "res_height": spec.size,
               "interpolation_steps": spec.frames, "noise": "cpu", "pacing": pacing,
               "sharing": sharing,
               "pipe_kwargs": {"num_inference_steps": spec.steps, "negative_prompt": ""}}
    write_text(meta / "prompt_image_definitions.csv", "\n".join(rows) + "\n")
    write_text(meta / "scene_sequence.csv", "\n".join(scenes) + "\n")
    write_text(meta / "tgen_settings.json", json.dumps({"default": profile}))
    return meta, media


def run_pacing(root: Path, spec: Spec, pacing: str,
               log: Callable[[str], None] = print, sharing: float = 0.0) -> PacingRun:
    import time

    song = load_song(*write_song(root, spec, pacing, sharing))
    renderer = open_renderer(song)
    todo = pairs(spec)
    for image in dict.fromkeys(i for pair in todo for i in pair):
        renderer.keyframe(image)  # shared by every transition: not counted
    tr = TransitionRenderer(renderer, open_store(song), spec.frames, spec.batch_size)
    tr.refresh()
    run = PacingRun(pacing, model_kind(renderer), sharing=sharing)
    before, began = renderer.engine.unet_evals, time.perf_counter()
    with FrameWriter() as writer:
        for a, b in todo:
            outcome = tr.render(a, b, writer)
            assert outcome.folder is not None, outcome
            run.folders.append(outcome.folder)
    run.seconds = time.perf_counter() - began
    run.unet_evals = renderer.engine.unet_evals - before
    run.frames = spec.frames * len(todo)
    for folder in run.folders:
        score = score_frames(sorted(folder.glob("frame*.png")))
        m = measure(score.d, score.end_to_end)
        run.jumps.append(m.jump)
        run.ginis.append(m.gini)
        frames = sorted(folder.glob("frame*.png"))
        run.detail += detail_ratios(frames)
        run.detail_at_t += detail_ratios_at(frames, frame_times(folder, len(frames)))
    log(f"{pacing}{f', sharing {sharing}' if sharing else ''}: {len(todo)} transitions in "
        f"{run.seconds:.0f} s, median J "
        f"{run.summary()['median_j']:.2f}")
    return run


def strip(linear: PacingRun, even: PacingRun, target: Path, index: int | None = None) -> int:
    """Save the frames of one transition, linear above even (default: linear's jumpiest)."""
    k = int(np.argmax(linear.jumps)) if index is None else index
    rows = []
    for run in (linear, even):
        frames = [Image.open(p).convert("RGB") for p in sorted(run.folders[k].glob("frame*.png"))]
        manifest = TransitionManifest.read(run.folders[k] / MANIFEST_NAME)
        rows.append((run.pacing, run.jumps[k], run.ginis[k], frames, manifest.times))
    w, h = rows[0][3][0].size
    label, pad = 150, 4
    sheet = Image.new("RGB", (label + len(rows[0][3]) * (w + pad), 2 * (h + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (pacing, jump, gini, frames, times) in enumerate(rows):
        y = r * (h + 18)
        draw.text((4, y + h // 2 - 12), f"{pacing}\nJ {jump:.2f}  Gini {gini:.2f}", fill="black")
        for i, frame in enumerate(frames):
            x = label + i * (w + pad)
            sheet.paste(frame, (x, y))
            t = times[i] if times else i / (len(frames) - 1)
            draw.text((x + 2, y + h + 2), f"{t:.3f}", fill="black")
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target)
    return k


def compare(root: Path, spec: Spec, strip_to: Path | None,
            log: Callable[[str], None] = print) -> tuple[PacingRun, PacingRun, int | None]:
    linear = run_pacing(root / "linear", spec, "linear", log)
    even = run_pacing(root / "even", spec, "even", log)
    shown = strip(linear, even, strip_to) if strip_to is not None else None
    return linear, even, shown
