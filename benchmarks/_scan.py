"""Scanning a media folder of legacy transitions: `TransitionStore.scan`, cold and cached.

Issue 14: "scanning a media folder of 2,000 legacy transitions of 60 frames takes seconds,
not minutes (decode checks can be cached by file size and mtime)". The folder is built the
way the old scripts left it: `<prompt>-<4 digits> to <prompt>-<4 digits>` folders of
`frame000000.png`.. with no manifest, so every frame goes through the decode check.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sdmorph.formats.legacy import LEGACY_SEED_DIGITS, frame_name
from sdmorph.media.store import FRAMECHECK_PATH, TRANSITIONS_DIR, TransitionStore

FRAMES = 60
SIZE = 512
NOISE = 10.0  # grey levels of Gaussian noise: puts the PNG at ~570 KB, like an SD frame


@dataclass(frozen=True)
class ScanTiming:
    folders: int
    frames_per_folder: int
    frame_bytes: int  # size of the one PNG every frame file links to
    build_seconds: float
    linked: bool  # False if the filesystem refused hard links and the files were copied
    inodes: int  # distinct files the frames link to (ext4 allows 65,000 links per inode)
    cold_seconds: float  # no framecheck cache: every frame's bytes read and CRC-checked
    warm_seconds: float  # a new TransitionStore, answered from the cache by size and mtime
    cache_bytes: int
    complete_cold: int
    complete_warm: int

    @property
    def frames(self) -> int:
        return self.folders * self.frames_per_folder

    @property
    def total_bytes(self) -> int:
        return self.frames * self.frame_bytes


def sd_like_png(size: int = SIZE, seed: int = 14) -> bytes:
    """An RGB PNG with SD-like content: smooth colour gradients plus fine noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    base = np.stack([
        40 + 150 * x + 40 * np.sin(6 * y),
        60 + 120 * y + 30 * np.cos(5 * x + 2 * y),
        160 - 90 * x * y,
    ], axis=-1)
    pixels = np.clip(base + rng.normal(0, NOISE, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")  # Pillow's default, as the old scripts
    return buf.getvalue()


def legacy_prompts(folders: int) -> dict[str, list[int]]:
    """`folders + 1` prompts (names with spaces and hyphens), one 16-digit seed each."""
    return {f"prompt {i} neon-lit city": [5_842_234_013_956_479 + 1_000_000_000_000 * i]
            for i in range(folders + 1)}


def _label(prompt: str, seed: int) -> str:
    return f"{prompt}-{str(seed)[:LEGACY_SEED_DIGITS]}"  # the old scripts' cut


class _Linker:
    """Makes frame files as hard links to one PNG, a fresh copy of it when an inode is full."""

    def __init__(self, folder: Path, data: bytes) -> None:
        self.folder = folder
        self.data = data
        self.linked = True  # False once the filesystem refused a link: copies from then on
        self.inodes = 0
        self.source = self._new_source()

    def _new_source(self) -> Path:
        self.inodes += 1
        source = self.folder / f"frame-{self.inodes}.png"
        source.write_bytes(self.data)
        return source

    def make(self, target: Path) -> None:
        if self.linked:
            try:
                os.link(self.source, target)
                return
            except OSError as err:
                if err.errno == errno.EMLINK:  # this inode's link count is at the maximum
                    self.source = self._new_source()
                    os.link(self.source, target)
                    return
                self.linked = False
        shutil.copyfile(self.source, target)


def build_media(song_media: Path, folders: int, frames: int = FRAMES) -> tuple[
        dict[str, list[int]], int, _Linker]:
    """The legacy folders of a chain prompt 0 -> 1 -> ... -> `folders`.

    Every frame file is a hard link to one PNG (copies if the filesystem refuses links), so
    120,000 files take seconds to make. Hard links share one inode (two at 120,000: ext4
    allows 65,000 links), so after the first read its bytes sit in the page cache: the scan
    times are warm-disk figures (the cold scan still opens, stats and CRC-checks every
    file's bytes; it just never waits on the disk).
    """
    prompts = legacy_prompts(folders)
    names = list(prompts)
    root = song_media / TRANSITIONS_DIR
    root.mkdir(parents=True)
    data = sd_like_png()
    linker = _Linker(song_media, data)
    for i in range(folders):
        a, b = names[i], names[i + 1]
        folder = root / f"{_label(a, prompts[a][0])} to {_label(b, prompts[b][0])}"
        folder.mkdir()
        for j in range(frames):
            linker.make(folder / frame_name(j))
    return prompts, len(data), linker


def time_scan(song_media: Path, folders: int, frames: int = FRAMES) -> ScanTiming:
    start = time.perf_counter()
    prompts, frame_bytes, linker = build_media(song_media, folders, frames)
    build_seconds = time.perf_counter() - start
    cache = song_media / FRAMECHECK_PATH
    assert not cache.exists()

    start = time.perf_counter()
    cold = TransitionStore(song_media, prompts, frames).scan()
    cold_seconds = time.perf_counter() - start
    start = time.perf_counter()
    warm = TransitionStore(song_media, prompts, frames).scan()  # a new store: only the cache
    warm_seconds = time.perf_counter() - start

    return ScanTiming(
        folders=folders, frames_per_folder=frames, frame_bytes=frame_bytes,
        build_seconds=build_seconds, linked=linker.linked, inodes=linker.inodes,
        cold_seconds=cold_seconds,
        warm_seconds=warm_seconds, cache_bytes=cache.stat().st_size if cache.exists() else 0,
        complete_cold=sum(info.state == "complete" for info in cold),
        complete_warm=sum(info.state == "complete" for info in warm))
