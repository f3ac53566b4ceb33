"""Turns a song's images and transitions into engine inputs, and frames into PNG files.

Everything computable once is computed once per run: text embeddings (the engine caches
them), each seed's noise, each mask, each keyframe. PNG encoding and writing happen on a
writer thread so the model never waits for the disk.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdmorph import __version__
from sdmorph.core.errors import RenderError, SdmorphError
from sdmorph.core.ids import ImageId
from sdmorph.core.interp import frame_times, lerp, slerp
from sdmorph.formats import recipe
from sdmorph.formats.fsio import save_image
from sdmorph.formats.recipe import recipe_key
from sdmorph.formats.song import Song
from sdmorph.media.masks import crossfade, find_mask, load_mask, to_control
from sdmorph.render.engine import Engine, FrameInput
from sdmorph.render.sources import TINY
from sdmorph.render.tiny import PNDM_GUIDANCE_LIMIT

if TYPE_CHECKING:
    from sdmorph.render.cluster import RemoteEngine

_STEP_NOISE_KEPT = 8
# zlib level 1 writes PNGs several times faster than Pillow's default, ~10% larger.
PNG_LEVEL = 1


def _lerp_or_none(a: np.ndarray | None, b: np.ndarray | None, t: float) -> np.ndarray | None:
    """SDXL's pooled embeddings move with the token embeddings (None for SD 1.x)."""
    if a is None or b is None:
        return None
    return np.asarray(lerp(a, b, t), dtype=np.float32)


def png_info(text: dict[str, Any]) -> PngInfo:
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, str(value))
    return info


