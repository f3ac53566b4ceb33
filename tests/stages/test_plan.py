"""The planning stage: the plan files it writes, and the artist's `compute = n` it keeps."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import ImageId, pair_key
from sdmorph.core.paths import plan_paths
from sdmorph.formats.plan_tables import (
    INTER_FILE,
    INTRA_FILE,
    META_FOLDER,
    PLANNED_FILE,
    read_transition_tables,
)
from sdmorph.formats.song import Song, load_song
from sdmorph.stages.plan import make_plan, open_store, planned_pairs, planned_path
from songs import write_song

FRAMES = 4  # interpolation_steps in songs.SETTINGS


@pytest.fixture
def song(tmp_path: Path) -> Song:
    return load_song(*write_song(tmp_path))


def table_rows(song: Song) -> list[tuple[str, str, str]]:
    """(from, to, compute) of every row of both tables, as written."""
    intra, inter = read_transition_tables(song.media_dir / META_FOLDER)
    return [(f"{r.from_name}-{r.from_seed}", f"{r.to_name}-{r.to_seed}", r.compute)
            for r in [*intra, *inter]]


def set_compute(song: Song, a: ImageId, b: ImageId, value: str) -> None:
    """Edit the row of a-b (either direction) as an artist would, in a spreadsheet."""
    for name in (INTRA_FILE, INTER_FILE):
        path = song.media_dir / META_FOLDER / name
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
            columns = list(rows[0]) if rows else []
        for row in rows:
            ends = {ImageId(row["from_name"], int(row["from_seed"])),
                    ImageId(row["to_name"], int(row["to_seed"]))}
            if ends == {a, b}:
                row["compute"] = value
                with path.open("w", newline="", encoding="utf-8") as fh:
                    writer = csv.DictWriter(fh, columns)
                    writer.writeheader()
                    writer.writerows(rows)
                return
    raise AssertionError(f"no row for {a}-{b}")


def test_make_plan_writes_the_tables_the_planned_path_and_the_pictures(song: Song) -> None:
    plan = make_plan(song, 0, 2, open_store(song))
    meta = song.media_dir / META_FOLDER
    assert len(plan.paths) == 2
    # 3 scenes of duration 1: three hops inside scenes, two between them.
    assert all(len(path) == 5 for path in plan.paths)
    assert [hop.kind for hop in plan.paths[0]] == ["intra", "inter", "intra", "inter", "intra"]
    for wanted in (meta / INTRA_FILE, meta / INTER_FILE, song.media_dir / PLANNED_FILE,
                   song.media_dir / "story" / "plan_graph.png"):
        assert wanted in plan.files
    assert all(path.is_file() for path in plan.files)
    with Image.open(song.media_dir / "story" / "plan_graph.png") as picture:
        assert picture.format == "PNG"
    # Every transition of both paths once, all to be rendered, as the tables say.
    hops = [hop for path in plan.paths for hop in path]
    distinct = {pair_key(hop.a, hop.b) for hop in hops}
    assert len(plan.pairs) == len(distinct) and {pair_key(*p) for p in plan.pairs} == distinct
    assert plan.skipped == []
    assert [row[2] for row in table_rows(song)] == ["y"] * len(distinct)
    assert planned_pairs(song) == (plan.pairs, [])
    # The planned path is the first path, read back from story/trans_sequence_gen.csv.
    assert planned_path(song) == plan.paths[0]


def test_a_plan_depends_only_on_the_song_and_the_seed(song: Song, tmp_path: Path) -> None:
    first = make_plan(song, 5, 1, open_store(song))
    written = {p: p.read_bytes() for p in first.files[:3]}
    again = make_plan(song, 5, 1, open_store(song))
    assert again.paths == first.paths
    assert {p: p.read_bytes() for p in again.files[:3]} == written
    other = load_song(*write_song(tmp_path / "other"))
    assert make_plan(other, 5, 1, open_store(other)).paths == first.paths
    seed = next(seed for seed in range(6, 100) if plan_paths(song.scenes, seed, 1) != first.paths)
    assert make_plan(song, seed, 1, open_store(song)).paths != first.paths


def test_planned_pairs_needs_a_plan(song: Song) -> None:
    with pytest.raises(SdmorphError, match="no plan yet"):
        planned_pairs(song)
    assert planned_path(song) == []


@pytest.mark.slow
def test_planned_pairs_honours_compute_n(song: Song) -> None:
    plan = make_plan(song, 0, 1, open_store(song))
    a, b = plan.pairs[1]
    set_compute(song, a, b, "n")
    todo, skipped = planned_pairs(song)
    assert skipped == [(a, b)]
    assert todo == [pair for pair in plan.pairs if pair != (a, b)]


@pytest.mark.slow
def test_plan_again_keeps_the_artists_n(song: Song) -> None:
    first = make_plan(song, 0, 1, open_store(song))
    a, b = first.pairs[0]
    set_compute(song, a, b, "n")
    # The same plan again: the row stays n and is not rendered.
    same = make_plan(song, 0, 1, open_store(song))
    assert same.skipped == [(a, b)] and (a, b) not in same.pairs
    assert planned_pairs(song) == (same.pairs, [(a, b)])
    # A plan that does not take the transition keeps its row, neither planned nor to render...
    other = next(seed for seed in range(1, 200) if pair_key(a, b) not in
                 {pair_key(hop.a, hop.b) for hop in plan_paths(song.scenes, seed, 1)[0]})
    assert (a, b) not in make_plan(song, other, 1, open_store(song)).skipped
    assert (f"{a.prompt}-{a.seed}", f"{b.prompt}-{b.seed}", "n") in table_rows(song)
    todo, skipped = planned_pairs(song)
    assert pair_key(a, b) not in {pair_key(*p) for p in todo + skipped}
    # ...so that a later plan that takes it again skips it again.
    back = make_plan(song, 0, 1, open_store(song))
    assert back.skipped == [(a, b)] and back.paths == first.paths
