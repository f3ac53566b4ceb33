"""sdmorph's own errors: every failure a user can cause ends as one of these.

The CLI prints them as a few plain lines and exits with code 2; nothing else escapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a user's file, located as precisely as we can."""

    message: str
    file: Path | str | None = None
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class SdmorphError(Exception):
    """An error the user can fix; its text is shown without a traceback."""

    exit_code = 2

    def __init__(self, *problems: Problem | str) -> None:
        self.problems = [p if isinstance(p, Problem) else Problem(p) for p in problems]
        super().__init__("\n".join(str(p) for p in self.problems))


class SongError(SdmorphError):
    """The song's metadata is invalid (possibly in several places at once)."""


class ConfigError(SdmorphError):
    """A setting (media_dir, meta_dir, ...) is missing or wrong."""


class ModelError(SdmorphError):
    """A model could not be built or loaded."""


class RenderError(SdmorphError):
    """Rendering failed in a way the user can act on (NaN frames, out of memory...)."""


class MovieError(SdmorphError):
    """A story could not be chosen or a video could not be encoded."""
