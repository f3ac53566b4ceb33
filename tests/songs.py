"""Builders for song folders in tmp dirs (used by many test modules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from sdmorph.core.ids import ImageId
    from sdmorph.formats.song import Song

SHEET = """name,prompt,seeds,guidance_scale
luna,"a moon, glowing",1001 1002 1003,7.5
sun,"a sun, burning",2001 2002 2003,7.5
star,a star,3001 3002 3003,8
"""
SCENES = """,scene,duration,section,start,avoid
0,luna,1,1,,
1,sun,1,1,,
2,star,1,2,,
"""
SETTINGS = {
    "default": {
        "model_string": "tiny-random",
        "res_width": 64,
        "res_height": 64,
        "interpolation_steps": 4,
        "noise": "cpu",
        "pipe_kwargs": {"num_inference_steps": 3},
    }
}


def write_song(root: Path, name: str = "song", sheet: str | bytes = SHEET,
               scenes: str | bytes | None = SCENES, settings: object = None,
               extra: dict[str, str | bytes] | None = None) -> tuple[Path, Path]:
    """Create <root>/meta/<name>/ and <root>/media/<name>/; returns (meta_song, media_song)."""
    meta = root / "meta" / name
    media = root / "media" / name
    meta.mkdir(parents=True, exist_ok=True)
    media.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | bytes] = {"prompt_image_definitions.csv": sheet}
    if scenes is not None:
        files["scene_sequence.csv"] = scenes
    data = SETTINGS if settings is None else settings
    files["tgen_settings.json"] = data if isinstance(data, str | bytes) else json.dumps(data)
    files.update(extra or {})
    for rel, content in files.items():
        path = meta / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return meta, media


def env_for(root: Path) -> dict[str, str]:
    return {"media_dir": str(root / "media"), "meta_dir": str(root / "meta")}



def union_transitions(paths):
    """The distinct transitions of planned paths, first seen first (for tests)."""
    seen: set = set()
    pairs = []
    for path in paths:
        for hop in path:
            key = frozenset((hop.a, hop.b))
            if key not in seen:
                seen.add(key)
                pairs.append((hop.a, hop.b))
    return pairs


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a folder by name: two renders compared byte for byte."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def render_transition(song: Song, a: ImageId, b: ImageId, frames: int, batch_size: int,
                      keyframes: dict[ImageId, bytes] | None = None) -> tuple[Path, int, str]:
    """Render a->b alone: (folder, UNet passes spent on it, outcome status). Its keyframes
    are rendered first and not counted (transitions share them); `keyframes` gets their
    pixels. Imports the renderer only when called: torch-free tests use this module too."""
    from sdmorph.render.renderer import FrameWriter, open_renderer
    from sdmorph.stages.plan import open_store
    from sdmorph.stages.transitions import TransitionRenderer

    renderer = open_renderer(song)
    for image in (a, b):
        picture = renderer.keyframe(image)
        if keyframes is not None:
            keyframes[image] = picture.tobytes()
    before = renderer.engine.unet_evals
    tr = TransitionRenderer(renderer, open_store(song), frames, batch_size)
    tr.refresh()
    with FrameWriter() as writer:
        outcome = tr.render(a, b, writer)
    assert outcome.folder is not None
    return outcome.folder, renderer.engine.unet_evals - before, outcome.status


def pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()
