"""`status` and `adopt`: what a song's media folder holds at each stage, and what comes next.

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
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import ImageId, Pair, pair_key, transition_name
from sdmorph.core.paths import plan_paths
from sdmorph.formats import recipe
from sdmorph.formats.fsio import is_temp
from sdmorph.formats.plan_tables import (
    INTER_FILE,
    INTRA_FILE,
    LATEST_STORY_FILE,
    META_FOLDER,
    PLANNED_FILE,
    STORIES_FOLDER,
    read_story,
    read_transition_tables,
)
from sdmorph.formats.song import SCENES_FILE, Song, resolver
from sdmorph.media.store import (
    FolderInfo,
    TransitionManifest,
    by_pair,
    complete_pairs,
    png_complete,
)
from sdmorph.stages.plan import open_store

MOVIE_SUFFIXES = (".mov", ".mp4")
MAX_ROWS = 30
_DIFFS_SHOWN = 3
_MISSING = object()

KeyframeState = Literal["missing", "incomplete", "sdmorph", "stale", "legacy"]
PlannedState = Literal[
    "rendered", "legacy", "in-progress", "incomplete", "stale", "missing", "skipped"
]
Table = tuple[str, list[str], list[list[str]]]

KEYFRAME_LABELS: dict[str, str] = {
    "sdmorph": "on disk (sdmorph)",
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

    @property
    def has_plan(self) -> bool:
        return bool(self.plan_files)


@dataclass(frozen=True)
class StoryFileCheck:
    """A story file as `movie` would read it: rows, rows with frames on disk, problems."""

    path: Path
    rows: int
    covered: int
    problems: tuple[str, ...] = ()


@dataclass
class AdoptReport:
    """What an old-scripts song holds, and what sdmorph would render next."""

    song: str
    media_dir: Path
    frames: int
    keyframes: list[KeyframeStatus]
    folders: list[FolderInfo]
    story_files: list[StoryFileCheck]
    plan_files: list[Path]
    plan_problems: list[str]
    to_render: list[PlannedStatus]  # planned (compute y) and served by no complete folder
    skipped: int  # planned transitions the artist set to n
    without_manifest: list[FolderInfo]  # complete legacy folders `write_manifests` would mark
    command_options: str = ""
    planned_now: bool = False  # no plan files: to_render is the plan `transitions` would make

    @property
    def has_plan(self) -> bool:
        return bool(self.plan_files) or self.planned_now


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
    recipe = manifest.recipe
    out = _diffs({**want, "frames": song.profile.interpolation_steps}, absent, recipe)
    for side, end in (("from", manifest.from_image), ("to", manifest.to_image)):
        known = _image_recipe(song, end.image_id)
        got = recipe.get(side)
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
    return KeyframeStatus(image, path, "sdmorph")


def _legacy_size_note(song: Song, size: tuple[int, int]) -> str:
    want = (song.profile.res_width, song.profile.res_height)
    if size == want:
        return ""
    return (f"{size[0]}x{size[1]}, the song renders {want[0]}x{want[1]}: "
            "transitions render their own end frames")


# ------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _PlanRow:
    a: ImageId
    b: ImageId
    compute: bool
    source: str


def _read_plan(song: Song) -> tuple[list[Path], list[_PlanRow], list[str]]:
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
    rows: list[_PlanRow] = []
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
                rows.append(_PlanRow(a, b, row.compute == "y", f"{table} row {row.row}"))
    if not rows and not problems:
        return [], [], []  # header-only tables plan nothing, as `transitions` sees them
    return files, rows, problems


_BLOCKING: tuple[tuple[str, PlannedState], ...] = (
    ("in-progress", "in-progress"), ("stale", "stale"), ("incomplete", "incomplete"),
)


def _planned_status(row: _PlanRow,
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


def _served(row: _PlanRow, state: PlannedState, info: FolderInfo,
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
class _Survey:
    keyframes: list[KeyframeStatus]
    folders: list[FolderInfo]
    plan_files: list[Path]
    planned: list[PlannedStatus]
    plan_problems: list[str]




def _survey(song: Song, model: str | None) -> _Survey:
    keyframes = [keyframe_status(song, image, model) for image in song.all_images()]
    folders = [_judged(song, info, model) for info in open_store(song).scan()]
    plan_files, rows, problems = _read_plan(song)
    pairs = by_pair(folders)
    planned = [_planned_status(row, pairs) for row in rows]
    return _Survey(keyframes, folders, plan_files, planned, problems)


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


def _command(stage: str, song: str, options: str, extra: str = "") -> str:
    return f"sdmorph {stage} {shlex.quote(song)}{extra}{options}"


def next_command(song: Song, survey: _Survey, stories: Sequence[StoryStatus],
                 options: str) -> str:
    """The first stage that is not done, as the command that does it."""
    if any(k.state in ("missing", "incomplete") for k in survey.keyframes):
        return _command("render-prompts", song.name, options)
    states = [(p.state, p.kind) for p in survey.planned]
    resumable = {"missing", "in-progress"}
    if (not survey.plan_files or survey.plan_problems
            or any(s in resumable or (s, k) == ("incomplete", "sdmorph") for s, k in states)):
        return _command("transitions", song.name, options)
    if any(s == "stale" or (s, k) == ("incomplete", "legacy") for s, k in states):
        # Neither is rendered again unless asked: a stale render or a broken legacy folder.
        return _command("transitions", song.name, options, " --force")
    if not any(story.has_movie for story in stories):
        return _command("movie", song.name, options)
    again = _command("movie", song.name, options, " --seed N -o NAME")
    return f"done; re-spin a story with {again}"


def song_status(song: Song, *, profile: str | None = None, scenes: str | None = None,
                model: str | None = None) -> SongStatus:
    """Survey a song's media folder: keyframes, plan, transition folders, stories, next step.

    `profile`/`scenes` are the options to repeat in the next command (default: those the
    song was loaded with); `model` is a `--model` override the renders used, if any.
    """
    survey = _survey(song, model)
    stories = story_statuses(song)
    options = command_options(song, profile, scenes)
    return SongStatus(
        song=song.name, media_dir=song.media_dir, frames=song.profile.interpolation_steps,
        keyframes=survey.keyframes, plan_files=survey.plan_files, planned=survey.planned,
        plan_problems=survey.plan_problems, folders=survey.folders, stories=stories,
        next_command=next_command(song, survey, stories, options),
    )


# ---------------------------------------------------------------------- adopt


def story_file_paths(song: Song) -> list[Path]:
    """The old scripts' story files: `story/trans_sequence*.csv`, `stories/*/trans_sequence_*`."""
    media = song.media_dir
    found = [media / LATEST_STORY_FILE, media / PLANNED_FILE]
    found += sorted((media / STORIES_FOLDER).glob("*/trans_sequence_*.csv"))
    return [p for p in found if p.is_file()]


