"""keep_seeds: seeds land in the right cell and every other byte of the sheet stays put."""

from __future__ import annotations

import csv
import io
import multiprocessing
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdmorph.core.errors import SdmorphError
from sdmorph.formats.fsio import is_temp
from sdmorph.formats.prompt_sheet import keep_seeds

SHEET = "prompt_image_definitions.csv"
BOM = b"\xef\xbb\xbf"


def write_sheet(folder: Path, data: bytes) -> Path:
    path = folder / SHEET
    path.write_bytes(data)
    return path


def rows_of(path: Path) -> list[list[str]]:
    text = path.read_bytes().decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline="")))


def assert_only_cell_changed(path: Path, before: bytes, old_cell: bytes, new_cell: bytes) -> None:
    assert before.count(old_cell) == 1, "test data: the old cell must be unique"
    assert path.read_bytes() == before.replace(old_cell, new_cell)


WILD = (
    BOM
    + b"name,prompt,seeds,guidance_scale,negative_prompt\r\n"
    + b'cloud goddess,"a goddess of clouds, oil painting",1000 1001,7.5,\r\n'
    + b'luna,"a ""moon"", big,\r\nwith a second line","6497, 3676, 3855",7,"blurry, dark"\r\n'
    + b'sun,"the sun, rising",0042,8,\r\n'
)


def test_wild_sheet_keeps_comma_space_delimiter_and_every_other_byte(tmp_path):
    path = write_sheet(tmp_path, WILD)
    result = keep_seeds(path, "luna", [1234, 5842234013956479])
    assert result.added == (1234, 5842234013956479)
    assert result.already_present == ()
    assert result.changed
    assert_only_cell_changed(
        path, WILD, b'"6497, 3676, 3855"', b'"6497, 3676, 3855, 1234, 5842234013956479"'
    )
    assert path.read_bytes().startswith(BOM)
    assert rows_of(path)[2][1] == 'a "moon", big,\r\nwith a second line'


def test_backup_holds_the_previous_file_and_no_temp_files_remain(tmp_path):
    path = write_sheet(tmp_path, WILD)
    result = keep_seeds(path, "sun", [7])
    assert result.backup == tmp_path / (SHEET + ".bak")
    assert result.backup.read_bytes() == WILD
    assert not [p for p in tmp_path.iterdir() if is_temp(p)]
    keep_seeds(path, "sun", [8])
    assert result.backup.read_bytes() == WILD.replace(b",0042,", b",0042 7,")


def test_space_delimited_cell(tmp_path):
    before = b"name,prompt,seeds\nluna,a moon,1000 1001 1002\nsun,a sun,5\n"
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "luna", [1003])
    assert_only_cell_changed(path, before, b"1000 1001 1002", b"1000 1001 1002 1003")


def test_comma_delimited_cell_is_quoted_as_it_must_be(tmp_path):
    before = b'name,prompt,seeds\nluna,a moon,"1,2"\n'
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "luna", [3])
    assert_only_cell_changed(path, before, b'"1,2"', b'"1,2,3"')


def test_single_unquoted_seed_gains_quotes_when_file_uses_commas(tmp_path):
    before = b'name,prompt,seeds\nluna,a moon,"1, 2"\nsun,a sun,9\n'
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "sun", [10])
    assert_only_cell_changed(path, before, b"sun,a sun,9", b'sun,a sun,"9, 10"')
    assert rows_of(path)[2] == ["sun", "a sun", "9, 10"]


def test_empty_cell_takes_the_files_usual_delimiter(tmp_path):
    before = b'name,prompt,seeds,guidance_scale\na,x,"1, 2",7\nb,y,"3, 4",7\nc,z,5 6,7\nd,w,,7\n'
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "d", [8, 9])
    assert_only_cell_changed(path, before, b"d,w,,7", b'd,w,"8, 9",7')


def test_empty_cell_defaults_to_space(tmp_path):
    before = b'name,prompt,seeds,guidance_scale\nluna,"a moon, big",,7\n'
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "luna", [8, 9])
    assert_only_cell_changed(path, before, b'big",,7', b'big",8 9,7')


def test_empty_quoted_cell_stays_quoted(tmp_path):
    before = b'"name","prompt","seeds"\n"luna","a moon",""\n'
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "luna", [5])
    assert_only_cell_changed(path, before, b'""\n', b'"5"\n')


