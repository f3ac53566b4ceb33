"""Interpolation math for transitions (numpy only, no torch).

The noise of frame t is the spherical interpolation of the two seeds' noise, as the old
scripts did it, so a seed's noise at t=0 and t=1 is returned bit for bit.
"""

from __future__ import annotations

import numpy as np

# Above this cosine the vectors are nearly parallel and slerp is numerically unstable.
DOT_THRESHOLD = 0.9995


def frame_times(frames: int) -> list[float]:
    """t for each frame of a transition: 0 to 1 inclusive (numpy linspace, as before)."""
    if frames < 2:
        raise ValueError("a transition needs at least 2 frames")
    return [float(t) for t in np.linspace(0.0, 1.0, frames)]


def lerp(a: np.ndarray | float, b: np.ndarray | float, t: float) -> np.ndarray | float:
    """Linear interpolation; exact at t=0 and t=1."""
    if t == 0.0:
        return a
    if t == 1.0:
        return b
    return (1.0 - t) * a + t * b


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation of two noise arrays of the same shape (float32 result)."""
    if t == 0.0:
        return a
    if t == 1.0:
        return b
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    dot = float(np.sum(a64 * b64) / (np.linalg.norm(a64) * np.linalg.norm(b64)))
    if abs(dot) > DOT_THRESHOLD:
        mixed = (1.0 - t) * a64 + t * b64
    else:
        theta = np.arccos(dot)
        sin_theta = np.sin(theta)
        weight_a = np.sin((1.0 - t) * theta) / sin_theta
        mixed = weight_a * a64 + (np.sin(t * theta) / sin_theta) * b64
    return mixed.astype(a.dtype)