def check_story_file(song: Song, path: Path, folders: Iterable[FolderInfo]) -> StoryFileCheck:
    """Read a story file as `movie` would; count the rows whose frames are on disk."""
    try:
        rows = read_story(path, resolver(song))
    except SdmorphError as err:
        return StoryFileCheck(path, 0, 0, tuple(str(p) for p in err.problems))
    complete = complete_pairs(folders)
    covered = sum(1 for row in rows if pair_key(row.c1, row.c2) in complete)
    return StoryFileCheck(path, len(rows), covered)


def adopt_report(song: Song, *, profile: str | None = None, scenes: str | None = None,
                 model: str | None = None) -> AdoptReport:
    """What a song made with the old scripts holds, and what sdmorph would render next.

    Changes nothing on disk (the store's frame-check cache aside). `to_render` lists the
    planned transitions no complete folder serves in either direction, stale sdmorph renders
    and incomplete legacy folders included (those two need `transitions --force`).
    """
    survey = _survey(song, model)
    planned, problems, now = survey.planned, survey.plan_problems, False
    if not survey.plan_files:  # what `sdmorph transitions` would plan, without writing it
        rows, problems = _would_plan(song)
        pairs = by_pair(survey.folders)
        planned, now = [_planned_status(row, pairs) for row in rows], not problems
    return AdoptReport(
        song=song.name, media_dir=song.media_dir, frames=song.profile.interpolation_steps,
        keyframes=survey.keyframes, folders=survey.folders,
        story_files=[check_story_file(song, p, survey.folders) for p in story_file_paths(song)],
        plan_files=survey.plan_files, plan_problems=problems,
        to_render=[p for p in planned if p.state not in ("rendered", "legacy", "skipped")],
        skipped=sum(1 for p in planned if p.state == "skipped"),
        without_manifest=_without_manifest(survey.folders),
        command_options=command_options(song, profile, scenes),
        planned_now=now,
    )


