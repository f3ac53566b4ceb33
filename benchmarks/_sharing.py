"""Shared denoising (issue 23): what `sharing: s` saves, how smooth it morphs, and how fast.

Smoothness and cost: the smoothness benchmark's transitions (`_smoothness`: 24 of 17 frames
at 64x64, 10 steps, guidance 3, the trained built-in `tiny`) rendered with `pacing: linear`
and `pacing: even`, each at s = 0 and at the recommended s. For each: the engine's UNet passes
per output frame (everything the transition cost, its keyframes' second denoising included;
the keyframes themselves are rendered once before counting), J and Gini from the frames, and
ghosting: each in-between's variance of the Laplacian of its luma against the mean of its two
keyframes' (`_smoothness.detail_ratios`; a cross-fade of two pictures loses detail), and, with
linear pacing where both renders have the same t's, against the same frame rendered in full
(`detail_vs_full`): what sharing itself loses.

Throughput: one transition of N and of 2N frames at 128x128, 10 steps, guidance 7.5, on the
same trained model, through sdmorph's real path (song folder, keyframes, `render_all`) with
the recommended sharing and pacing, and through the peer stable-diffusion-videos' own
`StableDiffusionWalkPipeline.make_clip_frames` (the frame loop of its `walk`) at batch 30,
built from the same components. The figure is the ratio of the marginal frames/s (2N - N
frames over the time difference), best of the repeats, the two sides alternating.

The peer (stable_diffusion_videos 0.9.2, `pip install --no-deps stable_diffusion_videos
opencv-python-headless`) predates transformers 5: it imports `CLIPFeatureExtractor`, now
`CLIPImageProcessor` (an alias is set; with no safety checker it is never called), and
`torchvision.io.write_video` for its videos (no torchvision matches torch 2.13's CPU wheel
here: an empty module stands in while it imports; make_clip_frames never calls it).
Skipped when the peer is not installed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _smoothness import PacingRun, Spec, run_pacing, sharpness
from _song import PROMPTS, SongSpec, seeds_of
from _throughput import Run, sdmorph_transitions

from sdmorph.core.ids import ImageId
from sdmorph.render.engine import Engine

RECOMMENDED = 0.8
PEER_BATCH = 30


@dataclass
class SharingRuns:
    """The four smoothness runs: (pacing, s) -> run."""

    runs: dict[tuple[str, float], PacingRun] = field(default_factory=dict)

    def passes_ratio(self, pacing: str, sharing: float) -> float:
        return (self.runs[pacing, sharing].passes_per_frame
                / self.runs[pacing, 0.0].passes_per_frame)


def smoothness(root: Path, spec: Spec, sharing: float,
               log: Callable[[str], None] = print) -> SharingRuns:
    out = SharingRuns()
    for pacing in ("linear", "even"):
        for s in (0.0, sharing):
            out.runs[pacing, s] = run_pacing(root / f"{pacing}-{s}", spec, pacing, log, s)
    return out


def load_peer() -> type | None:
    """stable-diffusion-videos' walk pipeline class, or None if it is not installed."""
    if importlib.util.find_spec("stable_diffusion_videos") is None:
        return None
    import diffusers.pipelines.stable_diffusion.safety_checker  # noqa: F401 - loads transformers

    library = sys.modules["transformers"]
    if not hasattr(library, "CLIPFeatureExtractor"):
        library.CLIPFeatureExtractor = library.CLIPImageProcessor
    names = ("torchvision", "torchvision.io", "torchvision.transforms",
             "torchvision.transforms.functional")
    stand_ins = {name: types.ModuleType(name) for name in names if name not in sys.modules}
    for name, module in stand_ins.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.write_video = module.pil_to_tensor = None  # type: ignore[attr-defined]
    sys.modules.update(stand_ins)
    try:
        from stable_diffusion_videos.stable_diffusion_pipeline import (
            StableDiffusionWalkPipeline,
        )
    finally:
        for name in stand_ins:
            del sys.modules[name]
    return StableDiffusionWalkPipeline


def peer_transition(walk: Any, spec: SongSpec, out: Path) -> Run:
    """One transition of spec.frames frames, as the peer's walk renders each of its clips."""
    start = time.perf_counter()
    walk.make_clip_frames(PROMPTS[0], PROMPTS[1], seeds_of(0, spec)[0], seeds_of(1, spec)[0],
                          num_interpolation_steps=spec.frames, save_path=out,
                          num_inference_steps=spec.steps, guidance_scale=spec.guidance,
                          height=spec.size, width=spec.size, batch_size=PEER_BATCH)
    return Run(time.perf_counter() - start, spec.frames, folder=out)


@dataclass
class Throughput:
    frames: tuple[int, int]
    sdmorph: dict[int, list[float]] = field(default_factory=dict)
    peer: dict[int, list[float]] = field(default_factory=dict)
    passes: dict[int, int] = field(default_factory=dict)

    @staticmethod
    def _margin(times: dict[int, list[float]], n: int, m: int) -> float:
        return (m - n) / max(min(times[m]) - min(times[n]), 1e-9)

    @property
    def ratio(self) -> float:
        return self.sdmorph_fps / self.peer_fps

    @property
    def sdmorph_fps(self) -> float:
        return self._margin(self.sdmorph, *self.frames)

    @property
    def peer_fps(self) -> float:
        return self._margin(self.peer, *self.frames)


