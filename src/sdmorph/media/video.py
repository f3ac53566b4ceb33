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
import functools
import logging
import math
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from sdmorph.core.errors import MovieError
from sdmorph.formats.fsio import atomic_path, safe_name

log = logging.getLogger(__name__)

FRAME_NAME = re.compile(r"frame\d{6}\.png")
CONTAINER = {"mjpeg": ".mov", "h264": ".mp4"}
DEFAULT_QUALITY = {"mjpeg": 3, "h264": 18}
QUALITY_RANGE = {"mjpeg": (1, 31), "h264": (0, 51)}
CLIPS_JSON = "clips.json"
# Rates are handed to ffmpeg as fractions; small denominators keep every muxer's time base valid.
_RATE_DENOMINATOR = 1000
_REASON_CHARS = 240
_DISK_FULL = "No space left on device"
# `[mov @ 0x55d...] ` and `[aost#0:1/aac @ 0x...] [enc:aac @ 0x...] ` prefixes of ffmpeg's lines.
_CONTEXT = re.compile(r"^(\[[^\]]*\]\s*)+")
# Lines ffmpeg prints after the cause, saying only that the failure spread.
_CASCADE = re.compile(
    r"Task finished with error code|Terminating thread with return code|Nothing was written "
    r"into output file|Could not open encoder before EOF|Error sending frames to consumers|"
    r"Error while opening encoder|^Conversion failed!?$|Error closing file|Error muxing a packet"
)
# minterpolate drops the last input frames (it needs look-ahead): feed it clones of the
# last frame and cut the output to the length the story should have.
_SMOOTH_TAIL = 3
_SMOOTH_MIN_SIDE = 32


@dataclass(frozen=True)
class Segment:
    """One transition as played in the story; frames in playback order, both ends included."""

    name: str
    frames: tuple[Path, ...]
    section: int
    start: str = ""  # label of the first image; parsed from `name` when empty
    end: str = ""  # label of the last image
    scene_from: str = ""  # scene of the first image, where known
    scene_to: str = ""  # scene of the last image

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", tuple(Path(p) for p in self.frames))

    @property
    def labels(self) -> tuple[str, str]:
        """(first image, last image) as played; from the `<a> to <b>` name unless given."""
        if self.start and self.end:
            return self.start, self.end
        parts = self.name.split(" to ")
        if len(parts) != 2 or not all(parts):
            raise MovieError(
                f"transition '{self.name}': cannot tell its two images apart; "
                "give Segment.start and Segment.end"
            )
        return parts[0], parts[1]


def continuations(segments: Sequence[Segment]) -> tuple[bool, ...]:
    """For each segment, whether it starts on the image the one before ends on.

    Only then do the two share their meeting frame; at a cut (the story jumps to another
    image) both end frames are played.
    """
    return tuple(i > 0 and segments[i - 1].labels[1] == seg.labels[0]
                 for i, seg in enumerate(segments))


@dataclass(frozen=True)
class EncodeOptions:
    """How a story becomes movies."""

    fps: float = 10.0
    codecs: tuple[str, ...] = ("mjpeg", "h264")  # mjpeg -> .mov, h264 -> .mp4
    quality: int | None = None  # mjpeg -q:v (default 3), h264 -crf (default 18)
    hold: float = 0.0  # seconds to pause on every keyframe
    smooth: float | None = None  # output fps reached with motion-compensated interpolation
    audio: Path | None = None
    fit_audio: bool = False  # choose fps so the combined video lasts as long as the audio
    clips: bool = False  # also write one video per transition, plus clips.json


@dataclass(frozen=True)
class VideoInfo:
    """What ffmpeg reads back from a video file."""

    frames: int
    duration: float  # seconds of video, measured by decoding
    width: int
    height: int
    codec: str
    fps: float | None
    has_audio: bool
    audio_codec: str | None = None
    audio_duration: float | None = None


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
class SectionPlan:
    """Where one section's video sits in the combined timeline (input frames)."""

    section: int
    segments: tuple[int, ...]  # indices into the story
    start: int  # index in the combined video of the section's first frame
    frames: int  # frames of the section video, holds included


