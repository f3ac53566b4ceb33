"""LoRAs from the profile: loaded with diffusers' LoRA API, fused, part of the recipe."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from sdmorph.core.errors import ModelError
from sdmorph.formats import recipe
from sdmorph.formats.profile import Profile
from sdmorph.formats.song import load_prompts
from sdmorph.render.engine import Engine, FrameInput
from sdmorph.render.pipelines import load_pipeline
from sdmorph.render.renderer import open_renderer
from sdmorph.render.sources import profile_problems
from sdmorph.render.tiny import build_tiny_pipeline
from songs import SETTINGS, write_song

# diffusers loads LoRAs through peft (pip install peft; tested with 0.21.2).
peft = pytest.importorskip("peft")

SIZE = 64
STEPS = 3
SHEET = "name,prompt,seeds,guidance_scale\nsun,a red sun,1 2,5\n"


def make_lora(folder: Path, seed: int = 0) -> Path:
    """A rank-4 LoRA for the tiny UNet's attention, made with peft and saved by diffusers.
    Its B matrices are random (peft starts them at zero, which would change nothing)."""
    unet = build_tiny_pipeline(trained=False).unet
    unet.add_adapter(peft.LoraConfig(r=4, lora_alpha=4,
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    layers = peft.get_peft_model_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers,
                                              weight_name="style.safetensors")
    return folder / "style.safetensors"


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora(tmp_path_factory.mktemp("lora"))


def _frame(engine: Engine) -> FrameInput:
    cond, uncond = engine.encode(["a red sun over the sea", ""])
    return FrameInput(engine.noise(5, "cpu", SIZE, SIZE), cond, uncond, 5.0)


def _pixels(engine: Engine) -> np.ndarray:
    image = engine.render([_frame(engine)], steps=STEPS, width=SIZE, height=SIZE)[0]
    return np.asarray(image).astype(np.int16)


@pytest.mark.slow
def test_a_fused_lora_renders_what_the_unfused_adapter_renders(lora: Path) -> None:
    plain = Engine("tiny-random", device="cpu")
    fused = Engine("tiny-random", device="cpu", loras=[(lora, 0.8)])
    assert np.abs(_pixels(fused) - _pixels(plain)).mean() > 1.0  # the LoRA changes the picture
    # diffusers' own way, the adapter kept as LoRA layers at weight 0.8:
    pipe = build_tiny_pipeline(trained=False)
    pipe.load_lora_weights(str(lora), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[0.8])
    frame = _frame(plain)
    expected = pipe(prompt_embeds=torch.from_numpy(frame.cond[None]),
                    negative_prompt_embeds=torch.from_numpy(frame.uncond[None]),
                    latents=torch.from_numpy(frame.latents[None]), guidance_scale=5.0,
                    num_inference_steps=STEPS, output_type="np").images[0]
    assert np.abs(_pixels(fused) - (expected * 255).round()).max() <= 2
    # Fused: no LoRA layers are left to slow down every UNet pass.
    assert not any("lora" in name for name, _ in fused.pipe.unet.named_parameters())


def test_a_file_that_is_no_lora_fails_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError) as caught:
        load_pipeline("tiny-random", loras=[(bad, 1.0)])
    assert str(caught.value).startswith(f"lora '{bad}'") and "\n" not in str(caught.value)


def test_loras_are_part_of_the_recipe(tmp_path: Path, lora: Path) -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["default"]["loras"] = [{"path": str(lora), "scale": 0.8}]  # type: ignore[index]
    meta, media = write_song(tmp_path, sheet=SHEET, settings=settings)
    song = load_prompts(meta, media)
    fields = recipe.settings(song, "tiny-random")
    [entry] = fields["loras"]
    assert entry["name"] == "style.safetensors" and entry["scale"] == 0.8
    assert entry["sha256"] == recipe.file_digest(lora) and len(entry["sha256"]) == 16
    renderer = open_renderer(song, device="cpu")
    text = renderer.png_text(song.all_images()[0])
    assert "style.safetensors" in str(text["loras"]) and "0.8" in str(text["loras"])
    # Another scale or another file: another key, so rendered folders become stale.
    key = recipe.recipe_key(fields)
    settings["default"]["loras"][0]["scale"] = 0.5  # type: ignore[index]
    write_song(tmp_path, sheet=SHEET, settings=settings)
    assert recipe.recipe_key(recipe.settings(load_prompts(meta, media), "tiny-random")) != key
    other = make_lora(tmp_path / "other", seed=1)
    settings["default"]["loras"] = [{"path": str(other), "scale": 0.8}]  # type: ignore[index]
    write_song(tmp_path, sheet=SHEET, settings=settings)
    assert recipe.recipe_key(recipe.settings(load_prompts(meta, media), "tiny-random")) != key


def test_validate_checks_lora_files(tmp_path: Path, lora: Path) -> None:
    settings = tmp_path / "tgen_settings.json"
    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / "style.safetensors").write_bytes(lora.read_bytes())
    good = Profile(model_string="tiny-random", loras=[{"path": "loras/style.safetensors"}])
    assert profile_problems(good, settings) == []  # relative: from the song's folder
    missing = Profile(model_string="tiny-random", loras=[{"path": "gone.safetensors", "scale": 1}])
    [problem] = profile_problems(missing, settings)
    assert "loras[0] 'gone.safetensors': no such file" in problem.message
    wrong = Profile(model_string="tiny-random", loras=[{"path": "style.ckpt"}])
    assert "use a .safetensors" in profile_problems(wrong, settings)[0].message
