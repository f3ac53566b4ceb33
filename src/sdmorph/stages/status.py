"""`status`: what a song's media folder holds at each stage, and what comes next.

Quick and read-only: nothing here imports the engine (torch), so `sdmorph status` answers
at once on a laptop. The one file a scan may write is the transition store's frame-check
cache (`<song>/.sdmorph/framecheck.json`), which spares later scans from reading frames
again; `write_manifests` is the only function that adds anything to the artist's folders.

Staleness without the engine: a recipe key hashes the whole render recipe, including the
scheduler and dtype that only a loaded engine knows (and the noise device, unless the
profile fixes it), so status cannot recompute the key. It compares instead the recipe
fields the song alone decides: model, size, steps, frame count, the ControlNet settings,
and for each image its prompt text, negative prompt, seed, guidance, mask and ControlNet
scale. Any difference there means the key differs too, so what status calls stale is
stale for sure; a render made on another engine (other scheduler, dtype or noise device)
can still look current here, and `render-prompts` / `transitions` re-render it.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import ImageId, Pair, pair_key, transition_name
from sdmorph.formats import recipe
from sdmorph.formats.fsio import is_temp
from sdmorph.formats.plan_tables import (
    INTER_FILE,
    INTRA_FILE,
    META_FOLDER,
    STORIES_FOLDER,
    read_transition_tables,
)
from sdmorph.formats.song import SCENES_FILE, Song, resolver
from sdmorph.media.store import (
    FolderInfo,
    TransitionManifest,
    by_pair,
    png_complete,
)
from sdmorph.stages.inspect import JumpCount, jump_count
from sdmorph.stages.plan import open_store

MOVIE_SUFFIXES = (".mov", ".mp4")
MAX_ROWS = 30
_DIFFS_SHOWN = 3
_MISSING = object()

KeyframeState = Literal["missing", "incomplete", "current", "stale", "legacy"]
PlannedState = Literal[
    "rendered", "legacy", "in-progress", "incomplete", "stale", "missing", "skipped"
]
Table = tuple[str, list[str], list[list[str]]]

KEYFRAME_LABELS: dict[str, str] = {
    "current": "on disk (sdmorph, current settings)",
    "legacy": "on disk (old scripts, used as is)",
    "stale": "on disk, rendered with other settings",
    "incomplete": "incomplete file (not a whole PNG)",
    "missing": "missing",
}
PLANNED_LABELS: dict[str, str] = {
    "rendered": "rendered (sdmorph)",
    "legacy": "rendered (old scripts)",
    "in-progress": "in progress or interrupted",
    "incomplete": "incomplete",
    "stale": "rendered with other settings",
    "missing": "missing",
    "skipped": "skipped by the artist (compute n)",
}
FOLDER_STATES = ("complete", "incomplete", "in-progress", "stale", "unparseable", "ambiguous")


# ------------------------------------------------------------------------ data


@dataclass(frozen=True)
class KeyframeStatus:
    """One (prompt, seed) keyframe file: its state and, for problems, why."""

    image: ImageId
    path: Path
    state: KeyframeState
    reason: str = ""


@dataclass(frozen=True)
class PlannedStatus:
    """One transition of the plan tables, and what serves it on disk."""

    a: ImageId
    b: ImageId
    state: PlannedState
    source: str  # "<table> row N"
    folder: Path | None = None
    reversed: bool = False  # the folder holds b to a: the frames play backwards
    kind: str = ""  # the serving (or blocking) folder's kind: sdmorph or legacy
    frames_found: int = 0
    reason: str = ""

    @property
    def name(self) -> str:
        return transition_name(self.a, self.b)


@dataclass(frozen=True)
class MovieFile:
    path: Path
    size: int


@dataclass(frozen=True)
class StoryStatus:
    """One `stories/<name>/` folder: its story file and the movies made from it."""

    name: str
    folder: Path
    story_file: Path | None
    sections: tuple[MovieFile, ...]
    combined: tuple[MovieFile, ...]

    @property
    def has_movie(self) -> bool:
        return bool(self.combined)


@dataclass
class SongStatus:
    """What exists and what is missing at each stage of one song."""

    song: str
    media_dir: Path
    frames: int  # frames per transition the song wants
    keyframes: list[KeyframeStatus]
    plan_files: list[Path]  # the transition tables present
    planned: list[PlannedStatus]
    plan_problems: list[str]  # unreadable tables, rows naming no image of the sheet
    folders: list[FolderInfo]  # every transition folder, heuristically stale ones marked
    stories: list[StoryStatus]
    next_command: str
    # Transitions whose cached smoothness score jumps (`sdmorph inspect` scores them).
    jumps: JumpCount | None = None

    @property
    def has_plan(self) -> bool:
        return bool(self.plan_files)


# ------------------------------------------------------------ what the song decides


def _settings(song: Song, model: str | None) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Recipe settings the song decides, and the keys a render of it would not have."""
    return recipe.settings(song, model or song.profile.model_string), recipe.absent_fields(song)[0]