@dataclass
class Renderer:
    """One song's render recipe on one engine (a local one, or a Ray cluster's workers).

    Several threads may use one renderer at once (one per cluster worker, `parallel`).
    """

    song: Song
    engine: Engine | RemoteEngine
    model: str
    noise_source: str
    _noise: dict[int, np.ndarray] = field(default_factory=dict)
    _step_noise: dict[int, np.ndarray] = field(default_factory=dict)
    _masks: dict[str, Image.Image] = field(default_factory=dict)
    _keyframes: dict[ImageId, Image.Image] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def width(self) -> int:
        return self.song.profile.res_width

    @property
    def height(self) -> int:
        return self.song.profile.res_height

    @property
    def parallel(self) -> int:
        """How many renders may run at once: one per worker of a cluster, else one."""
        return getattr(self.engine, "workers", 1)

    @property
    def engine_facts(self) -> recipe.EngineFacts:
        engine = self.engine
        return recipe.EngineFacts(scheduler=engine.scheduler_name, noise=self.noise_source,
                                  dtype=str(engine.dtype).replace("torch.", ""),
                                  family=engine.family, scheduler_options=engine.scheduler_options,
                                  step_noise="seeds" if engine.stochastic else None)

    def notices(self) -> list[str]:
        """Advice on the song's settings for this model, a line each (they block nothing)."""
        if self.model != TINY or self.engine.scheduler_name != "PNDMScheduler":
            return []
        high = [p.name for p in self.song.prompts.values()
                if self.song.guidance(p) > PNDM_GUIDANCE_LIMIT]
        if not high:
            return []
        named = ", ".join(high[:3]) + (f" and {len(high) - 3} more" if len(high) > 3 else "")
        return [f"{self.song.settings_path}: the built-in tiny blotches above guidance "
                f"{PNDM_GUIDANCE_LIMIT:g} with its PNDM scheduler ({named}): set \"scheduler\": "
                "\"ddim\" in the profile, or use guidance 1.5-3"]

    def settings(self) -> dict[str, Any]:
        """What every image of this run shares (part of each recipe)."""
        return recipe.settings(self.song, self.model, self.engine_facts)

    def keyframe_recipe(self, image: ImageId) -> dict[str, Any]:
        return recipe.keyframe_recipe(self.song, self.model, self.engine_facts, image)

    def transition_recipe(self, a: ImageId, b: ImageId, frames: int) -> dict[str, Any]:
        return recipe.transition_recipe(self.song, self.model, self.engine_facts, a, b, frames)

    def png_text(self, image: ImageId) -> dict[str, Any]:
        wanted = self.keyframe_recipe(image)
        return {**wanted, "recipe_key": recipe_key(wanted), "sdmorph_version": __version__}

    # ------------------------------------------------------------ engine inputs

    def noise(self, seed: int) -> np.ndarray:
        with self._lock:
            if seed not in self._noise:
                self._noise[seed] = self.engine.noise(seed, self.noise_source, self.width,
                                                      self.height)
            return self._noise[seed]

    def step_noise(self, seed: int) -> np.ndarray | None:
        """The seed's own per-step noise for stochastic samplers (None: deterministic one)."""
        if not self.engine.stochastic:
            return None
        with self._lock:  # the eviction below must not interleave with another thread's
            return self._step_noise_of(seed)

    def _step_noise_of(self, seed: int) -> np.ndarray:
        if seed not in self._step_noise:
            # steps x the initial noise's size per seed (13 MB for 50 steps of SDXL at 1024):
            # keep only the latest few, a transition needs two (each thread rendering one).
            while len(self._step_noise) >= _STEP_NOISE_KEPT * self.parallel:
                self._step_noise.pop(next(iter(self._step_noise)))
            self._step_noise[seed] = self.engine.step_noise(
                seed, self.noise_source, self.width, self.height,
                self.song.profile.num_inference_steps)
        return self._step_noise[seed]

    def _step_noise_at(self, a: int, b: int, t: float) -> np.ndarray | None:
        """Each step's noise slerped between the two seeds like the initial noise, so a
        stochastic sampler's frames change as smoothly as a deterministic one's."""
        noise_a, noise_b = self.step_noise(a), self.step_noise(b)
        if noise_a is None or noise_b is None:
            return None
        steps = [slerp(x, y, t) for x, y in zip(noise_a, noise_b, strict=True)]
        return np.asarray(steps, dtype=np.float32).reshape(noise_a.shape)

    def _embeds(self, image: ImageId) -> tuple[np.ndarray, ...]:
        """cond, uncond and (SDXL only, else None) their pooled embeddings."""
        prompt = self.song.prompt_of(image)
        return self.engine.embed(prompt.prompt, self.song.negative(prompt))

    def _mask(self, image: ImageId) -> Image.Image | None:
        if not self.song.profile.controlnet:
            return None
        name = self.song.mask_name(self.song.prompt_of(image))
        if name is None:
            raise SdmorphError(f"{self.song.sheet_path}: prompt {image.prompt!r} has no mask")
        if name not in self._masks:
            path = find_mask(self.song.masks_dir, name)
            if path is None:
                raise SdmorphError(f"mask {name!r} not found in {self.song.masks_dir}")
            self._masks[name] = load_mask(path, self.width, self.height, self.song.masks_dir)
        return self._masks[name]

    def frame_input(self, a: ImageId, b: ImageId, t: float) -> FrameInput:
        """The inputs of the frame at t between a and b (t=0 is exactly a's keyframe)."""
        cond_a, uncond_a, pooled_a, upooled_a = self._embeds(a)
        cond_b, uncond_b, pooled_b, upooled_b = self._embeds(b)
        pa, pb = self.song.prompt_of(a), self.song.prompt_of(b)
        control = None
        scale = 1.0
        mask_a, mask_b = self._mask(a), self._mask(b)
        if mask_a is not None and mask_b is not None:
            control = to_control(crossfade(mask_a, mask_b, t))
            scale = float(lerp(self.song.cnet_scale(pa), self.song.cnet_scale(pb), t))
        return FrameInput(
            latents=slerp(self.noise(a.seed), self.noise(b.seed), t),
            cond=np.asarray(lerp(cond_a, cond_b, t), dtype=np.float32),
            uncond=np.asarray(lerp(uncond_a, uncond_b, t), dtype=np.float32),
            guidance=float(lerp(self.song.guidance(pa), self.song.guidance(pb), t)),
            control=control, cnet_scale=scale,
            pooled=_lerp_or_none(pooled_a, pooled_b, t),
            uncond_pooled=_lerp_or_none(upooled_a, upooled_b, t),
            step_noise=self._step_noise_at(a.seed, b.seed, t),
        )

    def render(self, inputs: Sequence[FrameInput]) -> list[Image.Image]:
        p = self.song.profile
        return self.engine.render(inputs, steps=p.num_inference_steps, width=self.width,
                                  height=self.height, control_start=p.control_guidance_start,
                                  control_end=p.control_guidance_end)

    # ------------------------------------------------------------ keyframes

    def keyframe(self, image: ImageId) -> Image.Image:
        """The keyframe of `image`: from prompt_images/ when its recipe matches, else rendered."""
        if image not in self._keyframes:
            self._keyframes[image] = self._stored_keyframe(image) or self.render_keyframes(
                [image]
            )[0]
        return self._keyframes[image]

    def _stored_keyframe(self, image: ImageId) -> Image.Image | None:
        path = self.song.keyframe_path(image)
        if not path.is_file():
            return None
        try:
            with Image.open(path) as stored:
                if not self._usable_keyframe(stored, image):
                    return None
                stored.load()
                return stored.convert("RGB")
        except OSError:
            return None

    def _usable_keyframe(self, stored: Image.Image, image: ImageId) -> bool:
        """Ours with the same recipe, or the old scripts' (no recipe recorded) at this size."""
        key = getattr(stored, "text", {}).get("recipe_key")
        if key is None:
            return stored.size == (self.width, self.height)
        return key == recipe_key(self.keyframe_recipe(image))

    def keyframe_state(self, image: ImageId) -> str:
        """'missing', 'current', 'legacy' (old scripts', used as is) or 'stale'."""
        path = self.song.keyframe_path(image)
        try:
            with Image.open(path) as stored:
                key = getattr(stored, "text", {}).get("recipe_key")
                if key is None:
                    return "legacy"
                return "current" if key == recipe_key(self.keyframe_recipe(image)) else "stale"
        except OSError:
            return "missing"

    def render_keyframes(self, images: Sequence[ImageId]) -> list[Image.Image]:
        out = self.render([self.frame_input(image, image, 0.0) for image in images])
        for image, picture in zip(images, out, strict=True):
            self._keyframes[image] = picture
        return out

    def transition_times(self, frames: int) -> list[float]:
        return frame_times(frames)


