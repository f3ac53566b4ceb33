"""The old scripts' quirks: seed references, transition folder names, frame files."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import ImageId, transition_name
from sdmorph.formats.legacy import (
    LegacyName,
    SeedRefError,
    Unparsed,
    frame_files,
    frame_index,
    frame_name,
    parse_legacy_name,
    resolve_seed_ref,
)

SEEDS = {
    "luna": [5842234013956479, 12, 1000],
    "sun": [12, 777],
    "cloud goddess": [4440123, 4440999, 1234567],
    "star-child": [1234, 98765],
    "walk to sea": [31415926],
    "sea": [2718281],
}


def tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


# ----- resolve_seed_ref -------------------------------------------------------------------


def test_exact_seed_wins_even_when_it_prefixes_others() -> None:
    assert resolve_seed_ref("luna", "12", [1234, 12]) == 12
    assert resolve_seed_ref("luna", "5842234013956479", SEEDS["luna"]) == 5842234013956479


def test_four_digit_prefix_resolves_to_the_full_seed() -> None:
    assert resolve_seed_ref("luna", "5842", SEEDS["luna"]) == 5842234013956479
    assert resolve_seed_ref("cloud goddess", "1234", SEEDS["cloud goddess"]) == 1234567


def test_leading_zeros_mean_the_integer() -> None:
    assert resolve_seed_ref("x", "0001", [1, 100]) == 1


def test_ambiguous_prefix_names_both_seeds() -> None:
    with pytest.raises(SeedRefError) as err:
        resolve_seed_ref("cloud goddess", "4440", SEEDS["cloud goddess"])
    assert err.value.ambiguous
    assert "ambiguous: 4440 matches 4440123 and 4440999" in str(err.value)
    assert "cloud goddess" in str(err.value)
    assert isinstance(err.value, SdmorphError)


def test_unknown_seed_lists_the_known_ones() -> None:
    with pytest.raises(SeedRefError) as err:
        resolve_seed_ref("sun", "4441", SEEDS["sun"])
    assert not err.value.ambiguous
    assert "unknown seed 4441" in err.value.reason
    assert "(known: 12, 777)" in err.value.reason


def test_unknown_seed_of_a_prompt_without_seeds() -> None:
    with pytest.raises(SeedRefError, match=r"known: none"):
        resolve_seed_ref("new", "12", [])


def test_long_known_list_is_cut_short() -> None:
    with pytest.raises(SeedRefError) as err:
        resolve_seed_ref("many", "5", list(range(100, 200)))
    assert "100 seeds" in err.value.reason
    assert len(err.value.reason) < 200


@pytest.mark.parametrize("bad", ["", "12a", "-12", "1 2", "١٢"])
def test_non_digits_are_not_seeds(bad: str) -> None:
    with pytest.raises(SeedRefError, match="not a seed"):
        resolve_seed_ref("luna", bad, [12])


def test_cut_mode_treats_a_four_digit_seed_and_its_extensions_as_ambiguous() -> None:
    # The old scripts wrote both 4440 and 4440123 as "4440": that name is truly ambiguous.
    assert resolve_seed_ref("p", "4440", [4440, 4440123]) == 4440
    with pytest.raises(SeedRefError, match="4440 matches 4440 and 4440123"):
        resolve_seed_ref("p", "4440", [4440, 4440123], cut=4)
    # Shorter than the cut: the old scripts wrote such a seed whole, so only exact matches.
    with pytest.raises(SeedRefError, match="unknown seed 44"):
        resolve_seed_ref("p", "44", [4440123], cut=4)
    assert resolve_seed_ref("p", "44", [44, 4440123], cut=4) == 44


def test_duplicate_seeds_in_the_sheet_are_not_ambiguous() -> None:
    assert resolve_seed_ref("p", "4440", [4440123, 4440123]) == 4440123


# ----- parse_legacy_name ------------------------------------------------------------------


def test_legacy_name_resolves_to_full_seeds() -> None:
    parsed = parse_legacy_name("luna-5842 to sun-12", SEEDS)
    assert parsed == LegacyName(ImageId("luna", 5842234013956479), ImageId("sun", 12))


def test_sdmorph_full_seed_names_parse_too() -> None:
    name = transition_name(ImageId("luna", 5842234013956479), ImageId("sun", 777))
    assert parse_legacy_name(name, SEEDS) == LegacyName(
        ImageId("luna", 5842234013956479), ImageId("sun", 777)
    )


def test_names_with_spaces_and_hyphens() -> None:
    parsed = parse_legacy_name("cloud goddess-1234 to star-child-1234", SEEDS)
    assert parsed == LegacyName(ImageId("cloud goddess", 1234567), ImageId("star-child", 1234))


def test_prompt_names_containing_to() -> None:
    parsed = parse_legacy_name("walk to sea-3141 to sea-2718", SEEDS)
    assert parsed == LegacyName(ImageId("walk to sea", 31415926), ImageId("sea", 2718281))
    parsed = parse_legacy_name("sea-2718 to walk to sea-3141", SEEDS)
    assert parsed == LegacyName(ImageId("sea", 2718281), ImageId("walk to sea", 31415926))


def test_two_valid_splits_are_ambiguous_not_guessed() -> None:
    sheet = {"a": [1], "a-1 to b": [2], "b-2 to c": [3], "c": [3]}
    parsed = parse_legacy_name("a-1 to b-2 to c-3", sheet)
    assert isinstance(parsed, Unparsed)
    assert parsed.ambiguous
    assert "'a-1' to 'b-2 to c-3'" in parsed.reason
    assert "'a-1 to b-2' to 'c-3'" in parsed.reason


def test_ambiguous_prefix_is_reported_with_both_seeds() -> None:
    parsed = parse_legacy_name("cloud goddess-4440 to sun-12", SEEDS)
    assert isinstance(parsed, Unparsed)
    assert parsed.ambiguous
    assert "4440123" in parsed.reason and "4440999" in parsed.reason


def test_unknown_prompt_is_reported() -> None:
    parsed = parse_legacy_name("mars-1234 to sun-12", SEEDS)
    assert isinstance(parsed, Unparsed)
    assert not parsed.ambiguous
    assert "unknown prompt 'mars'" in parsed.reason


def test_unknown_seed_is_reported() -> None:
    parsed = parse_legacy_name("luna-9999 to sun-12", SEEDS)
    assert isinstance(parsed, Unparsed)
    assert not parsed.ambiguous
    assert "unknown seed 9999" in parsed.reason and "'luna'" in parsed.reason


def test_known_prompt_problem_is_preferred_over_unknown_prompt_split() -> None:
    # Splitting at the first " to " gives prompt "walk" (unknown); the second split knows
    # both prompts and only the seed is wrong: that is the useful explanation.
    parsed = parse_legacy_name("walk to sea-9999 to sea-2718", SEEDS)
    assert isinstance(parsed, Unparsed)
    assert "unknown seed 9999" in parsed.reason
    assert "unknown prompt" not in parsed.reason


@pytest.mark.parametrize(
    "name", ["wrong_num_images", "TI_bad", "luna-5842", "luna to sun", "luna-x to sun-12", ""]
)
def test_names_of_another_shape_are_not_transitions(name: str) -> None:
    assert parse_legacy_name(name, SEEDS) == Unparsed("not a transition folder name")


def test_decomposed_unicode_names_from_macos_parse() -> None:
    sheet = {"café": [4242], "sun": [12]}
    name = unicodedata.normalize("NFD", "café-4242 to sun-12")
    assert parse_legacy_name(name, sheet) == LegacyName(ImageId("café", 4242), ImageId("sun", 12))


# Spaces, hyphens and " to " inside prompt names; no digits, as in every real sheet.
_PROMPT = st.text(alphabet="ato -xé", min_size=1, max_size=14)


@settings(max_examples=60, deadline=None)
@given(
    prompts=st.lists(_PROMPT, min_size=2, max_size=2, unique=True),
    seeds=st.lists(st.integers(1, 10**16), min_size=2, max_size=2),
)
def test_names_the_old_scripts_wrote_parse_back(prompts: list[str], seeds: list[int]) -> None:
    a, b = ImageId(prompts[0], seeds[0]), ImageId(prompts[1], seeds[1])
    sheet = {a.prompt: [a.seed], b.prompt: [b.seed]}
    name = f"{a.prompt}-{str(a.seed)[:4]} to {b.prompt}-{str(b.seed)[:4]}"
    assert parse_legacy_name(name, sheet) == LegacyName(a, b)


# ----- frame files ------------------------------------------------------------------------


def test_frame_names_round_trip() -> None:
    assert frame_name(3) == "frame000003.png"
    assert frame_index("frame000003.png") == 3
    assert frame_index("frame000003 (1).png") is None
    assert frame_index("frame0000031.png") is None


def test_frame_files_sorted_and_ignoring_everything_else(tmp_path: Path) -> None:
    data = tiny_png()
    for i in (2, 0, 10, 1):
        (tmp_path / frame_name(i)).write_bytes(data)
    for junk in ("frame000003 (1).png", ".DS_Store", ".frame000004.png.x.sdmorph-tmp.png"):
        (tmp_path / junk).write_bytes(data)
    (tmp_path / "frame000005.png").mkdir()  # a folder with a frame's name is not a frame
    assert [p.name for p in frame_files(tmp_path)] == [frame_name(i) for i in (0, 1, 2, 10)]


def test_frame_files_of_a_missing_folder(tmp_path: Path) -> None:
    assert frame_files(tmp_path / "nope") == []
