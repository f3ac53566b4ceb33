"""The built-in model's words: captions in any order map onto the same scene."""

from __future__ import annotations

import pytest

from sdmorph.core.vocabulary import COLOURS, OBJECTS, SETTINGS, WORDS, Thing, parse_caption


@pytest.mark.parametrize(("caption", "things", "setting", "night"), [
    ("a red sun over a blue sea", (Thing("sun", "red"),), "sea", False),
    ("over the sea a red sun", (Thing("sun", "red"),), "sea", False),
    ("a white house in a green forest", (Thing("house", "white"),), "forest", False),
    ("sea at night with a yellow moon", (Thing("moon", "yellow"),), "sea", True),
    ("night", (), "night", False),
    ("the purple flower and a pink cloud in the desert",
     (Thing("flower", "purple"), Thing("cloud", "pink")), "desert", False),
    ("a tree", (Thing("tree"),), None, False),
])
def test_captions_map_onto_scenes(caption, things, setting, night) -> None:
    scene = parse_caption(caption)
    assert (scene.things, scene.setting, scene.night) == (things, setting, night)


def test_unknown_words_are_skipped_and_defaults_fill_in() -> None:
    scene = parse_caption("A beautiful Tree, highly detailed, under SNOW")
    assert scene.things == (Thing("tree"),) and scene.setting == "snow"
    assert scene.things[0].shown_colour == "green"


def test_night_darkens_another_setting() -> None:
    day, night = parse_caption("sea").background(), parse_caption("sea at night").background()
    assert sum(night[0]) < sum(day[0]) and sum(night[1]) < sum(day[1])


def test_every_word_the_issue_names_is_known() -> None:
    named = ("red orange yellow green blue purple pink white black sun moon star tree house "
             "mountain flower cloud sky sea forest night desert snow")
    assert set(named.split()) <= set(WORDS)
    assert len(set(WORDS)) == len(WORDS)
    assert set(COLOURS) | set(OBJECTS) | set(SETTINGS) <= set(WORDS)
