"""Terminal output: one console, progress bars with ETA, summary tables.

Only the CLI prints; stages report to the listener it hands them (cli/terminal.py).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
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
def bars(*tasks: tuple[str, int]) -> Iterator[list[Callable[[int], None]]]:
    """Progress bars shown together, one per (description, total); yields their advancers."""
    with progress() as prog:
        ids = [prog.add_task(description, total=total) for description, total in tasks]
        yield [functools.partial(_advance, prog, task) for task in ids]


def _advance(prog: Progress, task: TaskID, n: int = 1) -> None:
    prog.advance(task, n)


@contextlib.contextmanager
def bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A single progress bar; yields `advance(n=1)`."""
    with bars((description, total)) as (advance,):
        yield advance


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(escape(column))
    for row in rows:
        out.add_row(*(escape(str(cell)) for cell in row))
    console.print(out)
