"""Looping previews of transition folders: small animated WebP files, made once and cached.

A preview is named by a hash of what it shows and of how it is made: a complete sdmorph
folder's manifest (its recipe key, frame count and file stamp), else every frame file's
name, size and modification time. Finding out whether a folder's preview is current is then
one `stat` of the manifest (or a directory listing) and one of the preview: no frame is
decoded. A changed folder hashes to a new name, so a stale preview is never shown.

Previews are written atomically (`fsio.write_bytes`): a killed run leaves at most a
temporary file, never a half preview under a finished name.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sdmorph.formats.fsio import clean_temp_files, write_bytes
from sdmorph.formats.legacy import frame_files, frame_index
from sdmorph.media.store import MANIFEST_NAME, TransitionManifest

# Part of every key: changing how previews look makes new ones instead of reusing old ones.
PREVIEW_RECIPE = "webp-v1"
PREVIEW_SIDE = 160  # longest side in pixels: a grid of thousands stays light
PREVIEW_FRAMES = 12  # at most, evenly spaced, first and last included
FRAME_MS = 120
WEBP_QUALITY = 70
SUFFIX = ".webp"
_NAME = re.compile(r"^[0-9a-f]{24}\.webp$")
# What Pillow raises for a frame it cannot decode (a legacy frame cut short, say).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class PreviewJob:
    """One preview to make: the frames of `folder` into `target`."""

    folder: Path
    target: Path


def preview_key(folder: Path, manifest: TransitionManifest | None = None) -> str | None:
    """A name for the preview of `folder`'s frames as they are now; None without frames.

    `manifest`: the folder's complete sdmorph manifest, if it has one. Its frames were
    written before it and are never changed after, so the manifest stands for them.
    """
    parts = [PREVIEW_RECIPE, folder.name]
    stamp = _manifest_stamp(folder, manifest)
    if stamp is not None:
        parts.append(stamp)
    else:
        frames = _frame_stamps(folder)
        if not frames:
            return None
        parts += frames
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _manifest_stamp(folder: Path, manifest: TransitionManifest | None) -> str | None:
    if manifest is None or manifest.kind != "sdmorph" or not manifest.complete:
        return None  # legacy manifests vouch for no frame; markers change while rendering
    try:
        st = (folder / MANIFEST_NAME).stat()
    except OSError:
        return None
    return f"manifest {manifest.recipe_key} {manifest.frames} {st.st_size} {st.st_mtime_ns}"


def _frame_stamps(folder: Path) -> list[str]:
    """`name size mtime` of each frame, by index: one listing, one stat each, nothing read."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                index = frame_index(entry.name)
                if index is not None:
                    with contextlib.suppress(OSError):  # gone since the listing: left out
                        st = entry.stat()
                        found.append((index, f"{entry.name} {st.st_size} {st.st_mtime_ns}"))
    except OSError:
        return []
    return [stamp for _, stamp in sorted(found)]


def preview_path(previews_dir: Path, key: str) -> Path:
    return previews_dir / f"{key}{SUFFIX}"


def make_preview(job: PreviewJob) -> bool:
    """Write the looping preview of `job.folder`; False if none of its frames decodes."""
    pictures = [p for p in map(_thumbnail, _chosen(frame_files(job.folder))) if p is not None]
    if not pictures:
        return False
    # There and back again: the loop never jumps from the last frame to the first.
    loop = pictures + pictures[-2:0:-1]
    buf = io.BytesIO()
    loop[0].save(buf, format="WEBP", save_all=True, append_images=loop[1:], duration=FRAME_MS,
                 loop=0, quality=WEBP_QUALITY, method=4)
    write_bytes(job.target, buf.getvalue())
    return True


def _chosen(frames: Sequence[Path], most: int = PREVIEW_FRAMES) -> list[Path]:
    """At most `most` frames, evenly spaced, the first and the last among them."""
    if len(frames) <= most:
        return list(frames)
    last = len(frames) - 1
    indices = sorted({round(i * last / (most - 1)) for i in range(most)})
    return [frames[i] for i in indices]


def _thumbnail(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as image:
            image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), reducing_gap=2.0)
            return image.convert("RGB")
    except _DECODE_ERRORS:
        return None  # a damaged legacy frame: the preview shows the others


def make_previews(jobs: Iterable[PreviewJob],
                  on_preview: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Make each preview in turn; returns (made, without a decodable frame)."""
    made = failed = 0
    for job in jobs:
        if make_preview(job):
            made += 1
        else:
            failed += 1
        if on_preview:
            on_preview(1)
    return made, failed


def prune_previews(previews_dir: Path, keep: set[str]) -> int:
    """Remove previews no folder has any more (and temp files of killed runs); how many."""
    if not previews_dir.is_dir():
        return 0
    removed = clean_temp_files(previews_dir)
    with os.scandir(previews_dir) as entries:
        gone = [e.path for e in entries if _NAME.match(e.name) and e.name not in keep]
    for path in gone:
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed += 1
    return removed