def _image_recipe(song: Song, image: ImageId) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    """One image's recipe fields (None if its prompt left the sheet: nothing to compare)."""
    fields = recipe.image_recipe(song, image)
    return None if fields is None else (fields, recipe.absent_fields(song)[1])


def _shown(value: object) -> str:
    if value is _MISSING:
        return "unset"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _diffs(want: Mapping[str, Any], absent: Iterable[str], got: Mapping[str, Any],
           prefix: str = "", as_text: bool = False) -> list[str]:
    """Fields of `got` that differ from `want` (PNG text holds str(value): `as_text`)."""
    out = []
    for key, value in want.items():
        have = got.get(key, _MISSING)
        if have != (str(value) if as_text else value):
            out.append(f"{prefix}{key} {_shown(have)} (now {_shown(value)})")
    return out + [f"{prefix}{key} set (now unset)" for key in absent if key in got]


def recipe_differences(song: Song, manifest: TransitionManifest,
                       model: str | None = None) -> list[str]:
    """The known recipe fields in which a transition's manifest differs from the song now."""
    want, absent = _settings(song, model)
    # frames, pacing unless linear, sharing unless 0: a linear song finds any recorded pacing
    # stale, a song without sharing any recorded sharing.
    fields = recipe.transition_fields(song, song.profile.interpolation_steps)
    absent = (*absent, *(name for name in ("pacing", "sharing") if name not in fields))
    out = _diffs({**want, **fields}, absent, manifest.recipe)
    for side, end in (("from", manifest.from_image), ("to", manifest.to_image)):
        known = _image_recipe(song, end.image_id)
        got = manifest.recipe.get(side)
        if known is not None:
            out += _diffs(*known, got if isinstance(got, dict) else {}, prefix=f"{side}.")
    return out


def keyframe_differences(song: Song, image: ImageId, text: Mapping[str, Any],
                         model: str | None = None) -> list[str]:
    """The known recipe fields in which a keyframe's PNG text differs from the song now."""
    want, absent = _settings(song, model)
    known = _image_recipe(song, image)
    if known is not None:
        want, absent = {**want, **known[0]}, (*absent, *known[1])
    return _diffs(want, absent, text, as_text=True)


