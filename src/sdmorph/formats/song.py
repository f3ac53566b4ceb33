"""A song's metadata: the prompt sheet, the settings profile and the scene sequence.

`load_song` reads `<meta_dir>/<song>/`, checks everything it can without a model, and
reports every problem at once (file, row, column). Rows are numbered as a spreadsheet
shows them: the header is row 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from sdmorph.core.errors import Problem, SdmorphError, SongError
from sdmorph.core.ids import ImageId
from sdmorph.core.paths import SceneSpec
from sdmorph.formats.csv_table import CsvTable, is_junk_column, non_empty_rows, read_csv
from sdmorph.formats.fsio import inside, safe_name
from sdmorph.formats.legacy import resolve_seed_ref
from sdmorph.formats.profile import SETTINGS_FILE, LoadedSettings, Profile, load_settings_file
from sdmorph.formats.seeds import SEED_RANGE_TEXT, parse_seeds

SHEET_FILE = "prompt_image_definitions.csv"
SCENES_FILE = "scene_sequence.csv"
SHEET_COLUMNS = ("prompt", "seeds", "guidance_scale", "negative_prompt", "mask", "cnet_scale")
SCENE_COLUMNS = ("scene", "duration", "section", "start", "avoid")
_REF = re.compile(r"^(?P<prompt>.+)_(?P<digits>[0-9]+)\Z")


class PromptDef(BaseModel):
    """One row of the prompt sheet."""

    model_config = ConfigDict(frozen=True)

    name: str
    prompt: str
    seeds: tuple[int, ...] = ()
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    mask: str | None = None
    cnet_scale: float | None = None
    row: int = 0

    @property
    def images(self) -> list[ImageId]:
        return [ImageId(self.name, seed) for seed in self.seeds]


class SceneRow(BaseModel):
    """One row of the scene sequence, as written (references not yet resolved)."""

    model_config = ConfigDict(frozen=True)

    scene: str
    duration: int
    section: int
    start: str = ""
    avoid: str = ""
    row: int = 0


@dataclass
class Song:
    """Everything sdmorph knows about one song, resolved and checked."""

    name: str
    meta_dir: Path
    media_dir: Path
    prompts: dict[str, PromptDef]
    settings: LoadedSettings
    scene_rows: list[SceneRow]
    scenes: list[SceneSpec]
    scenes_file: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def profile(self) -> Profile:
        return self.settings.profile

    @property
    def sheet_path(self) -> Path:
        return self.meta_dir / SHEET_FILE

    @property
    def settings_path(self) -> Path:
        return self.meta_dir / SETTINGS_FILE

    @property
    def masks_dir(self) -> Path:
        return self.meta_dir / "masks"

    def seeds_by_prompt(self) -> dict[str, tuple[int, ...]]:
        return {name: p.seeds for name, p in self.prompts.items()}

    def all_images(self) -> list[ImageId]:
        return [image for p in self.prompts.values() for image in p.images]

    def keyframe_path(self, image: ImageId) -> Path:
        """`prompt_images/<prompt>_<seed>.png`: the seed as an integer, the name made safe."""
        return self.media_dir / "prompt_images" / f"{safe_name(image.prompt)}_{image.seed}.png"

    def prompt_of(self, image: ImageId) -> PromptDef:
        return self.prompts[image.prompt]

    def mask_name(self, prompt: PromptDef) -> str | None:
        return prompt.mask or self.profile.mask_image

    def guidance(self, prompt: PromptDef) -> float:
        return prompt.guidance_scale if prompt.guidance_scale is not None else (
            self.profile.guidance_scale
        )

    def negative(self, prompt: PromptDef) -> str:
        return prompt.negative_prompt if prompt.negative_prompt else self.profile.negative_prompt

    def cnet_scale(self, prompt: PromptDef) -> float:
        if prompt.cnet_scale is not None:
            return prompt.cnet_scale
        return self.profile.controlnet_conditioning_scale


# ---------------------------------------------------------------- prompt sheet



def _float_cell(cells: dict[str, str], column: str, ctx: _Ctx, row: int) -> float | None:
    raw = cells.get(column, "")
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        ctx.problem(f"{raw!r} is not a number", row, column)
        return None
    return value


@dataclass
class _Ctx:
    """Collects problems and warnings for one file so all are reported together."""

    file: Path
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, message: str, row: int | None = None, column: str | None = None) -> None:
        self.problems.append(Problem(message, file=self.file, row=row, column=column))

    def warn(self, message: str, row: int | None = None, column: str | None = None) -> None:
        self.warnings.append(str(Problem(message, file=self.file, row=row, column=column)))


def load_prompt_sheet(path: Path) -> tuple[dict[str, PromptDef], list[Problem], list[str]]:
    """Parse the prompt sheet; returns prompts by name, problems and warnings."""
    ctx = _Ctx(path)
    table = read_csv(path)
    if not table.columns:
        ctx.problem("no header row")
        return {}, ctx.problems, ctx.warnings
    key = table.columns[0]
    _check_sheet_columns(table, ctx)
    prompts: dict[str, PromptDef] = {}
    for row, cells in non_empty_rows(table):
        prompt = _parse_prompt_row(cells, key, row, ctx)
        if prompt is None:
            continue
        if prompt.name in prompts:
            first = prompts[prompt.name].row
            ctx.warn(f"duplicate prompt name {prompt.name!r} (also row {first}): keeping row "
                     f"{first}", row, key)
            continue
        prompts[prompt.name] = prompt
    _check_file_names(prompts, key, ctx)
    return prompts, ctx.problems, ctx.warnings


def _check_file_names(prompts: dict[str, PromptDef], key: str, ctx: _Ctx) -> None:
    """Two names that map to one file name (`a/b`, `a:b`, `a_b`) would share their images."""
    first: dict[str, PromptDef] = {}
    for prompt in prompts.values():
        other = first.setdefault(safe_name(prompt.name), prompt)
        if other is not prompt:
            ctx.problem(f"prompt name {prompt.name!r} gives the same file name "
                        f"{safe_name(prompt.name)!r} as {other.name!r} (row {other.row}); "
                        "rename one of them", prompt.row, key)


def _check_sheet_columns(table: CsvTable, ctx: _Ctx) -> None:
    for required in ("prompt", "seeds"):
        if required not in table.columns:
            ctx.problem(f"missing column {required!r} (columns: {', '.join(table.columns)})")
    known = {table.columns[0], "name", *SHEET_COLUMNS}
    for column in table.columns:
        if column not in known and not is_junk_column(column):
            ctx.warn(f"unknown column {column!r} ignored")


def _parse_prompt_row(cells: dict[str, str], key: str, row: int, ctx: _Ctx) -> PromptDef | None:
    name = cells.get(key, "")
    if not name:
        ctx.problem("a prompt row needs a name", row, key)
        return None
    seeds, bad = parse_seeds(cells.get("seeds", ""))
    for token in bad:
        ctx.problem(f"seed {token!r} is not a whole number {SEED_RANGE_TEXT} "
                    "(write seeds separated by spaces or commas)", row, "seeds")
    if len(set(seeds)) != len(seeds):
        ctx.warn("repeated seed ignored", row, "seeds")
        seeds = list(dict.fromkeys(seeds))
    return PromptDef(
        name=name, prompt=cells.get("prompt", ""), seeds=tuple(seeds),
        guidance_scale=_float_cell(cells, "guidance_scale", ctx, row),
        negative_prompt=cells.get("negative_prompt") or None,
        mask=cells.get("mask") or None,
        cnet_scale=_float_cell(cells, "cnet_scale", ctx, row),
        row=row,
    )


# ---------------------------------------------------------------- scene sequence


def scenes_file(meta_song: Path, scenes: str | None) -> Path:
    """`scene_sequence.csv`, or `scene_sequence_<NAME>.csv` when a variant is selected."""
    if scenes and set(scenes) & set("/\\\0"):  # scene_sequence_x/../../y.csv leaves the song
        raise SongError(f"--scenes {scenes[:60]!r}: a variant name (scene_sequence_<NAME>.csv "
                        "in the song's folder), not a path")
    name = f"scene_sequence_{scenes}.csv" if scenes else SCENES_FILE
    path = meta_song / name
    if _exists(path.is_file):
        return path
    variants = sorted(p.name for p in meta_song.glob("scene_sequence*.csv"))
    hint = (f"variants here: {', '.join(variants)} (select one with --scenes NAME)"
            if variants else "no scene sequence files here")
    raise SongError(Problem(f"missing {name}; {hint}", file=path))


def _exists(check: Callable[[], bool]) -> bool:
    """`path.is_file`/`is_dir`, where a name the file system rejects (too long) is absent."""
    try:
        return check()
    except OSError:
        return False


def load_scene_rows(path: Path) -> tuple[list[SceneRow], list[Problem], list[str]]:
    ctx = _Ctx(path)
    table = read_csv(path)
    for required in ("scene", "duration", "section"):
        if required not in table.columns:
            ctx.problem(f"missing column {required!r} (columns: {', '.join(table.columns)})")
    if ctx.problems:
        return [], ctx.problems, ctx.warnings
    for column in table.columns[1:]:
        if column not in SCENE_COLUMNS and not is_junk_column(column):
            ctx.warn(f"unknown column {column!r} ignored")
    rows = [r for row, cells in non_empty_rows(table) if (r := _scene_row(cells, row, ctx))]
    if not rows and not ctx.problems:
        ctx.problem("no scenes listed")
    return rows, ctx.problems, ctx.warnings


def _int_cell(cells: dict[str, str], column: str, row: int, ctx: _Ctx) -> int | None:
    raw = cells.get(column, "")
    try:
        value = int(float(raw)) if re.fullmatch(r"[0-9]+(\.0*)?", raw) else None
    except ValueError:
        value = None
    if value is None:
        ctx.problem(f"{raw!r} is not a whole number >= 0", row, column)
    return value


def _scene_row(cells: dict[str, str], row: int, ctx: _Ctx) -> SceneRow | None:
    if not cells.get("scene"):
        if any(v for k, v in cells.items() if k in SCENE_COLUMNS):
            ctx.problem("scene name is empty", row, "scene")
        return None
    duration = _int_cell(cells, "duration", row, ctx)
    section = _int_cell(cells, "section", row, ctx)
    if duration is None or section is None:
        return None
    return SceneRow(scene=cells["scene"], duration=duration, section=section,
                    start=cells.get("start", ""), avoid=cells.get("avoid", ""), row=row)


# ---------------------------------------------------------------- resolving scenes


def folder_scene_images(folder: Path, prompts: dict[str, PromptDef], ctx: _Ctx,
                        row: int) -> list[ImageId]:
    """An older song's scene: a folder of chosen `<prompt>_<seed>.png` keyframes."""
    images = []
    for png in sorted(folder.glob("*.png")):
        match = _REF.match(png.stem)
        if not match or match["prompt"] not in prompts:
            ctx.warn(f"{png.name} in scene folder {folder} is not <prompt>_<seed>.png of a "
                     "prompt in the sheet: ignored", row, "scene")
            continue
        images.append(ImageId(match["prompt"], int(match["digits"])))
    return images


