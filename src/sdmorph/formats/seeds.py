"""The `seeds` cell of a prompt sheet: whole numbers separated by spaces, commas or ", ".

One definition for the loader and for `explore --keep`, which edits the cell in place.
"""

from __future__ import annotations

import re

# Seeds are drawn as unsigned 64-bit (torch generators take no more): no sheet may hold a
# seed the renderer would refuse.
MAX_SEED = 2**64 - 1
SEED_RANGE_TEXT = "0..2^64-1"
EXPECTED_SEEDS = f"seeds are whole numbers {SEED_RANGE_TEXT} separated by spaces, ',' or ', '"
_SPLIT = re.compile(r"[\s,]+")


def is_seed(token: str) -> bool:
    """ASCII digits only (other scripts' digits are not seeds), within the seed range."""
    return token.isascii() and token.isdigit() and int(token) <= MAX_SEED


def parse_seeds(text: str) -> tuple[list[int], list[str]]:
    """(seeds, tokens that are not seeds) of one cell."""
    tokens = [token for token in _SPLIT.split(text.strip()) if token]
    return [int(t) for t in tokens if is_seed(t)], [t for t in tokens if not is_seed(t)]
