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

from sdmorph.core.errors import Problem, SdmorphError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stages clean their folders at start instead
    fcntl = None  # type: ignore[assignment]

TMP_MARK = ".sdmorph-tmp"
# Common file systems reject names longer than 255 bytes; keep a margin for suffixes.
MAX_NAME_BYTES = 200
_UNSAFE = re.compile(r'[\x00-\x1f<>:"/\\|?*]')


class WriteError(SdmorphError, OSError):
    """A file or folder could not be written: a full disk, a file where a folder should be...

    Also an OSError, so code that handles failed writes as OSError keeps doing so.
    """

    def __init__(self, target: Path, what: str, reason: str) -> None:
        super().__init__(Problem(f"{what}: {reason}", file=target))
        self.reason = reason


@contextlib.contextmanager
def writing(target: Path, what: str = "cannot write") -> Iterator[None]:
    """Turn an OSError inside the block into a one-line WriteError naming `target`."""
    try:
        yield
    except SdmorphError:
        raise
    except OSError as exc:
        raise WriteError(target, what, _why(exc, Path(target))) from exc


def _why(exc: OSError, target: Path) -> str:
    """The OS's reason, or which path is a file where a folder is needed."""
    if isinstance(exc, FileExistsError | NotADirectoryError):
        for path in (target, *target.parents):
            with contextlib.suppress(OSError):
                if path.is_file():
                    return f"{'it' if path == target else path} is a file, not a folder"
    return exc.strerror or str(exc)


def make_dirs(folder: Path) -> None:
    """`folder.mkdir(parents=True, exist_ok=True)`, failing with a WriteError naming it."""
    with writing(folder, "cannot create the folder"):
        Path(folder).mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def atomic_path(target: Path, *, lock: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` if the block succeeds.

    Any OSError (the disk is full, the folder is a file...) becomes a WriteError naming
    `target`; the old file, if any, is left as it was.

    With `lock`, the temporary file stays locked while the block runs, so cleaners can tell
    a write under way from one a killed process left; those leftovers of `target` are
    removed here, so rewriting a file after a crash leaves no temporary file behind. Writers
    that keep many files open at once and own their folder (the movie) pass lock=False:
    each lock holds a file descriptor.
    """
    target = Path(target)
    make_dirs(target.parent)
    with writing(target):
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name[:60]}.", suffix=f"{TMP_MARK}{target.suffix}",
            dir=target.parent,
        )
    tmp = Path(tmp_name)
    held = None
    try:
        with writing(target):
            held = _hold(fd, lock)
            # mkstemp creates 0600 files; finished files get the usual permissions instead.
            os.chmod(tmp, 0o666 & ~_UMASK)
            if held is not None:
                _remove_dead(target, tmp)
            yield tmp
            _fsync(tmp)
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if held is not None:
            os.close(held)


def _hold(fd: int, lock: bool) -> int | None:
    """Keep the temporary file open and locked until the write ends; else close it (None)."""
    if lock and fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fd
        except OSError:  # a file system without locks
            pass
    os.close(fd)
    return None


def _in_use(path: Path) -> bool:
    """Whether a running write holds this temporary file (atomic_path keeps it locked)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # gone already, or not ours to judge
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no locks here: a temporary file is a leftover, as before locks
        return False
    finally:
        os.close(fd)
    return False


def _remove_dead(target: Path, keep: Path) -> None:
    """Remove the temporary files of `target` that killed writes left (never live ones)."""
    start, end = f".{target.name[:60]}.", f"{TMP_MARK}{target.suffix}"
    with os.scandir(target.parent) as entries:
        names = [e.name for e in entries if e.name != keep.name and e.name.startswith(start)
                 and e.name.endswith(end) and "." not in e.name[len(start) : -len(end)]]
    for name in names:
        if not _in_use(target.parent / name):
            with contextlib.suppress(OSError):
                (target.parent / name).unlink(missing_ok=True)


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
    """Remove temporary files a killed run left in `folder`; returns how many.

    Files that a running write (another process's included) holds locked are left alone.
    """
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if is_temp(path) and not _in_use(path):
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
    make_dirs(lock_path.parent)
    lock = FileLock(str(lock_path), timeout=timeout)
    with lock:
        yield


@contextlib.contextmanager
def try_locked(lock_path: Path) -> Iterator[bool]:
    """Take the lock if nobody holds it; yields whether we got it (never waits)."""
    make_dirs(lock_path.parent)
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
