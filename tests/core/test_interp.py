"""Slerp and lerp properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdmorph.core.interp import frame_times, lerp, slerp


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4, 8, 8)).astype(np.float32)


def test_endpoints_exact() -> None:
    a, b = noise(1), noise(2)
    assert slerp(a, b, 0.0) is a and slerp(a, b, 1.0) is b
    assert lerp(a, b, 0.0) is a and lerp(a, b, 1.0) is b


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(0, 1000), st.integers(1001, 2000))
def test_slerp_keeps_the_norm_of_gaussian_noise(t: float, s1: int, s2: int) -> None:
    a, b = noise(s1), noise(s2)
    mid = slerp(a, b, t)
    assert mid.dtype == np.float32 and mid.shape == a.shape
    norms = [np.linalg.norm(a), np.linalg.norm(b)]
    # Slerp moves along the great circle, so the norm stays between the two ends
    # (a straight lerp would shrink it by up to ~30% in the middle).
    assert min(norms) * 0.99 <= np.linalg.norm(mid) <= max(norms) * 1.01


def test_slerp_midpoint_is_symmetric() -> None:
    a, b = noise(3), noise(4)
    np.testing.assert_allclose(slerp(a, b, 0.5), slerp(b, a, 0.5), rtol=1e-6)


def test_nearly_parallel_falls_back_to_lerp() -> None:
    a = noise(5)
    b = a * 1.0001
    np.testing.assert_allclose(slerp(a, b, 0.5), 0.5 * a + 0.5 * b, rtol=1e-6)


def test_frame_times() -> None:
    assert frame_times(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError):
        frame_times(1)
