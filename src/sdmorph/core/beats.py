"""Keyframes on the beat: which beat each keyframe lands on, and how each transition's
frames are retimed to get there.

Pure arithmetic over beat times (seconds), frame counts and a frame rate; the beats are found
elsewhere (media/beats.py). The rules:

- Every transition lasts a whole number of beats: `per_transition` if given, else the number
  whose span is nearest its natural length (its frames at the movie's rate, plus one hold).
  Beats are counted on the song's own beat times, so a tempo change is followed.
- The movie lasts exactly as long as the audio: the first image stays until the first beat
  (the intro), and the last keyframe stays from its beat to the end of the audio.
- A story shorter than the song is stretched: the song's spare beats are shared out over all
  its transitions in proportion to their beats, so the last keyframe lands on the song's last
  beat. With `per_transition` fixed nothing stretches: the last image stays longer instead.
- A story longer than the song is cut: the first transition that no longer fits (its beats
  would end past the song's last beat) and all after it are left out, then the kept ones
  stretch as above. The first transition is always played, squeezed if the song is short.
- A keyframe lands on the frame nearest its beat. Joined transitions share that keyframe; at
  a cut (the next transition starts on another image) the new image appears on the beat and
  the old one arrives just before it, holds included.
- In between, each transition's own frames are spread evenly over the frames it gets:
  repeated when it is slower than rendered, dropped when it is faster. A keyframe never shows
  before its beat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from sdmorph.core.errors import MovieError


@dataclass(frozen=True)
class FrameMap:
    """Which of a transition's frames each of its played frames shows (indices into them).

    Played: `lead` copies of the first keyframe, the `inner` frames, `tail` copies of the last
    keyframe. Without beats that is every frame once, with the holds on both keyframes.
    """

    lead: int
    inner: tuple[int, ...]
    tail: int
    last: int  # index of the last keyframe: the transition's frame count - 1

    @classmethod
    def natural(cls, frames: int, hold: int) -> FrameMap:
        """Every frame once, in order, each keyframe held `hold` more frames."""
        return cls(1 + hold, tuple(range(1, frames - 1)), 1 + hold, frames - 1)

    @property
    def length(self) -> int:
        return self.lead + len(self.inner) + self.tail

    def played(self) -> list[int]:
        """The frame index of every played frame, in order (never decreasing)."""
        return [0] * self.lead + list(self.inner) + [self.last] * self.tail

    def clip(self) -> list[int]:
        """The transition as a clip: its keyframes once each, no holds or waits."""
        return [0, *self.inner, self.last]


@dataclass(frozen=True)
class BeatPlan:
    """Where the keyframes of a story land, and how each transition is played."""

    total: int  # frames of the movie: the audio's length at the movie's rate
    beats: tuple[int, ...]  # per keyframe (transitions played + 1): the beat it lands on
    frames: tuple[int, ...]  # per keyframe: the frame where its picture first shows
    spans: tuple[int, ...]  # per transition played: the beats it lasts
    maps: tuple[FrameMap, ...]  # per transition played
    ranges: tuple[tuple[int, int], ...]  # per transition: (first, last) frame in the movie
    max_offset: float  # seconds between a keyframe (the first one aside) and its beat, at most
    natural_beats: int  # beats the played transitions would get at their natural length
    left_out: int  # transitions of the story cut off at the end of the song

    @property
    def played(self) -> int:
        return len(self.maps)


def retime(frames: int, slots: int) -> tuple[int, ...]:
    """Which frame fills each of `slots` in-between places of a `frames`-frame transition.

    Each slot takes the middle one of the in-between frames it stands for, so frames repeat
    or drop evenly; with `frames - 2` slots it is every in-between frame once. A transition
    with no in-between frames stays on its first image until its last one is due.
    """
    inner = frames - 2
    if inner <= 0:
        return (0,) * slots
    # slot t (1-based) stands for the inner frames in [(t-1)/slots, t/slots) of the way.
    return tuple(1 + (2 * t - 1) * inner // (2 * slots) for t in range(1, slots + 1))


def plan_beats(counts: Sequence[int], joins: Sequence[bool], beats: Sequence[float],
               fps: Fraction, hold: int, duration: float,
               per_transition: int | None = None) -> BeatPlan:
    """Time a story's transitions (`counts` frames each, `joins` as in the timeline) to the
    song's `beats` (seconds), for a movie of `duration` seconds at `fps` with `hold` frames
    held on every keyframe."""
    total = max(1, math.floor(duration * fps + Fraction(1, 2)))
    marks = _beat_frames(beats, fps, hold, total)
    naturals = [Fraction(n - 1 + hold + (1 + hold if _cut_after(joins, i) else 0)) / fps
                for i, n in enumerate(counts)]
    times = [beats[b] for b, _ in marks]
    spans = _choose_beats(times, naturals, per_transition)
    natural = sum(spans)
    if per_transition is None:
        spans = _stretch(spans, len(marks) - 1)
    at = [0]
    for span in spans:
        at.append(at[-1] + span)
    keyframes = [marks[q][1] for q in at]
    maps, ranges = _frame_maps(counts[:len(spans)], joins[:len(spans)], keyframes, hold, total)
    offsets = [abs(float(f / fps) - times[q]) for q, f in zip(at[1:], keyframes[1:], strict=True)]
    return BeatPlan(total, tuple(marks[q][0] for q in at), tuple(keyframes), tuple(spans),
                    tuple(maps), tuple(ranges), max(offsets), natural, len(counts) - len(spans))


def _cut_after(joins: Sequence[bool], i: int) -> bool:
    """Whether the story jumps to another image after transition i."""
    return i + 1 < len(joins) and not joins[i + 1]


def _beat_frames(beats: Sequence[float], fps: Fraction, hold: int,
                 total: int) -> list[tuple[int, int]]:
    """(index, frame) of every beat a keyframe can land on: inside the movie, with room for
    its holds before the end, each on a frame of its own (at a low rate and a fast tempo
    the later of two beats on one frame is passed over)."""
    marks: list[tuple[int, int]] = []
    for b, t in enumerate(beats):
        if not math.isfinite(t) or t < 0:
            continue
        frame = math.floor(Fraction(t) * fps + Fraction(1, 2))
        if frame + hold > total - 1:
            break
        if marks and frame <= marks[-1][1]:
            continue  # a beat on the frame of the one before: one keyframe cannot take both
        marks.append((b, frame))
    if len(marks) < 2:
        raise MovieError(f"the song has {len(marks)} beat(s) a keyframe can land on: --beats "
                         "needs at least two; use --fit-audio instead")
    return marks


def _choose_beats(times: Sequence[float], naturals: Sequence[Fraction],
                  per_transition: int | None) -> list[int]:
    """Beats per transition, from the first beat on, until the song's beats run out."""
    last = len(times) - 1
    spans: list[int] = []
    at = 0
    for natural in naturals:
        span = per_transition or _nearest_span(times, at, float(natural))
        if at + span > last:
            if spans:
                break  # the story is cut here
            span = last  # the one transition the song has room for, squeezed
        spans.append(span)
        at += span
    return spans


