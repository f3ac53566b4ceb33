"""The one CSV reader for every table an artist or the old scripts write.

Tolerant of what spreadsheets and the old scripts produce (BOMs, an index column without a
header, trailing commas), strict where pandas would silently misread (rows longer than the
header, a blank first line, quoting the csv module reads otherwise). Cells come back as
stripped strings with their spreadsheet row numbers, for messages that name file, row and
column.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from sdmorph.core.errors import Problem, SongError


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV as strings, BOM-tolerant, keeping row positions for error messages."""
    try:
        shape = _row_shape(path)
        with warnings.catch_warnings():  # the dropped trailing cells are known to be empty
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                skip_blank_lines=False, skipinitialspace=False, **shape,
            )
    except FileNotFoundError:
        raise SongError(Problem("file not found", file=path)) from None
    # ValueError: pandas' reading of the rows disagrees with the csv module's (stray quotes
    # or line ends), so the shape chosen above does not fit: the file is not plain CSV.
    except (OSError, UnicodeDecodeError, csv.Error, pd.errors.ParserError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SongError(Problem(f"cannot read as CSV: {first}", file=path)) from None
    except pd.errors.EmptyDataError:
        raise SongError(Problem("the file is empty (a header row is needed)", file=path)) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.reset_index(drop=True)


def _row_shape(path: Path) -> dict[str, Any]:
    """How to read rows longer than the header, which pandas would otherwise shift silently.

    One extra leading integer on every long row, under a header without an index name, is an
    index column whose header was left out: column 0 is the index. Otherwise extra cells are
    trailing commas and are dropped when empty; a row with text in them is reported.
    """
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    if not any(c.strip() for row in rows for c in row):
        return {}  # no header: pandas says so
    if not rows[0]:
        raise SongError(Problem("the first line is empty: the header row must come first",
                                file=path, row=1))
    header = rows[0]
    width = len(header)
    long = [(number, row) for number, row in enumerate(rows[1:], start=2) if len(row) > width]
    if not long:
        return {"index_col": False}
    if not is_junk_column(header[0].strip()) and all(
            len(row) == width + 1 and row[0].strip().isdigit() for _, row in long):
        return {"index_col": 0}
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
    return {"index_col": False, "usecols": range(width)}


def is_junk_column(name: str) -> bool:
    """Unnamed or blank columns come from trailing commas and index columns."""
    return name == "" or name.startswith("Unnamed:") or name.isdigit()


def non_empty_rows(frame: pd.DataFrame) -> Iterable[tuple[int, dict[str, str]]]:
    """(spreadsheet row, cells) for rows with any content; fully empty rows are skipped."""
    for index, record in enumerate(frame.to_dict("records")):
        cells = {k: str(v).strip() for k, v in record.items()}
        if any(cells.values()):
            yield index + 2, cells
