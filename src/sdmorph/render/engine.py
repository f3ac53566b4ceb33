"""Renders batches of frames with the old scripts' recipe, one guidance scale per frame.

The denoising loop is our own, built from the pipeline's public components, because a
transition interpolates the guidance scale (and ControlNet scale) frame by frame and diffusers
pipelines accept only one per call. For a single frame it reproduces
`StableDiffusionPipeline.__call__` / `StableDiffusionControlNetPipeline.__call__` given latents,
prompt_embeds, negative_prompt_embeds and guidance_scale (tests hold it to that); for SDXL
models it adds the pooled text embeddings and the size/crop ids as `StableDiffusionXLPipeline`.

Stochastic samplers (ancestral, LCM, TCD) add fresh noise at every step. Drawn per batch, that
noise differs from frame to frame and the frames of a transition flicker; so a frame may bring
its own per-step noise (`FrameInput.step_noise`, interpolated between the two seeds' noise by
the renderer like the initial noise) and the engine puts it in place of what the scheduler drew.

Everything that imports torch lives here and in `pipelines`/`tiny`; callers pass numpy arrays.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import inspect
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers.utils.torch_utils import randn_tensor

from sdmorph.core.errors import RenderError
from sdmorph.core.interp import slerp
from sdmorph.render.pipelines import load_pipeline, pick_device, pipeline_family
from sdmorph.render.schedulers import STEP_ETA, is_stochastic, scheduler_options
from sdmorph.render.sources import SDXL

NOISE_SOURCES = ("cuda", "cpu")
# torch.OutOfMemoryError (CUDA and MPS) is new in torch 2.5; older ones only have the CUDA name.
_OOM_ERROR: type[BaseException] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
# Two fixed seeds whose noises tell how much noise a stochastic step adds (see _shared_step).
_PROBE_SEEDS = (1, 2)


class DarkFrameError(RenderError):
    """A frame came out NaN or black; callers say which image or transition frame it was."""

    def __init__(self, position: int, what: str, device: str, dtype: str) -> None:
        self.position = position
        self.what = what
        if dtype == "float16":
            self.hint = ('usually float16 overflow: set "dtype": "float32" in the profile, or '
                         "render on another device")
        else:
            self.hint = (f"the model produced it in {dtype} on {device}: check its weights and "
                         "the settings (guidance, steps, scheduler)")
        super().__init__(f"frame {position} of this batch came out {what}; {self.hint}")


@dataclass(frozen=True)
class FrameInput:
    """Everything one frame needs; interpolation between keyframes is the caller's job."""

    latents: np.ndarray  # (4, h/8, w/8) float32 initial noise
    cond: np.ndarray  # (77, d) float32 prompt embedding
    uncond: np.ndarray  # (77, d) float32 negative-prompt embedding
    guidance: float
    control: np.ndarray | None = None  # (H, W, 3) float32 in [0, 1], ControlNet songs only
    cnet_scale: float = 1.0
    pooled: np.ndarray | None = None  # (p,) pooled prompt embedding, SDXL only
    uncond_pooled: np.ndarray | None = None  # (p,) pooled negative embedding, SDXL only
    # (n, 4, h/8, w/8): the noise stochastic samplers add at step i is step_noise[i].
    step_noise: np.ndarray | None = None


@dataclass(frozen=True)
class Snapshot:
    """One frame's denoising state after `step` iterations, kept on the engine's device: its
    latents and a scheduler holding only its own rows of per-frame history (shared denoising)."""

    step: int
    latents: torch.Tensor  # (1, c, h, w)
    scheduler: object = field(repr=False)


@dataclass(frozen=True)
class Join:
    """Where a frame starts: the slerp at `share` between two frames' states at one step."""

    left: Snapshot
    right: Snapshot
    share: float


@dataclass
class _Start:
    """The state a batch's denoising starts from (None in `_denoise`: the frames' own noise)."""

    step: int
    latents: torch.Tensor
    scheduler: object


@dataclass(frozen=True)
class _Job:
    """One render call's shared settings."""

    steps: int
    width: int
    height: int
    control_start: float
    control_end: float