def _nearest_span(times: Sequence[float], at: int, seconds: float) -> int:
    """The number of beats from beat `at` whose span is nearest `seconds` (at least one);
    past the song's last beat when the song ends more than half a beat too early."""
    last = len(times) - 1
    best = 1
    for span in range(1, last - at + 1):
        if abs(times[at + span] - times[at] - seconds) < abs(times[at + best] - times[at]
                                                             - seconds):
            best = span
        if times[at + span] - times[at] > seconds:
            return best
    if at >= last:
        return 1
    beat = (times[last] - times[at]) / (last - at)
    short = seconds - (times[last] - times[at])
    return last - at + 1 if short > beat / 2 else last - at


def _stretch(spans: Sequence[int], beats: int) -> list[int]:
    """Spans grown in proportion until they add up to `beats` (largest remainders first,
    earlier transitions first on ties)."""
    spare = beats - sum(spans)
    if spare <= 0:
        return list(spans)
    total = sum(spans)
    shares = [Fraction(spare * s, total) for s in spans]
    grown = [s + math.floor(share) for s, share in zip(spans, shares, strict=True)]
    order = sorted(range(len(spans)), key=lambda i: (-(shares[i] - math.floor(shares[i])), i))
    for i in order[:beats - sum(grown)]:
        grown[i] += 1
    return grown


def _frame_maps(counts: Sequence[int], joins: Sequence[bool], keyframes: Sequence[int],
                hold: int, total: int) -> tuple[list[FrameMap], list[tuple[int, int]]]:
    """Each transition's frame map and (first, last) frame in the movie.

    Transition i leaves its first keyframe after that one's holds and arrives at its last
    one on keyframe i + 1's frame, or (before a cut) early enough that its holds end just
    as the next image shows.
    """
    maps = []
    ranges = []
    last = len(counts) - 1
    for i, n in enumerate(counts):
        first = 0 if i == 0 else keyframes[i]  # the first image stays from the movie's start
        leave = keyframes[i] + hold
        arrive = keyframes[i + 1] - (1 + hold if i < last and not joins[i + 1] else 0)
        end = total - 1 if i == last else arrive + hold
        slots = arrive - leave - 1
        if slots < 0:
            raise MovieError(
                f"transition {i + 1} gets {keyframes[i + 1] - keyframes[i]} frame(s) between "
                f"its beats, too few for its keyframes and holds: use a shorter --hold, a "
                "higher --fps or more --beats-per-transition"
            )
        maps.append(FrameMap(leave - first + 1, retime(n, slots), end - arrive + 1, n - 1))
        ranges.append((first, end))
    return maps, ranges
