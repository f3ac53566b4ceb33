"""Smoothness scores of rendered transition folders, measured once and cached.

Scoring a folder decodes every frame once (the PNG decode costs more than the distance) and
keeps the distances between consecutive frames and between the first and the last. The
cache is `<song media>/.sdmorph/smoothness.json`, beside the frame-check cache and keyed
the same way: a folder's entry holds a hash of its frames' (name, size, mtime_ns, ctime_ns),
so a later look only stats the files, and a frame that changed (re-rendered, repaired by
rsync) gets the folder scored again. Nothing is ever written into a transition folder, so
legacy folders are read and never touched. A media folder of 2,000 transitions is scored
once; a changed distance (`frame_distance.METRIC`) scores everything again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sdmorph.formats.fsio import write_text
from sdmorph.formats.legacy import frame_files
from sdmorph.media.frame_distance import METRIC, distance, features

SCORES_PATH = Path(".sdmorph") / "smoothness.json"
_CACHE_VERSION = 1
# What Pillow raises for a file that is not a decodable image.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class FolderScore:
    """The distances of one transition folder's frames."""

    d: tuple[float, ...]  # between frame i and frame i + 1
    end_to_end: float  # between the first and the last frame


def frames_stamp(frames: Sequence[Path]) -> str | None:
    """A hash of the frames' names, sizes and times; None if one cannot be read."""
    digest = hashlib.sha256()
    for frame in frames:
        try:
            st = frame.stat()
        except OSError:
            return None
        digest.update(f"{frame.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns};".encode())
    return digest.hexdigest()[:32]


def score_frames(frames: Sequence[Path]) -> FolderScore:
    """Measure a transition from its frame files (in order); ValueError if one is unusable.

    A frame of another size than the first is compared at the first one's size.
    """
    if len(frames) < 2:
        raise ValueError(f"{len(frames)} frame(s): nothing to measure")
    feats: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for frame in frames:
        try:
            with Image.open(frame) as image:
                picture = image.convert("RGB")
        except _DECODE_ERRORS as exc:
            raise ValueError(f"{frame.name} does not decode: {exc}") from None
        size = size or picture.size
        if picture.size != size:
            picture = picture.resize(size, Image.Resampling.BOX)
        feats.append(features(picture))
    steps = tuple(distance(x, y) for x, y in zip(feats, feats[1:], strict=False))
    return FolderScore(steps, distance(feats[0], feats[-1]))


class ScoreCache:
    """Scores by folder name, valid while the folder's frames keep their stamp."""

    def __init__(self, song_media: Path) -> None:
        self.path = Path(song_media) / SCORES_PATH
        self._folders: dict[str, dict[str, object]] | None = None
        self._dirty = False

    def _data(self) -> dict[str, dict[str, object]]:
        if self._folders is None:
            self._folders = self._load()
        return self._folders

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            raw = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}  # no cache yet, or a damaged one: it is only a cache
        if not isinstance(raw, dict) or raw.get("version") != _CACHE_VERSION \
                or raw.get("metric") != METRIC or not isinstance(raw.get("folders"), dict):
            return {}
        return raw["folders"]

    def get(self, folder: Path, stamp: str | None) -> FolderScore | None:
        """The cached score of `folder` if its frames still have `stamp`."""
        entry = self._data().get(folder.name)
        if stamp is None or not isinstance(entry, dict) or entry.get("stamp") != stamp:
            return None
        d, end = entry.get("d"), entry.get("end")
        if not isinstance(d, list) or not isinstance(end, int | float):
            return None
        try:
            return FolderScore(tuple(float(x) for x in d), float(end))
        except (TypeError, ValueError):
            return None

    def put(self, folder: Path, stamp: str, score: FolderScore) -> None:
        self._data()[folder.name] = {"stamp": stamp, "d": [round(x, 6) for x in score.d],
                                     "end": round(score.end_to_end, 6)}
        self._dirty = True

    def prune(self, names: Iterable[str]) -> None:
        """Forget folders that are gone."""
        data = self._data()
        for gone in set(data) - set(names):
            del data[gone]
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        payload = {"version": _CACHE_VERSION, "metric": METRIC, "folders": self._data()}
        with contextlib.suppress(OSError):  # a read-only media folder still scores, uncached
            write_text(self.path, json.dumps(payload, separators=(",", ":"), ensure_ascii=False))
            self._dirty = False


def score_folders(song_media: Path, folders: Sequence[Path],
                  on_folder: Callable[[int], None] | None = None,
                  existing: Iterable[str] | None = None) -> dict[Path, FolderScore | str]:
    """Each folder's score (cached, or measured and cached), or why it has none.

    `existing`: the names of every transition folder there is; the cache forgets others.
    """
    cache = ScoreCache(song_media)
    if existing is not None:
        cache.prune(existing)
    out: dict[Path, FolderScore | str] = {}
    try:
        for folder in folders:
            out[folder] = _score(cache, folder)
            if on_folder:
                on_folder(1)
    finally:
        cache.save()  # what was scored before a Ctrl-C is kept
    return out


def _score(cache: ScoreCache, folder: Path) -> FolderScore | str:
    frames = frame_files(folder)
    stamp = frames_stamp(frames)
    found = cache.get(folder, stamp)
    if found is not None:
        return found
    try:
        score = score_frames(frames)
    except ValueError as exc:
        return str(exc)
    if stamp is not None and all(math.isfinite(x) for x in score.d):
        cache.put(folder, stamp, score)
    return score


def cached_scores(song_media: Path, folders: Sequence[Path]) -> dict[Path, FolderScore]:
    """The folders whose score is cached and current (no frame is decoded)."""
    cache = ScoreCache(song_media)
    if not (Path(song_media) / SCORES_PATH).is_file():
        return {}
    out = {}
    for folder in folders:
        found = cache.get(folder, frames_stamp(frame_files(folder)))
        if found is not None:
            out[folder] = found
    return out
