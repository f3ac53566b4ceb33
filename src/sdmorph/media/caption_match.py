"""Whether a rendered picture shows what its caption asks for, in the words of the trained
`tiny` model (`sdmorph.core.vocabulary`): the object's colour, the setting's background.

The training script's evaluation and the tests of the shipped model judge pictures with
these, so the figures in weights/tiny/TRAINING.md and the tests mean the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sdmorph.core.vocabulary import COLOURS, SETTINGS, Scene, parse_caption

# What the shipped model is judged on: each names an object colour; word order varies.
EVALUATION_PROMPTS = (
    "a red sun over the sea",
    "a yellow moon at night",
    "a white house in the forest",
    "a purple flower in the snow",
    "a pink cloud in the sky",
    "a blue tree in the desert",
    "an orange star over the snow",
    "a black mountain in the desert",
    "the sea at night with a green house",
    "in the sky a red flower",
)
EVALUATION_SEEDS = (0, 1, 2, 3)


def measured_object_colour(image: np.ndarray, caption: str) -> str | None:
    """The palette colour most pixels that are not background are nearest to (None: no object).

    Each pixel goes to the nearest of the object colours and the caption's background colours
    (above, below, and their mix at the horizon); pixels taken by the background, or too close
    to it, are ignored, and the object colour with the most pixels wins.
    """
    above, below = parse_caption(caption).background()
    mix = tuple((a + b) / 2 for a, b in zip(above, below, strict=True))
    names = list(COLOURS)
    refs = np.array([COLOURS[n] for n in names] + [above, below, mix], dtype=np.float32)
    pixels = image.reshape(-1, 3).astype(np.float32)
    distance = np.linalg.norm(pixels[:, None, :] - refs[None], axis=-1)
    nearest = distance.argmin(axis=1)
    off_background = distance[:, len(names) :].min(axis=1) > 60
    chosen = nearest[(nearest < len(names)) & off_background]
    if len(chosen) < max(4, pixels.shape[0] // 400):
        return None
    return names[int(np.bincount(chosen, minlength=len(names)).argmax())]


def object_colour_matches(image: np.ndarray, caption: str) -> bool:
    """Whether the first object's rendered colour is the colour its caption names."""
    wanted = parse_caption(caption).things[0].shown_colour
    return measured_object_colour(image, caption) == wanted


def background_matches(image: np.ndarray, caption: str) -> bool:
    """Whether the top and bottom rows look more like the caption's setting than any other.

    Medians of the top and bottom eighths are compared with each setting's colours, darkened
    by 10% as the drawn scenes are at their edges (at night too, if the caption says so).
    """
    scene = parse_caption(caption)
    rows = max(2, image.shape[0] // 8)
    seen = [np.median(part.reshape(-1, 3), axis=0) for part in (image[:rows], image[-rows:])]

    def distance(name: str) -> float:
        expected = Scene(scene.things, name, scene.night).background()
        return sum(
            float(np.linalg.norm(s - 0.9 * np.array(e)))
            for s, e in zip(seen, expected, strict=True)
        )

    return min(SETTINGS, key=distance) == (scene.setting or "sky")


def follows_words(images: Sequence[np.ndarray], captions: Sequence[str]) -> tuple[float, float]:
    """(share of `images` whose object colour matches, share whose background matches)."""
    if not images:
        return 0.0, 0.0
    pairs = list(zip(images, captions, strict=True))
    return (sum(object_colour_matches(i, c) for i, c in pairs) / len(pairs),
            sum(background_matches(i, c) for i, c in pairs) / len(pairs))
