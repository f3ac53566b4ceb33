"""The smoothness measures and the even-pacing schedule: pure arithmetic, no pictures."""

from __future__ import annotations

import math

import pytest

from sdmorph.core import pacing
from sdmorph.core.smoothness import (
    JUMP_THRESHOLD,
    directness,
    gini,
    jump_ratio,
    measure,
    sparkline,
    step_times,
)


def naive_gini(d: list[float]) -> float:
    n, mean = len(d), sum(d) / len(d)
    return sum(abs(x - y) for x in d for y in d) / (2 * n * n * mean)


def test_even_steps_score_one_and_zero() -> None:
    d = [0.5] * 8
    assert jump_ratio(d) == 1.0
    assert gini(d) == 0.0
    assert directness(d, 4.0) == 1.0


def test_one_jump_is_the_max_over_the_median() -> None:
    d = [1.0, 1.0, 1.0, 9.0, 1.0, 1.0]
    assert jump_ratio(d) == 9.0
    m = measure(d, end_to_end=7.0)
    assert m.worst == 3 and m.jumpy and m.length == 14.0 and m.directness == 2.0
    assert m.jump_at() == pytest.approx((3 / 6, 4 / 6))  # between frames 3 and 4 of 7
    assert m.jump_at([0, 0.1, 0.2, 0.3, 0.35, 0.9, 1.0]) == (0.3, 0.35)


@pytest.mark.parametrize("d", [[1.0, 2.0, 3.0], [0.0, 0.0, 5.0], [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]])
def test_gini_matches_the_definition(d: list[float]) -> None:
    assert gini(d) == pytest.approx(naive_gini(d))


def test_gini_of_all_change_in_one_step_tends_to_one() -> None:
    assert gini([0.0] * 99 + [1.0]) == pytest.approx(0.99)


def test_degenerate_inputs() -> None:
    assert jump_ratio([]) == 1.0 and gini([]) == 0.0
    assert jump_ratio([0.0, 0.0]) == 1.0 and gini([0.0, 0.0]) == 0.0
    assert math.isinf(jump_ratio([0.0, 0.0, 1.0]))
    assert directness([0.0], 0.0) == 1.0 and math.isinf(directness([1.0], 0.0))
    assert JUMP_THRESHOLD > 1


def test_step_times_fall_back_to_even_spacing() -> None:
    assert step_times(5, 1) == (0.25, 0.5)
    assert step_times(5, 1, [0, 0.1, 0.2, 0.9, 1]) == (0.1, 0.2)
    assert step_times(5, 1, [0, 1]) == (0.25, 0.5)  # times of another length: ignored


def test_sparkline_keeps_a_jump_when_pooling() -> None:
    assert sparkline([1, 1, 8]) == "▁▁█"
    line = sparkline([1.0] * 100 + [50.0] + [1.0] * 99, width=20)
    assert len(line) == 20 and line.count("█") == 1
    assert sparkline([]) == "" and sparkline([0, 0]) == "▁▁"


# ------------------------------------------------------------------ pacing schedule


def test_probe_budget_keeps_renders_within_one_and_a_half_times_linear() -> None:
    for frames in range(2, 80):
        inner = frames - 2
        assert pacing.probe_budget(frames) + inner <= 1.5 * inner
        assert len(pacing.initial_probes(pacing.probe_budget(frames))) <= \
            pacing.probe_budget(frames)


def test_rounds_split_the_largest_steps_first() -> None:
    g = pacing.GRID
    points = [0, g // 4, g // 2, 3 * g // 4, g]
    d = [1.0, 5.0, 1.0, 2.0]
    assert pacing.next_probes(points, d, left=1) == [3 * g // 8]
    assert pacing.next_probes(points, d, left=0) == []
    # A quarter of the intervals per round (at least one), largest first, sorted by t.
    eight = [i * g // 8 for i in range(9)]
    assert pacing.next_probes(eight, [1, 9, 1, 1, 1, 1, 8, 1], left=10) == [
        3 * g // 16, 13 * g // 16]


def test_intervals_narrower_than_the_minimum_are_not_split() -> None:
    w = pacing.MIN_WIDTH
    assert pacing.next_probes([0, w, pacing.GRID], [100.0, 1.0], left=5) == [
        (w + pacing.GRID) // 2]


def test_even_times_follow_the_cumulative_distance() -> None:
    g = pacing.GRID
    # All the change in the second half: the frames gather there.
    times = pacing.even_times([0, g // 2, g], [0.0, 8.0], frames=5)
    assert times[0] == 0 and times[-1] == g
    assert all(t > g // 2 for t in times[1:-1])
    assert times == sorted(set(times))


def test_even_times_reuse_probes_near_a_target() -> None:
    g = pacing.GRID
    # Equal steps between evenly spread probes: every target is a probe.
    assert pacing.even_times([0, g // 4, g // 2, 3 * g // 4, g], [1, 1, 1, 1], 5) == [
        0, g // 4, g // 2, 3 * g // 4, g]


def test_a_transition_even_already_keeps_linear_times() -> None:
    g = pacing.GRID
    assert pacing.even_times([0, g // 2, g], [1.0, 1.1], 9) == [i * g // 8 for i in range(9)]
    # Unequal halves: the frames move where the change is.
    moved = pacing.even_times([0, g // 2, g], [1.0, 3.0], 9)
    assert sum(1 for k in moved if k > g // 2) > 4


def test_nothing_changes_gives_evenly_spaced_frames() -> None:
    g = pacing.GRID
    assert pacing.even_times([0, g], [0.0], 5) == [0, g // 4, g // 2, 3 * g // 4, g]


def test_times_stay_distinct_and_exact() -> None:
    g = pacing.GRID
    times = pacing.even_times([0, 1, g], [1e9, 1e-9], frames=7)  # a snap in 1/2^20 of t
    assert times == sorted(set(times)) and times[0] == 0 and times[-1] == g
    assert all(pacing.as_t(k) * g == k for k in times)
    with pytest.raises(ValueError):
        pacing.even_times([0, g // 2], [1.0], 3)
