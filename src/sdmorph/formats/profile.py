"""Generation settings (`tgen_settings.json`): profiles or the older flat shape.

The pydantic `Profile` is the single source of truth for what a setting means; the loader
maps the old spellings (`inference_steps`, `cnet_image`, `pipe_kwargs.*`) onto it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from sdmorph.core.errors import Problem, SongError
from sdmorph.core.sharing import SHARING_MAX

SETTINGS_FILE = "tgen_settings.json"
Pacing = Literal["linear", "even"]
PACINGS: tuple[Pacing, ...] = ("linear", "even")
DEFAULT_MODEL = "runwayml/stable-diffusion-v1-5"

# Keys the old scripts wrote at the top level of a profile, plus sdmorph's own.
PROFILE_KEYS = {
    "res_height", "res_width", "interpolation_steps", "model_string", "controlnet_string",
    "seed_delimiter", "inference_steps", "mask_image", "cnet_image", "pipe_kwargs", "song_name",
    "guidance_scale", "scheduler", "noise", "fps", "batch_size", "dtype",
    "loras", "timestep_spacing", "pacing", "sharing",
}
# pipe_kwargs sdmorph understands; any other is kept, warned about, and not passed on.
PIPE_KEYS = {
    "num_inference_steps", "negative_prompt", "control_guidance_start", "control_guidance_end",
    "controlnet_conditioning_scale", "guidance_scale",
}

# Profile fields a file may spell otherwise (first match wins, as in _profile_values).
_WRITTEN_AS: dict[str, tuple[str, ...]] = {
    "num_inference_steps": ("pipe_kwargs.num_inference_steps", "inference_steps"),
    "guidance_scale": ("pipe_kwargs.guidance_scale", "guidance_scale"),
    "negative_prompt": ("pipe_kwargs.negative_prompt",),
    "mask_image": ("mask_image", "cnet_image"),
    "controlnet_conditioning_scale": ("pipe_kwargs.controlnet_conditioning_scale",),
    "control_guidance_start": ("pipe_kwargs.control_guidance_start",),
    "control_guidance_end": ("pipe_kwargs.control_guidance_end",),
}


class LoraSpec(BaseModel):
    """One LoRA of a profile: a local file (relative paths: from the song's metadata folder)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    path: str = Field(min_length=1)
    scale: float = 1.0

    def resolved(self, song_folder: Path) -> Path:
        """Where the file is: a relative path is read from the song's folder, so a song
        folder copied to another machine (rsync of meta_dir) keeps finding its LoRAs."""
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else song_folder / path


class Profile(BaseModel):
    """One resolved settings profile: everything the render recipe needs."""

    # NaN or infinite scales would render black or NaN pictures.
    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    name: str = "default"
    res_width: int = Field(512, ge=8)
    res_height: int = Field(512, ge=8)
    interpolation_steps: int = Field(10, ge=2)
    model_string: str = DEFAULT_MODEL
    controlnet_string: str | None = None
    num_inference_steps: int = Field(50, ge=1)
    guidance_scale: float = 7.5
    negative_prompt: str = ""
    mask_image: str | None = None
    controlnet_conditioning_scale: float = 1.0
    control_guidance_start: float = Field(0.0, ge=0.0, le=1.0)
    control_guidance_end: float = Field(1.0, ge=0.0, le=1.0)
    scheduler: str | None = None
    noise: Literal["cuda", "cpu"] | None = None
    fps: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    dtype: Literal["float16", "float32", "bfloat16"] | None = None
    # Where a transition's frames lie along t: "linear" evenly spaced t (the old scripts'),
    # "even" so that consecutive frames differ about equally (probe renders, see
    # sdmorph.core.pacing).
    pacing: Pacing = "linear"
    # Shared denoising: in-betweens join their neighbours' denoising this deep (0: each frame
    # from its own noise, the old recipe; see sdmorph.core.sharing).
    sharing: float = Field(0.0, ge=0.0, le=SHARING_MAX)
    loras: tuple[LoraSpec, ...] = ()
    # Turbo models need "trailing"; unset keeps the model's own scheduler configuration.
    timestep_spacing: Literal["leading", "trailing", "linspace"] | None = None

    @property
    def controlnet(self) -> bool:
        return bool(self.controlnet_string)

    @property
    def mode(self) -> str:
        return "ControlNet" if self.controlnet else "plain"


class LoadedSettings(BaseModel):
    """The selected profile plus what the loader noticed on the way."""

    profile: Profile
    profile_names: list[str]
    warnings: list[str] = []


def read_json(path: Path) -> Any:
    """Parse JSON, turning syntax errors into a line naming line and column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(path, f"cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise _error(path, message) from None
    except RecursionError:
        raise _error(path, "invalid JSON: nested too deeply") from None
    try:
        # A lone surrogate escape (\ud800) decodes to text no file or terminal can hold.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _error(path, "invalid JSON: a \\u escape names half a character "
                     "(a lone surrogate)") from None
    except RecursionError:
        raise _error(path, "invalid JSON: nested too deeply") from None
    return data


def _error(path: Path, message: str) -> Exception:
    return SongError(Problem(message, file=path))


def is_flat(data: dict[str, Any]) -> bool:
    """Flat (older) files hold settings at top level; profile files hold objects only."""
    if any(key in PROFILE_KEYS for key in data):
        return True
    return not all(isinstance(value, dict) for value in data.values())


def load_settings_file(path: Path, profile: str = "default") -> LoadedSettings:
    """Load `tgen_settings.json` and resolve one profile."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise _error(path, "must be a JSON object (profiles by name, or settings)")
    profiles = {"default": data} if is_flat(data) else data
    names = list(profiles)
    if profile not in profiles:
        shape = "a flat settings file has only 'default'" if is_flat(data) else "known"
        raise _error(path, f"unknown profile {profile!r} ({shape}: {', '.join(names)})")
    raw = profiles[profile]
    if not isinstance(raw, dict):
        raise _error(path, f"profile {profile!r} must be a JSON object")
    resolved, warnings = _resolve_profile(profile, raw, path)
    return LoadedSettings(profile=resolved, profile_names=names, warnings=warnings)


def _resolve_profile(name: str, raw: dict[str, Any], path: Path) -> tuple[Profile, list[str]]:
    warnings: list[str] = []
    pipe = raw.get("pipe_kwargs") or {}
    if not isinstance(pipe, dict):
        raise _error(path, f"profile {name!r}: pipe_kwargs must be an object")
    values = _profile_values(raw, pipe)
    warnings += _unknown_key_warnings(path, name, raw, pipe)
    values["res_width"], note_w = _round8(raw.get("res_width", 512), "res_width")
    values["res_height"], note_h = _round8(raw.get("res_height", 512), "res_height")
    warnings += [f"{path}: profile {name!r}: {n}" for n in (note_w, note_h) if n]
    try:
        return Profile(name=name, **values), warnings
    except ValidationError as exc:
        # Every bad value at once, so one edit of the file fixes them all.
        raise SongError(*(_value_problem(path, name, error, raw, pipe)
                          for error in exc.errors())) from None


def _value_problem(path: Path, name: str, error: ErrorDetails, raw: dict[str, Any],
                   pipe: dict[str, Any]) -> Problem:
    field = ".".join(str(part) for part in error["loc"])
    key = _written_key(field, raw, pipe)
    value = repr(error["input"])
    value = value if len(value) <= 60 else value[:57] + "..."
    return Problem(f"profile {name!r}: {key} {value}: {error['msg']}", file=path)


def _written_key(field: str, raw: dict[str, Any], pipe: dict[str, Any]) -> str:
    """The key as the file spells it, so the message points at the line to edit."""
    for key in _WRITTEN_AS.get(field, (field,)):
        scope, _, leaf = key.rpartition(".")
        if leaf in (pipe if scope else raw):
            return key
    return field


def _profile_values(raw: dict[str, Any], pipe: dict[str, Any]) -> dict[str, Any]:
    """Map old spellings onto Profile fields; pipe_kwargs win over the top-level spellings."""
    picks = {
        "interpolation_steps": raw.get("interpolation_steps"),
        "model_string": raw.get("model_string"),
        "controlnet_string": raw.get("controlnet_string") or None,
        "num_inference_steps": pipe.get("num_inference_steps", raw.get("inference_steps")),
        "guidance_scale": pipe.get("guidance_scale", raw.get("guidance_scale")),
        "negative_prompt": pipe.get("negative_prompt"),
        "mask_image": raw.get("mask_image") or raw.get("cnet_image"),
        "controlnet_conditioning_scale": pipe.get("controlnet_conditioning_scale"),
        "control_guidance_start": pipe.get("control_guidance_start"),
        "control_guidance_end": pipe.get("control_guidance_end"),
        "scheduler": raw.get("scheduler"),
        "noise": raw.get("noise"),
        "fps": raw.get("fps"),
        "batch_size": raw.get("batch_size"),
        "dtype": raw.get("dtype"),
        "loras": raw.get("loras"),
        "timestep_spacing": raw.get("timestep_spacing"),
        "pacing": raw.get("pacing"),
        "sharing": raw.get("sharing"),
    }
    return {key: value for key, value in picks.items() if value is not None}


def _unknown_key_warnings(
    path: Path, name: str, raw: dict[str, Any], pipe: dict[str, Any]
) -> list[str]:
    out = [
        f"{path}: profile {name!r}: unknown setting {key!r} kept but not used"
        for key in raw
        if key not in PROFILE_KEYS
    ]
    out += [
        f"{path}: profile {name!r}: unknown pipe_kwargs key {key!r} kept but not used"
        for key in pipe
        if key not in PIPE_KEYS
    ]
    return out


def _round8(value: Any, key: str) -> tuple[Any, str | None]:
    """Latents are size//8, so the old scripts rendered at the size rounded down to 8."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 8:
        return value, None
    rounded = value // 8 * 8
    if rounded == value:
        return value, None
    return rounded, f"{key} {value} is not a multiple of 8: rendering at {rounded}"
