"""`sdmorph run` through the real CLI: keyframes, transitions and movie in one go, or a stop
with one clear line before anything that cannot succeed."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.media.ffmpeg import probe
from songs import SETTINGS, env_for, write_song

runner = CliRunner()
# 64x64, 3 steps, 4 frames per transition: a whole run takes seconds.
FRAMES: int = SETTINGS["default"]["interpolation_steps"]  # type: ignore[index]


def invoke(root: Path, *args: str):
    return runner.invoke(app, list(args), env=env_for(root))


def media(root: Path) -> Path:
    return root / "media" / "song"


@pytest.mark.slow
def test_run_renders_everything_and_passes_options_through(tmp_path: Path) -> None:
    write_song(tmp_path)
    result = invoke(tmp_path, "run", "song", "--fps", "5", "--codec", "mjpeg")
    assert result.exit_code == 0, result.output
    song = media(tmp_path)
    assert len(list((song / "prompt_images").glob("*.png"))) == 9
    folders = [p for p in (song / "transition_images").iterdir() if not p.name.startswith(".")]
    assert len(folders) == 5 and all((p / "manifest.json").is_file() for p in folders)
    story = song / "stories/base"
    info = probe(story / "base_combined.mov")
    assert info.codec == "mjpeg" and info.fps == 5
    # 5 transitions of 4 frames meeting at 4 shared keyframes.
    assert info.frames == 5 * FRAMES - 4
    assert not list(story.rglob("*.mp4"))  # --codec mjpeg: only .mov
    # The plan picture is drawn again after rendering: the whole path is rendered.
    with Image.open(song / "story/plan_graph.png") as image:
        assert image.text["path_rendered"] == "5 of 5"  # type: ignore[attr-defined]
    # --seed plans and tells another story.
    first = (story / "trans_sequence_base.csv").read_text()
    planned = (song / "story/trans_sequence_gen.csv").read_text()
    again = invoke(tmp_path, "run", "song", "--seed", "1", "--codec", "mjpeg")
    assert again.exit_code == 0, again.output
    assert (song / "story/trans_sequence_gen.csv").read_text() != planned
    assert (story / "trans_sequence_base.csv").read_text() != first


def test_bad_movie_options_fail_before_rendering(tmp_path: Path) -> None:
    write_song(tmp_path)
    for args, said in ((["--codec", "bogus"], "--codec 'bogus'"),
                       (["--audio", str(tmp_path / "nope.wav")], "audio file not found")):
        result = invoke(tmp_path, "run", "song", *args)
        assert result.exit_code == 2, result.output
        assert said in result.stderr and "Traceback" not in result.output
        assert not (media(tmp_path) / "prompt_images").exists()
        assert not (media(tmp_path) / "transition_images").exists()


@pytest.mark.slow
def test_old_scripts_story_under_the_default_name_stops_run_before_rendering(
        tmp_path: Path) -> None:
    write_song(tmp_path)
    old = media(tmp_path) / "stories/base/trans_sequence_base.csv"
    old.parent.mkdir(parents=True)
    old.write_text(",path_section,section,scene_from,c1,c2,reversed,input_image_folder\n")
    result = invoke(tmp_path, "run", "song")
    assert result.exit_code == 2, result.output
    assert "old scripts" in result.stderr and "-o NAME" in result.stderr
    assert not (media(tmp_path) / "prompt_images").exists()
    renamed = invoke(tmp_path, "run", "song", "--codec", "mjpeg", "-o", "first")
    assert renamed.exit_code == 0, renamed.output
    assert (media(tmp_path) / "stories/first/first_combined.mov").is_file()
    assert old.read_text().startswith(",path_section")  # the old story is untouched


@pytest.mark.slow
def test_unrendered_planned_transition_stops_run_before_the_movie(tmp_path: Path) -> None:
    write_song(tmp_path)
    # An old scripts' folder for a planned transition (seeds of 4 digits: the legacy name is
    # the full one), its last frame cut short by a cloud drive.
    legacy = media(tmp_path) / "transition_images" / "sun-2001 to sun-2003"
    legacy.mkdir(parents=True)
    for index in range(FRAMES):
        Image.new("RGB", (64, 64), (index * 60, 0, 0)).save(legacy / f"frame{index:06d}.png")
    cut = legacy / f"frame{FRAMES - 1:06d}.png"
    cut.write_bytes(cut.read_bytes()[:-20])
    result = invoke(tmp_path, "run", "song", "--codec", "mjpeg")
    assert result.exit_code == 2, result.output
    assert "'sun-2001 to sun-2003' is an incomplete legacy folder" in result.stderr
    assert "frame000003.png" in result.stderr
    assert "`sdmorph transitions song --force`" in result.stderr
    assert "cannot be reached" not in result.output  # stopped before the movie
    assert not (media(tmp_path) / "stories").exists()
    # The fix it names works, and run then makes the movie.
    assert invoke(tmp_path, "transitions", "song", "--force").exit_code == 0
    done = invoke(tmp_path, "run", "song", "--codec", "mjpeg")
    assert done.exit_code == 0, done.output
    assert (media(tmp_path) / "stories/base/base_combined.mov").is_file()



@pytest.mark.slow
def test_stale_transition_stops_run_naming_it_once(tmp_path: Path) -> None:
    write_song(tmp_path)
    assert invoke(tmp_path, "run", "song", "--codec", "mjpeg").exit_code == 0
    settings = {"default": {**SETTINGS["default"], "pipe_kwargs": {"num_inference_steps": 2}}}
    write_song(tmp_path, settings=settings)  # the same song, fewer steps: all stale
    result = invoke(tmp_path, "run", "song", "--codec", "mjpeg")
    assert result.exit_code == 2, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "was rendered with other settings" in error[0]
    assert error[0].count("rendered with other settings") == 3  # 3 shown, no reason repeated