@dataclass(frozen=True)
class StoryPlan:
    """Frame counts and rates of a story's movies, known before anything is decoded."""

    fps: Fraction
    out_fps: Fraction
    hold_frames: int
    frames: int
    sections: tuple[SectionPlan, ...]
    audio_duration: float | None = None
    # Per segment: whether it continues the one before (shares its first frame), and its
    # (first, last) frame in the combined video, its end keyframes' holds included.
    joins: tuple[bool, ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()

    def out_frames(self, frames: int) -> int:
        """Frames a video fed `frames` frames ends up with (more when smoothing)."""
        if self.out_fps == self.fps:
            return frames
        return max(1, round(frames * self.out_fps / self.fps))

    def seconds(self, frames: int) -> float:
        """Duration of `frames` fed frames."""
        return float(frames / self.fps)

    def out_seconds(self, frames: int) -> float:
        """Duration of the video made from `frames` fed frames."""
        return float(self.out_frames(frames) / self.out_fps)


# ---------------------------------------------------------------- clips.json


class NextClip(BaseModel):
    """A clip that can follow another: it starts (or, played backwards, ends) on its last image."""

    clip: str
    reversed: bool


class ClipEntry(BaseModel):
    """One transition written as its own video, for VJ software."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    files: dict[str, str]  # codec -> path relative to the story folder
    from_: str = Field(alias="from")
    to: str
    scene_from: str = ""  # the scenes of `from` and `to` ("" where the story does not say)
    scene_to: str = ""
    section: int
    frames: int
    index: int  # first position in the story
    indices: list[int]  # every position in the story (a transition can be played twice)
    next: list[NextClip]


class ClipIndex(BaseModel):
    """`clips.json`: the clips of a story and which can follow which."""

    story: str
    fps: float
    clips: list[ClipEntry]

    def dump(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def read_clips_json(path: Path) -> ClipIndex:
    """Read a story's clips.json."""
    try:
        return ClipIndex.model_validate_json(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise MovieError(f"{path}: not a readable clips index ({exc})") from exc


def build_clip_index(
    segments: Sequence[Segment],
    story: str,
    fps: float,
    frames: Callable[[Segment], int],
    codecs: Sequence[str],
) -> ClipIndex:
    """One entry per distinct transition; `next` holds every clip that can follow it."""
    entries: dict[str, ClipEntry] = {}
    stems: dict[str, str] = {}
    for index, seg in enumerate(segments):
        if seg.name in entries:
            entries[seg.name].indices.append(index)
            continue
        start, end = seg.labels
        stem = _clip_stem(seg.name, index, stems)
        files = {c: f"clips/{stem}{CONTAINER[c]}" for c in codecs}
        entries[seg.name] = ClipEntry(
            name=seg.name, files=files, from_=start, to=end, scene_from=seg.scene_from,
            scene_to=seg.scene_to, section=seg.section,
            frames=frames(seg), index=index, indices=[index], next=[],
        )
    for entry in entries.values():
        entry.next = [NextClip(clip=o.name, reversed=False) for o in entries.values()
                      if o.from_ == entry.to]
        entry.next += [NextClip(clip=o.name, reversed=True) for o in entries.values()
                       if o.to == entry.to]
    return ClipIndex(story=story, fps=fps, clips=list(entries.values()))


def _clip_stem(name: str, index: int, taken: dict[str, str]) -> str:
    stem = safe_name(name)
    if taken.get(stem, name) != name:  # two names that only differ in unsafe characters
        stem = safe_name(f"{name}~{index}")
    taken[stem] = name
    return stem


# ---------------------------------------------------------------- planning


def plan_story(segments: Sequence[Segment], opts: EncodeOptions) -> StoryPlan:
    """Check the story and options, and count the frames of every video (reads the audio)."""
    _check_options(opts)
    _check_segments(segments)
    runs = _section_runs(segments)
    audio_duration = song_duration(opts.audio) if opts.audio is not None else None
    joins = continuations(segments)
    counts = [len(s.frames) for s in segments]
    base = sum(counts) - sum(joins)  # each shared meeting frame is played once
    keys = 2 * len(segments) - sum(joins)  # keyframes that get holds
    fps, hold = _rate(base, keys, opts, audio_duration)
    ranges = segment_ranges(counts, hold, joins)
    # A section video holds its segments' ranges: it opens on the keyframe it shares with
    # the section before (holds included), or on its own first frame after a cut.
    sections = tuple(
        SectionPlan(section, indices, ranges[indices[0]][0],
                    ranges[indices[-1]][1] - ranges[indices[0]][0] + 1)
        for section, indices in runs
    )
    out_fps = _fraction(opts.smooth) if opts.smooth else fps
    return StoryPlan(fps, out_fps, hold, base + hold * keys, sections, audio_duration,
                     joins, tuple(ranges))


def segment_ranges(counts: Sequence[int], hold: int,
                   joins: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) frame of each segment in the combined video, both end keyframes with
    their holds included: a segment that continues the one before starts on their shared
    keyframe; after a cut it starts on the next frame."""
    ranges = []
    end = -1
    for n, joined in zip(counts, joins, strict=True):
        start = end - hold if joined else end + 1
        end = start + n + 2 * hold - 1
        ranges.append((start, end))
    return ranges


def _fraction(value: float) -> Fraction:
    return Fraction(value).limit_denominator(_RATE_DENOMINATOR)


def _rate(base: int, keys: int, opts: EncodeOptions, audio: float | None) -> tuple[Fraction, int]:
    """(fps, hold frames); with fit_audio the fps makes the video exactly as long as the audio."""
    if not opts.fit_audio or audio is None:
        fps = _fraction(opts.fps)
        return fps, round(opts.hold * fps)
    room = audio - keys * opts.hold
    if room <= 0:
        raise MovieError(
            f"{opts.audio}: the audio lasts {audio:.2f} s, too short for {keys} holds of "
            f"{opts.hold} s; use a shorter --hold"
        )
    hold = round(opts.hold * base / room)
    return _fraction((base + hold * keys) / audio), hold


def _check_options(opts: EncodeOptions) -> None:
    problems = []
    if not opts.codecs:
        problems.append("no codec chosen: use mjpeg and/or h264")
    unknown = [c for c in opts.codecs if c not in CONTAINER]
    if unknown:
        problems.append(f"unknown codec {', '.join(unknown)}: use mjpeg and/or h264")
    if len(set(opts.codecs)) != len(opts.codecs):
        problems.append(f"codec listed twice: {', '.join(opts.codecs)}")
    if not (math.isfinite(opts.fps) and opts.fps > 0):
        problems.append(f"fps must be a positive number, not {opts.fps}")
    if not (math.isfinite(opts.hold) and opts.hold >= 0):
        problems.append(f"hold must be 0 or more seconds, not {opts.hold}")
    if opts.smooth is not None and not (math.isfinite(opts.smooth) and opts.smooth > 0):
        problems.append(f"smooth must be a positive frame rate, not {opts.smooth}")
    if opts.fit_audio and opts.audio is None:
        problems.append("fit_audio needs an audio file")
    if opts.quality is not None:
        for codec in sorted(set(opts.codecs) & set(QUALITY_RANGE)):
            low, high = QUALITY_RANGE[codec]
            if not low <= opts.quality <= high:
                problems.append(f"quality {opts.quality} is out of range for {codec} "
                                f"({low}..{high})")
    if problems:
        raise MovieError(*problems)


def _check_segments(segments: Sequence[Segment]) -> None:
    if not segments:
        raise MovieError("the story has no transitions: nothing to encode")
    for seg in segments:
        if len(seg.frames) < 2:
            raise MovieError(
                f"transition '{seg.name}' has {len(seg.frames)} frame(s); a transition holds "
                "at least its two end frames"
            )
        for path in seg.frames:
            if not FRAME_NAME.fullmatch(path.name):
                raise MovieError(f"{path}: not a frame (frames are named frame000000.png)")


def _section_runs(segments: Sequence[Segment]) -> list[tuple[int, tuple[int, ...]]]:
    """Consecutive segments of one section, in story order; a section may not come back."""
    runs: list[tuple[int, list[int]]] = []
    for i, seg in enumerate(segments):
        if runs and runs[-1][0] == seg.section:
            runs[-1][1].append(i)
            continue
        if any(section == seg.section for section, _ in runs):
            raise MovieError(
                f"transition '{seg.name}' (story row {i}) returns to section {seg.section} "
                f"after section {runs[-1][0]}: each section must be played in one run"
            )
        runs.append((seg.section, [i]))
    return [(section, tuple(indices)) for section, indices in runs]


# ---------------------------------------------------------------- ffmpeg


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg binary that imageio-ffmpeg ships (or the one IMAGEIO_FFMPEG_EXE names)."""
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise MovieError(f"ffmpeg is not available: {exc}") from exc


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-hide_banner", *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
        )
    except OSError as exc:
        raise MovieError(f"could not run ffmpeg ({ffmpeg_exe()}): {exc}") from exc


@functools.lru_cache(maxsize=1)
def _encoders() -> frozenset[str]:
    out = _run(["-encoders"]).stdout
    return frozenset(m.group(1) for m in re.finditer(r"^\s*V\S*\s+(\S+)", out, re.MULTILINE))


@dataclass(frozen=True)
class _Codec:
    name: str  # the codec asked for
    stream: str  # the codec name ffmpeg reports for the written stream
    args: tuple[str, ...]
    even: bool  # needs even width and height
    warning: str | None = None


def _codec(name: str, quality: int | None) -> _Codec:
    q = DEFAULT_QUALITY[name] if quality is None else quality
    if name == "mjpeg":  # every frame a keyframe: VJ software scrubs and plays backwards
        return _Codec(name, "mjpeg", ("-c:v", "mjpeg", "-q:v", str(q), "-pix_fmt", "yuvj420p"),
                      even=False)
    h264 = ("-pix_fmt", "yuv420p", "-movflags", "+faststart")
    if "libx264" in _encoders():
        return _Codec(name, "h264", ("-c:v", "libx264", "-crf", str(q), *h264), even=True)
    if "libopenh264" in _encoders():
        return _Codec(name, "h264", ("-c:v", "libopenh264", "-b:v", "8M", *h264), even=True,
                      warning="this ffmpeg has no libx264: h264 made with libopenh264 at 8 Mb/s")
    return _Codec(name, "mpeg4", ("-c:v", "mpeg4", "-q:v", "2", *h264), even=True,
                  warning="this ffmpeg has no h264 encoder: the .mp4 files hold MPEG-4 video")


def _rate_arg(rate: Fraction) -> str:
    return f"{rate.numerator}/{rate.denominator}"


def _audio_filter(offset: float, duration: float) -> str:
    """The song from `offset`, `duration` long: cut, or padded with silence."""
    return (f"atrim=start={offset:.6f}:duration={duration:.6f},asetpts=PTS-STARTPTS,"
            f"apad=whole_dur={duration:.6f},atrim=duration={duration:.6f}")


# ---------------------------------------------------------------- reading back


_STREAM = re.compile(r"Stream #\d+:\d+\S*: (Video|Audio): (\w+)(.*)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")


def _reason(text: str) -> str:
    """ffmpeg's last meaningful line: its own words for what went wrong, on one line.

    ffmpeg follows the cause with lines that only say the failure spread (threads ending,
    nothing written): those are skipped, as are the `[muxer @ 0x...]` prefixes. A full disk
    is said plainly, since ffmpeg's line for it names a syscall, not the remedy.
    """
    lines = [_CONTEXT.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    meaningful = [line for line in lines if not _CASCADE.search(line)] or lines
    # The cause's own line if ffmpeg printed one, else a follow-up line that names it.
    full = [line for line in meaningful if _DISK_FULL in line] or [
        line for line in lines if _DISK_FULL in line]
    if full:
        return f"disk full ({_short(full[-1])}): free some space and run again"
    return _short(meaningful[-1]) if meaningful else "no message"


def _short(line: str) -> str:
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."


def _progress_values(stdout: str) -> dict[str, str]:
    """The last value of each key in ffmpeg's `-progress` output."""
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _progress_seconds(values: dict[str, str]) -> float | None:
    raw = values.get("out_time_us", "N/A")
    return int(raw) / 1e6 if raw.lstrip("-").isdigit() else None


def probe(path: Path) -> VideoInfo:
    """Frames, duration, size and streams of a video, read back with ffmpeg."""
    path = Path(path)
    if not path.is_file():
        raise MovieError(f"{path}: no such video file")
    result = _run(["-nostats", "-i", str(path), "-map", "0:v:0", "-f", "null", "-",
                   "-progress", "pipe:1"])
    streams = [m.groups() for m in _STREAM.finditer(result.stderr)]
    video = next((s for s in streams if s[0] == "Video"), None)
    values = _progress_values(result.stdout)
    duration = _progress_seconds(values)
    if result.returncode != 0 or video is None or duration is None:
        raise MovieError(f"{path}: not a readable video ({_reason(result.stderr)})")
    size = re.search(r", (\d+)x(\d+)", video[2])
    fps = re.search(r", ([\d.]+) fps", video[2])
    audio = next((s for s in streams if s[0] == "Audio"), None)
    return VideoInfo(
        frames=int(values.get("frame", "0")),
        duration=duration,
        width=int(size.group(1)) if size else 0,
        height=int(size.group(2)) if size else 0,
        codec=video[1],
        fps=float(fps.group(1)) if fps else None,
        has_audio=audio is not None,
        audio_codec=audio[1] if audio else None,
        audio_duration=_audio_seconds(path) if audio else None,
    )


def _audio_seconds(path: Path) -> float:
    result = _run(["-nostats", "-i", str(path), "-map", "0:a:0", "-c", "copy", "-f", "null", "-",
                   "-progress", "pipe:1"])
    seconds = _progress_seconds(_progress_values(result.stdout))
    if result.returncode != 0 or seconds is None:
        raise MovieError(f"{path}: its audio cannot be read ({_reason(result.stderr)})")
    return seconds


def song_duration(path: Path) -> float:
    """Seconds of audio in a song file (ffmpeg's `Duration:`); MovieError if it has none."""
    path = Path(path)
    if not path.is_file():
        raise MovieError(f"{path}: audio file not found")
    stderr = _run(["-i", str(path)]).stderr  # no output named: ffmpeg only describes the input
    if not any(m.group(1) == "Audio" for m in _STREAM.finditer(stderr)):
        raise MovieError(f"{path}: ffmpeg finds no audio in this file ({_reason(stderr)})")
    match = _DURATION.search(stderr)
    if match:
        h, m, s = match.groups()
        seconds = int(h) * 3600 + int(m) * 60 + float(s)
    else:  # streams without a header duration: decode to measure
        seconds = _audio_seconds(path)
    if seconds <= 0:
        raise MovieError(f"{path}: the audio is empty")
    return seconds


# ---------------------------------------------------------------- encoding


@dataclass(frozen=True)
class _Output:
    target: Path
    kind: str
    codec: _Codec
    frames: int  # frames fed
    section: int | None = None
    audio: tuple[float, float] | None = None  # (offset, duration) of the song it carries


class _Ffmpeg:
    """One ffmpeg reading raw RGB frames on stdin and writing one video."""

    def __init__(self, args: list[str], target: Path) -> None:
        self.target = target
        self.closed = False
        self.finished = False
        # A file, not a pipe: ffmpeg can never block on it. Closed in wait() or kill().
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [ffmpeg_exe(), *args], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=self._log,
            )
        except OSError as exc:
            self._log.close()
            raise MovieError(f"could not run ffmpeg ({ffmpeg_exe()}): {exc}") from exc

    def write(self, data: bytes, copies: int = 1) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            for _ in range(copies):
                stdin.write(data)
            stdin.flush()
        except OSError:  # ffmpeg quit early: its own message says why
            self.wait()
            raise MovieError(f"{self.target}: ffmpeg stopped reading frames") from None

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]

    def exited(self) -> bool:
        return self._proc.poll() is not None

    def wait(self) -> None:
        if self.finished:
            return
        self.close()
        code = self._proc.wait()
        self.finished = True
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        self._log.close()
        if code != 0:
            raise MovieError(f"{self.target}: ffmpeg failed (exit code {code}): {_reason(text)}")

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self.close()
        self._log.close()


