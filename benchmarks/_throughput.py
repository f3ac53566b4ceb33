"""Transition throughput: the old scripts' loop against sdmorph's render path.

The old loop is written here as media-layout.md describes the old scripts: both prompts
encoded once per transition, then one diffusers pipeline call per frame (which encodes the
empty negative prompt again every call), the noise slerped in numpy, and every PNG saved by
Pillow with its default compression on the main thread.

sdmorph renders the same frames (same model, size, seeds, prompts, torch threads) through
its real path: a song folder on disk, `render_keyframes`, then `TransitionRenderer` and
`render_all` writing into the song's media folder, as `sdmorph transitions` does.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _song import SongSpec, seeds_of, write_song
from PIL import Image

from sdmorph.core.ids import ImageId
from sdmorph.formats.song import load_song
from sdmorph.render.engine import Engine
from sdmorph.render.pipelines import load_pipeline
from sdmorph.render.renderer import default_batch_size, open_renderer
from sdmorph.stages.keyframes import render_keyframes
from sdmorph.stages.plan import open_store
from sdmorph.stages.transitions import TransitionRenderer, render_all


class ModelClock:
    """Seconds spent inside the UNet and the VAE decoder of a pipeline (hooks on both)."""

    def __init__(self, pipe: Any) -> None:
        self.seconds = 0.0
        self.sync = torch.cuda.synchronize if pipe.device.type == "cuda" else (lambda: None)
        self._wrap(pipe.unet, "forward")
        self._wrap(pipe.vae, "decode")

    def _wrap(self, module: Any, name: str) -> None:
        inner = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.sync()
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            self.sync()
            self.seconds += time.perf_counter() - start
            return out

        setattr(module, name, timed)


@dataclass
class Run:
    """One timed render of one transition."""

    seconds: float
    frames: int
    model_seconds: float = 0.0
    unet_evals: int = 0
    vae_decodes: int = 0
    folder: Path | None = None


@dataclass
class Side:
    """Timings of one side (old loop or sdmorph) at one size: best of the repeats."""

    short: Run
    long: Run
    runs: list[tuple[float, float]] = field(default_factory=list)

    @property
    def steady_fps(self) -> float:
        """Frames per second at the margin: start-up costs cancel in the difference."""
        seconds = self.long.seconds - self.short.seconds
        return (self.long.frames - self.short.frames) / seconds if seconds > 0 else float("nan")

    @property
    def steady_overhead(self) -> float:
        """Wall time over model time, at the margin."""
        model = self.long.model_seconds - self.short.model_seconds
        wall = self.long.seconds - self.short.seconds
        return wall / model if model > 0 else float("nan")


# --------------------------------------------------------------------- the old loop


def _slerp(t: float, v0: np.ndarray, v1: np.ndarray, dot_threshold: float = 0.9995) -> np.ndarray:
    """The old scripts' numpy slerp (plain lerp when the vectors are nearly parallel)."""
    dot = np.sum(v0 * v1 / (np.linalg.norm(v0) * np.linalg.norm(v1)))
    if np.abs(dot) > dot_threshold:
        return (1 - t) * v0 + t * v1
    theta_0 = np.arccos(dot)
    theta_t = theta_0 * t
    s0 = np.sin(theta_0 - theta_t) / np.sin(theta_0)
    s1 = np.sin(theta_t) / np.sin(theta_0)
    return s0 * v0 + s1 * v1


def _encode(pipe: Any, prompt: str) -> torch.Tensor:
    tokenizer = pipe.tokenizer
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids.to(pipe.device))[0]


def old_transition(pipe: Any, spec: SongSpec, prompts: tuple[str, str], seeds: tuple[int, int],
                   out: Path) -> Run:
    """One transition the way the old scripts rendered it; returns its wall time."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    embeds = [_encode(pipe, p) for p in prompts]
    shape = (1, 4, spec.size // 8, spec.size // 8)
    noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)).numpy()
             for s in seeds]
    for k, t in enumerate(np.linspace(0, 1, spec.frames)):
        latents = torch.from_numpy(_slerp(float(t), noise[0], noise[1]).astype(np.float32))
        embed = (1 - t) * embeds[0] + t * embeds[1]
        image = pipe(prompt_embeds=embed, negative_prompt="", latents=latents,
                     guidance_scale=spec.guidance, num_inference_steps=spec.steps).images[0]
        image.save(out / f"frame{k:06d}.png")
    return Run(time.perf_counter() - start, spec.frames, folder=out)


# --------------------------------------------------------------------- sdmorph


def sdmorph_transitions(engine: Engine, spec: SongSpec, root: Path,
                        pairs: list[tuple[ImageId, ImageId]] | None = None,
                        clock: ModelClock | None = None) -> Run:
    """Render `pairs` (default: p0's first seed to p1's) through sdmorph's real path."""
    evals, decodes = engine.unet_evals, engine.vae_decodes
    model_before = clock.seconds if clock else 0.0
    start = time.perf_counter()
    meta, media = write_song(root, spec)
    song = load_song(meta, media)
    renderer = open_renderer(song, engine=engine)
    store = open_store(song)
    batch = spec.batch_size or default_batch_size(engine.device, spec.size, spec.size)
    if pairs is None:
        pairs = [(ImageId("p0", seeds_of(0, spec)[0]), ImageId("p1", seeds_of(1, spec)[0]))]
    images = list(dict.fromkeys(image for pair in pairs for image in pair))
    render_keyframes(renderer, images, batch_size=batch)
    tr = TransitionRenderer(renderer, store, spec.frames, batch)
    report = render_all(tr, pairs)
    seconds = time.perf_counter() - start
    if report.count("rendered") != len(pairs):
        raise RuntimeError(f"sdmorph rendered {report.count('rendered')} of {len(pairs)}")
    return Run(seconds, len(pairs) * spec.frames,
               model_seconds=(clock.seconds if clock else 0.0) - model_before,
               unet_evals=engine.unet_evals - evals, vae_decodes=engine.vae_decodes - decodes,
               folder=report.outcomes[0].folder)


