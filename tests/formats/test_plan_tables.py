"""The plan and story CSV files: our round trips and the old scripts' files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import ImageId, transition_name
from sdmorph.core.paths import Hop, SceneSpec, plan_paths
from sdmorph.formats.legacy import resolve_seed_ref
from sdmorph.formats.plan_tables import (
    INTER_FILE,
    INTRA_FILE,
    LATEST_STORY_BACKUP,
    LATEST_STORY_FILE,
    PLANNED_FILE,
    InterRow,
    IntraRow,
    StoryRow,
    folder_name,
    keep_latest_story,
    read_interscene,
    read_intrascene,
    read_story,
    skipped_by_artist,
    split_label,
    story_file,
    story_rows,
    write_planned_path,
    write_story,
    write_transition_tables,
    written_by_sdmorph,
)

SEEDS = {
    "cloud-goddess 4": [4440123456789, 17],
    "luna": [1234, 5842234013956479],
    "sun": [5678, 99],
}
GODDESS = ImageId("cloud-goddess 4", 4440123456789)
LUNA, LUNA_BIG = ImageId("luna", 1234), ImageId("luna", 5842234013956479)
SUN, SUN99 = ImageId("sun", 5678), ImageId("sun", 99)


def resolve(prompt: str, digits: str) -> ImageId:
    if prompt not in SEEDS:
        raise SdmorphError(f"unknown prompt '{prompt}'")
    return ImageId(prompt, resolve_seed_ref(prompt, digits, SEEDS[prompt]))


def locate(a: ImageId, b: ImageId) -> tuple[Path, bool]:
    backwards = (a.prompt, b.prompt) == ("sun", "luna")
    first, second = (b, a) if backwards else (a, b)
    return Path("/media/song/transition_images") / transition_name(first, second), backwards


HOPS = [
    Hop(LUNA, LUNA_BIG, "luna", "luna", 1, "intra"),
    Hop(LUNA_BIG, SUN, "luna", "sun", 1, "inter"),
    Hop(SUN, SUN99, "sun", "sun", 2, "intra"),
    Hop(SUN99, GODDESS, "sun", "goddess", 2, "inter"),
]


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


def bad_cell(call) -> str:
    with pytest.raises(SdmorphError) as info:
        call()
    return str(info.value)


# ------------------------------------------------------------------ labels and paths


def test_split_label_at_last_hyphen_before_digits() -> None:
    assert split_label("cloud-goddess 4-4440") == ("cloud-goddess 4", "4440")
    assert split_label("moon-2-5") == ("moon-2", "5")
    assert split_label(" luna-0001 ") == ("luna", "0001")
    for bad in ("luna", "luna-", "-12", "luna-12a"):
        with pytest.raises(ValueError):
            split_label(bad)


def test_folder_name_takes_last_component_of_any_path() -> None:
    assert folder_name(r"G:\My Drive\song\transition_images\luna-1234 to sun-5678") == (
        "luna-1234 to sun-5678"
    )
    assert folder_name("/home/a/transition_images/x-1 to y-2/") == "x-1 to y-2"
    assert folder_name("x-1 to y-2") == "x-1 to y-2"


# ------------------------------------------------------------------ transition tables


def test_transition_tables_round_trip(tmp_path: Path) -> None:
    meta = tmp_path / "transition_meta"
    back = Hop(SUN, LUNA_BIG, "sun", "luna", 2, "inter")  # same pair, other direction
    intra, inter = write_transition_tables(meta, [*HOPS, back, HOPS[0]], frames=12)
    assert [(r.from_name, r.from_seed, r.to_name, r.to_seed) for r in intra] == [
        ("luna", "1234", "luna", "5842234013956479"),
        ("sun", "5678", "sun", "99"),
    ]
    assert [(r.scene_from, r.scene_to, r.section) for r in inter] == [
        ("luna", "sun", 1),
        ("sun", "goddess", 2),
    ]
    lines = (meta / INTER_FILE).read_text().splitlines()
    assert (
        lines[0]
        == ",from_name,from_seed,to_name,to_seed,compute,duration,scene_from,scene_to,section,"
        "planned"
    )
    assert lines[1] == "0,luna,5842234013956479,sun,5678,y,12,luna,sun,1,y"
    assert lines[2].startswith("1,sun,99,cloud-goddess 4,4440123456789,y,12")
    assert (
        (meta / INTRA_FILE)
        .read_text()
        .splitlines()[0]
        .startswith(",from_name,from_seed,to_name,to_seed,compute,duration,scene")
    )
    assert read_intrascene(meta / INTRA_FILE) == [
        r.model_copy(update={"row": i + 2}) for i, r in enumerate(intra)
    ]
    assert [r.images() for r in read_interscene(meta / INTER_FILE)] == [
        (LUNA_BIG, SUN),
        (SUN99, GODDESS),
    ]
    # pandas, as the old scripts read them
    frame = pd.read_csv(meta / INTRA_FILE, index_col=0, dtype=str)
    assert list(frame.index) == ["0", "1"] and list(frame["compute"]) == ["y", "y"]
    assert list(meta.iterdir()) and not [p for p in meta.iterdir() if "tmp" in p.name]


def test_compute_n_set_by_the_artist_survives_a_rewrite(tmp_path: Path) -> None:
    meta = tmp_path / "transition_meta"
    write_transition_tables(meta, HOPS, frames=10)
    frame = pd.read_csv(meta / INTRA_FILE, index_col=0, dtype=str)
    frame.loc[frame["to_seed"] == "99", "compute"] = "n"  # an artist's edit, saved by pandas
    frame.to_csv(meta / INTRA_FILE)
    assert skipped_by_artist(meta) == {frozenset((SUN, SUN99))}
    # replanned: the same transition now in the other direction, plus a new one
    hops = [
        Hop(SUN99, SUN, "sun", "sun", 2, "intra"),
        Hop(LUNA, LUNA_BIG, "luna", "luna", 1, "intra"),
    ]
    intra, _ = write_transition_tables(meta, hops, frames=10)
    assert [r.compute for r in intra] == ["n", "y"]
    assert [r.compute for r in read_intrascene(meta / INTRA_FILE)] == ["n", "y"]


def test_old_tables_with_cut_seeds_keep_their_n(tmp_path: Path) -> None:
    meta = tmp_path / "transition_meta"
    write(
        meta / INTRA_FILE,
        ",from_name,from_seed,to_name,to_seed,compute,duration,scene,Unnamed: 8\n"
        "0,luna,1234,luna,5842,n,60,luna,\n"
        "\n"
        ",,,,,,,,\n"
        "1,cloud-goddess 4,4440,cloud-goddess 4,17,Y,60,goddess,\n",
        bom=True,
    )
    write(
        meta / INTER_FILE,
        ",from_name,from_seed,to_name,to_seed,compute,duration,scene_from,scene_to\n"
        "0,sun,5678,cloud-goddess 4,4440,N,60,sun,goddess\n"
        "1,ghost,1,sun,5678,n,60,ghost,sun\n",
        bom=True,
    )
    rows = read_intrascene(meta / INTRA_FILE)
    assert [(r.from_seed, r.to_seed, r.compute, r.row) for r in rows] == [
        ("1234", "5842", "n", 2),
        ("4440", "17", "y", 5),
    ]
    assert skipped_by_artist(meta, resolve) == {
        frozenset((LUNA, LUNA_BIG)),
        frozenset((SUN, GODDESS)),  # the ghost row matches nothing
    }
    hops = [
        Hop(LUNA_BIG, LUNA, "luna", "luna", 1, "intra"),
        Hop(GODDESS, SUN, "goddess", "sun", 1, "inter"),
        Hop(SUN, SUN99, "sun", "sun", 1, "intra"),
    ]
    intra, inter = write_transition_tables(meta, hops, frames=8, resolve=resolve)
    assert [r.compute for r in intra] == ["n", "y"] and [r.compute for r in inter] == ["n"]
    assert intra[0].from_seed == "5842234013956479" and intra[0].duration == 8


def test_compute_n_of_a_transition_the_new_plan_leaves_out_is_remembered(
    tmp_path: Path,
) -> None:
    meta = tmp_path / "transition_meta"
    write(
        meta / INTRA_FILE,
        ",from_name,from_seed,to_name,to_seed,compute,duration,scene\n"
        "0,luna,1234,luna,5842,n,60,luna\n"
        "1,sun,5678,sun,99,y,60,sun\n",
    )
    write(
        meta / INTER_FILE,
        ",from_name,from_seed,to_name,to_seed,compute,duration,scene_from,scene_to\n"
        "0,sun,99,cloud-goddess 4,4440,n,60,sun,goddess\n"
        "1,ghost,1,sun,5678,n,60,ghost,sun\n",
    )
    # A plan without either skipped transition: both n rows stay, after the planned rows.
    only_sun = [Hop(SUN, SUN99, "sun", "sun", 2, "intra")]
    intra, inter = write_transition_tables(meta, only_sun, frames=8, resolve=resolve)
    assert [(r.images(), r.compute) for r in intra] == [((SUN, SUN99), "y"),
                                                       ((LUNA, LUNA_BIG), "n")]
    assert [(r.images(), r.compute, r.scene_from) for r in inter] == [
        ((SUN99, GODDESS), "n", "sun")]  # the ghost row names no image: it cannot come back
    old = pd.read_csv(meta / INTRA_FILE, index_col=0, dtype=str)  # as the old scripts read it
    assert list(old["compute"]) == ["y", "n"] and list(old.index) == ["0", "1"]
    assert list(old.loc["1", ["from_name", "from_seed", "to_seed", "scene"]]) == [
        "luna", "1234", "5842234013956479", "luna"]
    # A later plan that takes them again (either direction) gets their n, listed once; the
    # y row the plan dropped is simply gone.
    again = [Hop(LUNA_BIG, LUNA, "luna", "luna", 1, "intra"),
             Hop(GODDESS, SUN99, "goddess", "sun", 1, "inter")]
    intra, inter = write_transition_tables(meta, again, frames=8, resolve=resolve)
    assert [(r.images(), r.compute) for r in intra] == [((LUNA_BIG, LUNA), "n")]
    assert [(r.images(), r.compute) for r in inter] == [((GODDESS, SUN99), "n")]
    assert [r.compute for r in read_intrascene(meta / INTRA_FILE)] == [r.compute for r in intra]


def test_bad_transition_table_cells_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path / INTRA_FILE,
        ",from_name,from_seed,to_name,to_seed,compute,duration,scene\n"
        "0,luna,1234,luna,5842,y,60,luna\n"
        "1,luna,12x4,luna,5842,maybe,60,luna\n",
    )
    text = bad_cell(lambda: read_intrascene(path))
    assert f"{path}, row 3, column 'from_seed': '12x4' is not a seed" in text
    assert f"{path}, row 3, column 'compute': 'maybe' is not y or n" in text
    missing = write(tmp_path / "other.csv", ",from_name,to_name\n0,a,b\n")
    assert "missing column 'from_seed'" in bad_cell(lambda: read_intrascene(missing))
    assert "file not found" in bad_cell(lambda: read_interscene(tmp_path / "nope.csv"))


# ------------------------------------------------------------------ paths and stories


def test_planned_path_round_trip(tmp_path: Path) -> None:
    target = write_planned_path(tmp_path, HOPS, locate)
    assert target == tmp_path / PLANNED_FILE
    lines = target.read_text().splitlines()
    assert lines[0] == (
        ",scene_from,c1,c2,section,reversed,input_image_folder,c1_seed,c2_seed,scene_to,kind"
    )
    assert lines[2] == (
        "1,luna,luna-5842234013956479,sun-5678,1,False,"
        "/media/song/transition_images/luna-5842234013956479 to sun-5678,"
        "5842234013956479,5678,sun,inter"
    )
    rows = read_story(target, resolve)
    assert [(r.c1, r.c2, r.section, r.kind, r.scene_to) for r in rows] == [
        (h.a, h.b, h.section, h.kind, h.scene_to) for h in HOPS
    ]
    assert rows[1].folder_name == "luna-5842234013956479 to sun-5678"


def test_story_written_twice_and_read_back(tmp_path: Path) -> None:
    ranges = [(0, 9), (9, 18), (18, 27), (27, 36)]
    rows = story_rows(HOPS, locate, ranges)
    target = write_story(tmp_path, "first cut", rows)
    assert target == tmp_path / "stories" / "first cut" / "trans_sequence_first cut.csv"
    assert target.read_bytes() == (tmp_path / LATEST_STORY_FILE).read_bytes()
    header = target.read_text().splitlines()[0]
    assert header == (
        ",path_section,section,scene_from,c1,c2,reversed,input_image_folder,"
        "c1_name,c1_seed,c2_name,c2_seed,first_frame,last_frame"
    )
    back = read_story(target, resolve)
    assert [
        r.model_copy(update={"row": None, "scene_to": r2.scene_to, "kind": r2.kind})
        for r, r2 in zip(back, rows, strict=True)
    ] == rows
    assert [(r.first_frame, r.last_frame) for r in back] == ranges
    assert [r.row for r in back] == [2, 3, 4, 5]


def test_story_files_sdmorph_wrote_are_told_from_the_artists(tmp_path: Path) -> None:
    rows = story_rows(HOPS, locate)
    mine = write_story(tmp_path, "mine", rows)
    assert written_by_sdmorph(mine) and written_by_sdmorph(tmp_path / LATEST_STORY_FILE)
    old = write(tmp_path / "old.csv", OLD_STORY, bom=True)
    planned = write_planned_path(tmp_path, HOPS, locate)  # an artist's copy of it is theirs
    empty = write(tmp_path / "empty.csv", "")
    for path in (old, planned, empty, tmp_path / "missing.csv"):
        assert not written_by_sdmorph(path), path
    # Only the files asked for are written.
    latest = write(tmp_path / LATEST_STORY_FILE, OLD_STORY)
    target = write_story(tmp_path, "solo", rows, latest=False)
    assert target.is_file() and latest.read_text(encoding="utf-8") == OLD_STORY
    write_story(tmp_path, "other", rows, story=False)
    assert not story_file(tmp_path, "other").exists() and written_by_sdmorph(latest)


def test_hand_made_latest_story_is_kept_once(tmp_path: Path) -> None:
    assert keep_latest_story(tmp_path) is None  # nothing to keep
    latest = write(tmp_path / LATEST_STORY_FILE, OLD_STORY, bom=True)
    original = latest.read_bytes()
    assert keep_latest_story(tmp_path) == tmp_path / LATEST_STORY_BACKUP
    assert (tmp_path / LATEST_STORY_BACKUP).read_bytes() == original
    write(latest, OLD_STORY.replace("luna-1234", "luna-5842"))
    assert keep_latest_story(tmp_path) is None  # the first copy kept is the artist's original
    assert (tmp_path / LATEST_STORY_BACKUP).read_bytes() == original
    (tmp_path / LATEST_STORY_BACKUP).unlink()
    write_story(tmp_path, "base", story_rows(HOPS, locate))
    assert keep_latest_story(tmp_path) is None  # sdmorph's own copy needs no keeping


def test_story_name_cannot_escape_the_song_folder(tmp_path: Path) -> None:
    path = story_file(tmp_path, "../../evil")
    assert tmp_path / "stories" in path.parents


WIN = "G:\\My Drive\\song\\transition_images\\"
OLD_STORY = (
    ",path_section,section,scene_from,c1,c2,reversed,input_image_folder\n"
    f"0,1,1,luna,luna-1234,luna-5842,False,{WIN}luna-1234 to luna-5842\n"
    f"1,1,1,luna,luna-5842,sun-5678,true,{WIN}sun-5678 to luna-5842\n"
    ",,,,,,,\n"
    "2,1,2,sun,sun-5678,cloud-goddess 4-4440,1,"
    "/Users/x/song/transition_images/sun-5678 to cloud-goddess 4-4440/\n"
    "3,2,2,goddess,cloud-goddess 4-4440,cloud-goddess 4-17,0,\n"
)


def test_old_hand_edited_story_reads(tmp_path: Path) -> None:
    path = write(tmp_path / "story" / "trans_sequence.csv", OLD_STORY, bom=True)
    rows = read_story(path, resolve)
    assert [(r.c1, r.c2) for r in rows] == [
        (LUNA, LUNA_BIG),
        (LUNA_BIG, SUN),
        (SUN, GODDESS),
        (GODDESS, ImageId(GODDESS.prompt, 17)),
    ]
    assert [r.reversed for r in rows] == [False, True, True, False]
    assert [r.folder_name for r in rows] == [
        "luna-1234 to luna-5842",
        "sun-5678 to luna-5842",
        "sun-5678 to cloud-goddess 4-4440",
        "",
    ]
    assert [(r.path_section, r.section, r.row) for r in rows] == [
        (1, 1, 2),
        (1, 1, 3),
        (1, 2, 5),
        (2, 2, 6),
    ]
    assert rows[2].scene_from == "sun" and rows[0].first_frame is None


def test_old_generated_path_without_our_columns_reads(tmp_path: Path) -> None:
    path = write(
        tmp_path / "trans_sequence_gen.csv",
        ",scene_from,c1,c2,section,reversed,input_image_folder\n"
        "0,luna,luna-1234,sun-5678,3.0,False,C:\\x\\luna-1234 to sun-5678\n",
    )
    (row,) = read_story(path, resolve)
    assert (row.c1, row.c2, row.section, row.path_section) == (LUNA, SUN, 3, None)


def test_bad_story_cells_name_row_and_column(tmp_path: Path) -> None:
    text = OLD_STORY.replace("true", "maybe").replace("cloud-goddess 4-17", "moon-17")
    text = text.replace("0,1,1,luna,luna-1234", "0,1,x,luna,luna-1234")
    path = write(tmp_path / "trans_sequence.csv", text)
    message = bad_cell(lambda: read_story(path, resolve))
    assert f"{path}, row 2, column 'section': 'x' is not a whole number" in message
    assert f"{path}, row 3, column 'reversed': 'maybe' is not true or false" in message
    assert f"{path}, row 6, column 'c2': unknown prompt 'moon'" in message


def test_ambiguous_or_unknown_seed_in_story(tmp_path: Path) -> None:
    SEEDS["twins"] = [44401, 44402]
    try:
        path = write(
            tmp_path / "s.csv", ",section,c1,c2,reversed\n0,1,twins-4440,luna-9999,False\n"
        )
        message = bad_cell(lambda: read_story(path, resolve))
    finally:
        del SEEDS["twins"]
    assert "row 2, column 'c1'" in message and "ambiguous" in message
    assert "row 2, column 'c2'" in message and "unknown seed 9999" in message


def test_edited_label_disagreeing_with_our_columns_is_an_error(tmp_path: Path) -> None:
    rows = story_rows(HOPS[:1], locate)
    target = write_story(tmp_path, "base", rows)
    text = target.read_text().replace(",luna-1234,", ",sun-5678,", 1)
    write(target, text)
    message = bad_cell(lambda: read_story(target, resolve))
    assert "row 2, column 'c1'" in message and "does not match c1_name 'luna'" in message


def test_story_missing_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", ",c1,c2\n0,luna-1234,sun-5678\n")
    message = bad_cell(lambda: read_story(path, resolve))
    assert "missing column 'section'" in message and "missing column 'reversed'" in message


def test_tables_from_planned_paths(tmp_path: Path) -> None:
    scenes = [SceneSpec("luna", (LUNA, LUNA_BIG), 1, 1), SceneSpec("sun", (SUN, SUN99), 1, 2)]
    paths = plan_paths(scenes, 0, 4)
    intra, inter = write_transition_tables(tmp_path, [h for p in paths for h in p], frames=5)
    assert len(intra) == 2 and 1 <= len(inter) <= 4
    assert all(isinstance(r, IntraRow) for r in intra)
    assert all(isinstance(r, InterRow) for r in inter)
    assert StoryRow(section=1, c1=LUNA, c2=SUN).folder_name == ""