class Engine:
    """A loaded model that turns `FrameInput`s into PIL images.

    `compile=True` wraps the UNet and VAE decoder in `torch.compile`: the first render of each
    batch size pays the compile time (tens of seconds), later ones run faster.
    `on_warning` receives one-line notices (e.g. batches split after running out of memory).
    """

    def __init__(
        self,
        model: str,
        controlnet: str | None = None,
        *,
        device: str | None = None,
        cache_dir: Path | None = None,
        scheduler: str | None = None,
        compile: bool = False,
        dtype: str | None = None,
        on_warning: Callable[[str], None] | None = None,
        timestep_spacing: str | None = None,
        loras: Sequence[tuple[Path, float]] = (),
    ) -> None:
        self.device = pick_device(device)
        self.pipe = load_pipeline(
            model,
            controlnet,
            cache_dir=cache_dir,
            device=self.device,
            scheduler=scheduler,
            dtype=dtype,
            timestep_spacing=timestep_spacing,
            loras=loras,
        )
        self.dtype = self.pipe.unet.dtype
        self.family = pipeline_family(self.pipe)
        self.is_controlnet = controlnet is not None
        self.stochastic = is_stochastic(self.pipe.scheduler)
        self.scheduler_options = scheduler_options(scheduler, timestep_spacing, self.pipe.scheduler)
        self.on_warning = on_warning
        self.unet_evals = 0
        self.vae_decodes = 0
        self.frames_rendered = 0
        self.max_batch: int | None = None
        self._embeddings: dict[str, np.ndarray] = {}
        self._pooled: dict[str, np.ndarray] = {}
        if compile:
            self.pipe.unet = torch.compile(self.pipe.unet)
            self.pipe.vae.decoder = torch.compile(self.pipe.vae.decoder)

    @property
    def is_xl(self) -> bool:
        return self.family == SDXL

    @property
    def embed_dim(self) -> int:
        """Width of one token's text embedding (768 for SD 1.5, 768 + 1280 for SDXL)."""
        width = int(self.pipe.text_encoder.config.hidden_size)
        if self.is_xl:
            width += int(self.pipe.text_encoder_2.config.hidden_size)
        return width

    @property
    def pooled_dim(self) -> int:
        """Width of SDXL's pooled text embedding (0: the model has none)."""
        return int(self.pipe.text_encoder_2.config.projection_dim) if self.is_xl else 0

    @property
    def unet_passes_per_frame(self) -> float:
        """UNet evaluations per rendered frame so far (CFG counts the negative pass)."""
        return self.unet_evals / self.frames_rendered if self.frames_rendered else 0.0

    @property
    def scheduler_name(self) -> str:
        """Class name of the scheduler renders use, e.g. PNDMScheduler (part of a recipe)."""
        return type(self.pipe.scheduler).__name__

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.unet.config.in_channels)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Text embeddings (n, 77, d) float32, each text encoded once per engine."""
        for text in dict.fromkeys(texts):
            if text not in self._embeddings:
                self._embeddings[text] = self._encode_one(text)
        if not texts:
            return np.zeros((0, self.pipe.tokenizer.model_max_length, self.embed_dim), np.float32)
        return np.stack([self._embeddings[text] for text in texts])

    def pooled(self, texts: Sequence[str]) -> np.ndarray:
        """SDXL's pooled text embeddings (n, p) float32 (encoded with `encode`)."""
        self.encode(texts)
        return np.stack([self._pooled[text] for text in texts]) if texts else np.zeros(
            (0, self.pooled_dim), np.float32)

    def embed(self, prompt: str, negative: str) -> tuple[np.ndarray, ...]:
        """(cond, uncond, pooled, uncond_pooled) of a prompt and its negative prompt; the
        pooled ones are None for SD 1.x. SDXL models that zero an empty negative prompt (their
        `force_zeros_for_empty_prompt`) get zeros, as diffusers' SDXL pipeline gives them."""
        cond, uncond = self.encode([prompt, negative])
        if not self.is_xl:
            return cond, uncond, None, None
        pooled, uncond_pooled = self.pooled([prompt, negative])
        if negative == "" and self.pipe.config.get("force_zeros_for_empty_prompt", False):
            uncond, uncond_pooled = np.zeros_like(uncond), np.zeros_like(uncond_pooled)
        return cond, uncond, pooled, uncond_pooled

    @torch.inference_mode()
    def _encode_one(self, text: str) -> np.ndarray:
        if self.is_xl:
            return self._encode_xl(text)
        hidden = self.pipe.text_encoder(self._token_ids(self.pipe.tokenizer, text))[0]
        return hidden[0].float().cpu().numpy()

    def _token_ids(self, tokenizer: object, text: str) -> torch.Tensor:
        ids = tokenizer(  # type: ignore[operator]
            text,
            padding="max_length",
            max_length=tokenizer.model_max_length,  # type: ignore[attr-defined]
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return ids.to(self.device)

    def _encode_xl(self, text: str) -> np.ndarray:
        """SDXL's encoding: both encoders' penultimate hidden states side by side; the pooled
        embedding is the second encoder's projected output (kept for `pooled`)."""
        hidden = []
        for tokenizer, encoder in ((self.pipe.tokenizer, self.pipe.text_encoder),
                                   (self.pipe.tokenizer_2, self.pipe.text_encoder_2)):
            out = encoder(self._token_ids(tokenizer, text), output_hidden_states=True)
            hidden.append(out.hidden_states[-2][0].float())
        self._pooled[text] = out[0][0].float().cpu().numpy()
        return torch.cat(hidden, dim=-1).cpu().numpy()

    def noise(self, seed: int, source: str, width: int, height: int) -> np.ndarray:
        """The old scripts' initial noise for `seed`, drawn on the CUDA or the CPU generator."""
        if source not in NOISE_SOURCES:
            raise RenderError(f"noise source '{source}': use cuda or cpu")
        if not 0 <= seed < 2**64:
            raise RenderError(f"seed {seed}: must be between 0 and {2**64 - 1}")
        if source == "cuda" and not torch.cuda.is_available():
            raise RenderError(
                "noise: cuda needs a CUDA GPU and none is available; set `noise: cpu` to draw "
                "the noise on the CPU (the same seeds then give different pictures)"
            )
        generator = torch.Generator(source).manual_seed(int(seed))
        shape = (1, self.latent_channels, height // 8, width // 8)
        latents = torch.randn(shape, generator=generator, device=source, dtype=torch.float32)
        return latents[0].cpu().numpy()

    def step_noise_count(self, steps: int) -> int:
        """How many per-step noises a render of `steps` steps uses (0: deterministic sampler)."""
        if not self.stochastic:
            return 0
        return len(self._scheduler_for(steps).timesteps)

    def step_noise(self, seed: int, source: str, width: int, height: int,
                   steps: int) -> np.ndarray:
        """Per-step noise of `seed` for stochastic samplers: the draws that follow the initial
        noise on the seed's own generator, so each seed has its own and a transition can
        interpolate them like the initial noise (`noise` checks seed and source first)."""
        self.noise(seed, source, width, height)
        count = self.step_noise_count(steps)
        generator = torch.Generator(source).manual_seed(int(seed))
        shape = (1 + count, self.latent_channels, height // 8, width // 8)
        draws = torch.randn(shape, generator=generator, device=source, dtype=torch.float32)
        return draws[1:].cpu().numpy()  # draw 0 is the initial noise itself

    def render(
        self,
        frames: Sequence[FrameInput],
        *,
        steps: int,
        width: int,
        height: int,
        control_start: float = 0.0,
        control_end: float = 1.0,
    ) -> list[PIL.Image.Image]:
        """Render `frames` (batched as memory allows) to images of (width//8*8, height//8*8)."""
        job = _Job(steps, width, height, control_start, control_end)
        self._check(frames, job)
        images: list[PIL.Image.Image] = []
        limit = self.max_batch
        start = 0
        while start < len(frames):
            size = self.max_batch or len(frames)
            chunk = list(frames[start : start + size])
            images += self._render_splitting(chunk, job, start)
            start += len(chunk)
        if self.max_batch != limit and self.on_warning is not None:
            self.on_warning(
                f"out of memory rendering {limit or len(frames)} frames at once on "
                f"{self.device}; rendering {self.max_batch} at a time from now on"
            )
        return images

    def render_shared(
        self,
        frames: Sequence[FrameInput],
        joins: Sequence[Join] | None,
        keep: Collection[int],
        *,
        steps: int,
        width: int,
        height: int,
        control_start: float = 0.0,
        control_end: float = 1.0,
    ) -> tuple[list[PIL.Image.Image], list[dict[int, Snapshot]]]:
        """Render one batch of a shared-denoising tree: from the frames' own noise (`joins`
        None) or each from its join (all at one step), keeping each frame's state after the
        iterations in `keep`. The frames' `latents` are not used when they join."""
        job = _Job(steps, width, height, control_start, control_end)
        self._check(frames, job)
        if joins is not None and len(joins) != len(frames):
            raise RenderError(f"{len(joins)} joins for {len(frames)} frames")
        try:
            return self._render_tree_batch(list(frames), joins, set(keep), job)
        except _OOM_ERROR:
            pass
        _free_memory()
        raise RenderError(f"out of memory rendering {len(frames)} {width}x{height} frames on "
                          f"{self.device}; lower batch_size in the profile")

    @torch.inference_mode()
    def _render_tree_batch(
        self, frames: list[FrameInput], joins: Sequence[Join] | None, keep: set[int], job: _Job
    ) -> tuple[list[PIL.Image.Image], list[dict[int, Snapshot]]]:
        start = None if joins is None else self._joined(joins)
        kept: list[dict[int, Snapshot]] = [{} for _ in frames]
        with self._autocast():
            latents = self._denoise(frames, job, start, keep, kept)
            vae = self.pipe.vae
            decoded = vae.decode((latents / vae.config.scaling_factor).to(vae.dtype),
                                 return_dict=False)[0]
        self.vae_decodes += len(frames)
        self.frames_rendered += len(frames)
        return self._to_images(decoded, 0), kept

    def _joined(self, joins: Sequence[Join]) -> _Start:
        """The batch's starting state: each row the slerp of its parents' rows."""
        step = joins[0].left.step
        if any(j.left.step != step or j.right.step != step for j in joins):
            raise RenderError("the frames of one shared batch must join at one step")
        latents = torch.cat([self._slerp(j.left.latents, j.right.latents, j.share)
                             for j in joins])
        scheduler = copy.copy(joins[0].left.scheduler)
        for name in _per_frame_fields(joins[0].left.scheduler, joins[0].left.latents.shape):
            value = getattr(joins[0].left.scheduler, name)
            if isinstance(value, list):
                mixed = [None if v is None else torch.cat(
                    [self._slerp(getattr(j.left.scheduler, name)[k],
                                 getattr(j.right.scheduler, name)[k], j.share) for j in joins])
                    for k, v in enumerate(value)]
                setattr(scheduler, name, mixed)
            else:
                setattr(scheduler, name, torch.cat(
                    [self._slerp(getattr(j.left.scheduler, name),
                                 getattr(j.right.scheduler, name), j.share) for j in joins]))
        return _Start(step, latents, scheduler)

    def _slerp(self, a: torch.Tensor, b: torch.Tensor, share: float) -> torch.Tensor:
        """sdmorph's one slerp (core.interp), on a state of one frame."""
        mixed = slerp(a.float().cpu().numpy(), b.float().cpu().numpy(), share)
        return torch.from_numpy(np.ascontiguousarray(mixed)).to(a.device, a.dtype)

    def _render_splitting(
        self, frames: list[FrameInput], job: _Job, offset: int
    ) -> list[PIL.Image.Image]:
        """Render one batch; on out-of-memory, halve it (and later batches) and retry."""
        try:
            return self._render_batch(frames, job, offset)
        except _OOM_ERROR:
            pass  # retried below, outside the handler, so the failed attempt's memory is freed
        _free_memory()
        if len(frames) == 1:
            raise RenderError(
                f"out of memory rendering one {job.width}x{job.height} frame on {self.device}; "
                "lower the resolution or use a device with more memory"
            )
        half = (len(frames) + 1) // 2
        self.max_batch = min(half, self.max_batch or half)
        first = self._render_splitting(frames[:half], job, offset)
        return first + self._render_splitting(frames[half:], job, offset + half)

    @torch.inference_mode()
    def _render_batch(
        self, frames: list[FrameInput], job: _Job, offset: int
    ) -> list[PIL.Image.Image]:
        with self._autocast():
            latents = self._denoise(frames, job)
            vae = self.pipe.vae
            decoded = vae.decode(
                (latents / vae.config.scaling_factor).to(vae.dtype), return_dict=False
            )[0]
        self.vae_decodes += len(frames)
        self.frames_rendered += len(frames)
        return self._to_images(decoded, offset)

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        """What StableDiffusionControlNetPipeline renders under on CUDA (else nothing)."""
        if self.is_controlnet and torch.device(self.device).type == "cuda":
            return torch.autocast("cuda")
        return contextlib.nullcontext()

    def unet_passes(self, frames: Sequence[FrameInput], iterations: int) -> int:
        """The UNet passes `iterations` iterations of these frames as one batch take: two per
        frame with classifier-free guidance (`_denoise` decides it the same way)."""
        cfg = any(f.guidance > 1.0 for f in frames) and self._guidance_embedding(
            list(frames)) is None
        return len(frames) * iterations * (2 if cfg else 1)

    def iterations(self, steps: int) -> int:
        """UNet iterations of one frame of `steps` steps (PNDM: steps + 1)."""
        return len(self._scheduler_for(steps).timesteps)

    def _scheduler_for(self, steps: int) -> object:
        """A fresh scheduler of the pipeline's kind with its timesteps set for `steps`."""
        scheduler = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config)
        try:
            scheduler.set_timesteps(steps, device=self.device)
        except ValueError as exc:
            raise RenderError(f"num_inference_steps {steps}: {exc}") from None
        return scheduler

    def _denoise(self, frames: list[FrameInput], job: _Job, start: _Start | None = None,
                 keep: Collection[int] = (),
                 kept: list[dict[int, Snapshot]] | None = None) -> torch.Tensor:
        """Denoise from the frames' own noise, or from `start` (shared denoising), recording
        each frame's state in `kept` before the iterations listed in `keep`."""
        dev = self.device
        guidance = torch.tensor([f.guidance for f in frames], device=dev).view(-1, 1, 1, 1)
        # diffusers skips CFG at guidance <= 1 (keeping the text prediction: half the UNet
        # passes), and for LCM-distilled UNets, which take the guidance as an input instead.
        guided = (guidance > 1.0) & (self._guidance_embedding(frames) is None)
        cfg = bool(guided.any())
        embeds = _stack([f.cond for f in frames], dev, self.dtype)
        if cfg:
            embeds = torch.cat([_stack([f.uncond for f in frames], dev, self.dtype), embeds])
        if start is None:
            scheduler = self._scheduler_for(job.steps)
            latents = _stack([f.latents for f in frames], dev, self.dtype)
            latents = latents * scheduler.init_noise_sigma
            first = 0
        else:
            scheduler, latents, first = start.scheduler, start.latents, start.step
        timesteps = scheduler.timesteps
        step_kwargs = _step_kwargs(scheduler, dev)
        unet_kwargs = self._unet_kwargs(frames, cfg, job)
        control = self._control_inputs(frames, cfg, job, len(timesteps))
        step_noise = self._step_noises(frames, len(timesteps))
        for i, t in enumerate(timesteps):
            if i < first:
                continue
            if i in keep and kept is not None:
                for row, snapshots in enumerate(kept):
                    snapshots[i] = _snapshot(scheduler, latents, row, i)
            model_input = torch.cat([latents] * 2) if cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            residuals = self._residuals(model_input, t, embeds, control, i, unet_kwargs)
            noise_pred = self.pipe.unet(
                model_input, t, encoder_hidden_states=embeds, return_dict=False, **residuals,
                **unet_kwargs,
            )[0]
            self.unet_evals += model_input.shape[0]
            if cfg:
                uncond, text = noise_pred.chunk(2)
                noise_pred = torch.where(guided, uncond + _scaled(text - uncond, guidance), text)
            if step_noise is None:
                latents = scheduler.step(noise_pred, t, latents, **step_kwargs,
                                         return_dict=False)[0]
            else:
                latents = _shared_step(scheduler, noise_pred, t, latents, step_kwargs,
                                       step_noise[:, i].to(latents.dtype))
        return latents

    def _step_noises(self, frames: list[FrameInput], n_steps: int) -> torch.Tensor | None:
        """(batch, steps, c, h, w) per-step noise when the sampler is stochastic and every
        frame brought its own; None otherwise (the scheduler draws, as in diffusers)."""
        if not self.stochastic or any(f.step_noise is None for f in frames):
            return None
        return _stack([f.step_noise[:n_steps] for f in frames], self.device,  # type: ignore[index]
                      torch.float32)

    def _guidance_embedding(self, frames: list[FrameInput]) -> torch.Tensor | None:
        """LCM-distilled UNets (time_cond_proj_dim) take (guidance - 1) as an embedding."""
        dim = self.pipe.unet.config.get("time_cond_proj_dim")
        if dim is None:
            return None
        w = torch.tensor([f.guidance - 1.0 for f in frames])
        embedding = self.pipe.get_guidance_scale_embedding(w, embedding_dim=dim)
        return embedding.to(device=self.device, dtype=self.dtype)

    def _unet_kwargs(self, frames: list[FrameInput], cfg: bool, job: _Job) -> dict[str, object]:
        """SDXL's added conditions and the LCM guidance embedding, when the model takes them."""
        kwargs: dict[str, object] = {}
        timestep_cond = self._guidance_embedding(frames)
        if timestep_cond is not None:
            kwargs["timestep_cond"] = timestep_cond
        if self.is_xl:
            kwargs["added_cond_kwargs"] = self._added_conditions(frames, cfg, job)
        return kwargs

    def _added_conditions(self, frames: list[FrameInput], cfg: bool,
                          job: _Job) -> dict[str, torch.Tensor]:
        """Pooled text and size/crop ids: original = target = the frame size, crop (0, 0),
        as StableDiffusionXLPipeline uses by default (the negative side gets the same ids)."""
        dev = self.device
        pooled = _stack([f.pooled for f in frames], dev, self.dtype)  # type: ignore[misc]
        height, width = job.height // 8 * 8, job.width // 8 * 8
        ids = torch.tensor([[height, width, 0, 0, height, width]], device=dev, dtype=self.dtype)
        if cfg:
            negative = _stack([f.uncond_pooled for f in frames], dev, self.dtype)  # type: ignore[misc]
            pooled = torch.cat([negative, pooled])
        return {"text_embeds": pooled, "time_ids": ids.repeat(pooled.shape[0], 1)}

    def _control_inputs(
        self, frames: list[FrameInput], cfg: bool, job: _Job, n_steps: int
    ) -> dict[str, object] | None:
        if not self.is_controlnet:
            return None
        dtype = self.pipe.controlnet.dtype
        image = _stack([f.control for f in frames], self.device, dtype).permute(0, 3, 1, 2)
        scales = torch.tensor([f.cnet_scale for f in frames], device=self.device)
        if cfg:
            image, scales = torch.cat([image] * 2), torch.cat([scales] * 2)
        # The same keep schedule as StableDiffusionControlNetPipeline.
        keep = [
            1.0 - float(i / n_steps < job.control_start or (i + 1) / n_steps > job.control_end)
            for i in range(n_steps)
        ]
        return {"image": image, "scales": scales.view(-1, 1, 1, 1), "keep": keep}

    def _residuals(
        self,
        model_input: torch.Tensor,
        t: torch.Tensor,
        embeds: torch.Tensor,
        control: dict[str, object] | None,
        step: int,
        unet_kwargs: dict[str, object],
    ) -> dict[str, object]:
        if control is None:
            return {}
        scales = control["scales"] * control["keep"][step]  # type: ignore[index,operator]
        if not bool(scales.any()):
            return {}  # adding residuals scaled by 0 changes nothing: skip the ControlNet
        added = {k: v for k, v in unet_kwargs.items() if k == "added_cond_kwargs"}
        down, mid = self.pipe.controlnet(
            model_input,
            t,
            encoder_hidden_states=embeds,
            controlnet_cond=control["image"],
            conditioning_scale=1.0,
            guess_mode=False,
            return_dict=False,
            **added,
        )
        return {
            "down_block_additional_residuals": [_scaled(d, scales) for d in down],
            "mid_block_additional_residual": _scaled(mid, scales),
        }

    def _to_images(self, decoded: torch.Tensor, offset: int) -> list[PIL.Image.Image]:
        processor = self.pipe.image_processor
        nan = torch.isnan(decoded.float()).flatten(1).any(dim=1).tolist()
        arrays = processor.postprocess(
            decoded, output_type="np", do_denormalize=[True] * decoded.shape[0]
        )
        for k, array in enumerate(arrays):
            if nan[k] or not (array * 255).round().any():
                self._fail_dark(offset + k, "NaN" if nan[k] else "all black")
        return processor.numpy_to_pil(arrays)

    def _fail_dark(self, position: int, what: str) -> None:
        raise DarkFrameError(position, what, self.device, str(self.dtype).replace("torch.", ""))

    def _check(self, frames: Sequence[FrameInput], job: _Job) -> None:
        if job.steps < 1:
            raise RenderError(f"num_inference_steps {job.steps}: must be at least 1")
        if not 0.0 <= job.control_start < job.control_end <= 1.0:
            raise RenderError(
                f"control_guidance_start {job.control_start} / _end {job.control_end}: "
                "need 0 <= start < end <= 1"
            )
        latent = (self.latent_channels, job.height // 8, job.width // 8)
        embed = (self.pipe.tokenizer.model_max_length, self.embed_dim)
        pixels = (latent[1] * 8, latent[2] * 8, 3)
        noises = self.step_noise_count(job.steps)
        for k, frame in enumerate(frames):
            _expect_shape(frame.latents, latent, f"frame {k} latents")
            _expect_shape(frame.cond, embed, f"frame {k} text embedding")
            _expect_shape(frame.uncond, embed, f"frame {k} negative embedding")
            if self.is_xl:
                self._check_pooled(frame, k)
            if frame.step_noise is not None and noises:
                _expect_shape(frame.step_noise[:noises], (noises, *latent),
                              f"frame {k} step noise")
            if self.is_controlnet:
                if frame.control is None:
                    raise RenderError(f"frame {k}: a ControlNet song needs a control image")
                _expect_shape(frame.control, pixels, f"frame {k} control image")
            elif frame.control is not None:
                raise RenderError(f"frame {k}: has a control image but the model has no ControlNet")


    def _check_pooled(self, frame: FrameInput, k: int) -> None:
        for array, what in ((frame.pooled, "pooled"), (frame.uncond_pooled, "negative pooled")):
            if array is None:
                raise RenderError(f"frame {k}: an SDXL model needs the {what} text embedding")
            _expect_shape(array, (self.pooled_dim,), f"frame {k} {what} embedding")


def _shared_step(scheduler: object, noise_pred: torch.Tensor, t: torch.Tensor,
                 latents: torch.Tensor, step_kwargs: dict[str, object],
                 wanted: torch.Tensor) -> torch.Tensor:
    """scheduler.step with `wanted` (batch, c, h, w) as the fresh noise it adds.

    Schedulers draw that noise themselves and only take a generator, but every stochastic one
    adds it linearly: out = A + k * noise, with k the same for the whole batch at one step.
    So step once with known noise (per-frame generators of one fixed seed, reproduced with the
    same `randn_tensor` call) and once, on a copy, with another: their difference gives k,
    and A + k * wanted follows. Deterministic steps (k = 0, e.g. LCM's last) come out as is.
    """
    probe = copy.deepcopy(scheduler)
    outs, drawn = [], []
    for seed, sched in zip(_PROBE_SEEDS, (scheduler, probe), strict=True):
        gens = [torch.Generator("cpu").manual_seed(seed) for _ in range(latents.shape[0])]
        kwargs = {**step_kwargs, "generator": gens}
        outs.append(sched.step(noise_pred, t, latents, **kwargs, return_dict=False)[0])  # type: ignore[attr-defined]
        again = [torch.Generator("cpu").manual_seed(seed) for _ in range(latents.shape[0])]
        drawn.append(randn_tensor(noise_pred.shape, generator=again, device=noise_pred.device,
                                  dtype=noise_pred.dtype).float())
    change, diff = (outs[0] - outs[1]).float(), drawn[0] - drawn[1]
    k = (change * diff).flatten(1).sum(1) / (diff * diff).flatten(1).sum(1)
    fresh = (wanted.float() - drawn[0]) * k.view(-1, 1, 1, 1)
    return (outs[0].float() + fresh).to(outs[0].dtype)


def _per_frame_fields(scheduler: object, shape: torch.Size) -> list[str]:
    """The scheduler's attributes that hold one row per frame (a latent-shaped tensor, or a
    list of them: PNDM's `ets` and `cur_sample`, DPM-Solver's `model_outputs`...)."""
    def rows(value: object) -> bool:
        return isinstance(value, torch.Tensor) and value.shape == shape

    names = []
    for name, value in vars(scheduler).items():
        if rows(value) or (isinstance(value, list) and any(rows(v) for v in value)):
            names.append(name)
    return names


def _snapshot(scheduler: object, latents: torch.Tensor, row: int, step: int) -> Snapshot:
    """Frame `row`'s state: its latents and a scheduler copy with only its rows. Lists are
    copied (schedulers append to and shift them in place); the rest is shared, read-only."""
    own = copy.copy(scheduler)
    for name, value in vars(scheduler).items():
        if isinstance(value, list | dict):
            setattr(own, name, copy.copy(value))
    for name in _per_frame_fields(scheduler, latents.shape):
        value = getattr(scheduler, name)
        if isinstance(value, list):
            setattr(own, name, [v if v is None else v[row : row + 1].clone() for v in value])
        else:
            setattr(own, name, value[row : row + 1].clone())
    return Snapshot(step, latents[row : row + 1].clone(), own)


def _expect_shape(array: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    if tuple(array.shape) != shape:
        raise RenderError(f"{what} has shape {tuple(array.shape)}, expected {shape}")


def _stack(arrays: Sequence[np.ndarray], device: str, dtype: torch.dtype) -> torch.Tensor:
    batch = np.stack([np.asarray(a, dtype=np.float32) for a in arrays])
    return torch.from_numpy(batch).to(device=device, dtype=dtype)


def _scaled(tensor: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`tensor * scale` rounded like diffusers' `tensor * python_float` (which multiplies in
    float32 even for float16 tensors), so per-frame scales change nothing else."""
    return (tensor.float() * scale).to(tensor.dtype)


def _step_kwargs(scheduler: object, device: str) -> dict[str, object]:
    """What diffusers' prepare_extra_step_kwargs passes, with a seeded generator for ancestral
    schedulers so that they too give the same picture every time."""
    accepted = inspect.signature(scheduler.step).parameters  # type: ignore[attr-defined]
    kwargs: dict[str, object] = {}
    if "eta" in accepted:
        kwargs["eta"] = STEP_ETA.get(type(scheduler).__name__, 0.0)
    if "generator" in accepted:
        kwargs["generator"] = torch.Generator(device).manual_seed(0)
    return kwargs


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