def _would_plan(song: Song) -> tuple[list[_PlanRow], list[str]]:
    """The transitions `sdmorph transitions` (seed 0, one path) would plan, in memory."""
    try:
        (path,) = plan_paths(song.scenes, 0, 1)
    except SdmorphError as err:
        return [], [str(p) for p in err.problems]
    rows: dict[Pair, _PlanRow] = {}
    for hop in path:
        rows.setdefault(pair_key(hop.a, hop.b), _PlanRow(hop.a, hop.b, True, "plan"))
    return list(rows.values()), []


def _without_manifest(folders: Iterable[FolderInfo]) -> list[FolderInfo]:
    return [i for i in folders if i.kind == "legacy" and i.state == "complete"
            and i.manifest is None]


def write_manifests(song: Song) -> list[Path]:
    """Add a manifest (kind legacy, full seeds) to every complete legacy folder lacking one.

    Frames are not touched. Returns the manifests written.
    """
    store = open_store(song)
    return [store.write_legacy_manifest(info) for info in _without_manifest(store.scan())]


# ---------------------------------------------------------------------- tables


def _capped(rows: list[list[str]], cap: int = MAX_ROWS) -> list[list[str]]:
    if len(rows) <= cap:
        return rows
    width = len(rows[0])
    return [*rows[:cap], [f"... {len(rows) - cap} more", *[""] * (width - 1)]]


def _counts(states: Iterable[str], labels: Mapping[str, str]) -> list[list[str]]:
    counted = Counter(states)
    return [[label, str(counted[state])] for state, label in labels.items() if counted[state]]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover - the loop always returns


def _keyframe_tables(keyframes: Sequence[KeyframeStatus]) -> list[Table]:
    tables: list[Table] = [
        ("keyframes", ["state", "images"],
         _counts((k.state for k in keyframes), KEYFRAME_LABELS) or [["none in the sheet", "0"]])
    ]
    odd = [[k.image.stem, k.state, k.reason] for k in keyframes
           if k.state in ("incomplete", "stale") or k.reason]
    if odd:
        tables.append(("keyframes to look at", ["image", "state", "why"], _capped(odd)))
    return tables


def _folder_tables(folders: Sequence[FolderInfo]) -> list[Table]:
    counts = Counter((info.state, info.kind) for info in folders)
    rows = [[state, str(counts[state, "sdmorph"]), str(counts[state, "legacy"])]
            for state in FOLDER_STATES if counts[state, "sdmorph"] or counts[state, "legacy"]]
    tables: list[Table] = [
        ("transition folders", ["state", "sdmorph", "legacy"], rows or [["none yet", "0", "0"]])
    ]
    odd = [[info.name, info.kind, info.state, str(info.frames_found), info.reason]
           for info in folders if info.state != "complete"]
    if odd:
        tables.append(("transition folders to look at",
                       ["folder", "kind", "state", "frames", "why"], _capped(odd)))
    return tables


def _planned_tables(status: SongStatus) -> list[Table]:
    if not status.has_plan:
        note = f"no plan yet ({META_FOLDER}/{INTRA_FILE}, {INTER_FILE})"
        return [("planned transitions", ["state", "transitions"], [[note, "0"]])]
    tables: list[Table] = [("planned transitions", ["state", "transitions"],
                            _counts((p.state for p in status.planned), PLANNED_LABELS)
                            or [["none planned", "0"]])]
    odd = [[p.name, p.state, p.folder.name if p.folder else "", str(p.frames_found), p.reason]
           for p in status.planned if p.state in ("in-progress", "incomplete", "stale")]
    if odd:
        tables.append(("planned transitions to look at",
                       ["transition", "state", "folder", "frames", "why"], _capped(odd)))
    if status.plan_problems:
        tables.append(("plan problems", ["problem"],
                       _capped([[p] for p in status.plan_problems])))
    return tables


def _movies_cell(movies: Sequence[MovieFile]) -> str:
    if not movies:
        return "-"
    return f"{len(movies)} ({_size(sum(m.size for m in movies))})"


def _story_table(stories: Sequence[StoryStatus]) -> Table:
    rows = [[s.name, s.story_file.name if s.story_file else "missing",
             _movies_cell(s.sections),
             ", ".join(f"{m.path.name} ({_size(m.size)})" for m in s.combined) or "-"]
            for s in stories]
    columns = ["story", "story file", "section movies", "combined movie"]
    return "stories", columns, _capped(rows) or [["none yet", "", "", ""]]


