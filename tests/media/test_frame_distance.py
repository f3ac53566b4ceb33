"""The perceptual frame distance: a jump a person sees is a large d, and it is cheap."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sdmorph.media.frame_distance import (
    SIDE,
    distance,
    features,
    frame_distance,
    reduced,
    step_distances,
)

SIZE = 512


def scene(x: int, colour: tuple[int, int, int] = (200, 40, 40), noise: float = 0.0,
          seed: int = 0) -> Image.Image:
    """A disc on a blue ground, at x; optional grain."""
    image = Image.new("RGB", (SIZE, SIZE), (30, 60, 160))
    ImageDraw.Draw(image).ellipse((x, 150, x + 200, 350), fill=colour)
    if not noise:
        return image
    grain = np.random.default_rng(seed).normal(0, noise, (SIZE, SIZE, 3))
    return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))


def test_identical_frames_are_zero_apart() -> None:
    a = scene(100, noise=8)
    assert frame_distance(a, a.copy()) == 0.0


def test_a_snap_is_far_larger_than_smooth_steps() -> None:
    smooth = step_distances([features(scene(100 + 4 * i)) for i in range(6)])
    assert max(smooth) - min(smooth) < 1e-3  # a steady motion: equal steps
    snap = frame_distance(scene(100), scene(300))  # the disc jumps across the frame
    assert snap > 10 * max(smooth)


def test_a_hue_change_at_the_same_lightness_counts() -> None:
    """Red to green of about the same luminance: invisible to luma-only measures."""
    red, green = scene(100, (200, 40, 40)), scene(100, (40, 110, 40))
    assert frame_distance(red, green) > 5 * frame_distance(scene(100), scene(104))


def test_grain_is_small_next_to_a_visible_change() -> None:
    grainy = frame_distance(scene(100), scene(100, noise=6.0))
    assert grainy < 2.3  # under one just-noticeable Delta E on average
    assert frame_distance(scene(100), scene(300)) > 5 * grainy


def test_frames_are_reduced_by_a_whole_factor() -> None:
    assert max(reduced(scene(0)).size) <= SIDE
    assert reduced(Image.new("RGB", (64, 48))).size == (64, 48)
    assert features(Image.new("L", (64, 64), 128)).shape == (64, 64, 3)


def test_sizes_must_match() -> None:
    with pytest.raises(ValueError, match="different sizes"):
        distance(features(scene(0)), features(Image.new("RGB", (64, 64))))


def test_a_512_pair_costs_a_few_milliseconds() -> None:
    """Along a transition each frame's features are made once and each pair compared once:
    the cost per pair is one `features` plus one `distance` (best of several runs: the
    test machine is shared)."""
    a, b = scene(100, noise=10.0), scene(104, noise=10.0, seed=1)
    fa = features(a)
    best = float("inf")
    for _ in range(15):
        began = time.perf_counter()
        distance(fa, features(b))
        best = min(best, time.perf_counter() - began)
    assert best < 0.010, f"{best * 1e3:.1f} ms per pair"
