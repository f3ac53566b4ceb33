"""Shared denoising (`sharing: s`): which frames an in-between starts from, and at which step
(pure arithmetic; the engine keeps the states, the transitions stage renders).

A frame of a transition normally costs a full denoising from its own noise. With s > 0 the two
keyframes' inputs are denoised once more inside the transition (their pictures are not used:
frames 0 and n - 1 stay the keyframe files), and every in-between joins late: its latents, and
the scheduler's per-frame history (PNDM's last noise predictions), are the slerp of its two
parents' states at the join step, and from there it denoises with its own prompt mix, guidance,
negative prompt and ControlNet mask, as a full render would.

The frames form a tree, built like the bisection of even pacing:
- `pacing: linear`: the middle frame is the first level (parents: the keyframes), the middle
  of each half the next, and so on (`bisection`).
- `pacing: even`: the probes are placed between the nearest points already rendered, the
  coarse ones of the first grid first (`between`), and the final frames between the nearest
  probes or keyframes, so frames go where neighbours differ most, as latentblending places its
  branches.

A frame of level l (keyframes are level 0) joins at a depth of the steps: 0.6 s at level 1,
0.8 s at level 2, s from level 3 on (`join_step`). The first in-betweens stay shallow so they
find their own layout between two different keyframes; the many deep ones lie between close
neighbours, where joining late costs little and keeps the morph continuous. Parents always
join earlier than (or as early as) their children. Most frames are deep, so an in-between costs
about (1 - s) of a full render; the keyframes' second denoising adds 2 full renders per
transition.

No crossfeed (latentblending pulls a branch toward its parents for a while after it joins):
the pull is toward a cross-fade of the parents, the ghosting a morph must avoid, and joining
between close neighbours already keeps a frame near them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

SHARING_MAX = 0.95  # s < 1: a frame needs at least one denoising step of its own
_LEVEL_SHARE = {1: 0.6, 2: 0.8}  # share of the depth s that shallow levels join at


@dataclass(frozen=True)
class Branch:
    """A frame (`key`) that starts between two placed frames (`left` < key < `right`)."""

    key: int
    left: int
    right: int
    level: int


def join_step(level: int, sharing: float, iterations: int) -> int:
    """The denoising iteration (0..iterations - 1) a frame of `level` joins at; 0 for s = 0,
    where joining at 0 is the render from the slerped noise it always was."""
    if sharing <= 0 or level <= 0:
        return 0
    share = sharing * _LEVEL_SHARE.get(level, 1.0)
    return min(iterations - 1, round(share * iterations))


def bisection(frames: int) -> list[Branch]:
    """The in-betweens of `frames` frames (keys are indices; 0 and frames - 1 are the
    keyframes), each between the ends of the interval it halves, by level then index."""
    out: list[Branch] = []
    todo = [(0, frames - 1, 1)]
    while todo:
        lo, hi, level = todo.pop()
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        out.append(Branch(mid, lo, hi, level))
        todo += [(lo, mid, level + 1), (mid, hi, level + 1)]
    return sorted(out, key=lambda b: (b.level, b.key))


def between(placed: Mapping[int, int], new: Sequence[int], *, chain: bool = True) -> list[Branch]:
    """Branches for `new` keys between their nearest `placed` keys (key -> level) either side.

    With `chain`, new keys become parents of later ones, coarsest first (most trailing zero
    bits, so a uniform grid of 2^k points forms a bisection tree); else each starts from the
    placed keys only. Sorted by level then key: parents come first.
    """
    levels = dict(placed)
    order = sorted(new, key=lambda k: (-_coarseness(k), k)) if chain else sorted(new)
    out = []
    for key in order:
        if key in levels:
            raise ValueError(f"key {key} is placed already")
        left = max(k for k in levels if k < key)
        right = min(k for k in levels if k > key)
        branch = Branch(key, left, right, 1 + max(levels[left], levels[right]))
        out.append(branch)
        if chain:
            levels[key] = branch.level
    return sorted(out, key=lambda b: (b.level, b.key))


def cluster_refusal(sharing: float) -> str | None:
    """Why `sharing` cannot render on a Ray cluster (None: it can). The states of a tree live
    in the one process that grows it; a cluster's workers each hold their own."""
    if sharing <= 0:
        return None
    return (f"shared denoising (sharing {sharing:g}) keeps its states in one process and "
            "cannot run on a Ray cluster yet; use --sharing 0 with --cluster")


def with_ancestors(branches: Sequence[Branch], keys: Collection[int]) -> set[int]:
    """The branch keys among `keys`, and every branch they start from, however far up."""
    parents = {b.key: (b.left, b.right) for b in branches}
    out: set[int] = set()
    todo = [k for k in keys if k in parents]
    while todo:
        key = todo.pop()
        if key in parents and key not in out:
            out.add(key)
            todo += parents[key]
    return out


def _coarseness(key: int) -> int:
    return (key & -key).bit_length() if key else 64


def cost(branches: Sequence[Branch], sharing: float, iterations: int) -> float:
    """Mean share of a full render the branches cost (the keyframes' own not counted)."""
    if not branches:
        return 0.0
    spent = sum(iterations - join_step(b.level, sharing, iterations) for b in branches)
    return spent / (len(branches) * iterations)