def render_status_tables(status: SongStatus) -> list[Table]:
    """(title, columns, rows) for `sdmorph.cli.ui.table`: counts first, then the problems."""
    return [
        *_keyframe_tables(status.keyframes),
        *_planned_tables(status),
        *_folder_tables(status.folders),
        _story_table(status.stories),
        ("next", ["command"], [[status.next_command]]),
    ]


def _adopt_found(report: AdoptReport) -> Table:
    keyframes = Counter(k.state for k in report.keyframes)
    folders = Counter((i.kind, i.state) for i in report.folders)
    rows = [[f"keyframes: {KEYFRAME_LABELS[s]}", str(keyframes[s])]
            for s in KEYFRAME_LABELS if keyframes[s]]
    rows += [[f"legacy folders: {s}", str(folders["legacy", s])]
             for s in FOLDER_STATES if folders["legacy", s]]
    rows.append(["complete legacy folders without a manifest", str(len(report.without_manifest))])
    sdmorph = sum(n for (kind, _), n in folders.items() if kind == "sdmorph")
    rows += [["sdmorph folders", str(sdmorph)], ["story files", str(len(report.story_files))]]
    return f"found in {report.media_dir}", ["what", "count"], rows


def _adopt_story_table(report: AdoptReport) -> Table:
    rows = []
    for check in report.story_files:
        where = str(check.path.relative_to(report.media_dir))
        if check.problems:
            more = f" (and {len(check.problems) - 1} more)" if len(check.problems) > 1 else ""
            rows.append([where, "-", "-", check.problems[0] + more])
        else:
            rows.append([where, str(check.rows), str(check.covered), ""])
    columns = ["story file", "transitions", "with frames on disk", "problem"]
    return "story files", columns, _capped(rows) or [["none", "", "", ""]]


def _adopt_render_tables(report: AdoptReport) -> list[Table]:
    command = _command("transitions", report.song, report.command_options)
    if not report.has_plan:
        note = (f"no plan: {META_FOLDER}/{INTRA_FILE} and {INTER_FILE} are missing; "
                f"{command} plans and renders")
        tables: list[Table] = [("sdmorph would render next", ["transition", "why"],
                                [[note, ""]])]
        if report.plan_problems:
            tables.append(("plan problems", ["problem"],
                           _capped([[p] for p in report.plan_problems])))
        return tables
    rows = [[p.name, _why_render(p)] for p in report.to_render]
    source = (f"; no plan yet: the path `{command}` would plan, not written"
              if report.planned_now else "")
    title = (f"sdmorph would render next ({len(report.to_render)} transitions, "
             f"{report.skipped} skipped by the artist{source})")
    tables = [(title, ["transition", "why"],
               _capped(rows) or [["nothing: every planned transition has frames",
                                               ""]])]
    if report.plan_problems:
        tables.append(("plan problems", ["problem"],
                       _capped([[p] for p in report.plan_problems])))
    return tables


def _why_render(p: PlannedStatus) -> str:
    if p.state == "missing" or p.folder is None:
        return "no folder"
    where = "" if p.folder.name == p.name else f" (folder '{p.folder.name}')"
    if p.state == "stale":
        return f"{p.reason}; re-rendered with --force{where}"
    if p.kind == "legacy":
        return f"legacy folder incomplete: {p.reason}; a new one with --force{where}"
    return f"resumes the unfinished render: {p.reason}{where}"


def render_adopt_tables(report: AdoptReport) -> list[Table]:
    """(title, columns, rows) for `sdmorph.cli.ui.table`: what was found, problems, what is next."""
    odd = [[i.name, i.state, str(i.frames_found), i.reason] for i in report.folders
           if i.kind == "legacy" and i.state != "complete"]
    tables = [_adopt_found(report)]
    if odd:
        tables.append(("legacy folders to look at", ["folder", "state", "frames", "why"],
                       _capped(odd)))
    tables += [_adopt_story_table(report), *_adopt_render_tables(report)]
    if report.without_manifest:
        tip = (f"{len(report.without_manifest)} complete legacy folders have no manifest: "
               f"sdmorph adopt {shlex.quote(report.song)} --write-manifests records their "
               "full seeds (frames untouched)")
        tables.append(("next", ["tip"], [[tip]]))
    return tables

