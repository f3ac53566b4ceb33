"""SDXL models: the built-in `tiny-xl` renders like diffusers' SDXL pipelines, in every stage."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.core.errors import ModelError
from sdmorph.formats.profile import Profile
from sdmorph.render.engine import Engine, FrameInput
from sdmorph.render.pipelines import load_pipeline
from sdmorph.render.sources import SD1, SDXL, model_family, profile_problems
from songs import SETTINGS, env_for, write_song

SIZE = 64
STEPS = 3
runner = CliRunner()
SHEET = """name,prompt,seeds,guidance_scale
sun,a red sun over the sea,11 12,5
moon,a blue moon in a dark forest,21 22,1
"""
SCENES = """,scene,duration,section,start,avoid
0,sun,1,1,,
1,moon,1,1,,
"""


@pytest.fixture(scope="module")
def xl() -> Engine:
    return Engine("tiny-xl", device="cpu")


def _frame(engine: Engine, seed: int, guidance: float, negative: str = "") -> FrameInput:
    cond, uncond, pooled, uncond_pooled = engine.embed("a red sun over the sea", negative)
    return FrameInput(engine.noise(seed, "cpu", SIZE, SIZE), cond, uncond, guidance,
                      pooled=pooled, uncond_pooled=uncond_pooled)


@pytest.mark.slow
@pytest.mark.parametrize(("guidance", "negative"), [(5.0, ""), (5.0, "blurry"), (1.0, "")])
def test_tiny_xl_renders_what_the_sdxl_pipeline_renders(xl: Engine, guidance: float,
                                                         negative: str) -> None:
    frame = _frame(xl, 42, guidance, negative)
    image = xl.render([frame], steps=STEPS, width=SIZE, height=SIZE)[0]
    expected = xl.pipe(prompt="a red sun over the sea", negative_prompt=negative or None,
                       latents=torch.from_numpy(frame.latents[None]), guidance_scale=guidance,
                       num_inference_steps=STEPS, height=SIZE, width=SIZE, output_type="np")
    pixels = (expected.images[0] * 255).round().astype(np.int16)
    assert np.abs(np.asarray(image).astype(np.int16) - pixels).max() <= 1
    assert xl.family == SDXL and xl.embed_dim == 64 and xl.pooled_dim == 32


def test_pooled_embeddings_matter_and_are_checked(xl: Engine) -> None:
    frame = _frame(xl, 7, 1.0)
    other = FrameInput(frame.latents, frame.cond, frame.uncond, 1.0,
                       pooled=frame.pooled * 0 + 1, uncond_pooled=frame.uncond_pooled)
    first, second = xl.render([frame, other], steps=STEPS, width=SIZE, height=SIZE)
    assert np.abs(np.asarray(first).astype(int) - np.asarray(second)).mean() > 0.5
    bare = FrameInput(frame.latents, frame.cond, frame.uncond, 1.0)
    with pytest.raises(Exception, match="SDXL model needs the pooled text embedding"):
        xl.render([bare], steps=STEPS, width=SIZE, height=SIZE)


def test_sdxl_controlnet_renders_what_its_pipeline_renders() -> None:
    engine = Engine("tiny-xl", "tiny-xl", device="cpu")
    assert type(engine.pipe).__name__ == "StableDiffusionXLControlNetPipeline"
    square = np.zeros((SIZE, SIZE, 3), np.float32)
    square[16:48, 16:48] = 1.0
    frame = _frame(engine, 9, 5.0)
    frames = [replace(frame, control=square, cnet_scale=0.8), replace(frame, control=square * 0)]
    lit, dark = engine.render(frames, steps=STEPS, width=SIZE, height=SIZE)
    assert np.abs(np.asarray(lit).astype(int) - np.asarray(dark)).mean() > 0.2  # the mask counts
    expected = engine.pipe(prompt="a red sun over the sea", image=Image.fromarray(
        (square * 255).astype(np.uint8)), latents=torch.from_numpy(frame.latents[None]),
        guidance_scale=5.0, num_inference_steps=STEPS, height=SIZE, width=SIZE,
        controlnet_conditioning_scale=0.8, output_type="np")
    pixels = (expected.images[0] * 255).round().astype(np.int16)
    assert np.abs(np.asarray(lit).astype(np.int16) - pixels).max() <= 1


def test_mixed_families_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelError,
                       match="controlnet_string 'tiny-random' only fits model 'tiny-random'"):
        load_pipeline("tiny-xl", "tiny-random")
    folder = tmp_path / "xl_cnet"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"addition_embed_type": "text_time"}))
    model = tmp_path / "sd15"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    [problem] = profile_problems(Profile(model_string=str(model), controlnet_string=str(folder)),
                                 tmp_path / "tgen_settings.json")
    assert "is an SDXL ControlNet and model" in problem.message and "SD 1.x" in problem.message


def test_model_family_is_read_from_the_files(tmp_path: Path) -> None:
    xl_file = tmp_path / "xl.safetensors"
    header = json.dumps({"conditioner.embedders.1.model.ln_final.weight":
                         {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    xl_file.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    folder = tmp_path / "xl_folder"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name":
                                                         "StableDiffusionXLPipeline"}))
    assert model_family(str(xl_file)) == SDXL
    assert model_family(str(folder)) == SDXL
    assert model_family("tiny-random") == SD1 and model_family("tiny-xl") == SDXL
    assert model_family(str(tmp_path / "x.ckpt")) is None  # only torch can tell


def _xl_song(root: Path) -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["default"].update(model_string="tiny-xl", interpolation_steps=3)  # type: ignore[attr-defined]
    settings["default"]["pipe_kwargs"]["num_inference_steps"] = 2  # type: ignore[index]
    write_song(root, sheet=SHEET, scenes=SCENES, settings=settings)


@pytest.mark.slow
def test_a_tiny_xl_song_goes_through_every_stage(tmp_path: Path) -> None:
    _xl_song(tmp_path)
    env = env_for(tmp_path)
    for command in (["render-prompts", "song"], ["transitions", "song"],
                    ["movie", "song", "--codec", "mjpeg"]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 0, result.output
        if command[0] == "transitions":  # moon-moon at guidance 1: 2 passes, the others 4
            assert "UNet passes/frame" in result.output
    song = tmp_path / "media" / "song"
    keyframes = sorted((song / "prompt_images").glob("*.png"))
    assert len(keyframes) == 4
    with Image.open(keyframes[0]) as picture:
        assert picture.size == (SIZE, SIZE)
        assert picture.text["family"] == "sdxl"  # type: ignore[attr-defined]
        assert picture.text["scheduler"] == "EulerDiscreteScheduler"  # type: ignore[attr-defined]
    manifests = list((song / "transition_images").glob("*/manifest.json"))
    assert manifests
    assert json.loads(manifests[0].read_text())["recipe"]["family"] == "sdxl"
    assert list((song / "stories" / "base").rglob("*.mov"))


@pytest.mark.slow
def test_run_on_tiny_xl_through_the_console_script(tmp_path: Path) -> None:
    _xl_song(tmp_path)
    exe = Path(sys.executable).parent / "sdmorph"
    env = {**os.environ, **env_for(tmp_path)}
    proc = subprocess.run([str(exe), "run", "song", "--codec", "mjpeg"], capture_output=True,
                          text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list((tmp_path / "media/song/stories/base").rglob("*_combined.mov"))
