"""Names from user files never lead a read or a write outside the song's two folders.

Prompt, scene, mask and story names come from files artists edit. Through the real CLI on
the tiny model, a song whose names hold `../`, absolute paths, characters file systems
reject, unicode and 200+ characters renders every stage; everything it writes lies under
`<media_dir>/<song>` (or `<meta_dir>/<song>` for the sheet), under names from
`fsio.safe_name`, and names that would leave the song are refused with one clear line.
"""

from __future__ import annotations

import json
import uuid
import warnings
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.core.ids import ImageId
from sdmorph.formats.fsio import safe_name
from sdmorph.formats.legacy import frame_name
from sdmorph.media.store import TransitionManifest, TransitionStore
from songs import SETTINGS, env_for, write_song

runner = CliRunner()
TINY = {"default": {**SETTINGS["default"], "interpolation_steps": 3,
                    "pipe_kwargs": {"num_inference_steps": 2}}}
LONG = "a very long name " + "ü" * 120 + " 🌙" * 30  # well over 255 bytes in UTF-8
ESCAPE = "../../escape"
ABSOLUTE = f"/tmp/sdmorph-evil-{uuid.uuid4().hex}"
NAMES = [ESCAPE, ABSOLUTE, 'a:b\\c|d?*<e>"f', "nul\x00name", "..", "naïve moon 🌙", LONG]




def csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def nasty_song(root: Path) -> tuple[Path, Path]:
    rows = [f"{csv_cell(name)},a moon,{100 + i}" for i, name in enumerate(NAMES)]
    rows[-1] += " 999"  # two images in one scene: an intra-scene transition too
    sheet = "name,prompt,seeds\n" + "\n".join(rows) + "\n"
    scenes = ",scene,duration,section,start,avoid\n" + "".join(
        f"{i},{csv_cell(name)},{1 if name == LONG else 0},1,,\n" for i, name in enumerate(NAMES)
    )
    return write_song(root, sheet=sheet, scenes=scenes, settings=TINY)


def tree(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def invoke(root: Path, *args: str):
    result = runner.invoke(app, list(args), env=env_for(root))
    assert "Traceback" not in result.output
    return result


def assert_only_inside(root: Path, before: set[Path]) -> None:
    """Everything new lies in media/song or meta/song; nothing went to the absolute name."""
    allowed = (Path("media") / "song", Path("meta") / "song")
    new = tree(root) - before
    outside = sorted(p for p in new if p not in allowed and not any(
        a in p.parents for a in allowed))
    assert not outside, outside
    assert not list(Path("/tmp").glob(Path(ABSOLUTE).name + "*"))
    assert not (root / "escape").exists() and not (root / "media" / "escape").exists()


@pytest.mark.slow
def test_nasty_prompt_names_every_stage(tmp_path: Path) -> None:
    meta, media = nasty_song(tmp_path)
    before = tree(tmp_path)
    result = invoke(tmp_path, "render-prompts", "song")
    assert result.exit_code == 0, result.output
    expected = {f"{safe_name(n)}_{100 + i}.png" for i, n in enumerate(NAMES)}
    expected.add(f"{safe_name(LONG)}_999.png")
    assert {p.name for p in (media / "prompt_images").iterdir()} == expected
    assert all(len(name.encode()) <= 255 for name in expected)

    result = invoke(tmp_path, "transitions", "song")
    assert result.exit_code == 0, result.output
    folders = [p for p in (media / "transition_images").iterdir() if not p.name.startswith(".")]
    assert len(folders) == len(NAMES)  # 6 hops between scenes, 1 inside the last
    for folder in folders:
        assert (folder / "manifest.json").is_file(), folder
        assert sorted(p.name for p in folder.glob("frame*.png")) == [
            "frame000000.png", "frame000001.png", "frame000002.png"]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["from_image"]["prompt"] in NAMES  # full names kept inside the files

    result = invoke(tmp_path, "explore", "song", "-p", ESCAPE, "--seeds", "1")
    assert result.exit_code == 0, result.output
    folder = media / "explore_images" / safe_name(ESCAPE)
    assert (folder / f"{safe_name(ESCAPE)}_1.png").is_file()
    assert (folder / "contact_sheet.png").is_file()
    assert_only_inside(tmp_path, before)


@pytest.mark.slow
def test_explore_new_long_prompt_and_keep(tmp_path: Path) -> None:
    meta, media = nasty_song(tmp_path)
    before = tree(tmp_path)
    name = "../" + LONG
    result = invoke(tmp_path, "explore", "song", "-p", name, "--prompt-text", "a sun",
                    "--seeds", "7")
    assert result.exit_code == 0, result.output
    folder = media / "explore_images" / safe_name(name)
    assert (folder / f"{safe_name(name)}_7.png").is_file()
    result = invoke(tmp_path, "explore", "song", "-p", name, "--prompt-text", "a sun",
                    "--keep", "7")
    assert result.exit_code == 0, result.output
    assert name in (meta / "prompt_image_definitions.csv").read_text(encoding="utf-8")
    assert invoke(tmp_path, "validate", "song").exit_code == 0
    assert_only_inside(tmp_path, before)


def fake_transitions(media: Path) -> None:
    """The path through every scene, on disk as sdmorph writes it (plain frames, no model)."""
    images = [ImageId(name, 100 + i) for i, name in enumerate(NAMES)] + [ImageId(LONG, 999)]
    store = TransitionStore(media, {}, 3)
    for k, (a, b) in enumerate(zip(images, images[1:], strict=False)):
        folder = store.folder_for(a, b)
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (64, 64), (30 * k, 100 * i, 50)).save(folder / frame_name(i))
        TransitionManifest(from_image=a, to_image=b, frames=3, complete=True,
                           recipe={"test": k}).write(folder / "manifest.json")


