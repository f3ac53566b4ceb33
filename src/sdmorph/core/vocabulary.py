"""The words the trained `tiny` model knows, what they look like, and how captions map onto them.

Pure Python on purpose: the training script draws its scenes from these tables and the tests
check rendered pictures against the same tables, so both agree without importing torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RGB = tuple[int, int, int]

# Object colours, spread out in RGB so that a rendered object's colour is unambiguous.
COLOURS: dict[str, RGB] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (245, 225, 40),
    "green": (40, 190, 50),
    "blue": (40, 80, 245),
    "purple": (140, 45, 200),
    "pink": (250, 135, 200),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}


@dataclass(frozen=True)
class Setting:
    """A background: `above` fills the picture over the horizon, `below` under it."""

    above: RGB
    below: RGB
    horizon: float  # where the ground starts, as a fraction of the height from the top
    adjective: str  # the colour word a caption may put before the setting ("a blue sea")


SETTINGS: dict[str, Setting] = {
    "sky": Setting((135, 195, 240), (80, 150, 60), 0.75, "blue"),
    "sea": Setting((185, 215, 240), (25, 60, 130), 0.5, "blue"),
    "forest": Setting((70, 115, 75), (30, 65, 30), 0.45, "green"),
    "night": Setting((15, 20, 65), (8, 8, 20), 0.7, "black"),
    "desert": Setting((240, 215, 165), (205, 160, 95), 0.55, "yellow"),
    "snow": Setting((185, 195, 215), (245, 245, 250), 0.5, "white"),
}

# "At night" with another setting: that setting's colours, this much of the way to the night's.
NIGHT_BLEND = 0.7

SKY_OBJECTS = ("sun", "moon", "star", "cloud")
GROUND_OBJECTS = ("tree", "house", "mountain", "flower")
OBJECTS = SKY_OBJECTS + GROUND_OBJECTS

# What an object looks like when the caption names no colour for it.
DEFAULT_COLOURS: dict[str, str] = {
    "sun": "yellow",
    "moon": "white",
    "star": "yellow",
    "cloud": "white",
    "tree": "green",
    "house": "red",
    "mountain": "purple",
    "flower": "pink",
}

FILLERS = (
    *("a", "an", "the", "of", "and", "in", "on", "over", "under", "with", "at", "by", "near"),
    *("above", "below", "beside", "behind", "across", "there", "is", "are", "picture"),
)

# Every word the tokenizer gives a whole-word token: the model sees these as single symbols.
WORDS: list[str] = [*COLOURS, *OBJECTS, *SETTINGS, *FILLERS]


@dataclass(frozen=True)
class Thing:
    """One object of a scene; `colour` is None when the caption does not name one."""

    name: str
    colour: str | None = None

    @property
    def shown_colour(self) -> str:
        """The colour it is drawn in: the named one, else the object's usual colour."""
        return self.colour or DEFAULT_COLOURS[self.name]


@dataclass(frozen=True)
class Scene:
    """What a caption asks for: objects, a setting (None if unnamed), and whether at night."""

    things: tuple[Thing, ...]
    setting: str | None = None
    night: bool = False

    def background(self) -> tuple[RGB, RGB]:
        """The (above, below) horizon colours; an unnamed setting is drawn as 'sky'."""
        setting = SETTINGS[self.setting or "sky"]
        if not self.night or self.setting == "night":
            return setting.above, setting.below
        dark = SETTINGS["night"]
        return _blend(setting.above, dark.above), _blend(setting.below, dark.below)


def _blend(colour: RGB, night: RGB) -> RGB:
    r, g, b = (round(c + NIGHT_BLEND * (n - c)) for c, n in zip(colour, night, strict=True))
    return r, g, b


def parse_caption(caption: str) -> Scene:
    """Read a caption in any word order: a colour binds to the next object or setting word.

    A colour before a setting ("a blue sea") only decorates it, because each setting has one
    colour scheme. "Night" together with another setting means that setting at night, so
    "sea at night with a yellow moon" is a yellow moon over a dark sea. Unknown words are
    skipped, which keeps a caption with extra words usable.
    """
    things: list[Thing] = []
    settings: list[str] = []
    pending: str | None = None
    for word in re.findall(r"[a-z]+", caption.lower()):
        if word in COLOURS:
            pending = word
        elif word in OBJECTS:
            things.append(Thing(word, pending))
            pending = None
        elif word in SETTINGS:
            settings.append(word)
            pending = None
    others = [s for s in settings if s != "night"]
    setting = others[0] if others else (settings[0] if settings else None)
    night = "night" in settings and setting != "night"
    return Scene(tuple(things), setting, night)