def throughput(n: int, repeats: int, sharing: float, pacing: str,
               log: Callable[[str], None] = print) -> Throughput | None:
    walk_class = load_peer()
    if walk_class is None:
        log("sharing throughput: stable_diffusion_videos is not installed: skipped")
        return None
    engine = Engine("tiny", device="cpu")
    pipe = engine.pipe
    walk = walk_class(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                      unet=pipe.unet, scheduler=pipe.scheduler, safety_checker=None,
                      feature_extractor=None)
    walk.set_progress_bar_config(disable=True)
    result = Throughput((n, 2 * n))
    for rep in range(repeats):
        for frames in result.frames:
            spec = SongSpec(size=128, frames=frames, steps=10, guidance=7.5, model="tiny",
                            sharing=sharing, pacing=pacing)
            with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
                ours = sdmorph_transitions(engine, spec, Path(tmp) / "ours")
                theirs = peer_transition(walk, spec, Path(tmp) / "peer")
            result.sdmorph.setdefault(frames, []).append(ours.seconds)
            result.peer.setdefault(frames, []).append(theirs.seconds)
            result.passes[frames] = ours.unet_evals
            log(f"repeat {rep + 1}, {frames} frames: sdmorph {ours.seconds:.1f} s, peer "
                f"{theirs.seconds:.1f} s")
    return result


def tree_memory(frames: int, size: int, steps: int, sharing: float) -> tuple[int, float]:
    """(bytes, seconds) of the states one linear transition's tree keeps, grown in full on
    `tiny-random` (the states' size depends on the frame size, not on the weights)."""
    from _song import write_song

    from sdmorph.core.sharing import bisection
    from sdmorph.formats.song import load_song
    from sdmorph.render.renderer import open_renderer
    from sdmorph.render.shared import SharedTree, join_steps

    spec = SongSpec(size=size, frames=frames, steps=steps, sharing=sharing)
    with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
        renderer = open_renderer(load_song(*write_song(Path(tmp), spec)))
    a, b = (ImageId(f"p{k}", seeds_of(k, spec)[0]) for k in (0, 1))
    iterations = renderer.engine.iterations(steps)  # type: ignore[union-attr]
    times = np.linspace(0, 1, frames).tolist()
    tree = SharedTree(renderer, a, b, times.__getitem__,
                      set(join_steps(sharing, iterations).values()))
    start = time.perf_counter()
    tree.roots(0, frames - 1)
    for level in sorted({br.level for br in bisection(frames)}):
        batch = [br for br in bisection(frames) if br.level == level]
        for k in range(0, len(batch), 4):
            tree.grow(batch[k : k + 4])
    return tree.state_bytes(), time.perf_counter() - start


def detail_vs_full(full: PacingRun, shared: PacingRun) -> list[float]:
    """Each in-between's sharpness with sharing over the same frame's (same transition, same
    t: linear pacing) rendered in full: whether sharing loses detail the model would keep."""
    ratios = []
    for ours, theirs in zip(shared.folders, full.folders, strict=True):
        frames = zip(sorted(ours.glob("frame*.png"))[1:-1],
                     sorted(theirs.glob("frame*.png"))[1:-1], strict=True)
        ratios += [sharpness(a) / max(sharpness(b), 1e-9) for a, b in frames]
    return ratios


def crossfade_ratios(run: PacingRun, at_t: bool = False) -> list[float]:
    """What a cross-fade of each transition's keyframes at its frames' t's keeps of their
    detail (the ghost the detail figures must tell apart): against the keyframes' mean, or
    (`at_t`) against their detail interpolated at the frame's t."""
    from _smoothness import frame_times
    from PIL import Image

    ratios = []
    with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
        mixed = Path(tmp) / "mix.png"
        for folder in run.folders:
            frames = sorted(folder.glob("frame*.png"))
            ends = [np.asarray(Image.open(f).convert("RGB"), np.float64) for f in
                    (frames[0], frames[-1])]
            a, b = sharpness(frames[0]), sharpness(frames[-1])
            for t in frame_times(folder, len(frames))[1:-1]:
                Image.fromarray(((1 - t) * ends[0] + t * ends[1]).round().astype(np.uint8)
                                ).save(mixed)
                ratios.append(sharpness(mixed) / ((1 - t) * a + t * b if at_t else (a + b) / 2))
    return ratios


def kept_share(ratios: list[float], floor: float = 0.7) -> float:
    """Share of detail ratios at least `floor` (0 for none)."""
    return float(np.mean(np.asarray(ratios) >= floor)) if ratios else 0.0


def detail_share(run: PacingRun, floor: float = 0.7) -> float:
    """Share of the in-betweens that keep at least `floor` of their keyframes' detail."""
    return kept_share(run.detail, floor)


def save_strip(target: Path, transitions: int = 6, sharing: float = RECOMMENDED) -> None:
    """The even-paced transition that snaps most at s = 0 (of the first few of the smoothness
    benchmark), above it at s = `sharing`, every frame labelled with its t."""
    import torch
    from _smoothness import strip

    torch.set_num_threads(1)
    spec = Spec(transitions=transitions)
    with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
        runs = {s: run_pacing(Path(tmp) / str(s), spec, "even", print, s) for s in (0.0, sharing)}
        for s, run in runs.items():
            run.pacing = f"even, s = {s:g}"
        shown = strip(runs[0.0], runs[sharing], target, int(np.argmax(runs[0.0].jumps)))
    print(f"saved {target} (transition {shown})")


if __name__ == "__main__":
    save_strip(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/sharing-strip.png"))
