"""When the machine fails the user: one clear line, a non-zero exit, finished work kept.

Unwritable media folders, a full disk, a missing ffmpeg, a model that does not load, running
out of memory and pictures that decode to NaN, all through the real CLI on the tiny model.
Tests run as root, so permissions do not stop writes: an unwritable folder is simulated by a
file where the folder should be, a full disk by `os.replace` failing with ENOSPC.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.core.ids import ImageId, transition_name
from sdmorph.formats.legacy import frame_name
from sdmorph.media import ffmpeg as video
from sdmorph.media.store import TransitionManifest
from songs import SETTINGS, env_for, write_song

runner = CliRunner()
TINY = {"default": {**SETTINGS["default"], "interpolation_steps": 3,
                    "pipe_kwargs": {"num_inference_steps": 2}}}
SHEET = "name,prompt,seeds\nluna,a moon,1001 1002 1003 1004\nsun,a sun,2001\n"
SCENES = ",scene,duration,section\n0,luna,1,1\n1,sun,0,1\n"  # 2 transitions
ALL = ["luna_1001.png", "luna_1002.png", "luna_1003.png", "luna_1004.png", "sun_2001.png"]




def song(root: Path) -> tuple[Path, Path]:
    return write_song(root, sheet=SHEET, scenes=SCENES, settings=TINY)


def invoke(root: Path, *args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env={**env_for(root), **(env or {})})


def one_error_line(result, *words: str) -> str:
    """The run failed with exit 2 and exactly one line on stderr, holding `words`."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def keyframes(media: Path) -> list[str]:
    folder = media / "prompt_images"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def no_temp_files(root: Path) -> None:
    assert not [p for p in root.rglob("*") if ".sdmorph-tmp" in p.name]


def decodes(path: Path) -> bool:
    with Image.open(path) as image:
        image.load()
    return True


# ---------------------------------------------------------------- unwritable media folder


def test_keyframe_folder_is_a_file(tmp_path: Path) -> None:
    _, media = song(tmp_path)
    (media / "prompt_images").write_text("not a folder")
    result = invoke(tmp_path, "render-prompts", "song")
    one_error_line(result, "prompt_images")
    assert (media / "prompt_images").read_text() == "not a folder"


@pytest.mark.slow
def test_transition_folder_is_a_file_keeps_keyframes_and_plan(tmp_path: Path) -> None:
    _, media = song(tmp_path)
    (media / "transition_images").write_text("not a folder")
    result = invoke(tmp_path, "transitions", "song")
    one_error_line(result, "transition_images")
    # What was finished before the failure is kept: the plan and the keyframes.
    assert (media / "transition_meta" / "intrascene_transitions.csv").is_file()
    assert keyframes(media) and all(decodes(media / "prompt_images" / k) for k in keyframes(media))
    no_temp_files(tmp_path)


def test_plan_folder_is_a_file(tmp_path: Path) -> None:
    _, media = song(tmp_path)
    (media / "transition_meta").write_text("not a folder")
    result = invoke(tmp_path, "transitions", "song", "--plan-only")
    one_error_line(result, "transition_meta")


# ---------------------------------------------------------------- full disk


def full_disk(monkeypatch: pytest.MonkeyPatch, when: Callable[[list[str]], bool]) -> list[str]:
    """`os.replace` fails as on a full disk once `when(names renamed so far)`; returns them."""
    real = os.replace
    done: list[str] = []

    def replace(src: object, dst: object, *args: object, **kwargs: object) -> None:
        if when(done):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        real(src, dst, *args, **kwargs)  # type: ignore[arg-type]
        done.append(Path(str(dst)).name)

    monkeypatch.setattr(os, "replace", replace)
    return done


