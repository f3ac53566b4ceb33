"""`adopt`: what a song made with the old scripts holds, and what sdmorph would render next.

Read-only but for `write_manifests`, which records complete legacy folders so that later
scans need not read their frames again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import Pair, pair_key
from sdmorph.core.paths import plan_paths
from sdmorph.formats.plan_tables import LATEST_STORY_FILE, PLANNED_FILE, STORIES_FOLDER, read_story
from sdmorph.formats.song import Song, resolver
from sdmorph.media.store import FolderInfo, by_pair, complete_pairs
from sdmorph.stages.plan import open_store
from sdmorph.stages.status import (
    KeyframeStatus,
    PlannedStatus,
    PlanRow,
    command_options,
    planned_status,
    survey,
)


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
    found = survey(song, model)
    planned, problems, now = found.planned, found.plan_problems, False
    if not found.plan_files:  # what `sdmorph transitions` would plan, without writing it
        rows, problems = _would_plan(song)
        pairs = by_pair(found.folders)
        planned, now = [planned_status(row, pairs) for row in rows], not problems
    return AdoptReport(
        song=song.name, media_dir=song.media_dir, frames=song.profile.interpolation_steps,
        keyframes=found.keyframes, folders=found.folders,
        story_files=[check_story_file(song, p, found.folders) for p in story_file_paths(song)],
        plan_files=found.plan_files, plan_problems=problems,
        to_render=[p for p in planned if p.state not in ("rendered", "legacy", "skipped")],
        skipped=sum(1 for p in planned if p.state == "skipped"),
        without_manifest=_without_manifest(found.folders),
        command_options=command_options(song, profile, scenes),
        planned_now=now,
    )


def _would_plan(song: Song) -> tuple[list[PlanRow], list[str]]:
    """The transitions `sdmorph transitions` (seed 0, one path) would plan, in memory."""
    try:
        (path,) = plan_paths(song.scenes, 0, 1)
    except SdmorphError as err:
        return [], [str(p) for p in err.problems]
    rows: dict[Pair, PlanRow] = {}
    for hop in path:
        rows.setdefault(pair_key(hop.a, hop.b), PlanRow(hop.a, hop.b, True, "plan"))
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
