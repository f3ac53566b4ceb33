"""Stand-ins for what a test cannot cause for real: an ffmpeg that meets a full disk."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path

import imageio_ffmpeg
import pytest

from sdmorph.media import ffmpeg as ffmpeg_module

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


# What ffmpeg says when the disk fills while it writes a movie (its exit code is 228).
FULL_DISK = """[mov @ 0x55d0c0a1b2c0] av_interleaved_write_frame(): No space left on device
[out#0/mov @ 0x55d0c0a1a000] Error writing trailer: No space left on device
[out#0/mov @ 0x55d0c0a1a000] Error closing file: No space left on device
"""


def full_disk_ffmpeg(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put an ffmpeg in front of the real one whose encodes fail as on a full disk.

    Encodes (raw frames on stdin) read every frame, then print FULL_DISK and exit 228;
    everything else (probing, listing encoders) runs the real ffmpeg.
    """
    fake = folder / "full-disk-ffmpeg"
    fake.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" rawvideo "*)\n'
        f"  cat >/dev/null; printf '%s' {shlex.quote(FULL_DISK)} >&2; exit 228;;\n"
        "esac\n"
        f'exec {shlex.quote(FFMPEG)} "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    # video caches the binary's path: a fresh cache for this test, the old one back after.
    monkeypatch.setattr(ffmpeg_module, "ffmpeg_exe",
                        functools.lru_cache(maxsize=1)(ffmpeg_module.ffmpeg_exe.__wrapped__))
