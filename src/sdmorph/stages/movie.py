"""`movie`: choose a story through the rendered transitions and encode it.

A story is a list of transitions in playing order. It is chosen from what is rendered
(`choose_story` over the complete folders, either direction), taken from the planned path,
or read from a story file as it is (old hand-edited ones included). Each row becomes a
`Segment` whose frames come from one complete transition folder, backwards when only
the other direction is rendered; `encode_story` writes the movies.

Story files of the old scripts are artists' work: a movie never replaces one (it refuses
before writing anything), and a hand-made `story/trans_sequence.csv` is kept aside as
`story/trans_sequence.before-sdmorph.csv` before sdmorph first replaces it.

The story folder `stories/<name>/` is locked while a movie is written, so two runs of one
story never interleave. Nothing outside the videos changes until every video is written and
checked: the story file and the removal of stale section videos and clips come after.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from sdmorph.core.errors import MovieError, Problem, SdmorphError
from sdmorph.core.ids import ImageId, Pair, transition_name
from sdmorph.core.paths import PlanError, choose_story
from sdmorph.core.progress import SILENT, Listener
from sdmorph.core.timeline import (
    CONTAINER,
    EncodeOptions,
    Segment,
    Timeline,
    section_comes_back,
)
from sdmorph.formats.clips import CLIPS_JSON, read_clips_json
from sdmorph.formats.fsio import clean_temp_files, locked, try_locked
from sdmorph.formats.legacy import frame_files
from sdmorph.formats.plan_tables import (
    LATEST_STORY_FILE,
    META_FOLDER,
    PLANNED_FILE,
    StoryRow,
    keep_latest_story,
    read_story,
    skipped_by_artist,
    story_file,
    story_rows,
    write_story,
    written_by_sdmorph,
)
from sdmorph.formats.song import Song, resolver
from sdmorph.media.beats import Beats, find_beats
from sdmorph.media.encode import EncodeReport, encode_story, story_timeline
from sdmorph.media.store import FolderInfo, TransitionStore, complete_pairs
from sdmorph.stages.plan import open_store

CODECS = {"mjpeg": ("mjpeg",), "h264": ("h264",), "both": ("mjpeg", "h264")}
DEFAULT_FPS = 10.0
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".m4a")
# `audio.*` may be any format ffmpeg reads; listing them keeps notes like audio.txt out.
_AUDIO_ANY = (*AUDIO_SUFFIXES, ".aac", ".ogg", ".opus", ".aif", ".aiff", ".wma")
LOCK_NAME = ".sdmorph-movie.lock"
_SECTION_VIDEO = re.compile(r"section_(\d+)(\.\w+)")
_MISSING_SHOWN = 4


@dataclass(frozen=True)
class MovieRequest:
    """What the `movie` command asks for (its options, one field each)."""

    name: str = "base"
    seed: int = 0
    from_plan: bool = False
    sequence: Path | None = None
    codec: str = "both"
    fps: float | None = None
    quality: int | None = None
    hold: float = 0.0
    smooth: float | None = None
    audio: Path | None = None
    no_audio: bool = False
    fit_audio: bool = False
    clips: bool = False
    profile: str = "default"
    scenes: str | None = None
    beats: bool = False  # keyframes on the audio's beats
    beats_per_transition: int | None = None


@dataclass(frozen=True)
class MovieStory:
    """A story ready to encode: its rows (folders filled in) and their segments."""

    rows: tuple[StoryRow, ...]
    segments: tuple[Segment, ...]
    source: str  # where the story came from, in words
    input_file: Path | None = None  # the story file it was read from
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class BeatSummary:
    """How `--beats` timed the movie: what was found in the audio, and how well it fits."""

    tempo: float  # beats per minute (median)
    slowest: float  # the slowest and fastest local tempo
    fastest: float
    beats: int  # beats found in the audio
    max_offset: float  # seconds between a keyframe and its beat, at most
    transitions: int  # transitions played
    story: int  # transitions in the story (more when it was cut at the end of the song)
    natural_beats: int  # beats the played transitions would get at their natural length
    used_beats: int  # beats they get (more when the story was stretched to the song)


@dataclass(frozen=True)
class MovieResult:
    """What `make_movie` wrote."""

    name: str
    folder: Path  # stories/<name>/
    rows: tuple[StoryRow, ...]  # the story as written to the story file
    story_file: Path
    report: EncodeReport
    fps: float  # frames per second of the written videos
    audio: Path | None
    source: str
    removed: tuple[Path, ...] = ()  # stale section videos and clips removed
    warnings: tuple[str, ...] = ()
    beats: BeatSummary | None = None  # with --beats

    @property
    def frames(self) -> int:
        """Frames of the combined movie, as written."""
        return next((v.info.frames for v in self.report.videos if v.kind == "combined"),
                    self.report.frames)

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


# ---------------------------------------------------------------- options


def codecs_of(codec: str) -> tuple[str, ...]:
    """`mjpeg`, `h264` or `both` -> the codecs to write."""
    try:
        return CODECS[codec.strip().lower()]
    except KeyError:
        raise MovieError(f"--codec {codec!r}: use mjpeg, h264 or both") from None


def movie_fps(song: Song, request: MovieRequest) -> float:
    """--fps, else the profile's `fps`, else 10 (the old scripts' rate)."""
    return request.fps or song.profile.fps or DEFAULT_FPS


def find_audio(song: Song, request: MovieRequest) -> Path | None:
    """--audio, else `<song>.wav|.mp3|.flac|.m4a`, else `audio.*` in the song's meta folder."""
    if request.no_audio:
        if request.audio is not None:
            raise MovieError("--audio and --no-audio exclude each other")
        return None
    if request.audio is not None:
        if not Path(request.audio).is_file():
            raise MovieError(f"{request.audio}: audio file not found")
        return Path(request.audio)
    for suffix in AUDIO_SUFFIXES:
        path = song.meta_dir / f"{song.name}{suffix}"
        if path.is_file():
            return path
    for suffix in _AUDIO_ANY:
        path = song.meta_dir / f"audio{suffix}"
        if path.is_file():
            return path
    return None


