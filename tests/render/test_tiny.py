"""The built-in tiny model: a real SD 1.5-shaped pipeline, deterministic, offline, fast."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    PNDMScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    UniPCMultistepScheduler,
)

from sdmorph.render import tiny
from sdmorph.render.pipelines import load_pipeline


@pytest.fixture(scope="module")
def pipe() -> StableDiffusionPipeline:
    return tiny.build_tiny_pipeline()


def _digest(components: dict[str, object]) -> str:
    digest = hashlib.sha256()
    for name in ("text_encoder", "unet", "vae", "controlnet"):
        for key, tensor in sorted(components[name].state_dict().items()):  # type: ignore[union-attr]
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def _embed(pipe: StableDiffusionPipeline, text: str) -> torch.Tensor:
    ids = pipe.tokenizer(
        text, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.inference_mode():
        return pipe.text_encoder(ids)[0]


def _generate(pipe: StableDiffusionPipeline) -> np.ndarray:
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(3))
    return pipe(
        prompt_embeds=_embed(pipe, "a red cat"),
        negative_prompt_embeds=_embed(pipe, ""),
        latents=latents,
        guidance_scale=7.5,
        num_inference_steps=3,
        output_type="np",
    ).images[0]


def test_builds_identically_fast_and_leaves_the_callers_rng_alone() -> None:
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    # CPU time of this process, not wall-clock time: other processes on a busy machine do
    # not stretch it.
    start = time.process_time()
    first = tiny._build_components()
    seconds = time.process_time() - start
    second = tiny._build_components()
    assert _digest(first) == _digest(second)
    assert torch.equal(torch.get_rng_state(), before)
    assert seconds < 5.0


def test_is_shaped_like_stable_diffusion_15(pipe: StableDiffusionPipeline) -> None:
    unet = pipe.unet.config
    assert unet.down_block_types == ("CrossAttnDownBlock2D", "DownBlock2D")
    assert unet.up_block_types == ("UpBlock2D", "CrossAttnUpBlock2D")
    assert unet.in_channels == 4 and unet.cross_attention_dim == 32
    assert pipe.vae_scale_factor == 8
    assert pipe.vae.config.latent_channels == 4
    assert pipe.vae.config.scaling_factor == pytest.approx(0.18215)
    assert isinstance(pipe.scheduler, PNDMScheduler)
    assert pipe.scheduler.config.skip_prk_steps and pipe.scheduler.config.steps_offset == 1
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    assert pipe.safety_checker is None
    assert pipe.tokenizer.model_max_length == 77


def test_tokenizer_is_a_real_byte_level_bpe(pipe: StableDiffusionPipeline) -> None:
    tok = pipe.tokenizer
    ids = tok("the red cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77
    assert ids[0] == tok.convert_tokens_to_ids("<|startoftext|>")
    assert ids[-1] == tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.convert_ids_to_tokens(ids[1:3]) == ["the</w>", "red</w>"]
    # Any text, even outside the vocabulary of words, maps to byte tokens, never to unknown.
    odd = tok("zx€", add_special_tokens=False).input_ids
    assert odd and tok.unk_token_id not in odd


def test_different_prompts_give_different_embeddings(pipe: StableDiffusionPipeline) -> None:
    cat, dog = _embed(pipe, "a red cat"), _embed(pipe, "a blue dog")
    assert cat.shape == (1, 77, 32)
    assert (cat - dog).abs().mean() > 1e-3
    assert torch.equal(cat, _embed(pipe, "a red cat"))


def test_each_call_returns_independent_modules() -> None:
    first, second = tiny.build_tiny_pipeline(), tiny.build_tiny_pipeline()
    weight = first.unet.conv_in.weight
    with torch.no_grad():
        weight.add_(1.0)
    assert not torch.equal(weight, second.unet.conv_in.weight)
    assert not torch.equal(weight, tiny.build_tiny_pipeline().unet.conv_in.weight)


def test_controlnet_variant_uses_unipc_and_a_matching_controlnet() -> None:
    pipe = tiny.build_tiny_pipeline(controlnet=True)
    assert isinstance(pipe, StableDiffusionControlNetPipeline)
    assert isinstance(pipe.scheduler, UniPCMultistepScheduler)
    assert pipe.controlnet.config.block_out_channels == pipe.unet.config.block_out_channels
    # The output convolutions are not zero, so the conditioning image matters.
    assert pipe.controlnet.controlnet_mid_block.weight.abs().sum() > 0
    assert all(block.weight.abs().sum() > 0 for block in pipe.controlnet.controlnet_down_blocks)


@pytest.mark.slow
def test_saved_tiny_model_reloads_offline_and_renders_the_same(
    pipe: StableDiffusionPipeline, tmp_path: Path
) -> None:
    folder = tmp_path / "tiny-sd"
    pipe.save_pretrained(folder)
    loaded = load_pipeline(str(folder))
    assert isinstance(loaded, StableDiffusionPipeline)
    image = _generate(loaded)
    assert image.shape == (64, 64, 3) and image.std() > 0.01
    np.testing.assert_allclose(image, _generate(pipe), atol=1e-5)


@pytest.mark.slow
def test_the_trained_model_loads_offline_and_draws_a_horizon() -> None:
    """`tiny-trained`, the training script's first output: an SD 1.5-shaped diffusers folder
    inside the package whose pictures have structure (a sky above, ground or sea below)."""
    import numpy as np
    import torch

    from sdmorph.render.pipelines import TRAINED_WEIGHTS, load_pipeline

    assert (TRAINED_WEIGHTS / "model_index.json").is_file()
    pipe = load_pipeline("tiny-trained", device="cpu")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.vae.config.latent_channels == 4 and pipe.scheduler.config.steps_offset == 1
    pictures = []
    for seed in (1, 2):
        out = pipe("a blue sea", num_inference_steps=8, guidance_scale=7.5, height=64, width=64,
                   generator=torch.Generator().manual_seed(seed), output_type="np")
        pictures.append(out.images[0])
    top, bottom = pictures[0][:16].mean(axis=(0, 1)), pictures[0][-16:].mean(axis=(0, 1))
    assert np.abs(top - bottom).sum() > 0.1  # not uniform noise: the halves differ
    assert np.abs(pictures[0] - pictures[1]).mean() > 0.01  # seeds give other pictures


def test_no_controlnet_is_called_tiny_trained() -> None:
    from sdmorph.render.sources import combination_problems

    (problem,) = combination_problems("tiny-trained", "tiny-trained")
    assert "no ControlNet of that name" in problem
