"""`story/smoothness.png`: where the jumps of a song's transitions are, at a glance.

Left: the step d along t of the jumpiest transitions, each divided by its own median, so a
line hugging 1 is an even morph and a peak's height is the transition's jump ratio J; the
dashed line is the threshold `sdmorph status` counts above. Right: J of every transition,
jumpiest first, the same threshold dashed.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sdmorph.formats.fsio import write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclass(frozen=True)
class Series:
    """One transition's steps: the t in the middle of each step, and the step's d."""

    label: str
    t: Sequence[float]
    d: Sequence[float]
    jump: float


def draw_smoothness(worst: Sequence[Series], jumps: Sequence[float], threshold: float,
                    target: Path) -> None:
    """Save the picture (worst: the transitions to draw along t, jumpiest first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (along, ranked) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100,
                                        gridspec_kw={"width_ratios": [2, 1]})
    try:
        _draw_along(along, worst, threshold)
        _draw_ranked(ranked, jumps, threshold)
        fig.tight_layout()
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            fig.savefig(buffer, format="png", metadata={
                "Software": "sdmorph", "transitions": str(len(jumps)),
                "above_threshold": str(sum(1 for j in jumps if j > threshold))})
    finally:
        plt.close(fig)
    write_bytes(Path(target), buffer.getvalue())


def _draw_along(ax: Axes, worst: Sequence[Series], threshold: float) -> None:
    for series in worst:
        d = np.asarray(series.d, dtype=float)
        middle = float(np.median(d)) if len(d) else 0.0
        scaled = d / middle if middle > 0 else d
        label = f"J {series.jump:.1f}  {series.label}"
        ax.plot(series.t, scaled, marker=".", linewidth=1.2, label=label[:60])
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
    ax.axhline(1.0, color="grey", linewidth=0.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("t (where the step lies in the transition)")
    ax.set_ylabel("step d / its transition's median d")
    ax.set_title(f"the {len(worst)} jumpiest transitions")
    if worst:
        ax.legend(fontsize=7, loc="upper right")


def _draw_ranked(ax: Axes, jumps: Sequence[float], threshold: float) -> None:
    shown = [j if np.isfinite(j) else 0.0 for j in jumps]
    colours = ["tab:red" if j > threshold else "tab:blue" for j in shown]
    ax.bar(range(len(shown)), shown, color=colours, width=1.0)
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(-0.5, max(len(shown), 1) - 0.5)
    ax.set_xticks([])
    above = sum(1 for j in jumps if j > threshold)
    ax.set_title(f"J of all {len(jumps)} transitions ({above} above {threshold:g})")
    ax.set_xlabel("transitions, jumpiest first")
    ax.set_ylabel("J = max d / median d")