def _check_beats(song: Song, request: MovieRequest, audio: Path | None) -> None:
    """--beats needs audio, and times the movie to it: --fit-audio has nothing left to do."""
    if request.beats_per_transition is not None and not request.beats:
        raise MovieError("--beats-per-transition needs --beats")
    if not request.beats:
        return
    if request.fit_audio:
        raise MovieError("--beats and --fit-audio exclude each other: --beats already makes "
                         "the movie as long as the audio")
    if request.beats_per_transition is not None and request.beats_per_transition < 1:
        raise MovieError(f"--beats-per-transition {request.beats_per_transition}: give 1 or "
                         "more beats")
    if audio is None:
        why = "--no-audio was given" if request.no_audio else (
            f"no {song.name}.wav/.mp3/.flac/.m4a or audio.* in {song.meta_dir}; give --audio FILE"
        )
        raise MovieError(f"--beats needs the song's audio: {why}")


def encode_options(song: Song, request: MovieRequest) -> EncodeOptions:
    """The request as encoder options (audio looked up, codecs and rate resolved)."""
    audio = find_audio(song, request)
    if request.fit_audio and audio is None:
        why = "--no-audio was given" if request.no_audio else (
            f"no {song.name}.wav/.mp3/.flac/.m4a or audio.* in {song.meta_dir}; give --audio FILE"
        )
        raise MovieError(f"--fit-audio needs the song's audio: {why}")
    _check_beats(song, request, audio)
    return EncodeOptions(
        fps=movie_fps(song, request), codecs=codecs_of(request.codec), quality=request.quality,
        hold=request.hold, smooth=request.smooth, audio=audio, fit_audio=request.fit_audio,
        clips=request.clips,
    )


