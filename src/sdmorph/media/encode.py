"""Encode a story's frames into movies: one per section, one combined, and optional clips.

Frames are streamed: each PNG is decoded once and its RGB bytes are piped to every ffmpeg
that needs it (the combined and the current section video for each codec, and the
segment's clip), so memory stays flat however long the story is. Every output goes to a
temporary file beside its target; all of them are renamed together only after every ffmpeg
exited cleanly and every file was checked, so a failure leaves the previous movies as
they were.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from sdmorph.core.beats import FrameMap
from sdmorph.core.errors import MovieError
from sdmorph.core.timeline import (
    CONTAINER,
    EncodeOptions,
    SectionTimeline,
    Segment,
    Timeline,
    build_timeline,
)
from sdmorph.formats.clips import CLIPS_JSON, ClipIndex, build_clip_index
from sdmorph.formats.fsio import atomic_path, safe_name
from sdmorph.media.ffmpeg import (
    Codec,
    Ffmpeg,
    VideoInfo,
    audio_filter,
    codec,
    probe,
    rate_arg,
    song_duration,
)

log = logging.getLogger(__name__)

# minterpolate drops the last input frames (it needs look-ahead): feed it clones of the
# last frame and cut the output to the length the story should have.
_SMOOTH_TAIL = 3
_SMOOTH_MIN_SIDE = 32

@dataclass(frozen=True)
class VideoFile:
    """One movie written by `encode_story`."""

    path: Path
    kind: str  # "combined", "section" or "clip"
    codec: str  # the codec asked for: "mjpeg" or "h264"
    section: int | None
    info: VideoInfo
    size_bytes: int


@dataclass(frozen=True)
class EncodeReport:
    """Everything `encode_story` wrote."""

    videos: tuple[VideoFile, ...]
    frames: int  # frames of the combined video, as fed (holds included, before smoothing)
    fps: float  # rate the frames were fed at (fitted to the audio with fit_audio)
    out_fps: float  # rate of the written videos (the smooth target when smoothing)
    hold_frames: int  # extra copies of each keyframe
    clips_json: Path | None = None
    warnings: tuple[str, ...] = ()





@dataclass(frozen=True)
class _Output:
    target: Path
    kind: str
    codec: Codec
    frames: int  # frames fed
    section: int | None = None
    audio: tuple[float, float] | None = None  # (offset, duration) of the song it carries




@dataclass
class _Job:
    """The outputs of one story being encoded: temp files, running ffmpegs, frame size."""

    stack: contextlib.ExitStack
    plan: Timeline
    opts: EncodeOptions
    size: tuple[int, int]
    outputs: list[tuple[_Output, Path]] = field(default_factory=list)
    procs: list[Ffmpeg] = field(default_factory=list)

    def open(self, outputs: Sequence[_Output]) -> list[Ffmpeg]:
        started = []
        for out in outputs:
            # Unlocked: a story may have hundreds of clips open at once, and the movie
            # holds its story folder's lock anyway.
            tmp = self.stack.enter_context(atomic_path(out.target, lock=False))
            proc = Ffmpeg(self._command(out, tmp), out.target)
            self.outputs.append((out, tmp))
            self.procs.append(proc)
            started.append(proc)
        return started

    def _command(self, out: _Output, tmp: Path) -> list[str]:
        width, height = self.size
        args = ["-nostats", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                "-s", f"{width}x{height}", "-framerate", rate_arg(self.plan.fps), "-i", "-"]
        if out.audio:
            args += ["-i", str(self.opts.audio)]
        args += ["-map", "0:v:0", *self._video_filter(out)]
        args += out.codec.args
        if out.audio:
            args += ["-map", "1:a:0", "-af", audio_filter(*out.audio), "-c:a", "aac",
                     "-b:a", "192k"]
        return [*args, str(tmp)]

    def _video_filter(self, out: _Output) -> list[str]:
        filters = []
        if self.opts.smooth:
            filters += [f"tpad=stop_mode=clone:stop={_SMOOTH_TAIL}",
                        f"minterpolate=fps={rate_arg(self.plan.out_fps)}:mi_mode=mci"]
        if out.codec.even and (self.size[0] % 2 or self.size[1] % 2):
            filters.append("pad=ceil(iw/2)*2:ceil(ih/2)*2")
        args = ["-vf", ",".join(filters)] if filters else []
        if self.opts.smooth:
            args += ["-frames:v", str(self.plan.out_frames(out.frames))]
        return args

    def read(self, path: Path) -> bytes:
        return _read_frame(path, self.size)

    def reap(self) -> None:
        """Collect ffmpegs that are done, so a story of many clips never runs out of files."""
        for proc in self.procs:
            if proc.closed and not proc.finished and proc.exited():
                proc.wait()

    def finish(self) -> list[tuple[_Output, Path, VideoInfo]]:
        for proc in self.procs:
            proc.wait()
        return [(out, tmp, _verify(out, tmp, self.plan)) for out, tmp in self.outputs]

    def abort(self) -> None:
        for proc in self.procs:
            proc.kill()


def _frame_size(path: Path, opts: EncodeOptions) -> tuple[int, int]:
    """The story's frame size, read from its first frame's header."""
    try:
        with Image.open(path) as image:
            size = image.size
    except FileNotFoundError:
        raise MovieError(f"{path}: frame is missing") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MovieError(f"{path}: frame is not a readable PNG ({exc})") from None
    if opts.smooth and min(size) < _SMOOTH_MIN_SIDE:
        raise MovieError(f"{path}: frames of {size[0]}x{size[1]} are too small to smooth "
                         f"(ffmpeg's minterpolate needs {_SMOOTH_MIN_SIDE}x{_SMOOTH_MIN_SIDE})")
    return size


def _read_frame(path: Path, size: tuple[int, int]) -> bytes:
    """Decode one frame to RGB bytes; a broken or odd-sized frame stops the movie."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except FileNotFoundError:
        raise MovieError(f"{path}: frame is missing") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MovieError(
            f"{path}: frame does not decode ({exc}); it may be half-downloaded, render it again"
        ) from None
    if rgb.size != size:
        raise MovieError(
            f"{path}: frame is {rgb.size[0]}x{rgb.size[1]}, but the story's frames are "
            f"{size[0]}x{size[1]}"
        )
    return rgb.tobytes()