@pytest.mark.slow
def test_disk_full_while_rendering_keyframes(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _, media = song(tmp_path)
    done = full_disk(monkeypatch, lambda done: len(done) >= 3)
    result = invoke(tmp_path, "render-prompts", "song", "--batch-size", "2")
    one_error_line(result, "No space left on device")
    assert keyframes(media) == sorted(done) and len(done) == 3
    assert all(decodes(media / "prompt_images" / k) for k in done)
    no_temp_files(tmp_path)
    monkeypatch.undo()
    again = invoke(tmp_path, "render-prompts", "song", "--batch-size", "2")
    assert again.exit_code == 0 and "2 rendered, 3 already on disk" in again.stdout


def test_disk_full_while_writing_the_plan(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, media = song(tmp_path)
    full_disk(monkeypatch, lambda done: len(done) >= 1)
    result = invoke(tmp_path, "transitions", "song", "--plan-only")
    one_error_line(result, "No space left on device", "transition_meta")
    no_temp_files(tmp_path)


@pytest.mark.slow
def test_disk_full_while_rendering_transitions(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _, media = song(tmp_path)
    # The disk fills up once the first transition is complete.
    done = full_disk(monkeypatch, lambda done: "manifest.json" in done)
    result = invoke(tmp_path, "transitions", "song")
    one_error_line(result, "No space left on device")
    assert len(list((media / "transition_images").glob("*/manifest.json"))) == 1
    assert (media / "transition_meta" / "intrascene_transitions.csv").is_file()
    assert keyframes(media) and "manifest.json" in done
    no_temp_files(tmp_path)
    monkeypatch.undo()
    again = invoke(tmp_path, "transitions", "song", "--render-only")
    assert again.exit_code == 0, again.output
    assert "rendered" in again.stdout and "done" in again.stdout
    assert len(list((media / "transition_images").glob("*/manifest.json"))) == 2


# ---------------------------------------------------------------- ffmpeg missing


@pytest.fixture
def no_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """IMAGEIO_FFMPEG_EXE names a file that is not there (video caches the binary's path)."""
    missing = tmp_path / "no-ffmpeg"
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(missing))
    caches = [getattr(video, name) for name in dir(video)
              if hasattr(getattr(video, name), "cache_clear")]
    for cached in caches:
        cached.cache_clear()
    yield missing
    monkeypatch.undo()
    for cached in caches:
        cached.cache_clear()


def rendered_song(root: Path) -> Path:
    """The song with both transitions on disk (plain frames: nothing to render)."""
    _, media = song(root)
    frames = TINY["default"]["interpolation_steps"]
    pairs = [(ImageId("luna", 1001), ImageId("luna", 1002)),
             (ImageId("luna", 1002), ImageId("sun", 2001))]
    for k, (a, b) in enumerate([*pairs, *((b, a) for a, b in pairs)]):
        folder = media / "transition_images" / transition_name(a, b)
        folder.mkdir(parents=True)
        for i in range(frames):
            Image.new("RGB", (64, 64), (40 * k, 80 * i, 90)).save(folder / frame_name(i))
        TransitionManifest(from_image=a, to_image=b, frames=frames, complete=True,
                           recipe={"test": k}).write(folder / "manifest.json")
    return media


def test_missing_ffmpeg(tmp_path: Path, no_ffmpeg: Path) -> None:
    media = rendered_song(tmp_path)
    before = sorted(media.rglob("*"))
    result = invoke(tmp_path, "movie", "song", "--no-audio", "--codec", "mjpeg")
    one_error_line(result, "ffmpeg")
    assert not list((media / "stories").rglob("*.mov"))
    assert set(before) <= set(media.rglob("*"))  # the frames are all still there
    no_temp_files(tmp_path)


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("model", ["/nonexistent/folder", "some-owner/some-model",
                                   "broken-folder", "weights.safetensors"])
def test_model_that_does_not_load(tmp_path: Path, model: str) -> None:
    song(tmp_path)
    (tmp_path / "broken-folder").mkdir()
    (tmp_path / "broken-folder" / "model_index.json").write_text("{not json")
    (tmp_path / "weights.safetensors").write_bytes(b"\0" * 64)
    env = {"HF_HUB_OFFLINE": "1", "model_cache_dir": str(tmp_path / "cache")}
    model_arg = str(tmp_path / model) if model in ("broken-folder", "weights.safetensors") \
        else model
    result = invoke(tmp_path, "render-prompts", "song", "--model", model_arg, env=env)
    one_error_line(result, model_arg)
    assert not (tmp_path / "media" / "song" / "prompt_images").exists()


# ---------------------------------------------------------------- out of memory


@pytest.mark.slow
def test_out_of_memory_retries_with_smaller_batches(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, media = song(tmp_path)
    forward = UNet2DConditionModel.forward
    sizes: list[int] = []

    def limited(self: UNet2DConditionModel, sample: torch.Tensor, *args: object,
                **kwargs: object) -> object:
        sizes.append(sample.shape[0])
        if sample.shape[0] > 4:  # more than 2 frames (each runs twice, with and without text)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", limited)
    result = invoke(tmp_path, "render-prompts", "song", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.stderr.splitlines() if "out of memory" in line]
    assert len(warnings) == 1 and "2 at a time" in warnings[0], result.stderr
    assert keyframes(media) == ALL
    assert all(decodes(media / "prompt_images" / k) for k in ALL)
    assert sizes[0] == 8 and max(s for s in sizes if s <= 4) == 4


@pytest.mark.slow
def test_out_of_memory_on_one_frame_is_one_line(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    song(tmp_path)

    def never(self: UNet2DConditionModel, *args: object, **kwargs: object) -> object:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(UNet2DConditionModel, "forward", never)
    result = invoke(tmp_path, "render-prompts", "song")
    one_error_line(result, "out of memory", "64x64")


# ---------------------------------------------------------------- NaN pictures


def nan_from_call(monkeypatch: pytest.MonkeyPatch, first_bad: int,
                  value: float = float("nan")) -> None:
    """The VAE decodes normally `first_bad` times, then returns `value` everywhere: NaN (like
    float16 overflow), or -1, which is black once denormalised."""
    decode = AutoencoderKL.decode
    calls: list[int] = []

    def bad(self: AutoencoderKL, z: torch.Tensor, *args: object, **kwargs: object) -> object:
        calls.append(1)
        out = decode(self, z, *args, **kwargs)
        if len(calls) <= first_bad:
            return out
        return (torch.full_like(out[0], value),)

    monkeypatch.setattr(AutoencoderKL, "decode", bad)


def test_nan_keyframe_names_the_image_and_cause(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, media = song(tmp_path)
    nan_from_call(monkeypatch, 1)
    result = invoke(tmp_path, "render-prompts", "song", "--batch-size", "2")
    line = one_error_line(result, "NaN")
    assert "luna_1003" in line, line  # the first image of the failing batch
    assert "render in float32" not in line, line  # it is float32 already, on the CPU
    assert keyframes(media) == ["luna_1001.png", "luna_1002.png"]
    no_temp_files(tmp_path)


@pytest.mark.slow
def test_nan_transition_frame_names_the_transition(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _, media = song(tmp_path)
    nan_from_call(monkeypatch, 2)  # two keyframe batches decode, the first in-between not
    result = invoke(tmp_path, "transitions", "song")
    line = one_error_line(result, "NaN")
    assert re.search(r"transition '\S+-\d+ to \S+-\d+' frame 1 ", line), line
    assert len(keyframes(media)) == 3  # the finished keyframes of the plan are kept
    no_temp_files(tmp_path)


def test_black_keyframe_names_the_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, media = song(tmp_path)
    nan_from_call(monkeypatch, 1, value=-1.0)
    result = invoke(tmp_path, "render-prompts", "song", "--batch-size", "2")
    one_error_line(result, "all black", "luna_1003")
    assert keyframes(media) == ["luna_1001.png", "luna_1002.png"]
    no_temp_files(tmp_path)