# ---------------------------------------------------------------- choosing the story


def plan_movie(song: Song, request: MovieRequest,
               store: TransitionStore | None = None) -> MovieStory:
    """The story to encode, every row tied to a complete transition folder."""
    if request.from_plan and request.sequence is not None:
        raise MovieError("--from-plan and --sequence exclude each other")
    store = store or open_store(song)
    infos = store.scan()
    if request.sequence is not None:
        path = Path(request.sequence)
        return _story_from_file(song, request, path, store, infos, f"story file {path}")
    if request.from_plan:
        path = song.media_dir / PLANNED_FILE
        if not path.is_file():
            raise MovieError(f"{path}: no planned path yet; write it with "
                             f"`{transitions_command(song, request)} --plan-only`")
        return _story_from_file(song, request, path, store, infos, f"planned path {path}")
    return _chosen_story(song, request, store, infos)


def _chosen_story(song: Song, request: MovieRequest, store: TransitionStore,
                  infos: Sequence[FolderInfo]) -> MovieStory:
    try:
        hops = choose_story(song.scenes, complete_pairs(infos), request.seed)
    except PlanError as exc:
        raise _unreachable(song, request, exc) from None
    rows = story_rows(hops, functools.partial(store.locate, rendered=True))
    segments = [_segment(song, row) for row in rows]
    return MovieStory(tuple(rows), tuple(segments),
                      f"chosen from the rendered transitions (seed {request.seed})")


def _story_from_file(song: Song, request: MovieRequest, path: Path, store: TransitionStore,
                     infos: Sequence[FolderInfo], source: str) -> MovieStory:
    rows = read_story(path, resolver(song))
    if not rows:
        raise MovieError(Problem("the story has no rows: nothing to encode", file=path))
    _check_sections(rows, path)
    by_name = {info.name: info for info in infos}
    command = transitions_command(song, request)
    located = []
    for row in rows:
        folder, backwards = _locate_row(row, path, store, by_name, command)
        located.append(row.model_copy(update={"input_image_folder": str(folder),
                                              "reversed": backwards}))
    segments = [_segment(song, row) for row in located]
    return MovieStory(tuple(located), tuple(segments), source, path, _cuts(located, path))


def _check_sections(rows: Sequence[StoryRow], path: Path) -> None:
    back = section_comes_back([row.section for row in rows])
    if back is not None:
        row = rows[back]
        raise MovieError(Problem(
            f"section {row.section} comes back after section {rows[back - 1].section}: each "
            "section's rows must follow each other", file=path, row=row.row, column="section"))


def _cuts(rows: Sequence[StoryRow], path: Path) -> tuple[str, ...]:
    """Rows that do not start where the previous one ended: the movie jumps there."""
    return tuple(
        str(Problem(f"starts at {row.c1.label}, but the row before ends at {before.c2.label}: "
                    "the movie cuts there", file=path, row=row.row))
        for before, row in zip(rows, rows[1:], strict=False) if row.c1 != before.c2
    )


def _locate_row(row: StoryRow, path: Path, store: TransitionStore,
                by_name: dict[str, FolderInfo], command: str) -> tuple[Path, bool]:
    """The folder a story row plays: the one it names if complete, else any serving c1-c2."""
    named = by_name.get(row.folder_name) if row.input_image_folder.strip() else None
    if named is not None and named.state == "complete" and named.a is not None:
        return _named_folder(row, named, path)
    found = store.find(row.c1, row.c2)
    if found is not None:
        return found.folder, found.reversed
    why = ""
    if named is not None:
        why = f"; folder '{named.name}' is {named.state}" + (
            f" ({named.reason})" if named.reason else "")
    raise MovieError(Problem(
        f"no complete transition folder for '{transition_name(row.c1, row.c2)}' in either "
        f"direction{why}: remove the row, or list the pair (compute = y) in transition_meta "
        f"and run `{command} --render-only`", file=path, row=row.row))


