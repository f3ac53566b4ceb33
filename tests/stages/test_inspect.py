"""`sdmorph inspect`: transitions ranked by their jumps, cached scores, the picture, status."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.formats.legacy import frame_name
from sdmorph.media.frame_scores import SCORES_PATH, ScoreCache, frames_stamp, score_frames
from songs import SETTINGS, env_for, write_song

runner = CliRunner()
FRAMES = 9
SIZE = 64
# Legacy folder names: the old scripts cut seeds to 4 digits.
SMOOTH = "luna-1001 to sun-2001"
JUMPY = "luna-1002 to sun-2002"
SETTINGS_9 = {"default": {**SETTINGS["default"], "interpolation_steps": FRAMES}}


def disc(x: float) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (30, 60, 160))
    ImageDraw.Draw(image).ellipse((x, 20, x + 24, 44), fill=(220, 200, 40))
    return image


def write_frames(folder: Path, positions: list[float]) -> None:
    folder.mkdir(parents=True)
    for i, x in enumerate(positions):
        disc(x).save(folder / frame_name(i))


def song_with_frames(root: Path) -> Path:
    """Two legacy transitions: a disc gliding evenly, and one that snaps across mid-way."""
    _, media = write_song(root, settings=SETTINGS_9)
    base = media / "transition_images"
    write_frames(base / SMOOTH, [4.0 + 4 * i for i in range(FRAMES)])
    jumpy = [4.0 + i for i in range(4)] + [30.0 + i for i in range(FRAMES - 4)]
    write_frames(base / JUMPY, jumpy)
    return media


def invoke(root: Path, *args: str):
    return runner.invoke(app, list(args), env=env_for(root))


def test_the_jumpy_transition_comes_first_with_its_jump_located(tmp_path: Path) -> None:
    media = song_with_frames(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in (media / "transition_images").rglob("*")}
    result = invoke(tmp_path, "inspect", "song", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    names = [t["folder"] for t in data["transitions"]]
    assert names == [JUMPY, SMOOTH]
    jumpy, smooth = data["transitions"]
    assert jumpy["jump"] > 5 and smooth["jump"] < 1.5
    assert jumpy["jump_at"] == [3 / 8, 4 / 8]  # between frames 3 and 4
    assert jumpy["gini"] > smooth["gini"] and len(jumpy["d"]) == FRAMES - 1
    assert data["jumpy"] == 1 and data["plot"].endswith("smoothness.png")
    # Legacy folders are read, never written into.
    after = {p: p.stat().st_mtime_ns for p in (media / "transition_images").rglob("*")}
    assert after == before


def test_the_table_the_picture_and_status(tmp_path: Path) -> None:
    media = song_with_frames(tmp_path)
    assert "smoothness" not in invoke(tmp_path, "status", "song").stdout  # nothing scored
    result = invoke(tmp_path, "inspect", "song")
    assert result.exit_code == 0, result.output
    # Names may wrap in a narrow terminal: their first words are enough.
    assert result.stdout.index("luna-1002") < result.stdout.index("luna-1001")
    assert "█" in result.stdout and "0.375-0.500" in result.stdout
    picture = media / "story" / "smoothness.png"
    with Image.open(picture) as image:
        assert image.size[0] > 600 and image.text["above_threshold"] == "1"
    status = invoke(tmp_path, "status", "song")
    assert "1 of 2 scored" in status.stdout and "not scored yet" not in status.stdout
    assert "sdmorph inspect song" in status.stdout
    # A third transition appears: counted as not scored yet.
    write_frames(media / "transition_images" / "luna-1003 to sun-2003",
                 [4.0 + 4 * i for i in range(FRAMES)])
    assert "not scored yet" in invoke(tmp_path, "status", "song").stdout


@pytest.mark.slow
def test_scores_are_cached_and_rescored_when_a_frame_changes(tmp_path: Path) -> None:
    media = song_with_frames(tmp_path)
    assert invoke(tmp_path, "inspect", "song", "--json").exit_code == 0
    cache = media / SCORES_PATH
    first = json.loads(cache.read_bytes())
    assert set(first["folders"]) == {SMOOTH, JUMPY}
    # A cached entry is used as it is: poison one, and inspect reports the poisoned steps.
    first["folders"][SMOOTH]["d"] = [1.0] * (FRAMES - 2) + [50.0]
    cache.write_text(json.dumps(first))
    poisoned = json.loads(invoke(tmp_path, "inspect", "song", "--json").stdout)
    assert poisoned["transitions"][0]["folder"] == SMOOTH
    # A frame written again (new mtime) is scored again.
    frame = media / "transition_images" / SMOOTH / frame_name(0)
    disc(4.0).save(frame)
    os.utime(frame, ns=(1, 1))
    fresh = json.loads(invoke(tmp_path, "inspect", "song", "--json").stdout)
    assert fresh["transitions"][0]["folder"] == JUMPY


def test_a_broken_frame_is_reported_not_fatal(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    write_frames(folder, [1.0, 2.0, 3.0])
    assert len(score_frames(sorted(folder.iterdir())).d) == 2
    (folder / frame_name(1)).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    frames = sorted(folder.iterdir())
    try:
        score_frames(frames)
    except ValueError as exc:
        assert frame_name(1) in str(exc)
    else:
        raise AssertionError("a broken frame must not be scored")
    assert ScoreCache(tmp_path).get(folder, frames_stamp(frames)) is None


def test_an_empty_song_inspects_to_nothing(tmp_path: Path) -> None:
    write_song(tmp_path, settings=SETTINGS_9)
    result = invoke(tmp_path, "inspect", "song")
    assert result.exit_code == 0, result.output
    assert "no complete transition yet" in result.stdout
    assert not (tmp_path / "media/song/story/smoothness.png").exists()