def test_trailing_empty_columns_and_empty_rows(tmp_path):
    before = b"name,prompt,seeds,guidance_scale,,\nluna,moon,1,7,,\n,,,,,\n\nsun,sun,2,7,,\n,,,,,\n"
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "sun", [3])
    assert_only_cell_changed(path, before, b"sun,sun,2,7", b"sun,sun,2 3,7")


def test_row_shorter_than_header_is_padded_up_to_seeds(tmp_path):
    before = b"name,prompt,guidance_scale,seeds\nluna,moon\nsun,sun,7,1\n"
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "luna", [4])
    assert_only_cell_changed(path, before, b"luna,moon\n", b"luna,moon,,4\n")


def test_file_without_final_newline(tmp_path):
    before = b"name,prompt,seeds\r\nluna,moon,1\r\nsun,sun,2"
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "sun", [3])
    assert path.read_bytes() == b"name,prompt,seeds\r\nluna,moon,1\r\nsun,sun,2 3"


def test_duplicate_names_edit_the_first_row(tmp_path):
    before = b"name,prompt,seeds\nluna,moon,1\nsun,sun,2\nluna,other moon,3\n"
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "luna", [9])
    assert_only_cell_changed(path, before, b"luna,moon,1\n", b"luna,moon,1 9\n")


def test_first_column_is_the_name_whatever_its_header(tmp_path):
    before = BOM + b"prompt_name,prompt,seeds\nluna,moon,1\n"
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "luna", [2])
    assert_only_cell_changed(path, before, b"moon,1\n", b"moon,1 2\n")


def test_keeping_twice_does_not_touch_the_file(tmp_path):
    path = write_sheet(tmp_path, WILD)
    keep_seeds(path, "luna", [77])
    after_first = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    backup = (tmp_path / (SHEET + ".bak")).read_bytes()
    result = keep_seeds(path, "luna", [77, 3676])
    assert result.added == ()
    assert result.already_present == (77, 3676)
    assert not result.changed
    assert result.backup is None
    assert path.read_bytes() == after_first
    assert path.stat().st_mtime_ns == mtime
    assert (tmp_path / (SHEET + ".bak")).read_bytes() == backup


def test_sixteen_digit_seeds_are_kept_exactly(tmp_path):
    before = b"name,prompt,seeds\nluna,moon,5842234013956479\n"
    path = write_sheet(tmp_path, before)
    result = keep_seeds(path, "luna", [5842234013956479, 9999999999999999])
    assert result.already_present == (5842234013956479,)
    assert result.added == (9999999999999999,)
    assert rows_of(path)[1][2] == "5842234013956479 9999999999999999"


def test_leading_zeros_count_as_the_same_seed(tmp_path):
    before = b"name,prompt,seeds\nluna,moon,0001 0002\n"
    path = write_sheet(tmp_path, before)
    result = keep_seeds(path, "luna", [1, 3, 3])
    assert result.already_present == (1,)
    assert result.added == (3,)
    assert_only_cell_changed(path, before, b"0001 0002", b"0001 0002 3")


def test_new_prompt_row_follows_the_files_quoting(tmp_path):
    before = BOM + b'name,prompt,seeds,guidance_scale\r\nluna,"moon","1, 2",7\r\n\r\n,,,\r\n'
    path = write_sheet(tmp_path, before)
    result = keep_seeds(path, "nova", [5, 6], prompt_text="a nova")
    assert result.new_prompt and result.added == (5, 6)
    new_row = b'nova,"a nova","5, 6",\r\n'
    assert path.read_bytes() == before.replace(b"7\r\n", b"7\r\n" + new_row)
    assert keep_seeds(path, "nova", [6]).already_present == (6,)


def test_new_prompt_row_in_file_without_final_newline(tmp_path):
    before = b"name,prompt,seeds,mask\nluna,moon,1,"
    path = write_sheet(tmp_path, before)
    keep_seeds(path, "nova", [2], prompt_text='a "nova", bright')
    assert path.read_bytes() == before + b'\nnova,"a ""nova"", bright",2,'
    assert rows_of(path)[2] == ["nova", 'a "nova", bright', "2", ""]


def test_prompt_text_is_ignored_for_a_prompt_already_there(tmp_path):
    before = b"name,prompt,seeds\nluna,moon,1\n"
    path = write_sheet(tmp_path, before)
    result = keep_seeds(path, "luna", [2], prompt_text="something else")
    assert not result.new_prompt
    assert path.read_bytes() == b"name,prompt,seeds\nluna,moon,1 2\n"


