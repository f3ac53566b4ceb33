"""The render recipe: every setting that decides a frame's pixels, and its key.

One definition for all who need it: the renderer writes it into each keyframe's PNG text and
each transition's manifest; `status` compares the part a song alone decides without loading
a model; the transition store judges folders by its key. A field added here is therefore
written, compared and hashed everywhere at once.

The key order of each dict is the order it is written in manifests, so it stays fixed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python

from sdmorph.core.ids import ImageId
from sdmorph.formats.song import Song

# Fields a recipe has only when the song uses a ControlNet.
CONTROLNET_FIELDS = ("controlnet", "control_start", "control_end")
IMAGE_CONTROLNET_FIELDS = ("mask", "cnet_scale")


@dataclass(frozen=True)
class EngineFacts:
    """What only a loaded model knows: its scheduler, dtype, and where noise is drawn.

    The rest appear in a recipe only when they differ from what SD 1.x songs always had, so
    those recipes and their keys stay exactly what they were: `family` ("sdxl"),
    `scheduler_options` (what a scheduler alias or timestep_spacing changed, TCD's eta) and
    `step_noise` ("seeds": stochastic samplers add each seed's own noise, interpolated).
    """

    scheduler: str
    noise: str
    dtype: str
    family: str = "sd1"
    scheduler_options: Mapping[str, Any] = field(default_factory=dict)
    step_noise: str | None = None


def settings(song: Song, model: str, engine: EngineFacts | None = None) -> dict[str, Any]:
    """The fields every image of a run shares.

    Without `engine` (no model loaded) only what the song decides: the noise device then
    only where the profile fixes it.
    """
    p = song.profile
    out: dict[str, Any] = {"model": model, "width": p.res_width, "height": p.res_height,
                           "steps": p.num_inference_steps}
    if engine is not None:
        out.update(scheduler=engine.scheduler, noise=engine.noise, dtype=engine.dtype)
        out.update(_engine_extras(engine))
    elif p.noise:
        out["noise"] = p.noise
    if p.loras:
        out["loras"] = lora_fields(song)
    if p.controlnet:
        out.update(controlnet=p.controlnet_string, control_start=p.control_guidance_start,
                   control_end=p.control_guidance_end)
    return out


def _engine_extras(engine: EngineFacts) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if engine.family != "sd1":
        out["family"] = engine.family
    if engine.scheduler_options:
        out["scheduler_options"] = dict(engine.scheduler_options)
    if engine.step_noise:
        out["step_noise"] = engine.step_noise
    return out


def lora_fields(song: Song) -> list[dict[str, Any]]:
    """Each LoRA by file name, content hash and scale: a changed file or scale makes folders
    stale, a LoRA moved elsewhere does not."""
    out = []
    for lora in song.profile.loras:
        path = lora.resolved(song.meta_dir)
        out.append({"name": path.name, "sha256": file_digest(path), "scale": lora.scale})
    return out


def file_digest(path: Path) -> str | None:
    """The first 16 hex digits of a file's sha256; None if it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _digest(path: str, mtime_ns: int, size: int) -> str | None:
    """Cached by (path, mtime, size): every frame's recipe asks, the file is read once."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(2**20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()[:16]


def image_recipe(song: Song, image: ImageId) -> dict[str, Any] | None:
    """One image's own fields; None if its prompt left the sheet."""
    prompt = song.prompts.get(image.prompt)
    if prompt is None:
        return None
    out: dict[str, Any] = {"prompt": prompt.prompt, "negative_prompt": song.negative(prompt),
                           "seed": image.seed, "guidance": song.guidance(prompt)}
    if song.profile.controlnet:
        out.update(mask=song.mask_name(prompt), cnet_scale=song.cnet_scale(prompt))
    return out


def keyframe_recipe(song: Song, model: str, engine: EngineFacts | None,
                    image: ImageId) -> dict[str, Any]:
    """A keyframe's whole recipe, as its PNG text records it."""
    return {**settings(song, model, engine), **(image_recipe(song, image) or {})}


def transition_fields(song: Song, frames: int) -> dict[str, Any]:
    """The fields of a transition's recipe beside the shared settings and its two images.

    `pacing` is there only when it is not the default "linear", and `sharing` only when it is
    above 0, so that the old recipes, and the keys of folders rendered before either existed,
    stay exactly what they were.
    """
    out: dict[str, Any] = {"frames": frames}
    if song.profile.pacing != "linear":
        out["pacing"] = song.profile.pacing
    if song.profile.sharing > 0:  # likewise: absent when every frame is denoised on its own
        out["sharing"] = song.profile.sharing
    return out


def transition_recipe(song: Song, model: str, engine: EngineFacts | None, a: ImageId,
                      b: ImageId, frames: int) -> dict[str, Any]:
    """A transition's whole recipe, as its manifest records it."""
    return {**settings(song, model, engine), **transition_fields(song, frames),
            "from": image_recipe(song, a), "to": image_recipe(song, b)}


def absent_fields(song: Song) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(shared, per-image) fields a render of this song would not have."""
    if song.profile.controlnet:
        return (), ()
    return CONTROLNET_FIELDS, IMAGE_CONTROLNET_FIELDS


def recipe_key(recipe: Mapping[str, Any]) -> str:
    """sha256 of the recipe as canonical JSON (sorted keys, no spaces): stable across runs."""
    canonical = json.dumps(
        to_jsonable_python(dict(recipe)),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
