"""How smooth a morph is, from the distances between its consecutive frames (pure math).

A transition of n frames has n - 1 distances d_i = d(frame_i, frame_i+1). Measures, as the
papers use them:

- jump ratio J = max(d) / median(d): 1 when every step changes the picture equally; a snap
  (one shape turning into another between two frames) shows as a J of 3 and more;
- Gini(d) = sum_ij |d_i - d_j| / (2 n^2 mean(d)) (AID reports 1 - Gini): 0 for even steps,
  towards 1 when one step holds all the change;
- path length sum(d) (DiffMorpher's PPL) and directness sum(d) / d(first, last): 1 for a
  morph that goes straight from one keyframe to the other, more for one that wanders.

The distance itself is measured on pictures, elsewhere (`sdmorph.media.frame_distance`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# J above this is a jump a viewer notices (issue 22: random-weight morphs score 1.0-1.1,
# a visible snap 3 and more).
JUMP_THRESHOLD = 2.5
SPARK_BARS = "▁▂▃▄▅▆▇█"


def jump_ratio(d: Sequence[float]) -> float:
    """max(d) / median(d); 1.0 for no change at all, inf when most steps do not change."""
    if not len(d):
        return 1.0
    top, middle = float(np.max(d)), float(np.median(d))
    if middle > 0:
        return top / middle
    return 1.0 if top == 0 else math.inf


def gini(d: Sequence[float]) -> float:
    """Gini coefficient of the steps: 0 when all are equal (or all zero)."""
    values = np.asarray(d, dtype=np.float64)
    n = len(values)
    if n == 0 or values.mean() <= 0:
        return 0.0
    # sum_ij |d_i - d_j| from the sorted values in O(n log n): each d_(k) is larger than
    # the k before it and smaller than the n - 1 - k after it.
    ordered = np.sort(values)
    weights = 2 * np.arange(n) - n + 1
    pairwise = 2 * float(np.dot(weights, ordered))
    return pairwise / (2 * n * n * values.mean())


def directness(d: Sequence[float], end_to_end: float) -> float:
    """Path length over the distance between the first and last frame (>= 1 for a metric)."""
    length = float(np.sum(d))
    if end_to_end > 0:
        return length / end_to_end
    return 1.0 if length == 0 else math.inf


@dataclass(frozen=True)
class Smoothness:
    """The measures of one transition, and where its largest step lies."""

    d: tuple[float, ...]
    jump: float
    gini: float
    length: float
    directness: float
    worst: int  # index i of the largest step, between frames i and i + 1

    def jump_at(self, times: Sequence[float] | None = None) -> tuple[float, float]:
        """(t before, t after) the largest step; evenly spaced t unless `times` are given."""
        return step_times(len(self.d) + 1, self.worst, times)

    @property
    def jumpy(self) -> bool:
        return self.jump > JUMP_THRESHOLD


def measure(d: Sequence[float], end_to_end: float) -> Smoothness:
    """Every measure of a transition with steps `d` and d(first, last) = `end_to_end`."""
    steps = tuple(float(x) for x in d)
    worst = int(np.argmax(steps)) if steps else 0
    return Smoothness(steps, jump_ratio(steps), gini(steps), float(sum(steps)),
                      directness(steps, end_to_end), worst)


def step_times(frames: int, index: int,
               times: Sequence[float] | None = None) -> tuple[float, float]:
    """The t of frames `index` and `index + 1` of a transition of `frames` frames."""
    if times is not None and len(times) == frames:
        return float(times[index]), float(times[index + 1])
    last = max(frames - 1, 1)
    return index / last, (index + 1) / last


def sparkline(d: Sequence[float], width: int = 32) -> str:
    """The steps as block characters, scaled to the largest; at most `width` characters.

    Longer transitions are pooled by maximum, so a one-step jump never averages away.
    """
    values = np.asarray(d, dtype=np.float64)
    if len(values) == 0:
        return ""
    if len(values) > width:
        edges = np.linspace(0, len(values), width + 1).round().astype(int)
        values = np.array([values[a:b].max() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    top = values.max()
    if top <= 0:
        return SPARK_BARS[0] * len(values)
    # Bar k (0-based) holds steps up to (k + 1) / 8 of the largest.
    levels = np.clip(np.ceil(values / top * len(SPARK_BARS)).astype(int) - 1, 0,
                     len(SPARK_BARS) - 1)
    return "".join(SPARK_BARS[k] for k in levels)