def _other_settings(diffs: Sequence[str]) -> str:
    more = len(diffs) - _DIFFS_SHOWN
    shown = "; ".join(diffs[:_DIFFS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
    return f"rendered with other settings: {shown}"


# ------------------------------------------------------------------ keyframes


def keyframe_status(song: Song, image: ImageId, model: str | None = None) -> KeyframeStatus:
    """Judge one keyframe from its PNG header and text chunks (pixels are not decoded)."""
    path = song.keyframe_path(image)
    if not path.is_file():
        return KeyframeStatus(image, path, "missing")
    if not png_complete(path):
        return KeyframeStatus(image, path, "incomplete", "not a whole PNG (cut short?)")
    try:
        with Image.open(path) as stored:
            text, size = dict(stored.info), stored.size
    except (OSError, ValueError) as err:
        return KeyframeStatus(image, path, "incomplete", f"cannot read: {err}")
    if "recipe_key" not in text:
        return KeyframeStatus(image, path, "legacy", _legacy_size_note(song, size))
    diffs = keyframe_differences(song, image, text, model)
    if diffs:
        return KeyframeStatus(image, path, "stale", _other_settings(diffs))
    return KeyframeStatus(image, path, "current")


def _legacy_size_note(song: Song, size: tuple[int, int]) -> str:
    want = (song.profile.res_width, song.profile.res_height)
    if size == want:
        return ""
    return (f"{size[0]}x{size[1]}, the song renders {want[0]}x{want[1]}: "
            "transitions render their own end frames")


# ------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlanRow:
    a: ImageId
    b: ImageId
    compute: bool
    source: str


def _read_plan(song: Song) -> tuple[list[Path], list[PlanRow], list[str]]:
    """(tables present, planned transitions once each, problems) from transition_meta/."""
    meta = song.media_dir / META_FOLDER
    files = [meta / name for name in (INTRA_FILE, INTER_FILE) if (meta / name).is_file()]
    if not files:
        return [], [], []
    try:
        intra, inter = read_transition_tables(meta)
    except SdmorphError as err:
        return files, [], [str(p) for p in err.problems]
    resolve = resolver(song)
    rows: list[PlanRow] = []
    problems: list[str] = []
    seen: set[Pair] = set()
    for table, found in ((INTRA_FILE, intra), (INTER_FILE, inter)):
        for row in found:
            if row.planned == "n":
                continue  # an artist's n the plan no longer uses: not planned
            try:
                a, b = row.images(resolve)
            except SdmorphError as err:
                problems.append(f"{meta / table}, row {row.row}: {err}")
                continue
            if pair_key(a, b) not in seen:
                seen.add(pair_key(a, b))
                rows.append(PlanRow(a, b, row.compute == "y", f"{table} row {row.row}"))
    if not rows and not problems:
        return [], [], []  # header-only tables plan nothing, as `transitions` sees them
    return files, rows, problems


_BLOCKING: tuple[tuple[str, PlannedState], ...] = (
    ("in-progress", "in-progress"), ("stale", "stale"), ("incomplete", "incomplete"),
)


def planned_status(row: PlanRow,
                    pairs: Mapping[tuple[ImageId, ImageId], list[FolderInfo]]) -> PlannedStatus:
    """What serves a planned transition, in `TransitionStore.find`'s order of preference."""
    if not row.compute:
        return PlannedStatus(row.a, row.b, "skipped", row.source)
    sides = [(info, False) for info in pairs.get((row.a, row.b), [])]
    sides += [(info, True) for info in pairs.get((row.b, row.a), [])]
    for info, backwards in sides:
        if info.state == "complete":
            state: PlannedState = "rendered" if info.kind == "sdmorph" else "legacy"
            return _served(row, state, info, backwards)
    for folder_state, state in _BLOCKING:
        for info, backwards in sides:
            if info.state == folder_state:
                return _served(row, state, info, backwards)
    return PlannedStatus(row.a, row.b, "missing", row.source)


def _served(row: PlanRow, state: PlannedState, info: FolderInfo,
            backwards: bool) -> PlannedStatus:
    return PlannedStatus(row.a, row.b, state, row.source, info.path, backwards, info.kind,
                         info.frames_found, info.reason)


# ------------------------------------------------------------------ the survey


def _judged(song: Song, info: FolderInfo, model: str | None) -> FolderInfo:
    """`info`, marked stale if sdmorph rendered it with settings the song no longer has."""
    if info.kind != "sdmorph" or info.state != "complete" or info.manifest is None:
        return info
    diffs = recipe_differences(song, info.manifest, model)
    if not diffs:
        return info
    return dataclasses.replace(info, state="stale", reason=_other_settings(diffs))


@dataclass
class Survey:
    keyframes: list[KeyframeStatus]
    folders: list[FolderInfo]
    plan_files: list[Path]
    planned: list[PlannedStatus]
    plan_problems: list[str]




def survey(song: Song, model: str | None) -> Survey:
    """Keyframes, transition folders (stale ones judged) and the plan, as found on disk."""
    keyframes = [keyframe_status(song, image, model) for image in song.all_images()]
    folders = [_judged(song, info, model) for info in open_store(song).scan()]
    plan_files, rows, problems = _read_plan(song)
    pairs = by_pair(folders)
    planned = [planned_status(row, pairs) for row in rows]
    return Survey(keyframes, folders, plan_files, planned, problems)


# ------------------------------------------------------------------- stories


def _movie(path: Path) -> MovieFile:
    return MovieFile(path, path.stat().st_size)


def _movies(folder: Path, pattern: re.Pattern[str]) -> list[MovieFile]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_file() and not is_temp(p)
             and p.suffix.lower() in MOVIE_SUFFIXES and pattern.match(p.stem)]
    return [_movie(p) for p in sorted(found, key=lambda p: _natural(p.name))]


def _natural(name: str) -> list[object]:
    """Sort key putting section_2 before section_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


_SECTION = re.compile(r"^section_\d+$")
_COMBINED = re.compile(r"^.+_combined$")


def _story_status(folder: Path) -> StoryStatus:
    named = folder / f"trans_sequence_{folder.name}.csv"
    others = sorted(folder.glob("trans_sequence_*.csv"))
    story = named if named.is_file() else (others[0] if others else None)
    return StoryStatus(folder.name, folder, story,
                       tuple(_movies(folder / "sections", _SECTION)),
                       tuple(_movies(folder, _COMBINED)))


def story_statuses(song: Song) -> list[StoryStatus]:
    """Every `stories/<name>/` folder of the song, by name."""
    root = song.media_dir / STORIES_FOLDER
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [_story_status(p) for p in sorted(folders, key=lambda p: _natural(p.name))]


# --------------------------------------------------------------- next command


def command_options(song: Song, profile: str | None = None, scenes: str | None = None) -> str:
    """` --profile P --scenes S` for the options that differ from the defaults."""
    profile = profile if profile is not None else song.profile.name
    if scenes is None and song.scenes_file.name != SCENES_FILE:
        match = re.fullmatch(r"scene_sequence_(.+)\.csv", song.scenes_file.name)
        scenes = match.group(1) if match else None
    out = [] if profile == "default" else ["--profile", profile]
    out += [] if scenes is None else ["--scenes", scenes]
    return "".join(" " + shlex.quote(part) for part in out)


def command(stage: str, song: str, options: str, extra: str = "") -> str:
    return f"sdmorph {stage} {shlex.quote(song)}{extra}{options}"


def next_command(song: Song, found: Survey, stories: Sequence[StoryStatus],
                 options: str) -> str:
    """The first stage that is not done, as the command that does it."""
    if any(k.state in ("missing", "incomplete") for k in found.keyframes):
        return command("render-prompts", song.name, options)
    states = [(p.state, p.kind) for p in found.planned]
    resumable = {"missing", "in-progress"}
    if (not found.plan_files or found.plan_problems
            or any(s in resumable or (s, k) == ("incomplete", "sdmorph") for s, k in states)):
        return command("transitions", song.name, options)
    if any(s == "stale" or (s, k) == ("incomplete", "legacy") for s, k in states):
        # Neither is rendered again unless asked: a stale render or a broken legacy folder.
        return command("transitions", song.name, options, " --force")
    if not any(story.has_movie for story in stories):
        return command("movie", song.name, options)
    again = command("movie", song.name, options, " --seed N -o NAME")
    return f"done; re-spin a story with {again}"


def song_status(song: Song, *, profile: str | None = None, scenes: str | None = None,
                model: str | None = None) -> SongStatus:
    """Survey a song's media folder: keyframes, plan, transition folders, stories, next step.

    `profile`/`scenes` are the options to repeat in the next command (default: those the
    song was loaded with); `model` is a `--model` override the renders used, if any.
    """
    found = survey(song, model)
    stories = story_statuses(song)
    options = command_options(song, profile, scenes)
    return SongStatus(
        song=song.name, media_dir=song.media_dir, frames=song.profile.interpolation_steps,
        keyframes=found.keyframes, plan_files=found.plan_files, planned=found.planned,
        plan_problems=found.plan_problems, folders=found.folders, stories=stories,
        next_command=next_command(song, found, stories, options),
        jumps=jump_count(song, found.folders),
    )
