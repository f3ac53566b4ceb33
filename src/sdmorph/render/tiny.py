"""The built-in `tiny` models: real SD 1.5-shaped diffusers pipelines small enough for a CPU.

`tiny` is trained (weights/tiny/, made by scripts/train_tiny.py on drawn scenes: skies, seas,
suns, trees and houses in nine colours; weights/tiny/TRAINING.md says how and how well). It
knows the words of `sdmorph.core.vocabulary`, so the demo shows pictures and a morph can snap.
`tiny-random` has small random weights from a fixed seed: abstract patterns, morphs smooth by
construction, and a third of the trained model's work per frame, for tests that only need the
code paths. Both use the real component classes, SD 1.5's scheduler configuration, a CLIP
tokenizer, an 8x VAE with 4 latent channels.

Components are built or loaded once per process (inside a forked RNG, so the caller's random
state is untouched); every call returns a new pipeline holding deep copies, so a caller moving
or casting its pipeline cannot affect others. The ControlNets are random (He-initialised
conditioning embedding, small random output convolutions) on top of their UNet's encoder.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    PNDMScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as hf_logging

from sdmorph.formats.fsio import write_text
from sdmorph.render.components import ComponentCache, Components

SEED = 20240501
OUT_STD = 0.3
# The trained UNet's features are larger and meaningful: residuals as large as the random
# model's would paint over the picture; these still move objects toward the mask.
TRAINED_OUT_STD = 0.05
WEIGHTS = Path(__file__).parent / "weights" / "tiny"
# Above this guidance the trained tiny's PNDM steps overshoot into blotches; first- and
# second-order schedulers (ddim, euler, dpm++_2m) stay clean up to 7.5 (weights/tiny/TRAINING.md).
PNDM_GUIDANCE_LIMIT = 4.0
MAX_LENGTH = 77
TEXT_DIM = 32
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

# Common words of prompts get whole-word tokens; anything else falls back to byte tokens.
_WORDS_TEXT = (
    "a an the of and in on with at by from to for under over into through between "
    "portrait landscape painting photo photograph drawing illustration sketch render art "
    "red orange yellow green blue purple pink black white gold silver dark light bright "
    "sky sea ocean river lake mountain forest tree flower garden city street night day "
    "sun moon star stars cloud clouds rain snow fire water stone glass crystal metal "
    "woman man girl boy child face eyes hair cat dog bird horse dragon robot goddess "
    "beautiful detailed highly intricate realistic surreal abstract cinematic epic soft "
    "style oil watercolor digital lighting colorful neon glowing golden space planet"
)
_WORDS = _WORDS_TEXT.split(" ")

# SD 1.5's scheduler configuration (runwayml/stable-diffusion-v1-5 scheduler_config.json).
PNDM_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "trained_betas": None,
}



def build_tiny_pipeline(
    controlnet: bool = False, *, trained: bool = True,
) -> StableDiffusionPipeline | StableDiffusionControlNetPipeline:
    """A fresh `tiny` (or `tiny-random`) pipeline: plain, or ControlNet with UniPC like the
    old scripts."""
    parts: Components = _CACHES[trained].copy()  # type: ignore[assignment]
    common = {
        "vae": parts["vae"],
        "text_encoder": parts["text_encoder"],
        "tokenizer": parts["tokenizer"],
        "unet": parts["unet"],
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }
    scheduler = PNDMScheduler.from_config(PNDM_CONFIG)
    if controlnet:
        pipe = StableDiffusionControlNetPipeline(
            **common,
            controlnet=parts["controlnet"],
            scheduler=UniPCMultistepScheduler.from_config(scheduler.config),
        )
    else:
        pipe = StableDiffusionPipeline(**common, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_controlnet(*, trained: bool = True) -> ControlNetModel:
    """A fresh copy of the `tiny` (or `tiny-random`) ControlNet; it fits only its own UNet."""
    return _CACHES[trained].copy("controlnet")  # type: ignore[return-value]


def _trained_components() -> dict[str, object]:
    """The shipped float16 weights, as float32 (the recipe computes in float32 on a CPU)."""
    with _quiet_loading():
        parts = _load_weights()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        parts["controlnet"] = _controlnet(parts["unet"], TRAINED_OUT_STD)  # type: ignore[arg-type]
    return _frozen(parts)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No 'Loading weights' bar from transformers in the middle of sdmorph's own output."""
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _load_weights() -> dict[str, object]:
    return {
        "tokenizer": CLIPTokenizer.from_pretrained(WEIGHTS / "tokenizer"),
        "text_encoder": CLIPTextModel.from_pretrained(WEIGHTS / "text_encoder",
                                                      dtype=torch.float32),
        "unet": UNet2DConditionModel.from_pretrained(WEIGHTS / "unet", torch_dtype=torch.float32),
        "vae": AutoencoderKL.from_pretrained(WEIGHTS / "vae", torch_dtype=torch.float32),
    }


