"""The old scripts' quirks, read in one place.

The old scripts cut seeds to their first 4 digits in transition folder names, story files
and scene sequences, joined prompt names (which may hold spaces, hyphens and even " to ")
with those digits by a hyphen, and left frames named `frame%06d.png`. Everything in sdmorph
that reads such names goes through here, so the rules for resolving them live in one place
and a name is never guessed: it resolves to exactly one image or it is reported.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import ImageId

# The old scripts wrote `str(seed)[:4]` wherever a seed appeared in a name.
LEGACY_SEED_DIGITS = 4
FRAME_RE = re.compile(r"^frame([0-9]{6})\.png\Z")
_SEP = " to "
_LABEL_RE = re.compile(r"^(.+)-([0-9]+)\Z", re.DOTALL)
_DIGITS_RE = re.compile(r"^[0-9]+\Z")
_KNOWN_SHOWN = 12


class SeedRefError(SdmorphError):
    """A seed reference matches none, or more than one, of a prompt's seeds."""

    def __init__(self, reason: str, *, ambiguous: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ambiguous = ambiguous


@dataclass(frozen=True)
class LegacyName:
    """A transition folder name resolved to two full images."""

    a: ImageId
    b: ImageId


@dataclass(frozen=True)
class Unparsed:
    """A folder name that names no single transition; `reason` says why."""

    reason: str
    ambiguous: bool = False


def _join(values: Sequence[object]) -> str:
    texts = [str(v) for v in values]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


def _known(seeds: Sequence[int]) -> str:
    if not seeds:
        return "none"
    shown = ", ".join(str(s) for s in seeds[:_KNOWN_SHOWN])
    return shown + (f", ... ({len(seeds)} seeds)" if len(seeds) > _KNOWN_SHOWN else "")


def _candidates(digits: str, seeds: Sequence[int], cut: int | None) -> list[int]:
    unique = list(dict.fromkeys(seeds))
    value = int(digits)
    prefixed = [s for s in unique if str(s).startswith(digits)]
    if cut is None:
        # References written by hand: an exact seed wins over seeds that merely start with it.
        return [value] if value in unique else prefixed
    # Names the old scripts wrote: a reference of exactly `cut` digits is what any seed
    # starting with those digits became, so an exact seed does not win over longer ones.
    exact = [value] if value in unique else []
    if len(digits) != cut:
        return exact
    return list(dict.fromkeys(exact + prefixed))


def resolve_seed_ref(
    prompt: str, digits: str, seeds: Sequence[int], *, cut: int | None = None
) -> int:
    """Resolve a seed reference from an old file to one of `prompt`'s full seeds.

    The reference matches the seed equal to `int(digits)` ("0001" means 1), else the one
    seed whose decimal form starts with `digits`. With `cut` (the old scripts' cut length,
    for names they generated), a `cut`-digit reference matches every seed starting with it,
    the equal one included, and other lengths match only exactly. Raises `SeedRefError`
    when nothing or more than one seed matches.
    """
    digits = digits.strip()
    if not _DIGITS_RE.match(digits):
        raise SeedRefError(f"prompt '{prompt}': '{digits}' is not a seed (digits only)")
    found = _candidates(digits, seeds, cut)
    if not found:
        raise SeedRefError(
            f"prompt '{prompt}': unknown seed {digits} (known: {_known(list(seeds))})"
        )
    if len(found) > 1:
        raise SeedRefError(
            f"prompt '{prompt}': ambiguous: {digits} matches {_join(sorted(found))}",
            ambiguous=True,
        )
    return found[0]


def _lookup_prompt(name: str, seeds_by_prompt: Mapping[str, Sequence[int]]) -> str | None:
    if name in seeds_by_prompt:
        return name
    # Folders copied from macOS keep decomposed (NFD) unicode; the sheet is usually NFC.
    wanted = unicodedata.normalize("NFC", name)
    for known in seeds_by_prompt:
        if unicodedata.normalize("NFC", known) == wanted:
            return known
    return None


@dataclass(frozen=True)
class _SideFailure:
    """Why one side of a name names no image; `prompt_known` ranks the explanations."""

    problem: Unparsed
    prompt_known: bool


def _resolve_label(
    label: str, seeds_by_prompt: Mapping[str, Sequence[int]]
) -> ImageId | _SideFailure | None:
    """One side of a name: an image, why it names none, or None if not `<prompt>-<digits>`."""
    match = _LABEL_RE.match(label)
    if not match:
        return None
    prompt = _lookup_prompt(match.group(1), seeds_by_prompt)
    if prompt is None:
        reason = f"unknown prompt '{match.group(1)}' (not in the prompt sheet)"
        return _SideFailure(Unparsed(reason), prompt_known=False)
    try:
        seed = resolve_seed_ref(
            prompt, match.group(2), seeds_by_prompt[prompt], cut=LEGACY_SEED_DIGITS
        )
    except SeedRefError as err:
        return _SideFailure(Unparsed(err.reason, err.ambiguous), prompt_known=True)
    return ImageId(prompt, seed)


def _split_points(name: str) -> list[int]:
    points, start = [], name.find(_SEP)
    while start != -1:
        points.append(start)
        start = name.find(_SEP, start + 1)
    return points


def _pick_failure(failures: list[list[_SideFailure]]) -> Unparsed:
    # A split whose prompts are both known tells the artist more than "unknown prompt".
    best = [f for f in failures if all(side.prompt_known for side in f)] or failures
    problems = [side.problem for f in best for side in f]
    reasons = list(dict.fromkeys(p.reason for p in problems))
    return Unparsed("; ".join(reasons), ambiguous=all(p.ambiguous for p in problems))


def parse_legacy_name(
    name: str, seeds_by_prompt: Mapping[str, Sequence[int]]
) -> LegacyName | Unparsed:
    """Parse `<from prompt>-<digits> to <to prompt>-<digits>` against the prompt sheet.

    Every " to " is tried as the separator; exactly one split naming known images parses.
    Unknown prompts, unknown or ambiguous seeds and several valid splits give `Unparsed`.
    """
    parsed: list[LegacyName] = []
    failures: list[list[_SideFailure]] = []
    for point in _split_points(name):
        left = _resolve_label(name[:point], seeds_by_prompt)
        right = _resolve_label(name[point + len(_SEP) :], seeds_by_prompt)
        if left is None or right is None:
            continue
        if isinstance(left, ImageId) and isinstance(right, ImageId):
            parsed.append(LegacyName(left, right))
        else:
            failures.append([side for side in (left, right) if isinstance(side, _SideFailure)])
    if len(parsed) == 1:
        return parsed[0]
    if parsed:
        options = _join([f"'{p.a.label}' to '{p.b.label}'" for p in parsed])
        return Unparsed(f"ambiguous: the name splits as {options}", ambiguous=True)
    if failures:
        return _pick_failure(failures)
    return Unparsed("not a transition folder name")


def frame_name(index: int) -> str:
    """The file name of frame `index` (0-based), as the old scripts and sdmorph write it."""
    return f"frame{index:06d}.png"


def frame_index(name: str) -> int | None:
    """The index of a frame file name, or None for anything else (duplicates, temp files)."""
    match = FRAME_RE.match(name)
    return int(match.group(1)) if match else None


def frame_files(folder: Path) -> list[Path]:
    """The frame files in `folder`, sorted by index; `frame000003 (1).png` and such ignored."""
    if not folder.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            index = frame_index(entry.name)
            if index is not None and entry.is_file():
                found.append((index, Path(entry.path)))
    return [path for _, path in sorted(found)]