@pytest.mark.parametrize(
    ("data", "prompt", "seeds", "expected"),
    [
        (b"name,prompt,seeds\nluna,moon,1\n", "sun", [1], ["'sun' is not in the sheet"]),
        (b"name,prompt,guidance\nluna,moon,1\n", "luna", [1], ["row 1", "no 'seeds' column"]),
        (b"name,prompt,seeds\nluna,moon,1 x2\n", "luna", [1], ["row 2", "column 'seeds'", "x2"]),
        (b'name,prompt,seeds\nluna,"moon,1\n', "luna", [1], ["row 2", "quoted field"]),
        (b"name,prompt,seeds\nluna,m\xe9,1\n", "luna", [1], ["not UTF-8"]),
        (b"\n,,\n", "luna", [1], ["empty"]),
        (b"name,prompt,seeds\nluna,moon,1\n", "luna", [-4], ["-4"]),
        (b"name,prompt,seeds\nluna,moon,1\n", "luna", [2**64], [str(2**64), "0..2^64-1"]),
    ],
)
def test_errors_name_the_file_and_place(tmp_path, data, prompt, seeds, expected):
    path = write_sheet(tmp_path, data)
    with pytest.raises(SdmorphError) as info:
        keep_seeds(path, prompt, seeds)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message
    assert path.read_bytes() == data
    assert not (tmp_path / (SHEET + ".bak")).exists()


def test_missing_sheet_is_reported_and_nothing_created(tmp_path):
    path = tmp_path / "song" / SHEET
    with pytest.raises(SdmorphError, match="not found"):
        keep_seeds(path, "luna", [1], prompt_text="moon")
    assert not (tmp_path / "song").exists()


def test_new_prompt_needs_a_prompt_column(tmp_path):
    path = write_sheet(tmp_path, b"name,seeds\nluna,1\n")
    with pytest.raises(SdmorphError, match="no 'prompt' column"):
        keep_seeds(path, "sun", [1], prompt_text="a sun")


@pytest.mark.slow
def test_concurrent_writers_never_lose_a_seed(tmp_path):
    path = write_sheet(tmp_path, WILD)
    seeds = [100 + i for i in range(40)]
    jobs = [(path, "luna", [seed]) for seed in seeds]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(keep_seeds, jobs, chunksize=1)
    assert all(r.changed and len(r.added) == 1 for r in results)
    cell = rows_of(path)[2][2]
    assert sorted(int(s) for s in cell.split(", ")) == sorted([6497, 3676, 3855, *seeds])
    assert cell.startswith("6497, 3676, 3855, ")
    assert_only_cell_changed(path, WILD, b'"6497, 3676, 3855"', b'"' + cell.encode() + b'"')


# A lone CR is left unquoted by csv.writer when lines end in LF: no reader can tell it from
# an old-Mac line break, so generated cells never hold one.
cell_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r"),
    max_size=12,
)


seed_cell = st.tuples(
    st.lists(st.integers(min_value=0, max_value=10**16), max_size=3),
    st.sampled_from([" ", ",", ", "]),
).map(lambda t: t[1].join(str(n) for n in t[0]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cells=st.lists(st.tuples(cell_text, seed_cell, cell_text), min_size=1, max_size=5),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    newline=st.sampled_from(["\n", "\r\n"]),
    target=st.integers(min_value=0, max_value=4),
)
def test_any_csv_changes_only_the_one_seeds_cell(cells, quoting, newline, target):
    target %= len(cells)
    table = [["name", "prompt", "seeds", "extra"]]
    table += [[f"p{i}", prompt, seeds, extra] for i, (prompt, seeds, extra) in enumerate(cells)]
    buf = io.StringIO(newline="")
    csv.writer(buf, quoting=quoting, lineterminator=newline).writerows(table)
    with tempfile.TemporaryDirectory() as folder:
        path = write_sheet(Path(folder), buf.getvalue().encode("utf-8"))
        keep_seeds(path, f"p{target}", [10**16 + 1])
        after = rows_of(path)
    old_seeds = table[target + 1][2]
    new_seeds = after[target + 1][2]
    assert [int(n) for n in re.split(r"[ ,]+", new_seeds) if n] == [
        *(int(n) for n in re.split(r"[ ,]+", old_seeds) if n),
        10**16 + 1,
    ]
    after[target + 1][2] = old_seeds
    assert after == table
