"""The built-in `tiny-xl` model: a real SDXL-shaped diffusers pipeline with small random weights.

Like `tiny`, it lets every stage run offline in about a second on a CPU, but down the SDXL
code paths: two CLIP text encoders (the second with a projection, whose pooled output is the
`text_embeds` condition), a UNet with `addition_embed_type="text_time"` (size and crop ids),
SDXL's VAE scaling factor and its Euler scheduler configuration. The pictures are noise.

Weights come from a fixed seed inside a forked RNG, so two builds are identical; components
are built once per process and every call returns deep copies.
"""

from __future__ import annotations

import copy

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

from sdmorph.core.vocabulary import WORDS
from sdmorph.render.components import ComponentCache, Components
from sdmorph.render.tiny import bpe_tokenizer

SEED = 20241224
TEXT_DIMS = (32, 32)  # hidden sizes of text encoder 1 and 2; the UNet sees their concatenation
POOLED_DIM = 32  # text encoder 2's projection: the pooled `text_embeds`
TIME_EMBED_DIM = 8  # per size/crop id; SDXL passes 6 ids
CONTROL_OUT_STD = 0.3

# stabilityai/stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json.
EULER_XL_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}



def build_tiny_xl_pipeline() -> StableDiffusionXLPipeline:
    """A fresh tiny SDXL pipeline (its own copies of the shared components)."""
    parts: Components = _CACHE.copy()  # type: ignore[assignment]
    pipe = StableDiffusionXLPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        text_encoder_2=parts["text_encoder_2"],
        tokenizer=parts["tokenizer"],
        tokenizer_2=parts["tokenizer_2"],
        unet=parts["unet"],
        scheduler=EulerDiscreteScheduler.from_config(EULER_XL_CONFIG),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_xl_controlnet() -> ControlNetModel:
    """A fresh copy of the tiny SDXL ControlNet (fits only the tiny-xl UNet)."""
    return _CACHE.copy("controlnet")  # type: ignore[return-value]


def _build_components() -> dict[str, object]:
    tokenizer = bpe_tokenizer(list(WORDS))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        text_encoder = CLIPTextModel(_clip_config(tokenizer, TEXT_DIMS[0]))
        text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tokenizer, TEXT_DIMS[1]))
        unet = _unet()
        vae = _vae()
        controlnet = _controlnet(unet)
    for module in (text_encoder, text_encoder_2, unet, vae, controlnet):
        module.eval()
        module.requires_grad_(False)
    return {
        "tokenizer": tokenizer,
        "tokenizer_2": copy.deepcopy(tokenizer),
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "unet": unet,
        "vae": vae,
        "controlnet": controlnet,
    }


_CACHE = ComponentCache(_build_components)


def _clip_config(tokenizer: CLIPTokenizer, hidden: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_act="gelu",  # SDXL's OpenCLIP bigG encoder uses gelu, CLIP-L quick_gelu
        projection_dim=POOLED_DIM,
    )


def _unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),  # SDXL: no attention at top
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=sum(TEXT_DIMS),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=1,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        # 6 ids (original size, crop corner, target size) x their embedding + the pooled text.
        projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + POOLED_DIM,
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
        scaling_factor=0.13025,  # SDXL's
        force_upcast=True,
    )


def _controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    """A ControlNet copied from the UNet, with outputs strong enough that masks matter
    (a fresh one has zero output convolutions and would change nothing)."""
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    embedding = controlnet.controlnet_cond_embedding
    with torch.no_grad():
        for conv in [embedding.conv_in, *embedding.blocks, embedding.conv_out]:
            conv.weight.normal_(0.0, (2.0 / conv.weight[0].numel()) ** 0.5)
            conv.bias.zero_()
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.normal_(0.0, CONTROL_OUT_STD)
            conv.bias.normal_(0.0, CONTROL_OUT_STD / 5)
    return controlnet
