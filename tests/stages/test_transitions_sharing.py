"""Shared denoising in the transitions stage: in-betweens that join their neighbours' states."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.core.ids import ImageId
from sdmorph.formats.song import Song, load_song
from sdmorph.media.store import MANIFEST_NAME, PARTIAL_NAME, TransitionManifest
from sdmorph.stages.plan import open_store
from sdmorph.stages.status import recipe_differences
from songs import SETTINGS, env_for, folder_bytes, pixels, render_transition, write_song

FRAMES = 9
A, B = ImageId("luna", 1001), ImageId("sun", 2001)


def song_at(root: Path, sharing: float | None, pacing: str = "linear") -> Song:
    profile = {**SETTINGS["default"], "interpolation_steps": FRAMES, "pacing": pacing,
               "pipe_kwargs": {"num_inference_steps": 4}}
    if sharing is not None:
        profile["sharing"] = sharing
    return load_song(*write_song(root, settings={"default": profile}))


KEYFRAMES: dict[ImageId, bytes] = {}


def render(song: Song, batch_size: int = 3) -> tuple[Path, int, str]:
    return render_transition(song, A, B, FRAMES, batch_size, KEYFRAMES)


@pytest.fixture(scope="module", params=["linear", "even"])
def shared(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Song, Path, int, int]:
    """(song, folder, passes with sharing 0.8, passes of the same pacing without)."""
    pacing = request.param
    song = song_at(tmp_path_factory.mktemp(f"shared-{pacing}"), 0.8, pacing)
    folder, passes, status = render(song)
    assert status == "rendered"
    _, unshared, _ = render(song_at(tmp_path_factory.mktemp(f"plain-{pacing}"), None, pacing))
    return song, folder, passes, unshared


def test_the_ends_are_the_keyframe_files(shared: tuple[Song, Path, int, int]) -> None:
    song, folder, _, _ = shared
    frames = sorted(folder.glob("frame*.png"))
    assert len(frames) == FRAMES
    assert pixels(frames[0]) == KEYFRAMES[A]
    assert pixels(frames[-1]) == KEYFRAMES[B]
    inner = {pixels(f) for f in frames[1:-1]}
    assert len(inner) == FRAMES - 2  # every in-between a picture of its own


def test_the_manifest_records_the_sharing_and_its_cost(
        shared: tuple[Song, Path, int, int]) -> None:
    song, folder, passes, unshared = shared
    manifest = TransitionManifest.read(folder / MANIFEST_NAME)
    assert manifest.recipe["sharing"] == 0.8
    record = manifest.sharing
    assert record is not None and record.iterations == 5  # PNDM: steps + 1
    assert list(record.join_steps) == ["1", "2", "3"]
    assert 0 < record.join_steps["1"] <= record.join_steps["3"] < record.iterations
    assert record.unet_passes_per_frame == pytest.approx(passes / FRAMES)
    # Every in-between and both keyframes again (and the probes that are no frame).
    assert record.vae_decodes_per_frame >= 1.0
    assert passes <= 0.6 * unshared


def test_sharing_is_deterministic(shared: tuple[Song, Path, int, int], tmp_path: Path) -> None:
    song, folder, _, _ = shared
    again, _, _ = render(song_at(tmp_path, 0.8, song.profile.pacing))
    assert folder_bytes(again) == folder_bytes(folder)


def test_a_render_killed_half_way_resumes_to_the_same_bytes(
        shared: tuple[Song, Path, int, int], tmp_path: Path) -> None:
    """The marker kept (with its record and, for even pacing, its t's), frames lost: the tree
    is grown again, in the same batches, and the missing frames come out the same."""
    song, folder, _, _ = shared
    resumed = song_at(tmp_path, 0.8, song.profile.pacing)
    target = open_store(resumed).folder_for(A, B)
    shutil.copytree(folder, target)
    manifest = TransitionManifest.read(target / MANIFEST_NAME)
    (target / MANIFEST_NAME).unlink()
    manifest.model_copy(update={"complete": False}).write(target / PARTIAL_NAME)
    for index in (1, 4, 6):
        (target / f"frame00000{index}.png").unlink()
    _, _, status = render(resumed)
    assert status == "rendered"
    assert folder_bytes(target) == folder_bytes(folder)


def test_a_sharing_change_marks_the_folder_stale(shared: tuple[Song, Path, int, int],
                                                 tmp_path: Path) -> None:
    song, folder, _, _ = shared
    manifest = TransitionManifest.read(folder / MANIFEST_NAME)
    pacing = song.profile.pacing
    assert recipe_differences(song_at(tmp_path / "same", 0.8, pacing), manifest) == []
    other = recipe_differences(song_at(tmp_path / "other", 0.5, pacing), manifest)
    assert any(d.startswith("sharing") for d in other)
    none = recipe_differences(song_at(tmp_path / "none", None, pacing), manifest)
    assert any(d.startswith("sharing") for d in none)


def test_no_sharing_keeps_the_old_recipe_and_manifest(tmp_path: Path) -> None:
    folder, _, _ = render(song_at(tmp_path, 0.0))
    manifest = TransitionManifest.read(folder / MANIFEST_NAME)
    assert "sharing" not in manifest.recipe and manifest.sharing is None
    assert '"sharing"' not in (folder / MANIFEST_NAME).read_text()


@pytest.mark.slow
def test_the_cli_takes_sharing_and_refuses_bad_values(tmp_path: Path) -> None:
    write_song(tmp_path, settings={"default": {**SETTINGS["default"], "interpolation_steps": 5}})
    for value in ("1.5", "-0.1"):
        bad = CliRunner().invoke(app, ["transitions", "song", "--sharing", value],
                                 env=env_for(tmp_path))
        assert bad.exit_code == 2, bad.output
        assert bad.output.strip().splitlines()[-1].startswith(f"error: --sharing {float(value)}")
    done = CliRunner().invoke(app, ["transitions", "song", "--sharing", "0.5"],
                              env=env_for(tmp_path))
    assert done.exit_code == 0, done.output
    assert "UNet passes/frame" in done.output and "VAE decodes/frame" in done.output
    manifests = list((tmp_path / "media/song/transition_images").glob(f"*/{MANIFEST_NAME}"))
    assert manifests and all(
        TransitionManifest.read(m).recipe["sharing"] == 0.5 for m in manifests)


def test_a_profile_with_sharing_out_of_range_is_one_line(tmp_path: Path) -> None:
    profile = {**SETTINGS["default"], "sharing": 1.0}
    write_song(tmp_path, settings={"default": profile})
    result = CliRunner().invoke(app, ["transitions", "song", "--plan-only"],
                                env=env_for(tmp_path))
    assert result.exit_code != 0
    assert "tgen_settings.json" in result.output and "sharing" in result.output
    assert "Traceback" not in result.output


def test_sharing_on_a_ray_cluster_is_refused_before_ray_starts(tmp_path: Path) -> None:
    write_song(tmp_path, settings={"default": {**SETTINGS["default"], "sharing": 0.5}})
    result = CliRunner().invoke(app, ["transitions", "song", "--cluster", "local"],
                                env=env_for(tmp_path))
    assert result.exit_code == 2, result.output
    assert "cannot run on a Ray cluster yet" in result.output
