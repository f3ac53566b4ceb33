"""The one CSV reader for every table an artist or the old scripts write.

Tolerant of what spreadsheets and the old scripts produce (BOMs, an index column without a
header, trailing commas), strict where a lax reader would silently misread (rows longer than the
header, a blank first line, quoting the csv module reads otherwise). Cells come back as
stripped strings with their spreadsheet row numbers, for messages that name file, row and
column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sdmorph.core.errors import Problem, SongError

# Cells past the csv module's default limit of 128 KiB are not a prompt sheet's.
_FIELD_LIMIT = 1 << 24


@dataclass(frozen=True)
class CsvTable:
    """A CSV's stripped column names and its data rows as written (row i is spreadsheet row i+2).

    Column names are those pandas would give, since the old scripts' tables were written and
    read with it: a blank header is `Unnamed: <position>`, a repeated one `<name>.1`.
    """

    columns: list[str]
    rows: list[list[str]]


def read_csv(path: Path) -> CsvTable:
    """Read a CSV as strings, BOM-tolerant, keeping row positions for error messages.

    The csv module rather than pandas: importing pandas alone took half of a 2 s plan.
    """
    try:
        rows = _records(Path(path).read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise SongError(Problem("file not found", file=path)) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SongError(Problem(f"cannot read as CSV: {first}", file=path)) from None
    if not any(rows):
        raise SongError(Problem("the file is empty (a header row is needed)", file=path))
    if not rows[0]:
        raise SongError(Problem("the first line is empty: the header row must come first",
                                file=path, row=1))
    header, body = rows[0], rows[1:]
    skip = 1 if _has_index_column(path, header, body) else 0
    width = len(header)
    cells = [_fitted(row[skip:], width) for row in body]
    return CsvTable([name.strip() for name in _pandas_names(header)], cells)


def _records(text: str) -> list[list[str]]:
    """Every record; strict, so a stray quote is an error rather than a guess."""
    previous = csv.field_size_limit(_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        return list(reader)
    except csv.Error as exc:
        raise csv.Error(f"line {reader.line_num}: {exc}") from None
    finally:
        csv.field_size_limit(previous)


def _fitted(row: list[str], width: int) -> list[str]:
    """`row` cut or padded to `width` cells (cut cells were checked to be empty)."""
    return row[:width] + [""] * (width - len(row))


def _pandas_names(header: list[str]) -> list[str]:
    names: list[str] = []
    seen: dict[str, int] = {}
    for position, raw in enumerate(header):
        name = raw if raw else f"Unnamed: {position}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        seen.setdefault(name, 0)
        names.append(name)
    return names


def _has_index_column(path: Path, header: list[str], body: list[list[str]]) -> bool:
    """Whether column 0 is an index whose header was left out; fails on other long rows.

    One extra leading integer on every row, under a header without an index name, is an
    index column whose header was left out (as the old scripts wrote). Otherwise extra cells
    are trailing commas and are dropped when empty; a row with text in them is reported.
    """
    width = len(header)
    long = [(number, row) for number, row in enumerate(body, start=2) if len(row) > width]
    if not long:
        return False
    if not is_junk_column(header[0].strip()) and all(
            len(row) == width + 1 and row[0].strip().isdigit()
            for row in body if any(cell.strip() for cell in row)):
        return True
    problems = []
    for number, row in long:
        extra = [(i, cell.strip()) for i, cell in enumerate(row) if i >= width and cell.strip()]
        if extra:
            cell, text = extra[0]
            problems.append(Problem(
                f"{len(row)} cells but the header names {width} columns: {text[:40]!r} in "
                f"cell {cell + 1} has no column (add its header or remove it)",
                file=path, row=number))
    if problems:
        raise SongError(*problems)
    return False


def is_junk_column(name: str) -> bool:
    """Unnamed or blank columns come from trailing commas and index columns."""
    return name == "" or name.startswith("Unnamed:") or name.isdigit()


def non_empty_rows(table: CsvTable) -> Iterable[tuple[int, dict[str, str]]]:
    """(spreadsheet row, cells) for rows with any content; fully empty rows are skipped."""
    for index, row in enumerate(table.rows):
        cells = {name: cell.strip() for name, cell in zip(table.columns, row, strict=True)}
        if any(cells.values()):
            yield index + 2, cells
