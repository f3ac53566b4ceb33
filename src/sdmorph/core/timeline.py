"""A story's timeline: how many frames each movie gets, and where each transition sits.

Pure arithmetic over frame counts, rates and holds; the audio enters only as its length.
The rule that a section is played in one run lives here, for the encoder and the story
files alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from sdmorph.core.beats import BeatPlan, FrameMap, plan_beats
from sdmorph.core.errors import MovieError

FRAME_NAME = re.compile(r"frame\d{6}\.png")
CONTAINER = {"mjpeg": ".mov", "h264": ".mp4"}
DEFAULT_QUALITY = {"mjpeg": 3, "h264": 18}
QUALITY_RANGE = {"mjpeg": (1, 31), "h264": (0, 51)}
# Rates are handed to ffmpeg as fractions; small denominators keep every muxer's time base valid.
_RATE_DENOMINATOR = 1000

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
    beats: tuple[float, ...] | None = None  # the song's beats (s): keyframes land on them
    beats_per_transition: int | None = None  # with beats: fixed, not each one's natural length



@dataclass(frozen=True)
class SectionTimeline:
    """Where one section's video sits in the combined timeline (input frames)."""

    section: int
    segments: tuple[int, ...]  # indices into the story
    start: int  # index in the combined video of the section's first frame
    frames: int  # frames of the section video, holds included


@dataclass(frozen=True)
class Timeline:
    """Frame counts and rates of a story's movies, known before anything is decoded."""

    fps: Fraction
    out_fps: Fraction
    hold_frames: int
    frames: int
    sections: tuple[SectionTimeline, ...]
    audio_duration: float | None = None
    # Per segment: whether it continues the one before (shares its first frame), and its
    # (first, last) frame in the combined video, its end keyframes' holds included.
    joins: tuple[bool, ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()
    # Per segment: which of its frames each of its played frames shows (holds, retiming).
    maps: tuple[FrameMap, ...] = ()
    beat_plan: BeatPlan | None = None  # with beats: where the keyframes landed

    @property
    def played(self) -> int:
        """Segments played: the story's, or fewer when it is cut at the end of the song."""
        return len(self.ranges)

    def shared(self, index: int) -> int:
        """Frames segment `index` starts with that the one before already played (its first
        keyframe's block, when it continues that one)."""
        return self.maps[index].lead if self.joins[index] else 0

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




def build_timeline(segments: Sequence[Segment], opts: EncodeOptions,
                   audio_duration: float | None = None) -> Timeline:
    """Check the story and options, and count the frames of every video.

    `audio_duration`: seconds of the song, needed only to fit the movie to it.
    """
    _check_options(opts)
    _check_segments(segments)
    runs = section_runs(segments)  # the whole story's, even where beats cut it
    if opts.beats is not None:
        return _beat_timeline(segments, opts, audio_duration)
    joins = continuations(segments)
    counts = [len(s.frames) for s in segments]
    base = sum(counts) - sum(joins)  # each shared meeting frame is played once
    keys = 2 * len(segments) - sum(joins)  # keyframes that get holds
    fps, hold = _rate(base, keys, opts, audio_duration)
    ranges = segment_ranges(counts, hold, joins)
    out_fps = _fraction(opts.smooth) if opts.smooth else fps
    return Timeline(fps, out_fps, hold, base + hold * keys, _sections(runs, ranges),
                    audio_duration, joins, tuple(ranges),
                    tuple(FrameMap.natural(n, hold) for n in counts))


def _beat_timeline(segments: Sequence[Segment], opts: EncodeOptions,
                   audio_duration: float | None) -> Timeline:
    """Keyframes on the song's beats, the movie as long as the audio (core/beats.py)."""
    if audio_duration is None:
        raise MovieError("beats need the song's audio length")
    assert opts.beats is not None
    fps = _fraction(opts.fps)
    hold = round(opts.hold * fps)
    joins = continuations(segments)
    plan = plan_beats([len(s.frames) for s in segments], joins, opts.beats, fps, hold,
                      audio_duration, opts.beats_per_transition)
    played = segments[:plan.played]  # the story cut where the song ends
    out_fps = _fraction(opts.smooth) if opts.smooth else fps
    return Timeline(fps, out_fps, hold, plan.total, _sections(section_runs(played), plan.ranges),
                    audio_duration, joins[:plan.played], plan.ranges, plan.maps, plan)


def _sections(runs: Sequence[tuple[int, tuple[int, ...]]],
              ranges: Sequence[tuple[int, int]]) -> tuple[SectionTimeline, ...]:
    """A section video holds its segments' ranges: it opens on the keyframe it shares with
    the section before (holds included), or on its own first frame after a cut."""
    return tuple(
        SectionTimeline(section, indices, ranges[indices[0]][0],
                        ranges[indices[-1]][1] - ranges[indices[0]][0] + 1)
        for section, indices in runs
    )


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
    if opts.beats is not None and opts.audio is None:
        problems.append("beats need an audio file")
    if opts.beats is not None and opts.fit_audio:
        problems.append("--beats and --fit-audio exclude each other: --beats already makes "
                        "the movie as long as the audio")
    if opts.beats_per_transition is not None and opts.beats_per_transition < 1:
        problems.append(f"beats per transition must be 1 or more, not "
                        f"{opts.beats_per_transition}")
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


def section_comes_back(sections: Sequence[int]) -> int | None:
    """The index at which a section returns after another: each section plays in one run
    (one section video each, in story order). None when every section keeps together."""
    done: list[int] = []
    for i, section in enumerate(sections):
        if done and done[-1] == section:
            continue
        if section in done:
            return i
        done.append(section)
    return None


def section_runs(segments: Sequence[Segment]) -> list[tuple[int, tuple[int, ...]]]:
    """Consecutive segments of one section, in story order."""
    back = section_comes_back([seg.section for seg in segments])
    if back is not None:
        seg = segments[back]
        raise MovieError(
            f"transition '{seg.name}' (story row {back}) returns to section {seg.section} "
            f"after section {segments[back - 1].section}: each section must be played in one run"
        )
    runs: list[tuple[int, list[int]]] = []
    for i, seg in enumerate(segments):
        if runs and runs[-1][0] == seg.section:
            runs[-1][1].append(i)
        else:
            runs.append((seg.section, [i]))
    return [(section, tuple(indices)) for section, indices in runs]
