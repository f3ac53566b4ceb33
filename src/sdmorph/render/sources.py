"""Where a profile's model comes from, checked without loading anything (no torch here).

`validate` runs these checks on every song, so they must not pay for importing torch and
diffusers unless a profile names a scheduler, which only diffusers can vouch for.
"""

from __future__ import annotations

from pathlib import Path

from sdmorph.core.errors import ModelError, Problem
from sdmorph.formats.profile import Profile

TINY = "tiny"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


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
    if profile.scheduler:
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
        if cnet == TINY and (model or profile.model_string) != TINY:
            found.append("controlnet_string 'tiny' only fits model 'tiny', not "
                         f"'{model or profile.model_string}'")
    return [Problem(f"profile {profile.name!r}: {message}", file) for message in found]


def source_problems(source: str, key: str) -> list[str]:
    """A local file or folder named in the settings that is not there (as the loader sees it)."""
    if source == TINY:
        return []
    path = Path(source).expanduser()
    # Relative paths are read from the folder sdmorph runs in: say which one.
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        return [] if path.is_file() else [f"{key} '{source}': no such file{where}"]
    if path.is_dir() or not looks_like_path(source):
        return []  # a hub id: whether it is cached or downloadable shows only when loading
    return [f"{key} '{source}': no such folder{where}"]
