"""explore through the real CLI on the tiny model: images, contact sheet, --keep, --sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sdmorph.cli.app import app
from songs import env_for, write_song

runner = CliRunner()


def invoke(root: Path, *args: str):
    return runner.invoke(app, list(args), env=env_for(root))


@pytest.mark.slow
def test_explore_random_seeds_writes_images_and_contact_sheet(tmp_path: Path) -> None:
    write_song(tmp_path)
    result = invoke(tmp_path, "explore", "song", "-p", "luna", "-n", "3", "--rng-seed", "5")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "media/song/explore_images/luna"
    seeds_line = next(line for line in result.stdout.splitlines() if line.startswith("luna: seeds"))
    seeds = [int(s) for s in seeds_line.split()[2:]]
    assert len(seeds) == 3 and all(0 <= s < 2**32 for s in seeds)
    for seed in seeds:
        assert (folder / f"luna_{seed}.png").is_file()
    with Image.open(folder / "contact_sheet.png") as sheet:
        assert sheet.width > 64 and sheet.height > 64
    again = invoke(tmp_path, "explore", "song", "-p", "luna", "-n", "3", "--rng-seed", "5")
    assert seeds_line in again.stdout  # --rng-seed makes the draw reproducible


def test_explore_given_seeds_and_new_prompt(tmp_path: Path) -> None:
    write_song(tmp_path)
    result = invoke(tmp_path, "explore", "song", "-p", "comet", "--prompt-text", "a comet",
                    "--seeds", "12", "34")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "media/song/explore_images/comet"
    assert sorted(p.name for p in folder.glob("comet_*.png")) == ["comet_12.png", "comet_34.png"]
    with Image.open(folder / "comet_12.png") as image:
        assert image.text["prompt"] == "a comet"  # type: ignore[attr-defined]
    unknown = invoke(tmp_path, "explore", "song", "-p", "nope", "--seeds", "1")
    assert unknown.exit_code == 2 and "--prompt-text" in unknown.stderr


@pytest.mark.slow
def test_explore_without_prompt_explores_unseeded_ones(tmp_path: Path) -> None:
    sheet = "name,prompt,seeds\nluna,a moon,1\ncomet,a comet,\n"
    write_song(tmp_path, sheet=sheet, scenes=",scene,duration,section\n0,luna,0,1\n")
    result = invoke(tmp_path, "explore", "song", "-n", "2")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "media/song/explore_images/comet").glob("comet_*.png"))) == 2
    assert not (tmp_path / "media/song/explore_images/luna").exists()


def sheet_bytes(prefix: bytes, cell: bytes, suffix: bytes) -> bytes:
    return prefix + cell + suffix


def test_keep_changes_exactly_the_seeds_cell_bom_crlf(tmp_path: Path) -> None:
    prefix = ("\ufeffname,prompt,seeds,guidance_scale,notes\r\n"
              'luna,"a moon, glowing",').encode()
    suffix = b',7.5,keep me\r\nsun,a sun,1 2,7,\r\n'
    meta, _ = write_song(tmp_path, sheet=prefix + b'"6497, 3676"' + suffix)
    sheet = meta / "prompt_image_definitions.csv"
    result = invoke(tmp_path, "explore", "song", "-p", "luna", "--keep", "42", "5842234013956479")
    assert result.exit_code == 0, result.output
    assert sheet.read_bytes() == prefix + b'"6497, 3676, 42, 5842234013956479"' + suffix
    assert (meta / "prompt_image_definitions.csv.bak").read_bytes() == (
        prefix + b'"6497, 3676"' + suffix)
    before = sheet.stat().st_mtime_ns
    again = invoke(tmp_path, "explore", "song", "-p", "luna", "--keep", "42")
    assert again.exit_code == 0 and "already kept" in again.stdout
    assert sheet.stat().st_mtime_ns == before


def test_keep_space_delimited(tmp_path: Path) -> None:
    meta, _ = write_song(tmp_path)
    sheet = meta / "prompt_image_definitions.csv"
    original = sheet.read_bytes()
    assert invoke(tmp_path, "explore", "song", "-p", "sun", "--keep", "7").exit_code == 0
    assert sheet.read_bytes() == original.replace(b"2001 2002 2003", b"2001 2002 2003 7")


@pytest.mark.slow
def test_concurrent_keeps_lose_nothing(tmp_path: Path) -> None:
    meta, _ = write_song(tmp_path)
    env = {**os.environ, **env_for(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-m", "sdmorph", "explore", "song", "-p", "star",
                               "--keep", str(100 + i), str(200 + i)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(4)]
    for proc in procs:
        # A guard against a hang, not a speed check: four processes load a model at once.
        assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else ""
    text = (meta / "prompt_image_definitions.csv").read_text()
    star = next(line for line in text.splitlines() if line.startswith("star,"))
    for i in range(4):
        assert str(100 + i) in star.split(",")[2].split()
        assert str(200 + i) in star.split(",")[2].split()


def test_sweep_writes_a_grid_whose_cells_differ(tmp_path: Path) -> None:
    write_song(tmp_path)
    result = invoke(tmp_path, "explore", "song", "-p", "luna", "--sweep", "guidance_scale=1,12",
                    "--sweep", "pipe_kwargs.num_inference_steps=2,4")
    assert result.exit_code == 0, result.output
    grid_path = next((tmp_path / "media/song/explore_images/luna").glob("sweep_1001_*.png"))
    with Image.open(grid_path) as grid:
        grid.load()
    # Compare the four 64x64 cells: they sit in a 2x2 block at the bottom right.
    cells = []
    w, h = grid.size
    for row in range(2):
        for col in range(2):
            x = w - (2 - col) * (64 + 4)
            y = h - (2 - row) * (64 + 4)
            cells.append(grid.crop((x, y, x + 64, y + 64)).tobytes())
    assert len(set(cells)) == 4
    bad = invoke(tmp_path, "explore", "song", "-p", "luna", "--sweep", "colour=red")
    assert bad.exit_code == 2 and "colour" in bad.stderr


def test_explore_a_new_song_whose_scenes_use_an_unseeded_prompt(tmp_path: Path) -> None:
    """The normal state of a new song: its scene sequence names prompts not explored yet."""
    sheet = "name,prompt,seeds\nluna,a moon,1\ndusk,a dusk,\n"
    write_song(tmp_path, sheet=sheet, scenes=",scene,duration,section\n0,luna,0,1\n1,dusk,0,1\n")
    result = invoke(tmp_path, "explore", "song", "-n", "1")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "media/song/explore_images/dusk"
    assert len(list(folder.glob("dusk_*.png"))) == 1
    named = invoke(tmp_path, "explore", "song", "-p", "dusk", "-n", "1", "--rng-seed", "3")
    assert named.exit_code == 0, named.output
    assert len(list(folder.glob("dusk_*.png"))) == 2


def test_explore_and_keep_without_a_scene_sequence(tmp_path: Path) -> None:
    meta, _ = write_song(tmp_path, sheet="name,prompt,seeds\ndawn,a dawn,\n", scenes=None)
    result = invoke(tmp_path, "explore", "song", "-p", "dawn", "-n", "1", "--rng-seed", "1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "media/song/explore_images/dawn/contact_sheet.png").is_file()
    kept = invoke(tmp_path, "explore", "song", "-p", "dawn", "--keep", "77")
    assert kept.exit_code == 0, kept.output
    assert (meta / "prompt_image_definitions.csv").read_text().endswith("dawn,a dawn,77\n")


def test_keep_refuses_a_seed_the_loader_would_reject(tmp_path: Path) -> None:
    meta, _ = write_song(tmp_path)
    sheet = meta / "prompt_image_definitions.csv"
    before = sheet.read_bytes()
    result = invoke(tmp_path, "explore", "song", "-p", "luna", "--keep", "99999999999999999999999")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "0..2^64-1" in result.stderr and str(sheet) in result.stderr
    assert sheet.read_bytes() == before
    assert not (meta / "prompt_image_definitions.csv.bak").exists()
    largest = invoke(tmp_path, "explore", "song", "-p", "luna", "--keep", str(2**64 - 1))
    assert largest.exit_code == 0, largest.output
    assert invoke(tmp_path, "validate", "song").exit_code == 0


def test_sweep_without_prompt_sweeps_every_prompt_with_seeds(tmp_path: Path) -> None:
    sheet = "name,prompt,seeds\nluna,a moon,11\nsun,a sun,22 23\ncomet,a comet,\n"
    write_song(tmp_path, sheet=sheet, scenes=None)
    result = invoke(tmp_path, "explore", "song", "--sweep", "guidance_scale=5,9")
    assert result.exit_code == 0, result.output
    explore = tmp_path / "media/song/explore_images"
    assert [p.name for p in (explore / "luna").glob("sweep_*.png")] == [
        "sweep_11_guidance_scale.png"]
    assert [p.name for p in (explore / "sun").glob("sweep_*.png")] == [
        "sweep_22_guidance_scale.png"]
    assert not (explore / "comet").exists()


def test_options_explore_would_ignore_are_errors(tmp_path: Path) -> None:
    meta, _ = write_song(tmp_path)
    sheet = meta / "prompt_image_definitions.csv"
    before = sheet.read_bytes()
    text = invoke(tmp_path, "explore", "song", "--prompt-text", "a comet", "-n", "1")
    assert text.exit_code == 2 and "--prompt-text needs -p NAME" in text.stderr
    both = invoke(tmp_path, "explore", "song", "-p", "luna", "--keep", "5", "--seeds", "6")
    assert both.exit_code == 2 and "--keep" in both.stderr and "--seeds" in both.stderr
    assert sheet.read_bytes() == before
    assert not (tmp_path / "media/song/explore_images").exists()
