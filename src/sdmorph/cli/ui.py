"""Terminal output: one console, progress bars with ETA, summary tables.

Stages report through these so the CLI stays thin and tests can read plain text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", markup=True, soft_wrap=True)


def error(message: str) -> None:
    """One error line; user text is escaped so `[bold]` in a cell prints as written."""
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)


def info(message: str) -> None:
    console.print(message, soft_wrap=True, markup=False)


def progress() -> Progress:
    """A progress display with counts, elapsed time and ETA."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


@contextlib.contextmanager
def bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A single progress bar; yields `advance(n=1)`."""
    with progress() as prog:
        task = prog.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            prog.advance(task, n)

        yield advance


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(escape(column))
    for row in rows:
        out.add_row(*(escape(str(cell)) for cell in row))
    console.print(out)