@dataclass
class _Job:
    """The outputs of one story being encoded: temp files, running ffmpegs, frame size."""

    stack: contextlib.ExitStack
    plan: StoryPlan
    opts: EncodeOptions
    size: tuple[int, int]
    outputs: list[tuple[_Output, Path]] = field(default_factory=list)
    procs: list[_Ffmpeg] = field(default_factory=list)

    def open(self, outputs: Sequence[_Output]) -> list[_Ffmpeg]:
        started = []
        for out in outputs:
            # Unlocked: a story may have hundreds of clips open at once, and the movie
            # holds its story folder's lock anyway.
            tmp = self.stack.enter_context(atomic_path(out.target, lock=False))
            proc = _Ffmpeg(self._command(out, tmp), out.target)
            self.outputs.append((out, tmp))
            self.procs.append(proc)
            started.append(proc)
        return started

    def _command(self, out: _Output, tmp: Path) -> list[str]:
        width, height = self.size
        args = ["-nostats", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                "-s", f"{width}x{height}", "-framerate", _rate_arg(self.plan.fps), "-i", "-"]
        if out.audio:
            args += ["-i", str(self.opts.audio)]
        args += ["-map", "0:v:0", *self._video_filter(out)]
        args += out.codec.args
        if out.audio:
            args += ["-map", "1:a:0", "-af", _audio_filter(*out.audio), "-c:a", "aac",
                     "-b:a", "192k"]
        return [*args, str(tmp)]

    def _video_filter(self, out: _Output) -> list[str]:
        filters = []
        if self.opts.smooth:
            filters += [f"tpad=stop_mode=clone:stop={_SMOOTH_TAIL}",
                        f"minterpolate=fps={_rate_arg(self.plan.out_fps)}:mi_mode=mci"]
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