# --------------------------------------------------------------------- comparison


@dataclass
class Comparison:
    size: int
    old: Side
    new: Side
    max_pixel_diff: int
    batch_size: int

    @property
    def ratio(self) -> float:
        return self.new.steady_fps / self.old.steady_fps


def _frames_of(folder: Path) -> list[np.ndarray]:
    out = []
    for path in sorted(folder.glob("frame*.png")):
        with Image.open(path) as image:
            out.append(np.asarray(image.convert("RGB")).astype(np.int16))
    return out


def _max_diff(a: Path, b: Path) -> int:
    fa, fb = _frames_of(a), _frames_of(b)
    if len(fa) != len(fb):
        raise RuntimeError(f"{a} holds {len(fa)} frames, {b} {len(fb)}")
    return max(int(np.abs(x - y).max()) for x, y in zip(fa, fb, strict=True))


def _best(runs: list[Run]) -> Run:
    return min(runs, key=lambda r: r.seconds)


def compare(size: int, frames: int, repeats: int, steps: int = 10, guidance: float = 7.5,
            batch_size: int | None = None, log: Callable[[str], None] = print) -> Comparison:
    """Old loop and sdmorph, each timed at `frames` and `2 * frames` frames, interleaved."""
    old_pipe = load_pipeline("tiny-random", device="cpu")
    engine = Engine("tiny-random", device="cpu")
    clock = ModelClock(engine.pipe)
    specs = {n: SongSpec(size=size, frames=n, steps=steps, guidance=guidance,
                         batch_size=batch_size) for n in (frames, 2 * frames)}
    prompts = ("a red sun over the sea", "a blue moon in a dark forest")
    seeds = (seeds_of(0, specs[frames])[0], seeds_of(1, specs[frames])[0])
    old: dict[int, list[Run]] = {n: [] for n in specs}
    new: dict[int, list[Run]] = {n: [] for n in specs}
    with tempfile.TemporaryDirectory(prefix="sdmorph-bench-") as tmp:
        for rep in range(repeats):
            for n, spec in specs.items():
                old[n].append(old_transition(old_pipe, spec, prompts, seeds,
                                             Path(tmp) / f"old-{rep}-{n}"))
                new[n].append(sdmorph_transitions(engine, spec, Path(tmp) / f"new-{rep}-{n}",
                                                  clock=clock))
                log(f"  {size}px {n} frames: old {old[n][-1].seconds:.2f}s, "
                    f"sdmorph {new[n][-1].seconds:.2f}s (model {new[n][-1].model_seconds:.2f}s)")
        long_old, long_new = _best(old[2 * frames]), _best(new[2 * frames])
        diff = _max_diff(long_old.folder, long_new.folder)  # type: ignore[arg-type]
    return Comparison(
        size=size,
        old=Side(_best(old[frames]), long_old),
        new=Side(_best(new[frames]), long_new),
        max_pixel_diff=diff,
        batch_size=batch_size or default_batch_size(engine.device, size, size),
    )


# --------------------------------------------------------------------- model calls per frame


@dataclass(frozen=True)
class Counts:
    transitions: int
    keyframes: int  # distinct images the transitions start or end on
    frames: int  # frames written into transition folders
    unet_evals: int
    vae_decodes: int
    expected_unet: int  # if every keyframe and every frame between is rendered exactly once
    expected_vae: int


def count_model_calls(root: Path, size: int = 64, frames: int = 8, steps: int = 10,
                      paths: int = 3) -> Counts:
    """A small song whose planned paths share keyframes, rendered through sdmorph's path."""
    from sdmorph.core.ids import pair_key
    from sdmorph.core.paths import plan_paths

    spec = SongSpec(size=size, frames=frames, steps=steps, prompts=3, seeds_per_prompt=3,
                    duration=1)
    meta, media = write_song(root / "plan", spec)
    hops = [hop for path in plan_paths(load_song(meta, media).scenes, 0, paths) for hop in path]
    first_seen: dict[object, tuple] = {}  # each transition once, either direction
    for hop in hops:
        first_seen.setdefault(pair_key(hop.a, hop.b), (hop.a, hop.b))
    pairs = list(first_seen.values())
    engine = Engine("tiny-random", device="cpu")
    run = sdmorph_transitions(engine, spec, root / "render", pairs=pairs)
    keyframes = len({image for pair in pairs for image in pair})
    decodes = keyframes + len(pairs) * (frames - 2)
    cfg = 2 if spec.guidance > 1 else 1
    return Counts(len(pairs), keyframes, run.frames, run.unet_evals, run.vae_decodes,
                  decodes * unet_calls(engine, steps) * cfg, decodes)


def unet_calls(engine: Engine, steps: int) -> int:
    """UNet calls per image: the scheduler's timesteps (PNDM runs `steps + 1` of them)."""
    scheduler = type(engine.pipe.scheduler).from_config(engine.pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)
