"""Where a profile's model comes from, checked without loading anything (no torch here).

`validate` runs these checks on every song, so they must not pay for importing torch and
diffusers unless a profile names a scheduler, which only diffusers can vouch for.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from sdmorph.core.errors import ModelError, Problem
from sdmorph.formats.profile import Profile
from sdmorph.render.scheduler_names import SCHEDULER_ALIASES

TINY = "tiny"  # trained on drawn scenes (render/weights/tiny/TRAINING.md)
TINY_RANDOM = "tiny-random"  # the same family with random weights: for tests that need speed
TINY_XL = "tiny-xl"  # SDXL-shaped, random weights
BUILT_IN = (TINY, TINY_RANDOM, TINY_XL)
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
LORA_SUFFIXES = (".safetensors", ".bin")

# Model families sdmorph renders: SD 1.x/2.x (one text encoder) and SDXL (two, pooled text).
SD1 = "sd1"
SDXL = "sdxl"

# Keys of safetensors checkpoints that only SDXL has (the second text encoder; the size/crop
# embedding of a diffusers-format UNet or ControlNet).
_SDXL_KEYS = ("conditioner.embedders.1", "add_embedding.linear_1", "label_emb.0.0")
_HEADER_LIMIT = 100 * 2**20


def looks_like_path(source: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else with separators is meant as a path."""
    if source.startswith((".", "/", "~")) or "\\" in source or ":" in source:
        return True
    return source.count("/") > 1


def profile_problems(profile: Profile, file: Path, model: str | None = None) -> list[Problem]:
    """What the model loader would refuse in a profile, found without loading a model.

    Each problem names the settings file, the profile and the key. `model` is a --model that
    replaces model_string, whose own value then does not matter.
    """
    found: list[str] = []
    if profile.scheduler and profile.scheduler.strip().lower() not in SCHEDULER_ALIASES:
        from sdmorph.render.schedulers import scheduler_class  # imports torch: only when asked

        try:
            scheduler_class(profile.scheduler)
        except ModelError as exc:
            found.append(str(exc))
    if model is None:
        found += source_problems(profile.model_string, "model_string")
    cnet = profile.controlnet_string
    if cnet:
        found += source_problems(cnet, "controlnet_string")
        found += combination_problems(model or profile.model_string, cnet)
    found += lora_problems(profile, file.parent)
    return [Problem(f"profile {profile.name!r}: {message}", file) for message in found]


def combination_problems(model: str, controlnet: str) -> list[str]:
    """A ControlNet made for another model family than the model's (when both are known)."""
    if controlnet in BUILT_IN:
        if controlnet != model:
            return [f"controlnet_string '{controlnet}' only fits model '{controlnet}', "
                    f"not '{model}'"]
        return []
    ours, theirs = model_family(model), controlnet_family(controlnet)
    if ours and theirs and ours != theirs:
        return [f"controlnet_string '{controlnet}' is an {_FAMILY_NAMES[theirs]} ControlNet "
                f"and model '{model}' is {_FAMILY_NAMES[ours]}: use a ControlNet made for "
                f"{_FAMILY_NAMES[ours]}"]
    return []


_FAMILY_NAMES = {SD1: "SD 1.x", SDXL: "SDXL"}


def lora_problems(profile: Profile, song_folder: Path) -> list[str]:
    """LoRA files that are not there or not of a kind diffusers loads."""
    found = []
    for k, lora in enumerate(profile.loras):
        path = lora.resolved(song_folder)
        if path.suffix.lower() not in LORA_SUFFIXES:
            found.append(f"loras[{k}] '{lora.path}': use a .safetensors (or .bin) LoRA file")
        elif not path.is_file():
            found.append(f"loras[{k}] '{lora.path}': no such file (looked at {path})")
    return found


def model_family(source: str, cache_dir: Path | None = None) -> str | None:
    """SD1 or SDXL, from the model's own files without loading it; None when unknown
    (a hub id not in the cache, a .ckpt, which only torch can open)."""
    if source in BUILT_IN:
        return SDXL if source == TINY_XL else SD1
    path = Path(source).expanduser()
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        return _checkpoint_family(path)
    index = _config_file(source, "model_index.json", cache_dir)
    if index is None:
        return None
    return SDXL if "XL" in str(index.get("_class_name", "")) else SD1


def controlnet_family(source: str, cache_dir: Path | None = None) -> str | None:
    """The family a ControlNet was made for (SDXL ControlNets embed the size/crop ids)."""
    path = Path(source).expanduser()
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        return _checkpoint_family(path)
    config = _config_file(source, "config.json", cache_dir)
    if config is None:
        return None
    return SDXL if config.get("addition_embed_type") == "text_time" else SD1


def _checkpoint_family(path: Path) -> str | None:
    """A single-file checkpoint's family from its tensor names; None for a .ckpt (a pickle,
    which only torch can open) or an unreadable file."""
    if path.suffix.lower() != ".safetensors":
        return None
    keys = safetensors_keys(path)
    return None if keys is None else _family_of_keys(keys)


def safetensors_keys(path: Path) -> list[str] | None:
    """The tensor names of a .safetensors file, read from its JSON header (no tensors)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _HEADER_LIMIT:
                return None
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return None
    return [key for key in header if key != "__metadata__"] if isinstance(header, dict) else None


def _family_of_keys(keys: list[str]) -> str:
    return SDXL if any(marker in key for key in keys for marker in _SDXL_KEYS) else SD1


def _config_file(source: str, name: str, cache_dir: Path | None) -> dict[str, Any] | None:
    """A diffusers folder's or a cached hub repo's JSON config, if it is on this machine."""
    path = Path(source).expanduser()
    if path.is_dir():
        found: Path | None = path / name
    elif looks_like_path(source):
        return None
    else:
        found = _cached_hub_file(source, name, cache_dir)
    try:
        data = json.loads(found.read_text(encoding="utf-8")) if found else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _cached_hub_file(repo_id: str, name: str, cache_dir: Path | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache  # torch-free; only for hub ids

    try:
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def source_problems(source: str, key: str) -> list[str]:
    """A local file or folder named in the settings that is not there (as the loader sees it)."""
    if source in BUILT_IN:
        return []
    path = Path(source).expanduser()
    # Relative paths are read from the folder sdmorph runs in: say which one.
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        return [] if path.is_file() else [f"{key} '{source}': no such file{where}"]
    if path.is_dir() or not looks_like_path(source):
        return []  # a hub id: whether it is cached or downloadable shows only when loading
    return [f"{key} '{source}': no such folder{where}"]