def _named_folder(row: StoryRow, info: FolderInfo, path: Path) -> tuple[Path, bool]:
    assert info.a is not None and info.b is not None
    if {info.a, info.b} != {row.c1, row.c2}:
        raise MovieError(Problem(
            f"folder '{info.name}' holds '{transition_name(info.a, info.b)}', not a transition "
            f"between {row.c1.label} and {row.c2.label}: correct c1/c2 or input_image_folder",
            file=path, row=row.row, column="input_image_folder"))
    plays = (info.b, info.a) if row.reversed else (info.a, info.b)
    if plays != (row.c1, row.c2):
        raise MovieError(Problem(
            f"folder '{info.name}' played {'backwards' if row.reversed else 'forwards'} goes "
            f"from {plays[0].label} to {plays[1].label}, but the row goes from {row.c1.label} "
            f"to {row.c2.label}: set reversed to {not row.reversed}",
            file=path, row=row.row, column="reversed"))
    return info.path, row.reversed


def _segment(song: Song, row: StoryRow) -> Segment:
    """The row's frames in playing order (backwards when reversed), with its scenes."""
    frames = frame_files(Path(row.input_image_folder))
    if row.reversed:
        frames.reverse()
    scene_from, scene_to = _scenes_of(song, row)
    return Segment(name=f"{row.c1.label} to {row.c2.label}", frames=tuple(frames),
                   section=row.section, start=row.c1.label, end=row.c2.label,
                   scene_from=scene_from, scene_to=scene_to)


def _scenes_of(song: Song, row: StoryRow) -> tuple[str, str]:
    """The row's scenes as it names them; else the song's scenes holding c1 and c2.

    Old story files name only `scene_from`; c2 stays in that scene when it belongs to it.
    """
    def holding(image: ImageId, prefer: str) -> str:
        names = [scene.name for scene in song.scenes if image in scene.images]
        return prefer if prefer in names or not names else names[0]

    scene_from = row.scene_from or holding(row.c1, "")
    return scene_from, row.scene_to or holding(row.c2, scene_from)


# ---------------------------------------------------------------- no story: what to render


def transitions_command(song: Song, request: MovieRequest) -> str:
    """`sdmorph transitions <song>` with the request's profile and scene sequence."""
    parts = ["sdmorph", "transitions", song.name]
    if request.profile != "default":
        parts += ["--profile", request.profile]
    if request.scenes:
        parts += ["--scenes", request.scenes]
    return shlex.join(parts)


def _unreachable(song: Song, request: MovieRequest, exc: PlanError) -> MovieError:
    """The planner's reasons, plus the command that renders what the story lacks."""
    if not exc.missing:  # rendering cannot help: the scene sequence itself is the problem
        return MovieError(*exc.problems, f"fix {song.scenes_file}")
    missing = [frozenset(pair) for pair in exc.missing]
    names = ", ".join(f"'{transition_name(a, b)}'" for a, b in exc.missing[:_MISSING_SHOWN])
    more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
    command = transitions_command(song, request)
    said = any("missing" in str(problem) for problem in exc.problems)
    lines = [] if said else [f"scene '{exc.scene}' cannot be reached with the rendered "
                             f"transitions; missing (either direction): {names}{more}"]
    skipped = _skipped_by_artist(song) & set(missing)
    if skipped:
        shown = ", ".join(f"'{transition_name(*sorted(p))}'" for p in list(skipped)[:2])
        lines.append(f"{shown} set to compute = n in transition_meta: set them to y and run "
                     f"`{command} --render-only`, or plan and render another path: "
                     f"`{command} --seed 1` (or several: `{command} --paths 3`)")
    else:
        lines.append(f"render a full path: `{command}` (resumes, keeps what is rendered); "
                     f"`{command} --paths 3` renders several paths, so stories have more "
                     "to choose from")
    return MovieError(*exc.problems, *lines)


