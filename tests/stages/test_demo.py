"""The main job end to end: `sdmorph demo` through the real CLI, movies checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.media.ffmpeg import probe

runner = CliRunner()


@pytest.mark.slow
def test_demo_makes_movies_with_audio(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    story = tmp_path / "demo/media/harbour/stories/base"
    assert str(story / "base_combined.mov") in result.stdout
    assert (tmp_path / "demo/.env").read_text().startswith("media_dir=")
    # 6 transitions of 16 frames meet at 5 shared keyframes; sections 1 and 2 keep their ends.
    expected = {"base_combined": 91, "sections/section_1": 61, "sections/section_2": 31}
    for stem, frames in expected.items():
        for ext, codec in ((".mov", "mjpeg"), (".mp4", "h264")):
            info = probe(story / f"{stem}{ext}")
            assert info.frames == frames, (stem, ext)
            assert abs(info.duration - frames / 12) < 1.5 / 12
            assert info.codec == codec
            assert info.has_audio and info.audio_duration is not None
            assert abs(info.audio_duration - info.duration) < 0.1
            assert (info.width, info.height) == (128, 96)
    # Running it again resumes: nothing is rendered twice.
    again = runner.invoke(app, ["demo", str(tmp_path / "demo")])
    assert again.exit_code == 0, again.output
    assert "0 frames rendered" in again.stdout
    status = runner.invoke(app, ["status", "harbour"],
                           env={"media_dir": str(tmp_path / "demo/media"),
                                "meta_dir": str(tmp_path / "demo/meta")})
    assert status.exit_code == 0, status.output
    rows = table_rows(status.stdout)
    # The whole story: 11 keyframes and the 6 planned transitions rendered by sdmorph, all
    # current; one story, "base", with its file, 4 section movies and both combined movies;
    # nothing to look at, and the next step is only to re-spin a story.
    assert ["on disk (sdmorph, current settings)", "11"] in rows
    assert ["rendered (sdmorph)", "6"] in rows
    assert ["complete", "6", "0"] in rows
    [base] = [row for row in rows if row[0] == "base"]
    assert base[1] == "trans_sequence_base.csv" and base[2].startswith("4 (")
    assert "base_combined.mov" in status.stdout and "base_combined.mp4" in status.stdout
    assert "to look at" not in status.stdout and "problems" not in status.stdout
    assert rows[-1] == ["done; re-spin a story with sdmorph movie harbour --seed N -o NAME"]


def table_rows(text: str) -> list[list[str]]:
    """The cells of each line of the tables `status` draws (wrapped cells stay split)."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")]
            for line in text.splitlines() if line.startswith("│")]
