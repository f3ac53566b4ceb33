"""The one CSV reader: what spreadsheets and the old scripts write, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdmorph.core.errors import SongError
from sdmorph.formats.csv_table import non_empty_rows, read_csv


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "table.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    return list(non_empty_rows(read_csv(path)))


def test_cells_are_stripped_strings_with_spreadsheet_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffname , seeds\n a ,007\n\n,\nb, 1 \n")
    table = read_csv(path)
    assert table.columns == ["name", "seeds"]
    # Blank lines still count as rows, so messages name the row a spreadsheet shows.
    assert _rows(path) == [(2, {"name": "a", "seeds": "007"}), (5, {"name": "b", "seeds": "1"})]


def test_an_index_column_without_a_header_is_dropped(tmp_path: Path) -> None:
    path = _write(tmp_path, "c1,c2\n0,a,b\n1,c,d\n")
    assert _rows(path) == [(2, {"c1": "a", "c2": "b"}), (3, {"c1": "c", "c2": "d"})]


def test_a_row_without_the_index_others_have_is_reported(tmp_path: Path) -> None:
    # Read as an index column, row 3 would silently lose its first cell.
    path = _write(tmp_path, "c1,c2\n0,a,b\nc,d\n")
    with pytest.raises(SongError, match=r"table.csv, row 2: 3 cells but the header names 2"):
        read_csv(path)


def test_empty_trailing_cells_are_dropped_and_full_ones_reported(tmp_path: Path) -> None:
    assert _rows(_write(tmp_path, "a,b\n1,2,,\n")) == [(2, {"a": "1", "b": "2"})]
    with pytest.raises(SongError, match=r"row 3: 3 cells .* 'x' in cell 3 has no column"):
        read_csv(_write(tmp_path, "a,b\nq,2,\nr,4,x\n"))


def test_short_rows_are_padded_and_headers_named_as_pandas_named_them(tmp_path: Path) -> None:
    table = read_csv(_write(tmp_path, "a,,a\n1\n"))
    assert table.columns == ["a", "Unnamed: 1", "a.1"]
    assert table.rows == [["1", "", ""]]


def test_line_ends_inside_quoted_cells_are_kept_as_written(tmp_path: Path) -> None:
    path = _write(tmp_path, 'prompt,seeds\r\n"two\r\nlines",1\r\n')
    assert _rows(path) == [(2, {"prompt": "two\r\nlines", "seeds": "1"})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("\na,b\n", "row 1: the first line is empty"),
        ('a,b\n1,"2\n', "cannot read as CSV: line 2: unexpected end of data"),
        ('a,b\n1,"2"x\n', "cannot read as CSV: line 2: ',' expected after '\"'"),
    ],
)
def test_unreadable_files_are_one_clear_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SongError) as caught:
        read_csv(_write(tmp_path, text))
    assert message in str(caught.value) and "table.csv" in str(caught.value)


def test_bytes_that_are_not_utf8_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_bytes(b"a,b\n\xff,1\n")
    with pytest.raises(SongError, match="cannot read as CSV: 'utf-8' codec"):
        read_csv(path)