class FrameWriter:
    """Saves PNGs on a background thread; errors surface on the next call or at close."""

    def __init__(self, depth: int = 16) -> None:
        self._queue: queue.Queue[tuple[Path, Image.Image, PngInfo | None] | None] = queue.Queue(
            maxsize=depth
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            path, picture, info = item
            try:
                if self._error is None:
                    save_image(path, picture, compress_level=PNG_LEVEL, pnginfo=info)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _check(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, OSError) and not isinstance(error, SdmorphError):
                raise RenderError(f"cannot write frame: {error}") from None
            raise error

    def put(self, path: Path, picture: Image.Image, info: PngInfo | None = None) -> None:
        self._check()
        self._queue.put((path, picture, info))

    def flush(self) -> None:
        self._queue.join()
        self._check()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._check()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# On a CPU, batches of about this many latent pixels render fastest (benchmarks/, 2 cores, tiny
# model: 8-32 frames at 128x128 run 1.2x faster than 4; at 256x256, 4 is best and 16 slower).
_CPU_BATCH_LATENT_PIXELS = 4096
_CPU_MIN_BATCH, _CPU_MAX_BATCH = 4, 32


def batch_size_for(renderer: Renderer, requested: int | None = None) -> int:
    """The asked-for batch size, else the profile's, else what suits the device and frame size."""
    return requested or renderer.song.profile.batch_size or default_batch_size(
        renderer.engine.device, renderer.width, renderer.height)


def default_batch_size(device: str, width: int | None = None, height: int | None = None) -> int:
    """Frames per model call: large enough to keep a GPU busy, small enough for 8 GB cards.

    On the CPU, given the frame size, small frames get larger batches (never fewer than 4).
    """
    if device.startswith("cuda"):
        return 8
    if width is None or height is None or not device.startswith("cpu"):
        return _CPU_MIN_BATCH
    latent_pixels = max(1, (width // 8) * (height // 8))
    return max(_CPU_MIN_BATCH, min(_CPU_MAX_BATCH, _CPU_BATCH_LATENT_PIXELS // latent_pixels))


def open_renderer(song: Song, *, model: str | None = None, device: str | None = None,
                  cache_dir: Path | None = None, compile: bool = False,
                  engine: Engine | RemoteEngine | None = None, cluster: str | None = None,
                  cluster_cpus: int | None = None) -> Renderer:
    """Build (or reuse) the engine for a song's profile; `model` overrides model_string.

    `cluster` (a Ray address, or 'local') renders on a Ray cluster's workers, each loading
    the engine this would build here (`cluster_cpus`: CPUs per worker without GPUs).
    """
    profile = song.profile
    name = model or profile.model_string
    if engine is None:
        loras = tuple((lora.resolved(song.meta_dir), lora.scale) for lora in profile.loras)
        spec = {"controlnet": profile.controlnet_string, "device": device,
                "cache_dir": cache_dir, "scheduler": profile.scheduler, "compile": compile,
                "dtype": profile.dtype, "timestep_spacing": profile.timestep_spacing,
                "loras": loras}
        engine = Engine(name, **spec) if cluster is None else _cluster_engine(
            song, cluster, name, spec, cluster_cpus)
    noise = profile.noise or ("cuda" if engine.device.startswith("cuda") else "cpu")
    return Renderer(song, engine, model=name, noise_source=noise)


def _cluster_engine(song: Song, address: str, model: str, spec: dict[str, Any],
                    cpus: int | None) -> RemoteEngine:
    from sdmorph.render.cluster import EngineSpec, start_cluster

    # The noise is drawn on the workers: `noise: cuda` needs them to have a GPU.
    needs_gpu = f"noise: cuda in {song.settings_path}" if song.profile.noise == "cuda" else None
    return start_cluster(address, EngineSpec(model, **spec), cpus=cpus, needs_gpu=needs_gpu)