def _verify(out: _Output, tmp: Path, plan: Timeline) -> VideoInfo:
    """The written file holds the frames, duration and streams it should."""
    try:
        info = probe(tmp)
    except MovieError as exc:
        raise MovieError(f"{out.target}: the written video cannot be read back "
                         f"({exc.problems[0].message})") from None
    frames = plan.out_frames(out.frames)
    seconds = plan.out_seconds(out.frames)
    slack = float(1 / plan.out_fps) + 1e-3
    problems = []
    if info.frames != frames:
        problems.append(f"{info.frames} frames instead of {frames}")
    if abs(info.duration - seconds) > slack:
        problems.append(f"lasts {info.duration:.3f} s instead of {seconds:.3f} s")
    if info.codec != out.codec.stream:
        problems.append(f"codec {info.codec} instead of {out.codec.stream}")
    if out.audio and not info.has_audio:
        problems.append("no audio stream")
    if out.audio and info.audio_duration is not None and \
            abs(info.audio_duration - seconds) > slack:
        problems.append(f"audio lasts {info.audio_duration:.3f} s instead of {seconds:.3f} s")
    if not out.audio and info.has_audio:
        problems.append("an unexpected audio stream")
    if problems:
        raise MovieError(f"{out.target}: the encoded video is wrong: {'; '.join(problems)}")
    return info


def _section_outputs(out_dir: Path, sec: SectionTimeline, job: _Job,
                     codecs: list[Codec]) -> list[_Output]:
    audio = None
    if job.opts.audio is not None:  # the song from where the section starts in the combined one
        audio = (job.plan.seconds(sec.start), job.plan.out_seconds(sec.frames))
    return [_Output(out_dir / "sections" / f"section_{sec.section}{CONTAINER[c.name]}",
                    "section", c, sec.frames, sec.section, audio) for c in codecs]


def _combined_outputs(out_dir: Path, name: str, job: _Job, codecs: list[Codec]) -> list[_Output]:
    audio = None
    if job.opts.audio is not None:
        audio = (0.0, job.plan.out_seconds(job.plan.frames))
    return [_Output(out_dir / f"{safe_name(name)}_combined{CONTAINER[c.name]}", "combined", c,
                    job.plan.frames, None, audio) for c in codecs]


