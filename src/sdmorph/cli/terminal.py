"""The listener the CLI hands to stages: progress bars on stderr, notes and reports on stdout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sdmorph.cli import tables, ui
from sdmorph.core.progress import Advance


class Terminal:
    def note(self, message: str) -> None:
        ui.info(message)

    def warn(self, message: str) -> None:
        ui.warn(message)

    @contextmanager
    def bars(self, *tasks: tuple[str, int]) -> Iterator[list[Advance]]:
        with ui.bars(*tasks) as advancers:
            yield advancers

    def show(self, report: object) -> None:
        tables.present(report)


TERMINAL = Terminal()