def test_story_name_stays_inside(tmp_path: Path) -> None:
    meta, media = nasty_song(tmp_path)
    fake_transitions(media)
    before = tree(tmp_path)
    result = invoke(tmp_path, "movie", "song", "--name", "../../evil story", "--codec",
                    "mjpeg", "--no-audio")
    assert result.exit_code == 0, result.output
    story = media / "stories" / safe_name("../../evil story")
    assert (story / f"trans_sequence_{safe_name('../../evil story')}.csv").is_file()
    assert list(story.rglob("*.mov"))
    assert_only_inside(tmp_path, before)


@pytest.mark.slow
def test_plan_picture_takes_any_name(tmp_path: Path) -> None:
    names = ["a $\\frac$ b", "moon 🌙"]
    sheet = "name,prompt,seeds\n" + "".join(f"{csv_cell(n)},x,{i} 9{i}\n"
                                            for i, n in enumerate(names))
    scenes = ",scene,duration,section\n" + "".join(f"{i},{csv_cell(n)},1,1\n"
                                                   for i, n in enumerate(names))
    _, media = write_song(tmp_path, sheet=sheet, scenes=scenes, settings=TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # users would see it on the terminal
        result = invoke(tmp_path, "transitions", "song", "--plan-only")
    assert result.exit_code == 0, result.output
    assert (media / "story" / "plan_graph.png").is_file()


@pytest.mark.parametrize("scene", ["../../outside", "../outside", "/etc", "a/../../../outside"])
def test_scene_folder_outside_the_song_is_refused(tmp_path: Path, scene: str) -> None:
    # Without the check, the folder outside would be a valid scene of sun_2001.
    sheet = "name,prompt,seeds\nluna,a moon,1001\nsun,a sun,2001\n"
    (tmp_path / "media" / "outside").mkdir(parents=True)
    (tmp_path / "media" / "song" / "outside").mkdir(parents=True)
    (tmp_path / "media" / "song" / "scenes").mkdir()  # the OS walks `..` through it
    for folder in (tmp_path / "media" / "outside", tmp_path / "media" / "song" / "outside"):
        Image.new("RGB", (8, 8)).save(folder / "sun_2001.png")
    write_song(tmp_path, sheet=sheet, scenes=f",scene,duration,section\n0,luna,0,1\n"
               f"1,{scene},0,1\n", settings=TINY)
    result = invoke(tmp_path, "validate", "song")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "row 3, column 'scene'" in lines[0] and "outside" in lines[0]


def test_prompt_names_sharing_a_file_name_are_refused(tmp_path: Path) -> None:
    write_song(tmp_path, sheet="name,prompt,seeds\na/b,x,1\na_b,y,2\n",
               scenes=",scene,duration,section\n0,a_b,0,1\n", settings=TINY)
    result = invoke(tmp_path, "validate", "song")
    assert result.exit_code == 2
    assert "row 3" in result.stderr and "'a/b' (row 2)" in result.stderr


CNET = {"default": {**TINY["default"], "controlnet_string": "tiny-random"}}


@pytest.mark.parametrize("mask", ["../../secret", "../secret", "/etc/passwd",
                                  "shapes/../../secret", "..\\secret", "nul\x00mask"])
@pytest.mark.slow
def test_mask_outside_the_masks_folder_is_refused(tmp_path: Path, mask: str) -> None:
    sheet = f"name,prompt,seeds,mask\nluna,a moon,1001,{csv_cell(mask)}\n"
    meta, media = write_song(tmp_path, sheet=sheet, settings=CNET,
                             scenes=",scene,duration,section\n0,luna,0,1\n")
    (meta / "masks").mkdir()
    for secret in (tmp_path / "meta" / "secret.png", meta / "secret.png"):
        Image.new("RGBA", (16, 16), (255, 255, 255, 255)).save(secret)
    result = invoke(tmp_path, "validate", "song")
    assert result.exit_code == 2
    assert "must name a file inside" in result.stderr and "masks" in result.stderr
    before = tree(tmp_path)
    result = invoke(tmp_path, "render-prompts", "song")
    assert result.exit_code == 2 and "must name a file inside" in result.stderr
    assert not (media / "prompt_images").exists()
    assert tree(tmp_path) == before


def test_mask_name_too_long_for_the_file_system(tmp_path: Path) -> None:
    sheet = f"name,prompt,seeds,mask\nluna,a moon,1001,{'m' * 300}\n"
    meta, _ = write_song(tmp_path, sheet=sheet, settings=CNET,
                         scenes=",scene,duration,section\n0,luna,0,1\n")
    (meta / "masks").mkdir()
    result = invoke(tmp_path, "validate", "song")
    assert result.exit_code == 2 and "row 2, column 'mask'" in result.stderr


def test_long_scene_and_variant_names_are_one_line(tmp_path: Path) -> None:
    write_song(tmp_path, settings=TINY,
               scenes=f",scene,duration,section\n0,luna,0,1\n1,{'s' * 300},0,1\n")
    result = invoke(tmp_path, "validate", "song")
    assert result.exit_code == 2 and "row 3, column 'scene'" in result.stderr
    result = invoke(tmp_path, "validate", "song", "--scenes", "v" * 300)
    assert result.exit_code == 2 and "missing scene_sequence_vvv" in result.stderr


def test_song_wide_mask_outside_is_refused(tmp_path: Path) -> None:
    settings = {"default": {**CNET["default"], "mask_image": "../secret"}}
    meta, _ = write_song(tmp_path, sheet="name,prompt,seeds\nluna,a moon,1001\n",
                         settings=settings, scenes=",scene,duration,section\n0,luna,0,1\n")
    (meta / "masks").mkdir()
    Image.new("RGBA", (16, 16)).save(meta / "secret.png")
    result = invoke(tmp_path, "validate", "song")
    assert result.exit_code == 2 and "must name a file inside" in result.stderr


@pytest.mark.parametrize("variant", ["x/../../x", "..\\..\\x", "/etc/x"])
def test_scene_variant_is_a_name_not_a_path(tmp_path: Path, variant: str) -> None:
    meta, _ = write_song(tmp_path, settings=TINY,
                         scenes=",scene,duration,section\n0,luna,0,1\n")
    (meta / "scene_sequence_x").mkdir()  # the OS would walk `..` through it
    (tmp_path / "meta" / "x.csv").write_text(",scene,duration,section\n0,luna,0,1\n")
    result = invoke(tmp_path, "validate", "song", "--scenes", variant)
    assert result.exit_code == 2
    assert "a variant name" in result.stderr and "Traceback" not in result.output