def _random_components() -> dict[str, object]:
    tokenizer = _build_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        text_encoder = clip_text_encoder(tokenizer)
        unet = _unet()
        vae = _vae()
        controlnet = _controlnet(unet, OUT_STD)
    return _frozen({"tokenizer": tokenizer, "text_encoder": text_encoder, "unet": unet,
                    "vae": vae, "controlnet": controlnet})


def _frozen(parts: dict[str, object]) -> dict[str, object]:
    for name, module in parts.items():
        if name != "tokenizer":
            module.eval()  # type: ignore[attr-defined]
            module.requires_grad_(False)  # type: ignore[attr-defined]
    return parts


_CACHES = {True: ComponentCache(_trained_components),
           False: ComponentCache(_random_components)}


def clip_text_encoder(tokenizer: CLIPTokenizer, width: int = TEXT_DIM,
                      intermediate: int = 64) -> CLIPTextModel:
    """A small CLIP text encoder (2 layers, 4 heads) for `tokenizer`'s vocabulary."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=intermediate,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_act="quick_gelu",
        projection_dim=width,
    )
    return CLIPTextModel(config)


def _unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        # diffusers reads this as the number of heads (SD 1.5 uses 8); with 32 channels, 8 heads
        # of width 4 make CPU attention three times slower than 2 heads of width 16.
        attention_head_dim=2,
        norm_num_groups=16,
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=128,
        scaling_factor=0.18215,
    )


def _controlnet(unet: UNet2DConditionModel, out_std: float) -> ControlNetModel:
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    # A trained ControlNet maps the conditioning image to strong residuals. Untrained, its
    # output convolutions are zero and PyTorch's default init fades the image out over the
    # embedding's eight convolutions, so the mask would change nothing: use He init there
    # and small random output convolutions instead.
    embedding = controlnet.controlnet_cond_embedding
    with torch.no_grad():
        for conv in [embedding.conv_in, *embedding.blocks, embedding.conv_out]:
            fan_in = conv.weight[0].numel()
            conv.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            conv.bias.zero_()
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.normal_(0.0, out_std)
            conv.bias.normal_(0.0, out_std / 5)
    return controlnet


def _build_tokenizer() -> CLIPTokenizer:
    return bpe_tokenizer(_WORDS)


def bpe_tokenizer(words: list[str]) -> CLIPTokenizer:
    """A CLIP tokenizer whose `words` are whole tokens; any other text falls back to bytes."""
    vocab, merges = _bpe_vocab(words)
    with tempfile.TemporaryDirectory(prefix="sdmorph-tiny-tok-") as folder:
        root = Path(folder)
        write_text(root / "vocab.json", json.dumps(vocab, ensure_ascii=False))
        write_text(root / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
        config = {"model_max_length": MAX_LENGTH, "tokenizer_class": "CLIPTokenizer"}
        write_text(root / "tokenizer_config.json", json.dumps(config))
        # transformers 5 ignores vocab_file=/merges_file= keywords; a folder always works.
        tokenizer = CLIPTokenizer.from_pretrained(root)
    tokenizer.model_max_length = MAX_LENGTH
    return tokenizer


def _bpe_vocab(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """CLIP-style byte-level BPE: byte symbols, their end-of-word forms, word merges, specials."""
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    seen = set(tokens)
    for word in words:
        parts = [*word[:-1], word[-1] + "</w>"]
        left = parts[0]
        for right in parts[1:]:
            merged = left + right
            if merged not in seen:
                merges.append(f"{left} {right}")
                tokens.append(merged)
                seen.add(merged)
            left = merged
    tokens += [BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP byte-level BPE uses for raw bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    extra = 0
    symbols = {}
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]
