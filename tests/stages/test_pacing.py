"""Even pacing: frames placed by probe renders so consecutive frames differ about equally."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.core import pacing
from sdmorph.core.ids import ImageId
from sdmorph.formats.song import Song, load_song
from sdmorph.media.store import MANIFEST_NAME, PARTIAL_NAME, PROBE_PREFIX, TransitionManifest
from sdmorph.render.renderer import open_renderer
from sdmorph.stages.plan import open_store
from sdmorph.stages.status import recipe_differences
from songs import SETTINGS, env_for, folder_bytes, pixels, render_transition, write_song

FRAMES = 7
A, B = ImageId("luna", 1001), ImageId("sun", 2001)


def settings(pacing_name: str | None, frames: int = FRAMES) -> dict[str, object]:
    profile = {**SETTINGS["default"], "interpolation_steps": frames,
               "pipe_kwargs": {"num_inference_steps": 2}}
    if pacing_name is not None:
        profile["pacing"] = pacing_name
    return {"default": profile}


def song_at(root: Path, pacing_name: str | None) -> Song:
    return load_song(*write_song(root, settings=settings(pacing_name)))


def render(song: Song, batch_size: int = 4) -> tuple[Path, int, str]:
    return render_transition(song, A, B, FRAMES, batch_size)


@pytest.fixture(scope="module")
def even(tmp_path_factory: pytest.TempPathFactory) -> tuple[Song, Path, int]:
    song = song_at(tmp_path_factory.mktemp("even"), "even")
    folder, passes, status = render(song)
    assert status == "rendered"
    return song, folder, passes


@pytest.mark.slow
def test_even_keeps_the_frame_count_and_the_keyframes(even: tuple[Song, Path, int]) -> None:
    song, folder, _ = even
    frames = sorted(folder.glob("frame*.png"))
    assert len(frames) == FRAMES
    renderer = open_renderer(song)
    assert pixels(frames[0]) == renderer.keyframe(A).tobytes()
    assert pixels(frames[-1]) == renderer.keyframe(B).tobytes()
    assert not list(folder.glob(f"{PROBE_PREFIX}*")) and not (folder / PARTIAL_NAME).exists()


def test_the_chosen_times_are_in_the_manifest_and_the_frames(
        even: tuple[Song, Path, int]) -> None:
    _, folder, _ = even
    manifest = TransitionManifest.read(folder / MANIFEST_NAME)
    times = manifest.times
    assert times is not None and len(times) == FRAMES
    assert times[0] == 0.0 and times[-1] == 1.0 and times == sorted(set(times))
    assert all(t * pacing.GRID == round(t * pacing.GRID) for t in times)  # exact on the grid
    assert manifest.recipe["pacing"] == "even"
    for i, frame in enumerate(sorted(folder.glob("frame*.png"))):
        with Image.open(frame) as image:
            assert image.text["t"] == f"{times[i]:.6f}"


@pytest.mark.slow
def test_even_is_deterministic(even: tuple[Song, Path, int], tmp_path: Path) -> None:
    _, folder, _ = even
    again, _, _ = render(song_at(tmp_path, "even"))
    assert folder_bytes(again) == folder_bytes(folder)


def test_probes_cost_at_most_half_the_linear_renders(even: tuple[Song, Path, int],
                                                     tmp_path: Path) -> None:
    _, _, even_passes = even
    _, linear_passes, _ = render(song_at(tmp_path, None))
    assert linear_passes > 0
    assert even_passes <= 1.5 * linear_passes


def test_linear_manifests_and_recipes_are_unchanged(tmp_path: Path) -> None:
    folder, _, _ = render(song_at(tmp_path, "linear"))
    data = json.loads((folder / MANIFEST_NAME).read_text())
    assert "times" not in data and "pacing" not in data["recipe"]
    assert list(data) == ["from_image", "to_image", "recipe", "frames", "batch_size",
                          "sdmorph_version", "kind", "complete", "recipe_key"]


@pytest.mark.slow
def test_a_pacing_change_marks_the_folder_stale(even: tuple[Song, Path, int],
                                                tmp_path: Path) -> None:
    _, folder, _ = even
    root = tmp_path / "song"
    linear = song_at(root, None)
    target = open_store(linear).folder_for(A, B)
    shutil.copytree(folder, target)
    _, passes, status = render(linear)
    assert status == "stale" and passes == 0
    manifest = TransitionManifest.read(target / MANIFEST_NAME)
    assert any(diff.startswith("pacing") for diff in recipe_differences(linear, manifest))
    assert recipe_differences(song_at(tmp_path / "again", "even"), manifest) == []


def test_a_render_stopped_while_probing_resumes_to_the_same_bytes(
        even: tuple[Song, Path, int], tmp_path: Path) -> None:
    """Interrupted before the t's were chosen: the marker has none, no probe is on disk."""
    _, folder, _ = even
    song = song_at(tmp_path, "even")
    target = open_store(song).folder_for(A, B)
    target.mkdir(parents=True)
    manifest = TransitionManifest.read(folder / MANIFEST_NAME)
    manifest.model_copy(update={"times": None, "complete": False}).write(target / PARTIAL_NAME)
    shutil.copy(folder / "frame000000.png", target / "frame000000.png")
    _, passes, status = render(song)  # probes again, in the same batches
    assert status == "rendered" and passes > 0
    assert folder_bytes(target) == folder_bytes(folder)


def test_a_render_stopped_after_choosing_keeps_its_times(even: tuple[Song, Path, int],
                                                         tmp_path: Path) -> None:
    """Interrupted after the t's were recorded: they are used as recorded."""
    _, folder, _ = even
    song = song_at(tmp_path, "even")
    target = open_store(song).folder_for(A, B)
    shutil.copytree(folder, target)
    manifest = TransitionManifest.read(target / MANIFEST_NAME)
    (target / MANIFEST_NAME).unlink()
    manifest.model_copy(update={"complete": False}).write(target / PARTIAL_NAME)
    for index in (2, 4):
        (target / f"frame00000{index}.png").unlink()
    _, _, status = render(song)
    assert status == "rendered"
    assert folder_bytes(target) == folder_bytes(folder)


@pytest.mark.slow
def test_the_cli_takes_pacing_and_refuses_unknown_ones(tmp_path: Path) -> None:
    write_song(tmp_path, settings=settings(None, frames=4))
    bad = CliRunner().invoke(app, ["transitions", "song", "--pacing", "fast"],
                             env=env_for(tmp_path))
    assert bad.exit_code == 2 and "--pacing 'fast': use linear or even" in bad.output
    done = CliRunner().invoke(app, ["transitions", "song", "--pacing", "even"],
                              env=env_for(tmp_path))
    assert done.exit_code == 0, done.output
    manifests = list((tmp_path / "media/song/transition_images").glob(f"*/{MANIFEST_NAME}"))
    assert manifests and all(
        TransitionManifest.read(m).recipe["pacing"] == "even" for m in manifests)