class _Feeder:
    """Streams the story's frames to the open videos, each frame decoded once."""

    def __init__(self, job: _Job, progress: Callable[[int], None] | None) -> None:
        self.job = job
        self.progress = progress
        self.written = 0  # frames written to the combined video

    def segment(self, seg: Segment, fmap: FrameMap, shared: int, first_in_section: bool,
                sinks: tuple[list[Ffmpeg], list[Ffmpeg], list[Ffmpeg]]) -> None:
        """Feed one transition; `sinks` are (combined, section, clip) videos.

        `fmap` says which frame each played frame shows (holds and beat retiming included).
        Its first `shared` played frames were already played by the segment before: only
        clips, and a section video opening on them, repeat them. Played frames never go
        backwards, so each frame is decoded once and written as many times as it is played.
        """
        combined, section, clips = sinks
        played = fmap.played()
        to_combined = Counter(played[shared:])
        to_section = Counter(played if first_in_section else played[shared:])
        to_clip = Counter(fmap.clip()) if clips else Counter()
        for k, path in enumerate(seg.frames):
            counts = (to_combined[k], to_section[k], to_clip[k])
            if not any(counts):
                continue
            data = self.job.read(path)
            for procs, copies in zip((combined, section, clips), counts, strict=True):
                if copies:
                    for proc in procs:
                        proc.write(data, copies)
            if counts[0]:
                self.written += counts[0]
                if self.progress is not None:
                    self.progress(self.written)


def encode_story(segments: Sequence[Segment], out_dir: Path, name: str,
                 opts: EncodeOptions | None = None,
                 progress: Callable[[int], None] | None = None) -> EncodeReport:
    """Write the story's section videos, combined video and (optionally) clips under out_dir.

    `progress` is called with the number of combined-video frames written so far
    (`story_timeline(...).frames` in all).
    """
    opts = opts or EncodeOptions()
    plan = story_timeline(segments, opts)
    segments = segments[:plan.played]  # with beats, a story longer than the song is cut
    codecs = [codec(c, opts.quality) for c in opts.codecs]
    warnings = tuple(dict.fromkeys(c.warning for c in codecs if c.warning))
    for warning in warnings:
        log.warning(warning)
    out_dir = Path(out_dir)
    index = None
    if opts.clips:
        index = build_clip_index(segments, name, float(plan.out_fps), _clip_frames(plan, segments),
                                 opts.codecs)
    try:
        with contextlib.ExitStack() as stack:
            job = _Job(stack, plan, opts, _frame_size(segments[0].frames[0], opts))
            try:
                _feed(job, segments, out_dir, name, codecs, index, progress)
                results = job.finish()
            except BaseException:
                job.abort()
                raise
            if index is not None:
                tmp = stack.enter_context(atomic_path(out_dir / CLIPS_JSON))
                tmp.write_text(index.dump(), encoding="utf-8")
    except OSError as exc:  # creating, syncing or renaming an output file
        raise MovieError(f"{out_dir}: cannot write the movies ({exc})") from exc
    videos = tuple(
        VideoFile(out.target, out.kind, out.codec.name, out.section, info,
                  out.target.stat().st_size)
        for out, _tmp, info in results
    )
    return EncodeReport(videos, plan.frames, float(plan.fps), float(plan.out_fps),
                        plan.hold_frames, out_dir / CLIPS_JSON if index else None, warnings)


def _feed(job: _Job, segments: Sequence[Segment], out_dir: Path, name: str,
          codecs: list[Codec], index: ClipIndex | None,
          progress: Callable[[int], None] | None) -> None:
    feeder = _Feeder(job, progress)
    combined = job.open(_combined_outputs(out_dir, name, job, codecs))
    clip_files = {entry.index: entry for entry in index.clips} if index else {}
    for sec in job.plan.sections:
        section = job.open(_section_outputs(out_dir, sec, job, codecs))
        for j, i in enumerate(sec.segments):
            clips = []
            fmap = job.plan.maps[i]
            if i in clip_files:
                entry = clip_files[i]
                clips = job.open([_Output(out_dir / entry.files[c.name], "clip", c,
                                          len(fmap.clip()), entry.section)
                                  for c in codecs])
            feeder.segment(segments[i], fmap, job.plan.shared(i), j == 0,
                           (combined, section, clips))
            for proc in clips:
                proc.close()
            job.reap()
        for proc in section:
            proc.close()
    for proc in combined:
        proc.close()



def _clip_frames(plan: Timeline, segments: Sequence[Segment]) -> Callable[[Segment], int]:
    """Frames of a transition's clip: as played where it first comes in the story (the
    same transition may be retimed differently elsewhere when keyframes land on beats)."""
    first: dict[str, int] = {}
    for i, seg in enumerate(segments):
        first.setdefault(seg.name, i)
    return lambda seg: plan.out_frames(len(plan.maps[first[seg.name]].clip()))


def story_timeline(segments: Sequence[Segment], opts: EncodeOptions) -> Timeline:
    """The story's timeline, with the length of its audio read from the file."""
    audio = song_duration(opts.audio) if opts.audio is not None else None
    return build_timeline(segments, opts, audio)
