"""The built-in `tiny` model: a real SD 1.5-shaped diffusers pipeline with small random weights.

It exists so that everything (tests, the demo song, CI) runs offline in seconds on a CPU.
The pictures are abstract noise-like patterns, but every code path is the real one: same
component classes, same scheduler configuration, same tokenizer kind, 8x VAE, 4 latent channels.

Weights come from a fixed seed inside a forked RNG, so two builds are identical and the caller's
random state is untouched. Components are built once per process; every call returns a new
pipeline holding deep copies, so a caller moving or casting its pipeline cannot affect others.
"""

from __future__ import annotations

import copy
import json
import tempfile
import threading
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

from sdmorph.formats.fsio import write_text

SEED = 20240501
OUT_STD = 0.3
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

_lock = threading.Lock()
_cache: dict[str, object] = {}


def build_tiny_pipeline(
    controlnet: bool = False,
) -> StableDiffusionPipeline | StableDiffusionControlNetPipeline:
    """A fresh tiny pipeline (plain, or ControlNet with UniPC like the old scripts)."""
    parts = copy.deepcopy(_components())
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


def build_tiny_controlnet() -> ControlNetModel:
    """A fresh copy of the tiny ControlNet (fits only the tiny UNet)."""
    return copy.deepcopy(_components()["controlnet"])  # type: ignore[return-value]


def _components() -> dict[str, object]:
    with _lock:
        if not _cache:
            _cache.update(_build_components())
        return _cache


def _build_components() -> dict[str, object]:
    tokenizer = _build_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        text_encoder = clip_text_encoder(tokenizer)
        unet = _unet()
        vae = _vae()
        controlnet = _controlnet(unet)
    for module in (text_encoder, unet, vae, controlnet):
        module.eval()
        module.requires_grad_(False)
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "unet": unet,
        "vae": vae,
        "controlnet": controlnet,
    }


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


def _controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
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
            conv.weight.normal_(0.0, OUT_STD)
            conv.bias.normal_(0.0, OUT_STD / 5)
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
