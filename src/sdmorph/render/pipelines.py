"""The one place that builds diffusers pipelines, the way the old scripts did.

Plain songs: `StableDiffusionPipeline`, float16 on CUDA, the model's own scheduler.
ControlNet songs: `StableDiffusionControlNetPipeline`, float32 (the engine runs it under CUDA
autocast), `UniPCMultistepScheduler` built from the model's scheduler config.
SDXL models (told by their files, `sources.model_family`): `StableDiffusionXLPipeline`, and
`StableDiffusionXLControlNetPipeline` with an SDXL ControlNet; the same dtype rules, with the
VAE kept in float32 where the model says float16 overflows it (SDXL's `force_upcast`).
LoRAs are loaded through diffusers' LoRA API and fused into the weights before rendering.
Loading never hangs on a missing network: the local cache is tried first, the hub only when
that fails and HF_HUB_OFFLINE is not set; every failure is one `ModelError` line.
"""

from __future__ import annotations

import contextlib
import os

# transformers warns about torchvision on import; sdmorph does not use its image processors.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from diffusers import (
    ControlNetModel,
    DiffusionPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLPipeline,
    UniPCMultistepScheduler,
)
from diffusers.utils import deprecation_utils
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import constants as hub_constants

from sdmorph.core.errors import ModelError
from sdmorph.render.schedulers import make_scheduler
from sdmorph.render.sources import (
    BUILT_IN,
    SD1,
    SDXL,
    SINGLE_FILE_SUFFIXES,
    TINY,
    TINY_RANDOM,
    TINY_XL,
    combination_problems,
    looks_like_path,
    model_family,
)
from sdmorph.render.tiny import build_tiny_controlnet, build_tiny_pipeline
from sdmorph.render.tiny_xl import build_tiny_xl_controlnet, build_tiny_xl_pipeline

# Newer diffusers renamed from_pretrained's torch_dtype to dtype and warn on the old name.
_DTYPE_KWARG = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "float32": torch.float32}



def load_pipeline(
    model: str,
    controlnet: str | None = None,
    *,
    cache_dir: Path | None = None,
    device: str = "cpu",
    scheduler: str | None = None,
    dtype: str | None = None,
    timestep_spacing: str | None = None,
    loras: Sequence[tuple[Path, float]] = (),
) -> DiffusionPipeline:
    """Build the pipeline for `model` (+ `controlnet`) on `device`, ready to render.

    `model`/`controlnet`: "tiny", "tiny-xl", a diffusers folder, a .safetensors/.ckpt file or a
    hub id. `dtype`: "float16"/"float32" to override the recipe (float16 only for plain CUDA
    songs). `loras`: (file, scale) pairs, fused into the model in this order.
    """
    if controlnet in BUILT_IN:
        refused = combination_problems(model, controlnet)
        if refused:
            raise ModelError(f"{refused[0]}; set controlnet_string to a ControlNet made for "
                             "that model")
    torch_dtype = pick_dtype(device, controlnet is not None, dtype)
    pipe = _load_base(model, cache_dir, torch_dtype)
    _fuse_loras(pipe, loras)
    if controlnet is not None:
        pipe = _with_controlnet(pipe, model, controlnet, cache_dir, torch_dtype)
    pipe.scheduler = _scheduler(pipe, scheduler, timestep_spacing)
    if hasattr(pipe, "safety_checker"):
        pipe.safety_checker = None
    pipe.set_progress_bar_config(disable=True)
    try:
        _cast(pipe, torch_dtype)
        _upcast_vae(pipe)
        pipe.to(device)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(
            f"model '{model}': could not move it to {device}: {_first_line(exc)}"
        ) from exc
    return pipe


def pipeline_family(pipe: DiffusionPipeline) -> str:
    """SDXL for pipelines with SDXL's second text encoder, else SD1."""
    return SDXL if getattr(pipe, "text_encoder_2", None) is not None else SD1


def _scheduler(pipe: DiffusionPipeline, name: str | None, spacing: str | None) -> object:
    try:
        return make_scheduler(name, pipe.scheduler, spacing)
    except (ValueError, TypeError) as exc:  # a config the chosen class cannot take
        raise ModelError(f"scheduler '{name}': {_first_line(exc)}") from exc