def _verify(out: _Output, tmp: Path, plan: StoryPlan) -> VideoInfo:
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


def _section_outputs(out_dir: Path, sec: SectionPlan, job: _Job,
                     codecs: list[_Codec]) -> list[_Output]:
    audio = None
    if job.opts.audio is not None:  # the song from where the section starts in the combined one
        audio = (job.plan.seconds(sec.start), job.plan.out_seconds(sec.frames))
    return [_Output(out_dir / "sections" / f"section_{sec.section}{CONTAINER[c.name]}",
                    "section", c, sec.frames, sec.section, audio) for c in codecs]


def _combined_outputs(out_dir: Path, name: str, job: _Job, codecs: list[_Codec]) -> list[_Output]:
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

    def segment(self, seg: Segment, first_in_section: bool, joined: bool,
                sinks: tuple[list[_Ffmpeg], list[_Ffmpeg], list[_Ffmpeg]]) -> None:
        """Feed one transition; `sinks` are (combined, section, clip) videos.

        A segment `joined` to the one before starts on the frame that one ended on: only
        clips, and a section video opening on it, repeat it. After a cut every frame plays.
        """
        combined, section, clips = sinks
        last = len(seg.frames) - 1
        for k, path in enumerate(seg.frames):
            to_combined = k > 0 or not joined
            to_section = to_combined or first_in_section
            if not (to_section or clips):
                continue
            data = self.job.read(path)
            for proc in clips:
                proc.write(data)
            copies = 1 + self.job.plan.hold_frames if k in (0, last) else 1
            if to_section:
                for proc in section:
                    proc.write(data, copies)
            if to_combined:
                for proc in combined:
                    proc.write(data, copies)
                self.written += copies
                if self.progress is not None:
                    self.progress(self.written)


