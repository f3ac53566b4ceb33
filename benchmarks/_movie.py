"""Movie encoding: frames/s and peak memory of `encode_story` for a long and a short story.

The encoder runs in a child process that imports only `sdmorph.media.encode` (no torch), so its
resident memory is the encoder's own; the parent samples the child and its ffmpegs.
Frames are a few synthetic 128x128 PNGs hard-linked (copied where links fail) many times.

Run as a script, this module is that child: `python _movie.py ROOT FRAMES`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import RssSampler
from PIL import Image

FRAMES_PER_SEGMENT = 50
SECTIONS = 4
DISTINCT = 16
SIZE = 128


@dataclass(frozen=True)
class MovieTiming:
    frames: int  # frames of the combined video
    seconds: float
    peak_rss: int  # bytes, encoder process + ffmpeg children
    videos: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds


def _sources(folder: Path) -> list[Path]:
    """A few distinct frames: smooth colour fields with noise, like rendered frames."""
    from sdmorph.formats.fsio import save_image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    paths = []
    for k in range(DISTINCT):
        phase = k / DISTINCT * 2 * np.pi
        base = np.stack([np.sin(6 * x + phase), np.cos(5 * y - phase), np.sin(4 * (x + y))], -1)
        pixels = (127 + 90 * base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        path = folder / f"source{k:02d}.png"
        save_image(path, Image.fromarray(pixels))
        paths.append(path)
    return paths


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def make_frames(root: Path, frames: int) -> Path:
    """<root>/t0000/frame000000.png ...: `frames` frames in segments of FRAMES_PER_SEGMENT."""
    sources = _sources(root)
    for i in range(frames):
        folder = root / f"t{i // FRAMES_PER_SEGMENT:04d}"
        folder.mkdir(exist_ok=True)
        _link(sources[i % DISTINCT], folder / f"frame{i % FRAMES_PER_SEGMENT:06d}.png")
    return root


def measure(root: Path, frames: int) -> MovieTiming:
    """Encode `frames` synthetic frames in a child process; wall time and peak memory."""
    make_frames(root, frames)
    child = subprocess.Popen([sys.executable, __file__, str(root), str(frames)],
                             stdout=subprocess.PIPE, text=True)
    with RssSampler(child.pid, interval=0.005) as sampler:
        out, _ = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"encoding {frames} frames failed (exit {child.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    return MovieTiming(result["frames"], result["seconds"], sampler.peak, result["videos"])


def _encode(root: Path, frames: int) -> dict[str, float]:
    from sdmorph.core.timeline import EncodeOptions, Segment
    from sdmorph.media.encode import encode_story

    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("t"))
    per_section = -(-len(folders) // SECTIONS)
    segments = [
        Segment(f"a{k}-1 to a{k + 1}-1", tuple(sorted(folder.glob("frame*.png"))),
                section=1 + k // per_section)
        for k, folder in enumerate(folders)
    ]
    start = time.perf_counter()
    report = encode_story(segments, root / "movie", "bench", EncodeOptions())
    seconds = time.perf_counter() - start
    return {"frames": report.frames, "seconds": seconds, "videos": len(report.videos),
            "asked": frames}


if __name__ == "__main__":
    print(json.dumps(_encode(Path(sys.argv[1]), int(sys.argv[2]))))
