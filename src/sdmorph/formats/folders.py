"""Where a user's files live: `.env`, then environment variables, then command-line options."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from sdmorph.core.errors import ConfigError

KEYS = ("media_dir", "meta_dir", "model_cache_dir")
_SONG_NAME = re.compile(r"^[^/\\\x00]+$")


@dataclass(frozen=True)
class Folders:
    """The three folders sdmorph works with; any may be unset until a command needs it."""

    media_dir: Path | None = None
    meta_dir: Path | None = None
    model_cache_dir: Path | None = None
    env_file: Path | None = None

    def require(self, key: str) -> Path:
        """The folder for `key`, or one line saying how to set it."""
        value = getattr(self, key)
        if value is None:
            raise ConfigError(
                f"{key} is not set: add `{key}=/path/to/folder` to .env in the working "
                f"directory, export {key}=..., or pass --{key.replace('_', '-')}"
            )
        return value

    def meta_song(self, song: str) -> Path:
        return self.require("meta_dir") / check_song_name(song)

    def media_song(self, song: str) -> Path:
        return self.require("media_dir") / check_song_name(song)


def check_song_name(song: str) -> str:
    """A song is one folder name: no separators, never `.` or `..`."""
    if not _SONG_NAME.match(song) or song.strip() in ("", ".", ".."):
        raise ConfigError(f"song name {song!r} must be a single folder name (no / or ..)")
    return song


def load_folders(cwd: Path | None = None, **overrides: str | Path | None) -> Folders:
    """Read `.env` in `cwd`; environment variables override it; `overrides` override both.

    The old story scripts let `.env` win over the environment; sdmorph follows the common
    convention (the environment wins) so a one-off `media_dir=... sdmorph ...` works.
    """
    env_path = (cwd or Path.cwd()) / ".env"
    file_values = dotenv_values(env_path) if env_path.is_file() else {}
    values: dict[str, Path | None] = {}
    for key in KEYS:
        raw = overrides.get(key)
        if raw is None:
            raw = os.environ.get(key) or os.environ.get(key.upper())
        if raw is None:
            raw = file_values.get(key) or file_values.get(key.upper())
        values[key] = Path(str(raw)).expanduser() if raw not in (None, "") else None
    return Folders(**values, env_file=env_path if env_path.is_file() else None)
