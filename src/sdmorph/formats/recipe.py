"""The render recipe: every setting that decides a frame's pixels, and its key.

One definition for all who need it: the renderer writes it into each keyframe's PNG text and
each transition's manifest; `status` compares the part a song alone decides without loading
a model; the transition store judges folders by its key. A field added here is therefore
written, compared and hashed everywhere at once.

The key order of each dict is the order it is written in manifests, so it stays fixed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python

from sdmorph.core.ids import ImageId
from sdmorph.formats.song import Song

# Fields a recipe has only when the song uses a ControlNet.
CONTROLNET_FIELDS = ("controlnet", "control_start", "control_end")
IMAGE_CONTROLNET_FIELDS = ("mask", "cnet_scale")


@dataclass(frozen=True)
class EngineFacts:
    """What only a loaded model knows: its scheduler, dtype, and where noise is drawn."""

    scheduler: str
    noise: str
    dtype: str


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
    elif p.noise:
        out["noise"] = p.noise
    if p.controlnet:
        out.update(controlnet=p.controlnet_string, control_start=p.control_guidance_start,
                   control_end=p.control_guidance_end)
    return out


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


def transition_recipe(song: Song, model: str, engine: EngineFacts | None, a: ImageId,
                      b: ImageId, frames: int) -> dict[str, Any]:
    """A transition's whole recipe, as its manifest records it."""
    return {**settings(song, model, engine), "frames": frames,
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
