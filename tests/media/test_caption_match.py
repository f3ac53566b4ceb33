"""Judging a picture against its caption, on pictures painted here with known contents."""

from __future__ import annotations

import numpy as np

from sdmorph.core.vocabulary import COLOURS, SETTINGS, parse_caption
from sdmorph.media.caption_match import (
    EVALUATION_PROMPTS,
    background_matches,
    follows_words,
    measured_object_colour,
    object_colour_matches,
)


def _scene(setting: str, colour: str | None, size: int = 64) -> np.ndarray:
    """A setting's two halves at its horizon, and a square object in `colour` (if any)."""
    look = SETTINGS[setting]
    image = np.empty((size, size, 3), dtype=np.float32)
    horizon = int(look.horizon * size)
    image[:horizon], image[horizon:] = look.above, look.below
    if colour is not None:
        image[8:24, 20:36] = COLOURS[colour]
    return image.round().astype(np.uint8)


def test_the_object_colour_is_found_and_the_background_ignored() -> None:
    for colour in COLOURS:
        picture = _scene("sea", colour)
        assert measured_object_colour(picture, f"a {colour} sun over the sea") == colour
    assert measured_object_colour(_scene("sea", None), "a red sun over the sea") is None


def test_a_wrong_colour_does_not_match() -> None:
    picture = _scene("desert", "blue")
    assert object_colour_matches(picture, "a blue tree in the desert")
    assert not object_colour_matches(picture, "a red tree in the desert")


def test_an_unnamed_colour_is_the_objects_usual_one() -> None:
    assert object_colour_matches(_scene("sky", "yellow"), "the sun in the sky")


def test_the_background_names_its_setting() -> None:
    for setting in SETTINGS:
        picture = (_scene(setting, None).astype(np.float32) * 0.95).astype(np.uint8)
        assert background_matches(picture, f"a tree in the {setting}")
        others = [s for s in SETTINGS if s != setting]
        assert not background_matches(picture, f"a tree in the {others[0]}")


def test_every_evaluation_prompt_names_an_object_colour() -> None:
    assert len(EVALUATION_PROMPTS) == 10
    assert all(parse_caption(p).things[0].colour for p in EVALUATION_PROMPTS)


def test_follows_words_gives_the_share_each_judge_accepts() -> None:
    pictures = [_scene("desert", "blue"), _scene("desert", "blue"), _scene("sea", "red")]
    captions = ["a blue tree in the desert", "a red tree in the desert", "a red sun in the snow"]
    colour, background = follows_words(pictures, captions)
    assert colour == 1 / 3 and background == 2 / 3
    assert follows_words([], []) == (0.0, 0.0)