def resolve_ref(ref: str, images: list[ImageId]) -> ImageId:
    """`<prompt>_<seed>` (seed possibly cut to 4 digits) -> one image of the scene."""
    match = _REF.match(ref.strip())
    if not match:
        raise SdmorphError(f"{ref!r} is not an image reference <prompt>_<seed>")
    prompt = match["prompt"]
    seeds = [image.seed for image in images if image.prompt == prompt]
    if not seeds:
        names = sorted({image.prompt for image in images})
        raise SdmorphError(f"{ref!r}: prompt {prompt!r} has no image in this scene "
                           f"(scene prompts: {', '.join(names) or 'none'})")
    return ImageId(prompt, resolve_seed_ref(prompt, match["digits"], seeds))


def _refs(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def resolve_scenes(
    rows: list[SceneRow], prompts: dict[str, PromptDef], media_song: Path, ctx: _Ctx
) -> list[SceneSpec]:
    scenes: list[SceneSpec] = []
    owner: dict[ImageId, SceneRow] = {}
    for row in rows:
        images = _scene_images(row, prompts, media_song, ctx)
        if images is None:
            continue
        for image in images:
            if image in owner:
                ctx.problem(f"image {image.stem} is already in scene {owner[image].scene!r} "
                            f"(row {owner[image].row}); an image belongs to one scene only",
                            row.row, "scene")
            owner.setdefault(image, row)
        start = _resolve_refs(row, "start", images, ctx)
        avoid = _resolve_refs(row, "avoid", images, ctx)
        scenes.append(SceneSpec(name=row.scene, images=tuple(images), duration=row.duration,
                                section=row.section, start=tuple(start),
                                avoid=frozenset(avoid), row=row.row))
    return scenes


def _scene_images(row: SceneRow, prompts: dict[str, PromptDef], media_song: Path,
                  ctx: _Ctx) -> list[ImageId] | None:
    if row.scene in prompts:
        images = prompts[row.scene].images
        if not images:
            ctx.problem(f"scene {row.scene!r} has no seeds yet in the prompt sheet "
                        "(explore it and keep seeds)", row.row, "scene")
            return None
        return images
    folder = media_song / "scenes" / row.scene
    try:
        inside(media_song / "scenes", folder)
    except SdmorphError:
        ctx.problem(f"scene {row.scene!r} is not a prompt name in the sheet, and as a folder "
                    f"it would lie outside {media_song / 'scenes'}", row.row, "scene")
        return None
    if _exists(folder.is_dir):
        images = folder_scene_images(folder, prompts, ctx, row.row)
        if not images:
            ctx.problem(f"scene folder {folder} holds no <prompt>_<seed>.png images",
                        row.row, "scene")
            return None
        return images
    ctx.problem(f"scene {row.scene!r} is neither a prompt name in the sheet nor a folder "
                f"{folder}", row.row, "scene")
    return None


def _resolve_refs(row: SceneRow, column: str, images: list[ImageId], ctx: _Ctx) -> list[ImageId]:
    text = getattr(row, column)
    if column == "start" and text.strip().lower() in ("", "random"):
        return []
    out = []
    for ref in _refs(text):
        try:
            out.append(resolve_ref(ref, images))
        except SdmorphError as exc:
            ctx.problem(str(exc), row.row, column)
    return out


# ---------------------------------------------------------------- the song


# An extra check of a loaded song (masks, model settings); its problems join the others.
SongCheck = Callable[[Song], list[Problem]]


def load_song(meta_song: Path, media_song: Path, *, profile: str = "default",
              scenes: str | None = None, strict: bool = False,
              checks: Iterable[SongCheck] = ()) -> Song:
    """Load and check a song; raise SongError listing every problem found.

    `checks` (masks, model settings) run on the loaded song and their problems are reported
    together with the sheet's and the scenes' ones.
    """
    problems: list[Problem] = []
    warnings: list[str] = []
    prompts, settings = _load_basics(meta_song, profile, problems, warnings)
    rows, specs, seq_path = _load_sequence(meta_song, media_song, scenes, prompts, problems,
                                           warnings)
    song = None if settings is None else Song(
        name=meta_song.name, meta_dir=meta_song, media_dir=media_song, prompts=prompts,
        settings=settings, scene_rows=rows, scenes=specs, scenes_file=seq_path)
    return _checked(song, problems, warnings, strict, checks)


def load_prompts(meta_song: Path, media_song: Path, *, profile: str = "default",
                 strict: bool = False, checks: Iterable[SongCheck] = ()) -> Song:
    """The prompt sheet and settings only, for commands that never read the scenes (explore).

    A new song's prompts have no seeds yet and it may have no scene sequence at all: that
    is what exploring is for, so the scene sequence is not read (the song has no scenes).
    """
    problems: list[Problem] = []
    warnings: list[str] = []
    prompts, settings = _load_basics(meta_song, profile, problems, warnings)
    song = None if settings is None else Song(
        name=meta_song.name, meta_dir=meta_song, media_dir=media_song, prompts=prompts,
        settings=settings, scene_rows=[], scenes=[], scenes_file=meta_song / SCENES_FILE)
    return _checked(song, problems, warnings, strict, checks)


def _load_basics(meta_song: Path, profile: str, problems: list[Problem],
                 warnings: list[str]) -> tuple[dict[str, PromptDef], LoadedSettings | None]:
    if not meta_song.is_dir():
        raise SongError(Problem("song metadata folder not found (is meta_dir right?)",
                                file=meta_song))
    sheet = meta_song / SHEET_FILE
    prompts: dict[str, PromptDef] = {}
    if sheet.is_file():
        prompts, p, w = load_prompt_sheet(sheet)
        problems += p
        warnings += w
    else:
        problems.append(Problem("missing prompt sheet", file=sheet))
    settings = _load_settings(meta_song / SETTINGS_FILE, profile, problems)
    return prompts, settings


def _checked(song: Song | None, problems: list[Problem], warnings: list[str], strict: bool,
             checks: Iterable[SongCheck]) -> Song:
    """Run the extra checks, apply --strict to every warning (settings' too), raise or return."""
    if song is not None:
        for check in checks:
            problems += check(song)
        song.warnings = song.settings.warnings + warnings
        warnings = song.warnings
    if strict and warnings:
        problems += [Problem(f"{w} (--strict)") for w in warnings]
    if problems or song is None:
        raise SongError(*problems)
    return song


def _load_settings(path: Path, profile: str, problems: list[Problem]) -> LoadedSettings | None:
    if not path.is_file():
        problems.append(Problem("missing settings file", file=path))
        return None
    try:
        return load_settings_file(path, profile)
    except SongError as exc:
        problems += exc.problems
        return None


def _load_sequence(meta_song: Path, media_song: Path, scenes: str | None,
                   prompts: dict[str, PromptDef], problems: list[Problem],
                   warnings: list[str]) -> tuple[list[SceneRow], list[SceneSpec], Path]:
    try:
        path = scenes_file(meta_song, scenes)
        rows, p, w = load_scene_rows(path)
    except SongError as exc:
        problems += exc.problems
        return [], [], meta_song / SCENES_FILE
    problems += p
    warnings += w
    ctx = _Ctx(path)
    specs = resolve_scenes(rows, prompts, media_song, ctx)
    problems += ctx.problems
    warnings += ctx.warnings
    return rows, specs, path


# ---------------------------------------------------------------- checks and summary


def hop_count(song: Song) -> int:
    """Transitions in one path: the hops inside every scene plus one between each pair."""
    return sum(scene.duration for scene in song.scenes) + max(len(song.scenes) - 1, 0)


def summary(song: Song) -> list[tuple[str, str]]:
    profile = song.profile
    hops = hop_count(song)
    frames = hops * (profile.interpolation_steps - 1) + 1 if hops else 0
    sections = sorted({scene.section for scene in song.scenes})
    return [
        ("prompts", str(len(song.prompts))),
        ("images (prompt, seed)", str(len(song.all_images()))),
        ("scenes", f"{len(song.scenes)} ({song.scenes_file.name})"),
        ("sections", ", ".join(str(s) for s in sections)),
        ("transitions in a path", str(hops)),
        ("frames in a path", f"{frames} ({profile.interpolation_steps} per transition)"),
        ("profile", f"{profile.name} (of {', '.join(song.settings.profile_names)})"),
        ("model", profile.model_string),
        ("mode", profile.mode + (f" ({profile.controlnet_string})" if profile.controlnet else "")),
        ("resolution", f"{profile.res_width}x{profile.res_height}"),
        ("steps", str(profile.num_inference_steps)),
    ]


def resolver(song: Song) -> Callable[[str, str], ImageId]:
    """(prompt, seed digits as written in an old file) -> the image, full seed resolved."""

    def resolve(prompt: str, digits: str) -> ImageId:
        if prompt not in song.prompts:
            raise SdmorphError(f"prompt {prompt!r} is not in {song.sheet_path}")
        return ImageId(prompt, resolve_seed_ref(prompt, digits, song.prompts[prompt].seeds))

    return resolve
