"""What the CLI prints: tables and summaries made from the stages' reports."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sdmorph.cli import ui
from sdmorph.formats.plan_tables import INTER_FILE, INTRA_FILE, META_FOLDER
from sdmorph.media.store import FolderInfo
from sdmorph.stages.adopt import AdoptReport
from sdmorph.stages.inspect import InspectReport, spark
from sdmorph.stages.movie import MovieResult
from sdmorph.stages.status import (
    FOLDER_STATES,
    KEYFRAME_LABELS,
    MAX_ROWS,
    PLANNED_LABELS,
    KeyframeStatus,
    MovieFile,
    PlannedStatus,
    SongStatus,
    StoryStatus,
    command,
)

if TYPE_CHECKING:  # the transitions stage imports torch; status must not
    from sdmorph.stages.transitions import RenderReport

Table = tuple[str, list[str], list[list[str]]]


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


def status_tables(status: SongStatus) -> list[Table]:
    """(title, columns, rows) for `sdmorph.cli.ui.table`: counts first, then the problems."""
    return [
        *_keyframe_tables(status.keyframes),
        *_planned_tables(status),
        *_folder_tables(status.folders),
        *_smoothness_table(status),
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
    transitions = command("transitions", report.song, report.command_options)
    if not report.has_plan:
        note = (f"no plan: {META_FOLDER}/{INTRA_FILE} and {INTER_FILE} are missing; "
                f"{transitions} plans and renders")
        tables: list[Table] = [("sdmorph would render next", ["transition", "why"],
                                [[note, ""]])]
        if report.plan_problems:
            tables.append(("plan problems", ["problem"],
                           _capped([[p] for p in report.plan_problems])))
        return tables
    rows = [[p.name, _why_render(p)] for p in report.to_render]
    source = (f"; no plan yet: the path `{transitions}` would plan, not written"
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


def adopt_tables(report: AdoptReport) -> list[Table]:
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


def movie_summary(result: MovieResult) -> None:
    """Sections, transitions, frames, duration, sizes and paths of what was written."""
    report = result.report
    sections = sorted({row.section for row in result.rows})
    rate = f"{result.fps:g}"
    if report.out_fps != report.fps:
        rate += f" (smoothed from {report.fps:g})"
    hold = f", {report.hold_frames} hold frames per keyframe" if report.hold_frames else ""
    ui.table(f"movie {result.name}", ["", ""], [
        ("story", result.source),
        ("sections", ", ".join(map(str, sections))),
        ("transitions", len(result.rows)),
        ("frames", f"{result.frames}{hold}"),
        ("fps", rate),
        ("duration", f"{result.seconds:.2f} s"),
        ("audio", result.audio.name if result.audio else "none"),
    ])
    ui.table("videos", ["file", "frames", "duration", "size"], [
        (_relative(v.path, result.folder), v.info.frames, f"{v.info.duration:.2f} s",
         _size(v.size_bytes))
        for v in report.videos if v.kind != "clip"
    ])
    ui.info(f"folder: {result.folder}")
    ui.info(f"story file: {result.story_file}")
    if result.audio:
        ui.info(f"audio: {result.audio}")
    clips = [v for v in report.videos if v.kind == "clip"]
    if clips:
        total = sum(v.size_bytes for v in clips)
        ui.info(f"{len(clips)} clips ({_size(total)}) in {result.folder / 'clips'}, "
                f"index {report.clips_json}")
    for path in result.removed:
        ui.info(f"removed stale {_relative(path, result.folder)}")
    for warning in report.warnings:
        ui.warn(warning)
    _beat_summary(result)


def _beat_summary(result: MovieResult) -> None:
    """With --beats: the tempo, the beats, how near the keyframes are to them, and how the
    story was fitted to the song."""
    beats = result.beats
    if beats is None:
        return
    tempo = f"{beats.tempo:.1f} BPM"
    if beats.fastest > beats.slowest * 1.04:  # a tempo change, not jitter
        tempo += f" (from {beats.slowest:.0f} to {beats.fastest:.0f})"
    ui.table("beats", ["", ""], [
        ("tempo", tempo),
        ("beats found", beats.beats),
        ("keyframes on beats", beats.transitions),
        ("furthest from its beat", f"{beats.max_offset * 1000:.0f} ms"),
        ("beats played", beats.used_beats),
    ])
    if beats.used_beats > beats.natural_beats:
        ui.info(f"the story is shorter than the song: its transitions stretch from "
                f"{beats.natural_beats} to {beats.used_beats} beats to end on the last beat")
    if beats.transitions < beats.story:
        ui.info(f"the story is longer than the song: it is cut where the song ends, "
                f"{beats.transitions} of {beats.story} transitions play")


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------ transitions

_SUMMARY_ROWS = {"rendered": "rendered", "done": "done", "legacy": "legacy",
                 "skipped": "skipped (compute = n)", "stale": "stale",
                 "incomplete-legacy": "incomplete-legacy", "busy": "busy", "failed": "failed"}
_HINTS = {"stale": "; --force re-renders it",
          "incomplete-legacy": "; --force renders a new sdmorph folder",
          "busy": "; another sdmorph process is rendering it", "failed": ""}


def transitions_summary(report: RenderReport) -> None:
    rows = [(label, report.count(status)) for status, label in _SUMMARY_ROWS.items()]
    fps = report.frames / report.seconds if report.seconds else 0.0
    rows = [r for r in rows if r[1]] or [("none", 0)]
    speed = [("frames/s", f"{fps:.1f}")]
    if report.model_frames and report.frames:  # steps x 2 with CFG, fewer with sharing
        speed.append(("UNet passes/frame", f"{report.passes_per_frame:.1f}"))
        speed.append(("VAE decodes/frame", f"{report.decodes_per_frame:.2f}"))
    ui.table("transitions", ["status", "count"], [*rows, *speed])
    # The first failure is the command's error line: not said twice.
    first_failure = next(iter(report.having("failed")), None)
    for outcome in report.having(*_HINTS):
        if outcome is first_failure:
            continue
        where = f"{outcome.folder}: " if outcome.folder else ""
        ui.warn(f"{outcome.status}: {where}{outcome.reason}{_HINTS[outcome.status]}")
    ui.info(f"{report.frames} frames rendered in {report.seconds:.1f}s ({fps:.1f} frames/s)")


def present(report: object) -> None:
    """Print a report a stage handed over while it runs."""
    from sdmorph.stages.transitions import RenderReport

    if isinstance(report, RenderReport):
        transitions_summary(report)
    elif isinstance(report, MovieResult):
        movie_summary(report)
    else:
        raise TypeError(f"no presenter for {type(report).__name__}")


# ------------------------------------------------------------------ smoothness

INSPECT_ROWS = 20


def _smoothness_table(status: SongStatus) -> list[Table]:
    """How many transitions jump, from the scores `inspect` cached; where to look. Nothing
    before `inspect` scored any (status itself never decodes frames)."""
    jumps = status.jumps
    if jumps is None or not jumps.scored:
        return []
    look = command("inspect", status.song, "")
    rows = [[f"jump ratio J above {jumps.threshold:g}", f"{jumps.jumpy} of {jumps.scored} "
             "scored"]]
    if jumps.unscored:
        rows.append(["not scored yet", str(jumps.unscored)])
    rows.append([f"{look} ranks them, jumpiest first", ""])
    return [("smoothness", ["transitions", "count"], rows)]


def inspect_tables(report: InspectReport, limit: int = INSPECT_ROWS) -> list[Table]:
    """The transitions by jump ratio, jumpiest first: where the jump is, the steps drawn."""
    rows = [[t.name, t.kind, f"{t.smooth.jump:.2f}", f"{t.smooth.gini:.2f}",
             f"{t.jump_at[0]:.3f}-{t.jump_at[1]:.3f}", spark(t)]
            for t in report.ranked]
    title = (f"{report.song}: {len(report.ranked)} transitions by jump ratio J = max d / "
             f"median d ({len(report.jumpy)} above {report.threshold:g})")
    tables: list[Table] = [(title, ["transition", "kind", "J", "Gini", "jump at t",
                                    "steps d along t"],
                            _capped(rows, limit) or [["no complete transition yet", "", "",
                                                      "", "", ""]])]
    if report.unscored:
        tables.append(("not scored", ["folder", "why"],
                       _capped([[f.name, why] for f, why in report.unscored], limit)))
    return tables
