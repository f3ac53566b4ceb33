"""Synthetic song folders for the benchmarks (the layout of song-format.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sdmorph.formats.fsio import write_text

PROMPTS = ("a red sun over the sea", "a blue moon in a dark forest", "a golden city at night",
           "a white bird in the clouds", "a purple flower garden", "a stone dragon in the snow")


@dataclass(frozen=True)
class SongSpec:
    size: int = 128
    frames: int = 10  # interpolation_steps
    steps: int = 10
    guidance: float = 7.5
    prompts: int = 2
    seeds_per_prompt: int = 1
    duration: int = 0  # hops inside each scene
    batch_size: int | None = None
    model: str = "tiny-random"
    sharing: float = 0.0
    pacing: str = "linear"


def seeds_of(prompt: int, spec: SongSpec) -> list[int]:
    return [1000 * (prompt + 1) + k for k in range(spec.seeds_per_prompt)]


def write_song(root: Path, spec: SongSpec, name: str = "song") -> tuple[Path, Path]:
    """Create <root>/meta/<name> and <root>/media/<name>; one scene per prompt, one section."""
    meta, media = root / "meta" / name, root / "media" / name
    meta.mkdir(parents=True, exist_ok=True)
    media.mkdir(parents=True, exist_ok=True)
    rows = ["name,prompt,seeds,guidance_scale"]
    scenes = [",scene,duration,section,start,avoid"]
    for k in range(spec.prompts):
        seeds = " ".join(str(s) for s in seeds_of(k, spec))
        rows.append(f'p{k},"{PROMPTS[k % len(PROMPTS)]}",{seeds},{spec.guidance}')
        scenes.append(f"{k},p{k},{spec.duration},1,,")
    profile: dict[str, object] = {
        "model_string": spec.model, "res_width": spec.size, "res_height": spec.size,
        "interpolation_steps": spec.frames, "noise": "cpu", "pacing": spec.pacing,
        "sharing": spec.sharing,
        "pipe_kwargs": {"num_inference_steps": spec.steps, "negative_prompt": ""},
    }
    if spec.batch_size:
        profile["batch_size"] = spec.batch_size
    write_text(meta / "prompt_image_definitions.csv", "\n".join(rows) + "\n")
    write_text(meta / "scene_sequence.csv", "\n".join(scenes) + "\n")
    write_text(meta / "tgen_settings.json", json.dumps({"default": profile}))
    return meta, media