def _with_controlnet(pipe: DiffusionPipeline, model: str, controlnet: str,
                     cache_dir: Path | None, dtype: torch.dtype) -> DiffusionPipeline:
    """The base pipeline's parts plus the ControlNet, UniPC as in the old scripts."""
    cnet = _load_controlnet(controlnet, cache_dir, dtype)
    ours = pipeline_family(pipe)
    theirs = SDXL if cnet.config.get("addition_embed_type") == "text_time" else SD1
    if ours != theirs:
        names = {SD1: "SD 1.x", SDXL: "SDXL"}
        raise ModelError(f"controlnet '{controlnet}' is an {names[theirs]} ControlNet and model "
                         f"'{model}' is {names[ours]}: use a ControlNet made for {names[ours]}")
    if ours == SDXL:
        pipe = StableDiffusionXLControlNetPipeline(
            **_xl_components(pipe), controlnet=cnet, add_watermarker=False,
            force_zeros_for_empty_prompt=pipe.config.get("force_zeros_for_empty_prompt", True),
        )
    else:
        pipe = StableDiffusionControlNetPipeline(
            **_sd_components(pipe), controlnet=cnet, requires_safety_checker=False
        )
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    return pipe


def _fuse_loras(pipe: DiffusionPipeline, loras: Sequence[tuple[Path, float]]) -> None:
    """Load each LoRA file, then fuse them all at their scales and drop the adapters: fused
    weights cost nothing per step, unlike LoRA layers evaluated at every UNet pass."""
    if not loras:
        return
    names = [f"sdmorph_lora_{k}" for k in range(len(loras))]
    for name, (path, _) in zip(names, loras, strict=True):
        try:
            pipe.load_lora_weights(str(path), adapter_name=name)
        except Exception as exc:  # diffusers/peft raise many kinds for a file that does not fit
            raise ModelError(f"lora '{path}': {_lora_hint(exc)}") from exc
    try:
        pipe.set_adapters(names, adapter_weights=[scale for _, scale in loras])
        pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
        pipe.unload_lora_weights()
    except Exception as exc:
        raise ModelError(f"loras could not be fused: {_first_line(exc)}") from exc


def _lora_hint(exc: BaseException) -> str:
    if "PEFT" in str(exc) or isinstance(exc, ImportError):
        return "LoRAs need the peft package: pip install peft"
    return f"did not load as a LoRA for this model ({_first_line(exc)})"


def _upcast_vae(pipe: DiffusionPipeline) -> None:
    """SDXL's VAE overflows in float16 (its config says force_upcast): keep it in float32,
    as diffusers' SDXL pipeline does for every decode. SD 1.x pipelines never upcast (their
    VAEs carry force_upcast too, by default), so their float16 recipe stays as it was."""
    vae = pipe.vae
    if pipeline_family(pipe) != SDXL:
        return
    if vae.dtype == torch.float16 and vae.config.get("force_upcast", False):
        torch.nn.Module.to(vae, dtype=torch.float32)


def pick_dtype(device: str, is_controlnet: bool, requested: str | None = None) -> torch.dtype:
    """float16 for plain pipelines on CUDA (the old recipe), float32 everywhere else."""
    if requested:
        if requested.lower() not in _DTYPES:
            raise ModelError(f"dtype '{requested}': use float16 or float32")
        return _DTYPES[requested.lower()]
    on_cuda = torch.device(device).type == "cuda"
    return torch.float16 if on_cuda and not is_controlnet else torch.float32


def pick_device(requested: str | None) -> str:
    """The requested device if it is usable, or the best one present: cuda, then mps, then cpu."""
    if requested is None or requested.strip().lower() in ("", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    name = requested.strip().lower()
    try:
        kind = torch.device(name)
    except RuntimeError:
        raise ModelError(
            f"device '{requested}': unknown; use cpu, cuda, cuda:<n>, mps or auto"
        ) from None
    if kind.type == "cpu":
        return name
    if kind.type == "cuda" and torch.cuda.is_available():
        if kind.index is None or kind.index < torch.cuda.device_count():
            return name
        count = torch.cuda.device_count()
        raise ModelError(f"device '{requested}': this machine has {count} CUDA device(s)")
    if kind.type == "mps" and _mps_available():
        return name
    if kind.type in ("cuda", "mps"):
        raise ModelError(f"device '{requested}': not available on this machine; use cpu or auto")
    raise ModelError(f"device '{requested}': unsupported; use cpu, cuda, mps or auto")


def _cast(pipe: DiffusionPipeline, dtype: torch.dtype) -> None:
    """Cast models not already in `dtype` (only the tiny model: loaders get torch_dtype).

    nn.Module.to, because diffusers' own .to(dtype) warns about float32-only modules even
    when a model has none.
    """
    for part in pipe.components.values():
        if isinstance(part, torch.nn.Module) and getattr(part, "dtype", dtype) != dtype:
            torch.nn.Module.to(part, dtype=dtype)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def _sd_components(pipe: DiffusionPipeline) -> dict[str, object]:
    keys = ("vae", "text_encoder", "tokenizer", "unet", "scheduler", "feature_extractor")
    parts = {key: getattr(pipe, key, None) for key in keys}
    parts["safety_checker"] = None
    parts["image_encoder"] = getattr(pipe, "image_encoder", None)
    return parts


def _xl_components(pipe: DiffusionPipeline) -> dict[str, object]:
    keys = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet",
            "scheduler", "feature_extractor", "image_encoder")
    return {key: getattr(pipe, key, None) for key in keys}