def _skipped_by_artist(song: Song) -> set[Pair]:
    """Every transition the artist set to n, in the plan or only remembered by the tables."""
    try:
        return skipped_by_artist(song.media_dir / META_FOLDER, resolver(song))
    except SdmorphError:  # tables that no longer read: nothing known to be skipped
        return set()


# ---------------------------------------------------------------- frame ranges


def _out_ranges(ranges: list[tuple[int, int]], plan: Timeline) -> list[tuple[int, int]]:
    """Ranges in the written movie's frames (more of them when smoothing)."""
    if plan.out_fps == plan.fps:
        return ranges
    total = plan.out_frames(plan.frames)
    ratio = plan.out_fps / plan.fps
    return [(min(round(a * ratio), total - 1), min(round((b + 1) * ratio) - 1, total - 1))
            for a, b in ranges]


def _with_ranges(rows: Sequence[StoryRow], plan: Timeline) -> list[StoryRow]:
    """Each row's (first, last) frame in the combined movie, its keyframes' holds included."""
    ranges = _out_ranges(list(plan.ranges), plan)
    return [row.model_copy(update={"first_frame": a, "last_frame": b})
            for row, (a, b) in zip(rows, ranges, strict=True)]


# ---------------------------------------------------------------- making the movie


def check_request(song: Song, request: MovieRequest) -> EncodeOptions:
    """Everything about a movie request that can fail before a frame is chosen or encoded
    (`run` asks before its hours of rendering): the options, and the story name's folder."""
    opts = encode_options(song, request)
    _refuse_old_story(story_file(song.media_dir, request.name), request.sequence)
    return opts


def make_movie(song: Song, request: MovieRequest, listener: Listener = SILENT) -> MovieResult:
    """Choose the story, encode it under stories/<name>/, then write its story file."""
    opts = check_request(song, request)
    target = story_file(song.media_dir, request.name)
    story = plan_movie(song, request)
    for warning in story.warnings:
        listener.warn(warning)
    told = len(story.segments)
    found = None
    if request.beats and opts.audio is not None:  # before anything is written
        found = find_beats(opts.audio)
        opts = replace(opts, beats=found.times, beats_per_transition=request.beats_per_transition)
    plan = story_timeline(story.segments, opts)
    story = _played_part(story, plan)
    rows = _with_ranges(story.rows, plan)
    folder = target.parent
    with _story_lock(folder, listener):
        for sub in (folder, folder / "sections", folder / "clips"):
            clean_temp_files(sub)
        with listener.bars((f"movie {request.name}", plan.frames)) as (advance,):
            report = encode_story(story.segments, folder, request.name, opts,
                                  progress=_advancer(advance))
        written = _save_story(song, request.name, rows, story.input_file, listener)
        removed = _remove_stale(folder, plan, opts, report)
    warnings = [*story.warnings, *_clips_warning(folder, story, request)]
    for warning in warnings[len(story.warnings):]:
        listener.warn(warning)
    return MovieResult(request.name, folder, tuple(rows), written, report, report.out_fps,
                       opts.audio, story.source, tuple(removed), tuple(warnings),
                       _beat_summary(found, plan, told))


def _played_part(story: MovieStory, plan: Timeline) -> MovieStory:
    """The story as the movie plays it: cut where the song ends when keyframes are on beats."""
    if plan.played == len(story.segments):
        return story
    return replace(story, rows=story.rows[:plan.played], segments=story.segments[:plan.played])


def _beat_summary(found: Beats | None, plan: Timeline, told: int) -> BeatSummary | None:
    beat_plan = plan.beat_plan
    if found is None or beat_plan is None:
        return None
    return BeatSummary(found.tempo, found.slowest, found.fastest, len(found.times),
                       beat_plan.max_offset, beat_plan.played, told, beat_plan.natural_beats,
                       sum(beat_plan.spans))