def encode_story(segments: Sequence[Segment], out_dir: Path, name: str,
                 opts: EncodeOptions | None = None,
                 progress: Callable[[int], None] | None = None) -> EncodeReport:
    """Write the story's section videos, combined video and (optionally) clips under out_dir.

    `progress` is called with the number of combined-video frames written so far
    (`plan_story(...).frames` in all).
    """
    opts = opts or EncodeOptions()
    plan = plan_story(segments, opts)
    codecs = [_codec(c, opts.quality) for c in opts.codecs]
    warnings = tuple(dict.fromkeys(c.warning for c in codecs if c.warning))
    for warning in warnings:
        log.warning(warning)
    out_dir = Path(out_dir)
    index = None
    if opts.clips:
        index = build_clip_index(
            segments, name, float(plan.out_fps), lambda s: plan.out_frames(len(s.frames)),
            opts.codecs,
        )
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
          codecs: list[_Codec], index: ClipIndex | None,
          progress: Callable[[int], None] | None) -> None:
    feeder = _Feeder(job, progress)
    combined = job.open(_combined_outputs(out_dir, name, job, codecs))
    clip_files = {entry.index: entry for entry in index.clips} if index else {}
    for sec in job.plan.sections:
        section = job.open(_section_outputs(out_dir, sec, job, codecs))
        for j, i in enumerate(sec.segments):
            clips = []
            if i in clip_files:
                entry = clip_files[i]
                clips = job.open([_Output(out_dir / entry.files[c.name], "clip", c,
                                          len(segments[i].frames), entry.section)
                                  for c in codecs])
            feeder.segment(segments[i], j == 0, job.plan.joins[i], (combined, section, clips))
            for proc in clips:
                proc.close()
            job.reap()
        for proc in section:
            proc.close()
    for proc in combined:
        proc.close()
