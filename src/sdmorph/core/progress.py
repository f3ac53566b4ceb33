"""How a stage tells whoever runs it what it is doing, without printing anything itself.

Stages take a `Listener`; the CLI passes one that draws progress bars and prints, tests and
library callers pass `SILENT` or their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

# Moves one progress bar on by n steps.
Advance = Callable[[int], None]


class Listener(Protocol):
    def note(self, message: str) -> None:
        """Something worth telling (a file kept aside, a wait for a lock)."""

    def warn(self, message: str) -> None:
        """Something the user should look at; the work goes on."""

    def bars(self, *tasks: tuple[str, int]) -> AbstractContextManager[list[Advance]]:
        """Progress bars, one per (description, total), shown together while the block runs."""

    def show(self, report: object) -> None:
        """A finished part's report, to present now (before a later part may fail)."""


class Silent:
    """A listener that keeps everything to itself."""

    def note(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def bars(self, *tasks: tuple[str, int]) -> Iterator[list[Advance]]:
        yield [_ignore for _ in tasks]

    def show(self, report: object) -> None:
        pass


def _ignore(n: int) -> None:
    pass


SILENT = Silent()