def _load_base(model: str, cache_dir: Path | None, dtype: torch.dtype) -> DiffusionPipeline:
    if model in (TINY, TINY_RANDOM):
        return build_tiny_pipeline(trained=model == TINY)
    if model == TINY_XL:
        return build_tiny_xl_pipeline()
    if _family(model, cache_dir) == SDXL:
        kwargs: dict[str, object] = {_DTYPE_KWARG: dtype, "add_watermarker": False}
        return _load(StableDiffusionXLPipeline, model, "model", cache_dir, kwargs)
    kwargs = {_DTYPE_KWARG: dtype, "safety_checker": None, "requires_safety_checker": False}
    return _load(StableDiffusionPipeline, model, "model", cache_dir, kwargs)


def _family(model: str, cache_dir: Path | None) -> str:
    """The model's family from its files; a hub id not cached yet: from its model_index.json
    (a small download, when online). Unknown (a .ckpt): SD 1.x, as before SDXL support."""
    found = model_family(model, cache_dir)
    if found is None and not looks_like_path(model) and not _offline():
        with contextlib.suppress(Exception):  # unreachable hub: loading says it in one line
            from huggingface_hub import hf_hub_download

            hf_hub_download(model, "model_index.json", cache_dir=cache_dir)
            found = model_family(model, cache_dir)
    return found or SD1


def _load_controlnet(
    controlnet: str, cache_dir: Path | None, dtype: torch.dtype
) -> ControlNetModel:
    if controlnet in (TINY, TINY_RANDOM):
        return build_tiny_controlnet(trained=controlnet == TINY)
    if controlnet == TINY_XL:
        return build_tiny_xl_controlnet()
    return _load(ControlNetModel, controlnet, "controlnet", cache_dir, {_DTYPE_KWARG: dtype})


def _load(
    cls: type, source: str, role: str, cache_dir: Path | None, kwargs: dict[str, object]
) -> object:
    """Load `source` as a local folder, a single checkpoint file, or a hub id."""
    with warnings.catch_warnings():
        # diffusers still passes an argument huggingface_hub deprecated; users can do nothing.
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
        return _load_any(cls, source, role, cache_dir, kwargs)


def _load_any(
    cls: type, source: str, role: str, cache_dir: Path | None, kwargs: dict[str, object]
) -> object:
    path = Path(source).expanduser()
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        if not path.is_file():
            raise ModelError(f"{role} '{source}': no such file")
        return _attempt(lambda: cls.from_single_file(str(path), **kwargs), source, role, "file")
    if path.is_dir():
        return _attempt(lambda: cls.from_pretrained(str(path), **kwargs), source, role, "folder")
    if looks_like_path(source):
        raise ModelError(f"{role} '{source}': no such folder")
    return _load_hub(cls, source, role, cache_dir, kwargs)


def _load_hub(
    cls: type, repo_id: str, role: str, cache_dir: Path | None, kwargs: dict[str, object]
) -> object:
    cache = str(cache_dir) if cache_dir else hub_constants.HF_HUB_CACHE
    try:
        return cls.from_pretrained(repo_id, cache_dir=cache, local_files_only=True, **kwargs)
    except Exception as exc:  # diffusers raises many kinds; all mean "not usable from cache"
        local_error = exc
    if _offline():
        raise ModelError(
            f"{role} '{repo_id}': not in the model cache at {cache} and HF_HUB_OFFLINE is set; "
            "download it on a machine with internet, or point the setting at a local folder "
            "or .safetensors file"
        ) from local_error
    try:
        with _quiet_diffusers():  # "Couldn't connect ... Will try the local cache": tried that
            return cls.from_pretrained(repo_id, cache_dir=cache, **kwargs)
    except Exception as exc:
        raise ModelError(
            f"{role} '{repo_id}': not in the model cache at {cache} and the hub gave no usable "
            f"copy ({_first_line(exc)}); download it on a machine with internet, or point the "
            "setting at a local folder or .safetensors file"
        ) from exc


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """Diffusers' own warnings off: sdmorph says in one line what went wrong."""
    before = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(before)


def _attempt(load: Callable[[], object], source: str, role: str, kind: str) -> object:
    try:
        return load()
    except Exception as exc:
        raise ModelError(
            f"{role} '{source}': this {kind} did not load as a Stable Diffusion "
            f"{'ControlNet' if role == 'controlnet' else 'pipeline'} ({_first_line(exc)})"
        ) from exc


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "true", "yes", "on") or hub_constants.HF_HUB_OFFLINE


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
