"""Image identities: an image is a (prompt name, full seed) pair; seeds are never cut."""

from __future__ import annotations

from typing import NamedTuple


class ImageId(NamedTuple):
    """One keyframe image: a prompt rendered with one seed."""

    prompt: str
    seed: int

    @property
    def stem(self) -> str:
        """`<prompt>_<seed>`: keyframe file stem, and how scene sequences name images."""
        return f"{self.prompt}_{self.seed}"

    @property
    def label(self) -> str:
        """`<prompt>-<seed>`: how transition folders and story files name images."""
        return f"{self.prompt}-{self.seed}"

    def __str__(self) -> str:
        return self.stem


def transition_name(a: ImageId, b: ImageId) -> str:
    """The old scripts' folder name for a transition, with full seeds."""
    return f"{a.label} to {b.label}"


# A transition and its reverse share their frames (played backwards), so whatever asks
# "is this transition there?" asks about the unordered pair.
Pair = frozenset[ImageId]


def pair_key(a: ImageId, b: ImageId) -> Pair:
    """The unordered pair {a, b}: the one key for "the transition between a and b"."""
    return frozenset((a, b))

# A transition in one direction: (from, to).
Ends = tuple[ImageId, ImageId]