@contextmanager
def _story_lock(folder: Path, listener: Listener) -> Iterator[None]:
    """Hold the story folder's lock, waiting (and saying so) while another run has it."""
    lock = folder / LOCK_NAME
    with try_locked(lock) as got:
        if got:
            yield
            return
    listener.note(f"waiting for another movie run writing {folder} ...")
    with locked(lock):
        yield


def _advancer(advance: Callable[[int], None]) -> Callable[[int], None]:
    """encode_story reports frames written so far; the bar wants increments."""
    done = [0]

    def progress(written: int) -> None:
        advance(written - done[0])
        done[0] = written

    return progress


def _refuse_old_story(target: Path, source: Path | None) -> None:
    """A story folder sdmorph did not make is an artist's work (the default name `base` is
    the old scripts' too): never write into it, neither its story file nor its movies.

    sdmorph's own folders hold its movie lock, taken before the first frame is encoded (so
    a run killed before its story file was written still resumes), or its story file.
    """
    folder = target.parent
    if not folder.is_dir() or (folder / LOCK_NAME).exists() or \
            (target.is_file() and written_by_sdmorph(target)):
        return
    if not any(p.is_file() for p in folder.rglob("*")):
        return  # an empty folder holds nothing to lose
    play = ""
    if target.is_file() and target.stat().st_size and (source is None
                                                         or not _same_file(source, target)):
        play = f", or play its story with `--sequence {shlex.quote(str(target))} -o NAME`"
    raise MovieError(Problem(
        "a story folder from the old scripts (or made by hand); sdmorph will not replace its "
        f"story file or movies: name this movie with `-o NAME`{play}", file=folder))


def _save_story(song: Song, name: str, rows: Sequence[StoryRow], source: Path | None,
                listener: Listener) -> Path:
    """Write the story file and its copy story/trans_sequence.csv, sparing the artist's files.

    The story file is written unless it is an old-scripts story (then it is the one being
    played: others were refused before encoding); sdmorph's own is rewritten, since its
    frame ranges must describe the movie beside it. The copy is left as it is when it is the
    story being played; a copy sdmorph did not write is kept aside before it is first replaced.
    """
    target = story_file(song.media_dir, name)
    latest = song.media_dir / LATEST_STORY_FILE
    replace_story = not target.exists() or written_by_sdmorph(target)
    replace_latest = source is None or not _same_file(source, latest)
    if replace_latest:
        backup = keep_latest_story(song.media_dir)
        if backup is not None:
            listener.note(f"{latest} was not written by sdmorph: kept it as {backup.name}")
    return write_story(song.media_dir, name, rows, story=replace_story, latest=replace_latest)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _remove_stale(folder: Path, plan: Timeline, opts: EncodeOptions,
                  report: EncodeReport) -> list[Path]:
    """Section videos of sections the story no longer has; clips clips.json no longer lists."""
    suffixes = {CONTAINER[c] for c in opts.codecs}
    sections = {str(s.section) for s in plan.sections}
    removed = []
    for path in _files(folder / "sections"):
        match = _SECTION_VIDEO.fullmatch(path.name)
        if match and match[2] in suffixes and match[1] not in sections:
            removed.append(path)
    if report.clips_json is not None:
        index = read_clips_json(report.clips_json)
        kept = {folder / f for clip in index.clips for f in clip.files.values()}
        every = set(CONTAINER.values())
        removed += [p for p in _files(folder / "clips") if p.suffix in every and p not in kept]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _clips_warning(folder: Path, story: MovieStory, request: MovieRequest) -> list[str]:
    """Clips left from another story would mislead VJ software: say so."""
    path = folder / CLIPS_JSON
    if request.clips or not path.is_file():
        return []
    try:
        names = [clip.name for clip in read_clips_json(path).clips]
    except MovieError:
        names = []
    if names == list(dict.fromkeys(s.name for s in story.segments)):
        return []
    return [f"{folder / 'clips'} and {CLIPS_JSON} are from another story; --clips writes them "
            "again"]


# ---------------------------------------------------------------- summary
