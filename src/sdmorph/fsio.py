"""Safe file writing: everything sdmorph writes goes through here.

Writes go to a temporary file in the target's folder and are renamed into place, so a
crash or Ctrl-C leaves either the old file or the new one, never half of either.
Temporary files carry `.sdmorph-tmp` in their name so scans can ignore and clean them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from sdmorph.errors import SdmorphError

TMP_MARK = ".sdmorph-tmp"
# Common file systems reject names longer than 255 bytes; keep a margin for suffixes.
MAX_NAME_BYTES = 200
_UNSAFE = re.compile(r'[\x00-\x1f<>:"/\\|?*]')


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name[:60]}.", suffix=f"{TMP_MARK}{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; finished files get the usual permissions instead.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# Read once at import: os.umask can only be read by setting it, which races with threads.
_UMASK = _umask()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_bytes(target: Path, data: bytes) -> None:
    """Atomically replace `target` with `data`."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: Path, text: str, encoding: str = "utf-8") -> None:
    """Atomically replace `target` with `text` (newlines written as given)."""
    write_bytes(target, text.encode(encoding))


def save_image(target: Path, image: object, **save_kwargs: object) -> None:
    """Atomically save a PIL image; the format follows the target's suffix."""
    buf = io.BytesIO()
    fmt = "PNG" if Path(target).suffix.lower() == ".png" else None
    image.save(buf, format=fmt, **save_kwargs)  # type: ignore[attr-defined]
    write_bytes(target, buf.getvalue())


def is_temp(path: Path) -> bool:
    """True for sdmorph's own temporary files (never mistaken for finished output)."""
    return TMP_MARK in path.name


def clean_temp_files(folder: Path) -> int:
    """Remove temporary files a killed run left in `folder`; returns how many."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if is_temp(path):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def safe_name(name: str) -> str:
    """Map a user-given name (prompt, scene, story) to a single safe path component.

    Names with spaces and unicode stay as they are; separators, control characters and
    characters Windows rejects become `_`; `.`/`..` cannot escape; over-long names are
    shortened with a hash so two long names never collide.
    """
    cleaned = _UNSAFE.sub("_", name).strip()
    if cleaned in ("", ".", ".."):
        cleaned = "_" + cleaned.replace(".", "_")
    cleaned = cleaned.lstrip(".") or "_"
    return shorten(cleaned)


def shorten(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """Shorten `name` to at most `limit` UTF-8 bytes, keeping it unique with a hash suffix."""
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    keep = name.encode()[: limit - 12].decode(errors="ignore")
    return f"{keep}~{digest}"


def inside(base: Path, path: Path) -> Path:
    """Return `path` resolved, or fail if it would leave `base` (e.g. `../../x`)."""
    try:
        base_r = base.resolve()
        path_r = path.resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
        raise SdmorphError(f"{str(path)!r}: not a usable path") from None
    if path_r != base_r and base_r not in path_r.parents:
        raise SdmorphError(f"{path}: refusing to use a path outside {base}")
    return path_r


@contextlib.contextmanager
def locked(lock_path: Path, timeout: float = -1) -> Iterator[None]:
    """Hold an OS file lock; released by the kernel if the process dies, so never stale."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=timeout)
    with lock:
        yield


@contextlib.contextmanager
def try_locked(lock_path: Path) -> Iterator[bool]:
    """Take the lock if nobody holds it; yields whether we got it (never waits)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
