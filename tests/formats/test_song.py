"""Song metadata: every case of song-format.md loads or fails with a precise message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdmorph.core.errors import SongError
from sdmorph.core.ids import ImageId
from sdmorph.formats.seeds import parse_seeds
from sdmorph.formats.song import load_song, summary
from songs import SCENES, SETTINGS, SHEET, write_song


def load(root: Path, **kw: object):
    meta, media = root / "meta" / "song", root / "media" / "song"
    return load_song(meta, media, **kw)  # type: ignore[arg-type]


def errors_of(root: Path, **kw: object) -> str:
    with pytest.raises(SongError) as info:
        load(root, **kw)
    return str(info.value)


def test_basic_song_loads(tmp_path: Path) -> None:
    write_song(tmp_path)
    song = load(tmp_path)
    assert list(song.prompts) == ["luna", "sun", "star"]
    assert song.prompts["luna"].seeds == (1001, 1002, 1003)
    assert song.prompts["luna"].prompt == "a moon, glowing"
    assert [s.name for s in song.scenes] == ["luna", "sun", "star"]
    assert song.scenes[2].section == 2
    assert song.profile.model_string == "tiny-random"
    assert song.warnings == []


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1000 1001 1002", [1000, 1001, 1002]),
        ("6497, 3676, 3855", [6497, 3676, 3855]),
        ("6497,3676,3855", [6497, 3676, 3855]),
        ("5842234013956479", [5842234013956479]),
        ("0001 0002", [1, 2]),
        ("", []),
        ("  12  ", [12]),
    ],
)
def test_seed_separators(cell: str, expected: list[int]) -> None:
    assert parse_seeds(cell) == (expected, [])


def test_bad_seed_names_file_row_column(tmp_path: Path) -> None:
    sheet = SHEET.replace("2001 2002 2003", "2001 x2 2003")
    write_song(tmp_path, sheet=sheet)
    message = errors_of(tmp_path)
    assert "prompt_image_definitions.csv, row 3, column 'seeds'" in message
    assert "'x2'" in message


def test_wild_prompt_sheet(tmp_path: Path) -> None:
    """BOM, CRLF, empty rows, trailing unnamed columns, 16-digit seeds, leading zeros."""
    sheet = (
        "\ufeffname,prompt,seeds,guidance_scale,negative_prompt,,\r\n"
        'luna,"a moon, glowing","0001, 5842234013956479",7.5,,,\r\n'
        ",,,,,,\r\n"
        "\r\n"
        'sun,a sun,"6497, 3676",8,"blurry, dark",,\r\n'
        "star,a star,3001,,,,\r\n"
    )
    scenes = ",scene,duration,section,start,avoid\n0,luna,1,1,,\n1,sun,0,1,,\n2,star,0,2,,\n"
    write_song(tmp_path, sheet=sheet.encode("utf-8"), scenes=scenes)
    song = load(tmp_path)
    assert song.prompts["luna"].seeds == (1, 5842234013956479)
    assert song.prompts["sun"].negative_prompt == "blurry, dark"
    assert song.negative(song.prompts["sun"]) == "blurry, dark"
    assert song.negative(song.prompts["luna"]) == ""
    assert song.guidance(song.prompts["star"]) == 7.5
    assert song.prompts["sun"].row == 5
    assert song.warnings == []


def test_duplicate_prompt_names_warn_and_keep_first(tmp_path: Path) -> None:
    sheet = SHEET + "luna,another moon,9999,7\n"
    write_song(tmp_path, sheet=sheet)
    song = load(tmp_path)
    assert song.prompts["luna"].seeds == (1001, 1002, 1003)
    assert any("duplicate prompt name 'luna'" in w and "row 2" in w and "row 5" in w
               for w in song.warnings)
    assert "--strict" in errors_of(tmp_path, strict=True)


def test_unknown_column_warns(tmp_path: Path) -> None:
    sheet = SHEET.replace("guidance_scale\n", "guidance_scale,notes\n")
    write_song(tmp_path, sheet=sheet.replace("7.5\n", "7.5,hi\n", 1))
    song = load(tmp_path)
    assert any("unknown column 'notes'" in w for w in song.warnings)


def test_flat_settings_and_old_spellings(tmp_path: Path) -> None:
    flat = {"song_name": "x", "res_height": 564, "res_width": 1024, "model_string": "tiny-random",
            "interpolation_steps": 30, "inference_steps": 20, "seed_delimiter": " ",
            "pipe_kwargs": {"negative_prompt": "ugly"}}
    write_song(tmp_path, settings=flat)
    song = load(tmp_path)
    assert song.profile.res_height == 560
    assert song.profile.num_inference_steps == 20
    assert song.profile.negative_prompt == "ugly"
    assert any("res_height 564 is not a multiple of 8: rendering at 560" in w
               for w in song.warnings)
    assert "a flat settings file has only 'default'" in errors_of(tmp_path, profile="cell")


def test_pipe_kwargs_steps_win_over_inference_steps(tmp_path: Path) -> None:
    settings = {"default": {"model_string": "tiny-random", "inference_steps": 20,
                            "pipe_kwargs": {"num_inference_steps": 30}}}
    write_song(tmp_path, settings=settings)
    assert load(tmp_path).profile.num_inference_steps == 30


def test_profiles_and_unknown_profile(tmp_path: Path) -> None:
    settings = {"default": SETTINGS["default"], "cell": {**SETTINGS["default"], "res_width": 96}}
    write_song(tmp_path, settings=settings)
    assert load(tmp_path, profile="cell").profile.res_width == 96
    message = errors_of(tmp_path, profile="nope")
    assert "unknown profile 'nope'" in message and "default, cell" in message


def test_unknown_settings_key_warns(tmp_path: Path) -> None:
    settings = {"default": {**SETTINGS["default"], "colour": "red"}}
    write_song(tmp_path, settings=settings)
    assert any("unknown setting 'colour'" in w for w in load(tmp_path).warnings)


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    write_song(tmp_path, settings='{\n  "default": {\n    "res_width": 64,\n  }\n}')
    message = errors_of(tmp_path)
    assert "tgen_settings.json" in message and "line 4, column 3" in message


def test_missing_scene_sequence_lists_variants(tmp_path: Path) -> None:
    write_song(tmp_path, scenes=None, extra={"scene_sequence_laD.csv": SCENES,
                                             "scene_sequence_alt.csv": SCENES})
    message = errors_of(tmp_path)
    assert "missing scene_sequence.csv" in message
    assert "scene_sequence_alt.csv, scene_sequence_laD.csv" in message
    assert len(load(tmp_path, scenes="laD").scenes) == 3


def test_scene_sequence_junk_columns_and_index_header(tmp_path: Path) -> None:
    scenes = "0,scene,duration,section,start,avoid, \n0,luna,1,1,,, \n\n1,sun,0,1,,,\n"
    write_song(tmp_path, scenes=scenes)
    song = load(tmp_path)
    assert [s.name for s in song.scenes] == ["luna", "sun"]
    assert song.warnings == []


def test_start_and_avoid_resolve_legacy_prefixes(tmp_path: Path) -> None:
    sheet = ("name,prompt,seeds\ncloud goddess,a goddess,4440123456 5551234\n"
             "sun,a sun,1 2 3\n")
    scenes = (",scene,duration,section,start,avoid\n"
              "0,cloud goddess,1,1,cloud goddess_4440,\n"
              '1,sun,1,1,"sun_1, sun_2",sun_3\n')
    write_song(tmp_path, sheet=sheet, scenes=scenes)
    song = load(tmp_path)
    assert song.scenes[0].start == (ImageId("cloud goddess", 4440123456),)
    assert song.scenes[1].start == (ImageId("sun", 1), ImageId("sun", 2))
    assert song.scenes[1].avoid == frozenset({ImageId("sun", 3)})


def test_ambiguous_and_foreign_references(tmp_path: Path) -> None:
    sheet = "name,prompt,seeds\nluna,a moon,44401 44402 7\nsun,a sun,1 2\n"
    scenes = (",scene,duration,section,start,avoid\n"
              "0,luna,1,1,luna_4440,\n"
              "1,sun,1,1,luna_7,sun_9\n")
    write_song(tmp_path, sheet=sheet, scenes=scenes)
    message = errors_of(tmp_path)
    assert "row 2, column 'start'" in message and "44401" in message and "44402" in message
    assert "row 3, column 'start'" in message and "'luna' has no image in this scene" in message
    assert "row 3, column 'avoid'" in message


def test_scene_that_resolves_to_nothing(tmp_path: Path) -> None:
    scenes = SCENES + "3,comet,1,2,,\n"
    write_song(tmp_path, scenes=scenes)
    message = errors_of(tmp_path)
    assert "row 5, column 'scene'" in message and "'comet'" in message


def test_folder_scene(tmp_path: Path) -> None:
    scenes = ",scene,duration,section,start,avoid\n0,picks,1,1,,\n1,star,0,1,,\n"
    meta, media = write_song(tmp_path, scenes=scenes)
    folder = media / "scenes" / "picks"
    folder.mkdir(parents=True)
    for stem in ("luna_1001", "sun_2002"):
        (folder / f"{stem}.png").write_bytes(b"")
    song = load(tmp_path)
    assert song.scenes[0].images == (ImageId("luna", 1001), ImageId("sun", 2002))


def test_image_in_two_scenes_is_an_error(tmp_path: Path) -> None:
    write_song(tmp_path, scenes=SCENES + "3,luna,1,2,,\n")
    assert "already in scene 'luna'" in errors_of(tmp_path)


def test_several_problems_reported_at_once(tmp_path: Path) -> None:
    sheet = SHEET.replace("1001 1002 1003", "1001 abc")
    scenes = SCENES.replace("0,luna,1,1,,", "0,luna,x,1,,") + "3,comet,1,2,,\n"
    write_song(tmp_path, sheet=sheet, scenes=scenes)
    message = errors_of(tmp_path)
    assert "'abc'" in message and "'x' is not a whole number" in message
    assert "'comet'" in message


def test_prompt_without_seeds_as_scene(tmp_path: Path) -> None:
    write_song(tmp_path, sheet=SHEET + "comet,a comet,,\n", scenes=SCENES + "3,comet,0,2,,\n")
    assert "has no seeds yet" in errors_of(tmp_path)


def test_masks_png_svg_subfolder_and_missing(tmp_path: Path) -> None:
    from PIL import Image

    sheet = ("name,prompt,seeds,mask,cnet_scale\nluna,a moon,1,shapes/square,0.5\n"
             "sun,a sun,2,circle,\nstar,a star,3,,\ncomet,a comet,4,gone,\nnova,nova,5,gone,\n")
    scenes = ",scene,duration,section,start,avoid\n0,luna,0,1,,\n1,sun,0,1,,\n2,star,0,1,,\n"
    settings = {"default": {**SETTINGS["default"], "controlnet_string": "tiny-random",
                            "cnet_image": "blank"}}
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32">'
           '<circle cx="16" cy="16" r="8" fill="white"/></svg>')
    meta, _ = write_song(tmp_path, sheet=sheet, scenes=scenes, settings=settings,
                         extra={"masks/circle.svg": svg})
    (meta / "masks" / "shapes").mkdir(parents=True)
    Image.new("RGBA", (96, 54), (255, 255, 255, 255)).save(meta / "masks/shapes/square.png")
    song = load(tmp_path)
    assert song.profile.mask_image == "blank"
    assert song.cnet_scale(song.prompts["luna"]) == 0.5
    from sdmorph.media.masks import mask_problems

    problems = [str(p) for p in mask_problems(song)]
    assert any("row 5, column 'mask'" in p and "'gone'" in p for p in problems)
    assert any("row 6, column 'mask'" in p for p in problems)
    assert any("song-wide mask 'blank'" in p for p in problems)
    assert len(problems) == 3


def test_summary_counts(tmp_path: Path) -> None:
    write_song(tmp_path)
    rows = dict(summary(load(tmp_path)))
    assert rows["transitions in a path"] == "5"
    assert rows["frames in a path"].startswith("16 ")
    assert rows["mode"] == "plain"


def test_json_settings_roundtrip_is_the_source_of_truth(tmp_path: Path) -> None:
    write_song(tmp_path, settings=json.dumps({"default": {"model_string": "tiny-random",
                                                          "res_width": "abc"}}))
    assert "res_width" in errors_of(tmp_path)


def test_every_wild_case_at_once(tmp_path: Path) -> None:
    """One song folder with every quirk song-format.md lists, loaded in one go."""
    from PIL import Image

    sheet = (
        "\ufeffname,prompt,seeds,guidance_scale,negative_prompt,mask,cnet_scale,,\r\n"
        'cloud goddess,"a goddess, in clouds","4440123456, 0007",7.5,,shapes/square,0.8,,\r\n'
        ",,,,,,,,\r\n"
        'sun,a sun,"6497,3676",8,"blurry, dark",,,,\r\n'
        "star,a star,5842234013956479 12,,,,0,,\r\n"
        "sun,duplicate sun,1 2,,,,,,\r\n"
        "comet,not explored yet,,,,,,,\r\n"
    )
    scenes = (
        "0,scene,duration,section,start,avoid, \n"
        '0,cloud goddess,1,1,cloud goddess_4440,, \n'
        "\n"
        '1,sun,1,1,"sun_6497, sun_3676",,\n'
        "2,picks,0,2,random,,\n"
        "3,star,1,2,,star_5842,\n"
    )
    flat = {"song_name": "wild", "res_height": 564, "res_width": 1024,
            "model_string": "tiny-random", "controlnet_string": "tiny-random",
            "cnet_image": "blank", "interpolation_steps": 30,
            "inference_steps": 20, "seed_delimiter": " ", "mystery": 1,
            "pipe_kwargs": {"negative_prompt": "ugly", "control_guidance_end": 0.8}}
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="32" height="18">'
           '<rect x="4" y="4" width="8" height="8" fill="white"/></svg>')
    meta, media = write_song(tmp_path, sheet=sheet.encode(), scenes=scenes, settings=flat,
                             extra={"masks/blank.svg": svg,
                                    "scene_sequence_alt.csv": scenes})
    (meta / "masks/shapes").mkdir()
    Image.new("RGBA", (1024, 576), (255, 255, 255, 255)).save(meta / "masks/shapes/square.png")
    picks = media / "scenes" / "picks"
    picks.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(picks / "comet_99.png")
    song = load(tmp_path)
    assert song.prompts["cloud goddess"].seeds == (4440123456, 7)
    assert song.prompts["sun"].prompt == "a sun"  # first of the duplicate rows
    assert song.prompts["star"].seeds == (5842234013956479, 12)
    assert song.profile.res_height == 560 and song.profile.num_inference_steps == 20
    assert song.profile.mask_image == "blank" and song.profile.control_guidance_end == 0.8
    assert song.negative(song.prompts["sun"]) == "blurry, dark"
    assert song.negative(song.prompts["star"]) == "ugly"
    assert song.cnet_scale(song.prompts["star"]) == 0.0
    assert [s.name for s in song.scenes] == ["cloud goddess", "sun", "picks", "star"]
    assert song.scenes[0].start == (ImageId("cloud goddess", 4440123456),)
    assert len(song.scenes[1].start) == 2
    assert song.scenes[2].images == (ImageId("comet", 99),)
    assert song.scenes[3].avoid == frozenset({ImageId("star", 5842234013956479)})
    text = "\n".join(song.warnings)
    assert "duplicate prompt name 'sun'" in text and "'mystery'" in text and "564" in text
    from sdmorph.media.masks import mask_problems

    assert mask_problems(song) == []


def test_every_bad_settings_value_is_reported(tmp_path: Path) -> None:
    write_song(tmp_path, settings={"res_width": "abc", "noise": "gpu", "interpolation_steps": 1,
                                   "inference_steps": 0, "model_string": "tiny-random"})
    lines = errors_of(tmp_path).splitlines()
    prefix = f"{tmp_path / 'meta/song/tgen_settings.json'}: profile 'default': "
    for key in ("res_width 'abc'", "noise 'gpu'", "interpolation_steps 1", "inference_steps 0"):
        assert any(line.startswith(prefix + key) for line in lines), (key, lines)


def test_strict_includes_settings_warnings(tmp_path: Path) -> None:
    write_song(tmp_path, settings={"default": {**SETTINGS["default"], "weird": 1,
                                               "res_width": 132}})
    assert len(load(tmp_path).warnings) == 2
    message = errors_of(tmp_path, strict=True)
    assert "unknown setting 'weird'" in message and "res_width 132" in message


def test_checks_join_the_sheet_problems(tmp_path: Path) -> None:
    from sdmorph.core.errors import Problem

    write_song(tmp_path, sheet=SHEET.replace("1001 1002 1003", "1001 zz"))
    message = errors_of(tmp_path, checks=[lambda song: [Problem("extra", song.settings_path)]])
    assert "'zz'" in message and "tgen_settings.json: extra" in message


def test_load_prompts_reads_no_scenes(tmp_path: Path) -> None:
    from sdmorph.formats.song import load_prompts

    write_song(tmp_path, sheet=SHEET + "comet,a comet,,\n", scenes=SCENES + "3,comet,0,2,,\n")
    meta, media = tmp_path / "meta" / "song", tmp_path / "media" / "song"
    assert "has no seeds yet" in errors_of(tmp_path)
    song = load_prompts(meta, media)
    assert song.prompts["comet"].seeds == () and song.scenes == []
    (meta / "scene_sequence.csv").unlink()
    assert list(load_prompts(meta, media).prompts) == ["luna", "sun", "star", "comet"]


def test_trailing_commas_beyond_the_header_are_dropped(tmp_path: Path) -> None:
    write_song(tmp_path, sheet="name,prompt,seeds\nluna,a moon,1001 1002,,\nsun,a sun,2001,\n",
               scenes="scene,duration,section\nluna,1,1,\nsun,0,2,,\n")
    song = load(tmp_path)
    assert song.prompts["luna"].seeds == (1001, 1002)  # not shifted into an index
    assert [(s.name, s.section) for s in song.scenes] == [("luna", 1), ("sun", 2)]


def test_index_column_without_header_name(tmp_path: Path) -> None:
    write_song(tmp_path, scenes="scene,duration,section,start\n0,luna,1,1,\n1,sun,0,1,\n"
                                "2,star,0,2,\n")
    assert [s.name for s in load(tmp_path).scenes] == ["luna", "sun", "star"]


def test_cells_beyond_the_header_are_reported_not_shifted(tmp_path: Path) -> None:
    write_song(tmp_path, sheet="name,prompt,seeds\nluna,a moon,1001,,zz\nsun,a sun,2001\n")
    message = errors_of(tmp_path)
    assert "prompt_image_definitions.csv, row 2" in message
    assert "'zz' in cell 5 has no column" in message


def test_blank_first_line_is_reported_not_taken_for_a_header(tmp_path: Path) -> None:
    write_song(tmp_path, sheet="\nname,prompt,seeds\nluna,a moon,1001,\n")
    message = errors_of(tmp_path)
    assert "prompt_image_definitions.csv, row 1: the first line is empty" in message
