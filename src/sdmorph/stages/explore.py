"""`explore`: try seeds for a prompt, show them on a contact sheet, sweep settings."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import ImageId
from sdmorph.formats.fsio import safe_name, save_image
from sdmorph.formats.song import PromptDef, Song
from sdmorph.media.contact_sheet import contact_sheet, sweep_grid
from sdmorph.render.renderer import PNG_LEVEL, Renderer, png_info

SEED_RANGE = 2**32  # seeds other tools accept too

# Sweep keys, as artists write them, mapped onto (where, field).
SWEEP_KEYS: dict[str, tuple[str, str]] = {
    "guidance_scale": ("prompt", "guidance_scale"),
    "pipe_kwargs.guidance_scale": ("prompt", "guidance_scale"),
    "cnet_scale": ("prompt", "cnet_scale"),
    "pipe_kwargs.controlnet_conditioning_scale": ("prompt", "cnet_scale"),
    "negative_prompt": ("prompt", "negative_prompt"),
    "pipe_kwargs.negative_prompt": ("prompt", "negative_prompt"),
    "num_inference_steps": ("profile", "num_inference_steps"),
    "inference_steps": ("profile", "num_inference_steps"),
    "pipe_kwargs.num_inference_steps": ("profile", "num_inference_steps"),
    "pipe_kwargs.control_guidance_start": ("profile", "control_guidance_start"),
    "pipe_kwargs.control_guidance_end": ("profile", "control_guidance_end"),
}


@dataclass
class ExploreResult:
    prompt: str
    seeds: list[int]
    images: list[Path] = field(default_factory=list)
    sheet: Path | None = None


def random_seeds(n: int, rng: random.Random) -> list[int]:
    return [rng.randrange(SEED_RANGE) for _ in range(n)]


def with_prompt(song: Song, name: str, text: str | None) -> Song:
    """The song, plus a prompt that is not in the sheet yet (`--prompt-text`)."""
    if text is None:
        if name not in song.prompts:
            raise SdmorphError(f"prompt {name!r} is not in {song.sheet_path} "
                               f"(prompts: {', '.join(song.prompts)}); give --prompt-text "
                               "to explore a new one")
        return song
    prompt = PromptDef(name=name, prompt=text)
    return dataclasses.replace(song, prompts={**song.prompts, name: prompt})


def explore_dir(song: Song, prompt: str) -> Path:
    return song.media_dir / "explore_images" / safe_name(prompt)


def explore_prompt(
    renderer: Renderer, prompt: str, seeds: Sequence[int], *, batch_size: int = 4,
    on_image: Callable[[int], None] | None = None,
) -> ExploreResult:
    """Render `seeds` of one prompt and a contact sheet labelled with each seed."""
    folder = explore_dir(renderer.song, prompt)
    result = ExploreResult(prompt=prompt, seeds=list(seeds))
    tiles: list[tuple[str, Image.Image]] = []
    for start in range(0, len(seeds), batch_size):
        batch = [ImageId(prompt, seed) for seed in seeds[start : start + batch_size]]
        for image, picture in zip(batch, renderer.render_keyframes(batch), strict=True):
            path = folder / f"{safe_name(prompt)}_{image.seed}.png"
            save_image(path, picture, compress_level=PNG_LEVEL,
                       pnginfo=png_info(renderer.png_text(image)))
            result.images.append(path)
            tiles.append((str(image.seed), picture))
            if on_image:
                on_image(1)
    result.sheet = folder / "contact_sheet.png"
    save_image(result.sheet, contact_sheet(tiles))
    return result


def unexplored(song: Song) -> list[str]:
    return [name for name, prompt in song.prompts.items() if not prompt.seeds]


def parse_value(key: str, raw: str) -> object:
    where, name = SWEEP_KEYS[key]
    if name in ("negative_prompt", "scheduler"):
        return raw
    try:
        return int(raw) if name == "num_inference_steps" else float(raw)
    except ValueError:
        raise SdmorphError(f"--sweep {key}: {raw!r} is not a number") from None


def check_sweep(sweeps: Sequence[tuple[str, list[str]]]) -> None:
    for key, _ in sweeps:
        if key not in SWEEP_KEYS:
            raise SdmorphError(f"--sweep: unknown key {key!r} (known: {', '.join(SWEEP_KEYS)})")


def swept_song(song: Song, prompt: str, settings: dict[str, object]) -> Song:
    """A copy of the song with one combination of swept settings applied."""
    profile_update: dict[str, object] = {}
    prompt_update: dict[str, object] = {}
    for key, value in settings.items():
        where, name = SWEEP_KEYS[key]
        (profile_update if where == "profile" else prompt_update)[name] = value
    prompts = dict(song.prompts)
    prompts[prompt] = prompts[prompt].model_copy(update=prompt_update)
    settings_model = song.settings.model_copy(
        update={"profile": song.profile.model_copy(update=profile_update)}
    )
    return dataclasses.replace(song, prompts=prompts, settings=settings_model)


def sweep(
    make_renderer: Callable[[Song], Renderer], song: Song, prompt: str, seed: int,
    sweeps: Sequence[tuple[str, list[str]]], on_image: Callable[[int], None] | None = None,
) -> Path:
    """Render one seed at every combination of the swept values; write a labelled grid."""
    check_sweep(sweeps)
    keys = [key for key, _ in sweeps]
    values = [[parse_value(key, raw) for raw in raws] for key, raws in sweeps]
    cells: dict[tuple[str, str], Image.Image] = {}
    for combo, labels in zip(itertools.product(*values),
                             itertools.product(*(raws for _, raws in sweeps)), strict=True):
        variant = swept_song(song, prompt, dict(zip(keys, combo, strict=True)))
        picture = make_renderer(variant).render_keyframes([ImageId(prompt, seed)])[0]
        row, col = (labels[0], labels[1]) if len(labels) == 2 else (keys[0], labels[0])
        cells[(row, col)] = picture
        if on_image:
            on_image(1)
    rows = sweeps[0][1] if len(sweeps) == 2 else [keys[0]]
    cols = sweeps[1][1] if len(sweeps) == 2 else sweeps[0][1]
    grid = sweep_grid(cells, rows, cols, row_key=keys[0], col_key=keys[-1],
                      title=f"{prompt} seed {seed}")
    target = explore_dir(song, prompt) / f"sweep_{seed}_{'_'.join(safe_name(k) for k in keys)}.png"
    save_image(target, grid)
    return target
