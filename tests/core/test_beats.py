"""Keyframes on the beat, the pure timing: beats per transition, retimed frames, the ends.

No audio here: beat times are given as numbers (tests/test_beat_tracking.py finds them in
synthesised audio and checks the decoded movies).
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdmorph.core.beats import BeatPlan, FrameMap, plan_beats, retime
from sdmorph.core.errors import MovieError
from sdmorph.core.timeline import EncodeOptions, Segment, build_timeline

FPS = Fraction(10)


def steady(bpm: float, seconds: float, start: float = 0.5) -> list[float]:
    period = 60 / bpm
    return [start + i * period for i in range(int((seconds - start) / period) + 1)]


def movie(plan: BeatPlan, joins: list[bool]) -> list[tuple[int, int]]:
    """(transition, frame index) of every frame of the combined movie, as the encoder feeds
    it: a transition joined to the one before skips the keyframe block they share."""
    out = []
    for i, fmap in enumerate(plan.maps):
        played = fmap.played()
        skip = fmap.lead if i and joins[i] else 0
        out += [(i, k) for k in played[skip:]]
    return out


def arrivals(plan: BeatPlan, joins: list[bool]) -> list[int]:
    """The frame where each keyframe after the first shows first, read off the movie."""
    frames = movie(plan, joins)
    found = []
    for i, fmap in enumerate(plan.maps):
        nxt = i + 1 < len(plan.maps)
        key = (i + 1, 0) if nxt and not joins[i + 1] else (i, fmap.last)
        found.append(frames.index(key))
    return found


# ---------------------------------------------------------------- retiming one transition


def test_retime_is_the_identity_at_the_natural_length() -> None:
    for n in range(3, 12):
        assert retime(n, n - 2) == tuple(range(1, n - 1))
        assert FrameMap.natural(n, 2).played() == [0, 0, 0, *range(1, n - 1), n - 1, n - 1,
                                                   n - 1]


def test_retime_repeats_and_drops_evenly() -> None:
    assert retime(6, 8) == (1, 1, 2, 2, 3, 3, 4, 4)
    assert retime(10, 4) == (2, 4, 6, 8)  # 8 in-between frames, every other one
    assert retime(10, 3) == (2, 5, 7)
    assert retime(10, 0) == ()


@pytest.mark.parametrize(("frames", "slots"), [(n, s) for n in range(2, 9) for s in range(12)])
def test_retime_never_shows_a_keyframe_early(frames: int, slots: int) -> None:
    inner = retime(frames, slots)
    assert len(inner) == slots
    assert list(inner) == sorted(inner)  # never backwards
    assert all(k < frames - 1 for k in inner)  # the last keyframe waits for its beat
    if frames > 2:
        assert all(k >= 1 for k in inner)
        assert set(inner) == set(range(1, frames - 1)) or slots < frames - 2


def test_clip_is_the_transition_without_holds_or_waits() -> None:
    fmap = FrameMap(lead=7, inner=(1, 1, 2, 3, 3), tail=4, last=4)
    assert fmap.clip() == [0, 1, 1, 2, 3, 3, 4]
    assert fmap.length == 7 + 5 + 4 == len(fmap.played())


# ---------------------------------------------------------------- the plan


def test_keyframes_land_on_beats_and_a_short_story_stretches() -> None:
    beats = steady(120, 10.0)  # a beat every 0.5 s = 5 frames, from 0.5 s
    joins = [False, True, True]
    plan = plan_beats([5, 5, 5], joins, beats, FPS, 0, 10.0)

    assert plan.total == 100  # the audio's 10 s at 10 fps
    # Naturally one beat each (4 frames = 0.4 s); the song has 18 beats to the last usable
    # one (9.5 s; the one at 10.0 s is past the last frame): 6 beats each.
    assert plan.natural_beats == 3 and plan.left_out == 0
    assert plan.beats == (0, 6, 12, 18)
    assert plan.frames == (5, 35, 65, 95)
    assert arrivals(plan, joins) == [35, 65, 95]
    assert plan.max_offset == pytest.approx(0.0, abs=1e-9)
    assert len(movie(plan, joins)) == plan.total
    # the first image waits for the first beat; the last one stays to the end of the audio
    assert plan.maps[0].lead == 6 and plan.maps[-1].tail == 5
    assert plan.ranges == ((0, 35), (35, 65), (65, 99))


def test_natural_lengths_pick_the_nearest_whole_beats() -> None:
    beats = steady(120, 60.0)
    # 11 frames at 10 fps = 1.0 s = 2 beats; 14 frames = 1.3 s -> 3 beats (1.5 s) beats 2.
    plan = plan_beats([11, 14, 11], [False, True, True], beats, FPS, 0, 60.0,
                      per_transition=None)
    assert plan.natural_beats == 2 + 3 + 2
    spans = [b - a for a, b in pairwise(plan.beats)]
    # stretched in proportion to 2:3:2 over the song's 118 beats
    assert sum(spans) == 118 and spans == [34, 50, 34]


def test_beats_per_transition_is_exact_and_the_last_image_stays() -> None:
    beats = steady(120, 10.0)
    joins = [False, True, True]
    plan = plan_beats([5, 5, 5], joins, beats, FPS, 0, 10.0, per_transition=4)
    assert plan.beats == (0, 4, 8, 12)
    assert plan.frames == (5, 25, 45, 65)
    assert plan.maps[-1].tail == 100 - 65
    assert len(movie(plan, joins)) == 100


def test_a_long_story_is_cut_where_the_song_ends() -> None:
    beats = steady(120, 10.0)
    joins = [False] + [True] * 9
    plan = plan_beats([21] * 10, joins, beats, FPS, 0, 10.0)  # 2 s = 4 beats each
    # 18 beats: four transitions fit (16 beats), a fifth would end 1.0 s after the last beat
    assert plan.played == 4 and plan.left_out == 6
    assert plan.beats == (0, 5, 10, 14, 18)  # the two spare beats stretch the first two
    assert len(movie(plan, joins[:4])) == 100
    fixed = plan_beats([21] * 10, joins, beats, FPS, 0, 10.0, per_transition=4)
    assert fixed.played == 4 and fixed.beats == (0, 4, 8, 12, 16)


def test_a_song_shorter_than_one_transition_squeezes_it() -> None:
    plan = plan_beats([50, 50], [False, True], [0.5, 1.0, 1.5], FPS, 0, 2.0)
    assert plan.played == 1 and plan.beats == (0, 2) and plan.frames == (5, 15)
    assert plan.maps[0].inner == retime(50, 9)


def test_a_tempo_change_keeps_the_natural_length_in_seconds() -> None:
    slow = steady(60, 20.0, start=0.0)  # one beat a second to 20 s, then two a second
    beats = slow + [20.0 + 0.5 * i for i in range(1, 41)]
    counts = [21] * 19  # 2 s each: 2 slow beats, then 4 fast ones
    # 38.2 s of audio: the last beat a keyframe can land on is at 38 s, beat 56 = 10x2 + 9x4
    plan = plan_beats(counts, [False] + [True] * 18, beats, FPS, 0, 38.2)
    spans = [b - a for a, b in pairwise(plan.beats)]
    assert spans == [2] * 10 + [4] * 9
    assert [f / 10 for f in plan.frames] == [2.0 * i for i in range(20)]


def test_at_a_cut_the_new_image_shows_on_the_beat() -> None:
    beats = steady(120, 10.0)
    joins = [False, True, False]  # the third transition starts on another image
    plan = plan_beats([5, 5, 5], joins, beats, FPS, 1, 10.0, per_transition=2)
    assert plan.frames == (5, 15, 25, 35)
    frames = movie(plan, joins)
    assert frames.index((2, 0)) == 25  # the new image, on its beat
    # the second transition's last keyframe arrived just before, with its hold
    assert frames[23:25] == [(1, 4), (1, 4)] and (1, 4) not in frames[:23]
    assert arrivals(plan, joins) == [15, 25, 35]
    assert plan.ranges[1] == (15, 24) and plan.ranges[2][0] == 25
    assert len(frames) == 100


def test_holds_follow_the_beat() -> None:
    beats = steady(120, 10.0)
    joins = [False, True]
    plan = plan_beats([5, 5], joins, beats, FPS, 2, 10.0, per_transition=3)
    frames = movie(plan, joins)
    assert plan.frames == (5, 20, 35)
    assert frames[20:23] == [(0, 4)] * 3 and frames[23] != (0, 4)  # the held keyframe
    assert frames[:8] == [(0, 0)] * 8  # intro to the first beat, then its holds


def test_too_few_frames_per_beat_is_one_clear_error() -> None:
    with pytest.raises(MovieError, match="shorter --hold"):
        plan_beats([5, 5], [False, True], steady(240, 10.0), FPS, 2, 10.0, per_transition=1)
    with pytest.raises(MovieError, match="at least two"):
        plan_beats([5, 5], [False, True], [1.0, 30.0], FPS, 0, 10.0)


def test_beats_on_one_frame_use_the_first() -> None:
    beats = [0.5, 0.52, 1.0, 1.5, 2.0]  # 0.52 s rounds to the frame of 0.5 s
    plan = plan_beats([5], [False], beats, FPS, 0, 3.0, per_transition=2)
    assert plan.beats == (0, 3) and plan.frames == (5, 15)


@settings(max_examples=150, deadline=None)
@given(
    counts=st.lists(st.integers(2, 30), min_size=1, max_size=8),
    cuts=st.lists(st.booleans(), min_size=8, max_size=8),
    bpm=st.floats(60, 180),
    seconds=st.floats(4, 60),
    fps=st.sampled_from([Fraction(10), Fraction(24), Fraction(30000, 1001)]),
    hold=st.integers(0, 1),
    per=st.one_of(st.none(), st.integers(1, 4)),
)
@pytest.mark.slow
def test_any_story_fills_the_audio_with_keyframes_on_beats(
        counts: list[int], cuts: list[bool], bpm: float, seconds: float, fps: Fraction,
        hold: int, per: int | None) -> None:
    joins = [i > 0 and not cuts[i] for i in range(len(counts))]
    beats = steady(bpm, seconds, start=0.3)
    try:
        plan = plan_beats(counts, joins, beats, fps, hold, seconds, per)
    except MovieError:
        return  # too few frames per beat for the holds, or too few beats: said clearly
    assert plan.total == math.floor(seconds * fps + Fraction(1, 2))
    frames = movie(plan, joins)
    assert len(frames) == plan.total  # the movie lasts as long as the audio
    assert [f[0] for f in frames] == sorted(f[0] for f in frames)
    for fmap, (a, b) in zip(plan.maps, plan.ranges, strict=True):
        assert fmap.length == b - a + 1
        assert fmap.played() == sorted(fmap.played())
    for key, (b, f) in enumerate(zip(plan.beats, plan.frames, strict=True)):
        assert abs(f / fps - Fraction(beats[b])) <= Fraction(1, 2) / fps  # nearest frame
        if key:
            assert arrivals(plan, joins)[key - 1] == f
    assert plan.max_offset <= 0.5 / float(fps) + 1e-9


# ---------------------------------------------------------------- the timeline


def segs(tmp: Path, counts: list[int], sections: list[int] | None = None) -> list[Segment]:
    names = [f"i{k}" for k in range(len(counts) + 1)]
    return [Segment(f"{a} to {b}", tuple(tmp / f"frame{j:06d}.png" for j in range(n)),
                    (sections or [1] * len(counts))[k])
            for k, (a, b, n) in enumerate(zip(names, names[1:], counts, strict=False))]


def test_without_beats_every_frame_plays_once_with_its_holds(tmp_path: Path) -> None:
    segments = segs(tmp_path, [5, 4, 6])
    plan = build_timeline(segments, EncodeOptions(fps=10, hold=0.2))
    assert plan.beat_plan is None and plan.played == 3
    assert plan.maps == tuple(FrameMap.natural(n, 2) for n in (5, 4, 6))
    assert [plan.shared(i) for i in range(3)] == [0, 3, 3]
    assert [m.length for m in plan.maps] == [b - a + 1 for a, b in plan.ranges]


def test_beats_time_the_sections_and_cut_the_story(tmp_path: Path) -> None:
    segments = segs(tmp_path, [21] * 10, sections=[1, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    opts = EncodeOptions(fps=10, audio=tmp_path / "song.wav", beats=tuple(steady(120, 10.0)))
    plan = build_timeline(segments, opts, audio_duration=10.0)
    assert plan.frames == 100 and plan.fps == 10
    assert plan.played == 4 and plan.beat_plan is not None and plan.beat_plan.left_out == 6
    assert [s.section for s in plan.sections] == [1, 2]  # section 3 is past the song's end
    assert plan.sections[0].start == 0 and plan.sections[1].start == plan.ranges[3][0]
    assert plan.sections[-1].start + plan.sections[-1].frames == plan.frames
    assert plan.joins == (False, True, True, True)
    smooth = build_timeline(segments, replace(opts, smooth=25.0),
                            audio_duration=10.0)
    assert smooth.out_frames(smooth.frames) == 250  # still the audio's length


@pytest.mark.parametrize(("change", "message"), [
    ({"fit_audio": True}, "exclude each other"),
    ({"audio": None}, "beats need an audio file"),
    ({"beats_per_transition": 0}, "1 or more"),
])
def test_bad_beat_options_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    opts = {"audio": tmp_path / "song.wav", "beats": (0.5, 1.0, 1.5), **change}
    with pytest.raises(MovieError, match=message):
        build_timeline(segs(tmp_path, [5]), EncodeOptions(**opts), audio_duration=2.0)
