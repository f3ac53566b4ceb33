"""Train the built-in `tiny` model from scratch, on scenes this script draws itself.

One command, fixed seeds, CPU only (about an hour on 2 cores with the default budgets):

    .venv/bin/python scripts/train_tiny.py --minutes-vae 10 --minutes-unet 40

Phases: draw scenes and captions from `sdmorph.core.vocabulary`; train the VAE (8x down, 4 latent
channels) with an edge loss; encode every scene once; train the UNet together with a small CLIP
text encoder on those latents; save a float16 diffusers pipeline; evaluate it and write
TRAINING.md beside the weights. The budgets are wall-clock minutes so that a short run (CI, a
smoke test) uses the same code; `--vae-steps/--unet-steps` pin the step counts instead, which is
what makes a rerun bit-for-bit comparable (TRAINING.md records the counts a run reached).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import diffusers
import numpy as np
import torch
import transformers
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from PIL import Image, ImageDraw
from transformers import CLIPTextModel, CLIPTokenizer

from sdmorph.core.vocabulary import (
    COLOURS,
    OBJECTS,
    SETTINGS,
    SKY_OBJECTS,
    WORDS,
    Scene,
    Thing,
    parse_caption,
)
from sdmorph.media.caption_match import (
    EVALUATION_PROMPTS,
    EVALUATION_SEEDS,
    follows_words,
    measured_object_colour,
    object_colour_matches,
)
from sdmorph.render.tiny import PNDM_CONFIG, bpe_tokenizer, clip_text_encoder

SEED = 21
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/sdmorph/render/weights/tiny"
MAX_LENGTH = 24  # the longest caption is 19 tokens; 24 keeps the text encoder and attention cheap
TEXT_DIM = 128  # wider than the random model's 32: colour words must survive into each object

Size = tuple[int, int]  # (width, height) in pixels
# Mostly 64x64 (cheap), plus large and non-square scenes so 128x128 and 128x96 renders work too.
# Batches hold about the same number of latent pixels, so every step costs about the same.
SIZES: dict[Size, tuple[int, int, float]] = {  # size: (scenes, batch, share of UNet steps)
    (64, 64): (12000, 32, 0.8),
    (128, 128): (1000, 8, 0.1),
    (128, 96): (1000, 10, 0.1),
}

VAE_LR, VAE_BATCH, VAE_CROP = 1e-3, 32, 32
EDGE_WEIGHT = 1.0  # L1 on image gradients: plain L1 alone leaves object outlines soft
# The second run's VAE lost the objects: its round trip kept the drawn object's colour in 10% of
# the evaluation scenes, a ceiling no UNet can pass. Objects cover a twentieth of the pixels, so
# an unweighted L1 is nearly satisfied by the background alone.
VAE_OBJECT_WEIGHT = 8.0
KL_WEIGHT = 1e-6  # only keeps latents bounded; the scaling factor then normalises them
UNET_LR, TEXT_LR = 8e-4, 1.6e-3  # the text encoder learns faster so colours bind to objects
EMPTY_CAPTION_SHARE = 0.1  # for classifier-free guidance
# Objects cover a few latent pixels while the background covers the rest: without extra weight
# the loss barely notices an object of the wrong colour, so colour words never bind.
OBJECT_WEIGHT = 4.0
MIN_SNR_GAMMA = 5.0
EMA_DECAY = 0.998
WARMUP_STEPS = 200
SS = 2  # masks are drawn at twice the size and box-filtered, so edges are antialiased


# ---------------------------------------------------------------- scenes and captions


def random_scene(rng: random.Random) -> Scene:
    """One or two different objects, each with a colour (sometimes unnamed), in a setting."""
    setting = rng.choice(list(SETTINGS))
    night = setting != "night" and rng.random() < 0.12
    names = rng.sample(OBJECTS, 1 if rng.random() < 0.7 else 2)
    things = tuple(
        Thing(name, None if rng.random() < 0.15 else rng.choice(list(COLOURS))) for name in names
    )
    return Scene(things, setting, night)


def caption_for(scene: Scene, rng: random.Random) -> str:
    """A plain-English caption with varied word order and filler words."""
    joiner = f" {rng.choice(['and', 'with', 'beside', 'near'])} "
    things = joiner.join(_thing_phrase(thing, rng) for thing in scene.things)
    if rng.random() < 0.1:  # the setting unnamed: the model learns to pick one itself
        return things
    place = _setting_phrase(scene, rng)
    prep = rng.choice(["in", "on", "over", "above", "by", "near", "at", "under"])
    return rng.choice(
        [
            f"{things} {prep} {place}",
            f"{place} with {things}",
            f"there is {things} in {place}",
            f"a picture of {things} {prep} {place}",
            f"{prep} {place} {things}",
        ]
    )


def _thing_phrase(thing: Thing, rng: random.Random) -> str:
    words = [thing.colour, thing.name] if thing.colour else [thing.name]
    article = rng.choices(["a", "the", ""], weights=[7, 2, 1])[0]
    if article == "a" and words[0][0] in "aeiou":
        article = "an"
    return " ".join([article, *words]).strip()


def _setting_phrase(scene: Scene, rng: random.Random) -> str:
    assert scene.setting is not None
    adjective = SETTINGS[scene.setting].adjective if rng.random() < 0.2 else ""
    article = rng.choice(["the", "a", ""])
    phrase = " ".join(w for w in (article, adjective, scene.setting) if w)
    if scene.night:
        return f"{phrase} at night" if rng.random() < 0.7 else f"night and {phrase}"
    return phrase


# ---------------------------------------------------------------- drawing


def draw_scene(scene: Scene, size: Size, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """The scene as an (height, width, 3) uint8 picture, and where its objects are (0..1).

    Colours jitter a little per picture.
    """
    width, height = size
    assert scene.setting is not None
    horizon = SETTINGS[scene.setting].horizon + rng.uniform(-0.06, 0.06)
    image = _background(scene, size, horizon, rng)
    slots = [(0.12, 0.88)] if len(scene.things) == 1 else [(0.1, 0.42), (0.58, 0.9)]
    rng.shuffle(slots)
    # Mountains first: they are large and stand behind anything else.
    placed = sorted(zip(scene.things, slots, strict=True), key=lambda p: p[0].name != "mountain")
    objects = np.zeros((height, width, 1), dtype=np.float32)
    for thing, slot in placed:
        alpha = _object_mask(thing.name, size, horizon, rng.uniform(*slot), rng)[..., None]
        colour = _jitter(COLOURS[thing.shown_colour], rng, 12)
        image = image * (1 - alpha) + colour * alpha
        objects = np.maximum(objects, alpha)
    picture = image.round().clip(0, 255).astype(np.uint8).reshape(height, width, 3)
    return picture, objects[..., 0]


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> np.ndarray:
    return np.array([c + rng.randint(-amount, amount) for c in rgb], dtype=np.float32)


def _background(scene: Scene, size: Size, horizon: float, rng: random.Random) -> np.ndarray:
    width, height = size
    above, below = (_jitter(c, rng, 10) for c in scene.background())
    y = (np.arange(height, dtype=np.float32) + 0.5) / height
    # A gentle haze toward the horizon, so the VAE does not only ever see flat colour.
    top = above * (0.88 + 0.12 * np.clip(y / horizon, 0, 1))[:, None]
    bottom = below * (1.0 - 0.12 * np.clip((y - horizon) / (1 - horizon), 0, 1))[:, None]
    ground = np.clip((y - horizon) * height + 0.5, 0, 1)[:, None]  # antialiased horizon row
    rows = top * (1 - ground) + bottom * ground
    return np.repeat(rows[:, None, :], width, axis=1)


def _object_mask(name: str, size: Size, horizon: float, x: float, rng: random.Random) -> np.ndarray:
    big = (size[0] * SS, size[1] * SS)
    mask = Image.new("L", big, 0)
    draw = ImageDraw.Draw(mask)
    unit, cx, sky_bottom = min(big), x * big[0], horizon * big[1]
    if name in SKY_OBJECTS:
        r = rng.uniform(0.12, 0.19) * unit
        low, high = r + 0.04 * big[1], sky_bottom - r
        cy = rng.uniform(low, high) if high > low else sky_bottom / 2
        _SKY_SHAPES[name](draw, cx, cy, r, rng)
    else:
        ground_y = rng.uniform(sky_bottom + 0.06 * big[1], 0.97 * big[1])
        if name == "mountain":
            ground_y = sky_bottom + rng.uniform(0.0, 0.05) * big[1]
        _GROUND_SHAPES[name](draw, cx, ground_y, unit, rng)
    small = mask.resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _disc(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: int = 255) -> None:
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)


def _sun(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, rng: random.Random) -> None:
    _disc(draw, cx, cy, r)


def _moon(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, rng: random.Random) -> None:
    _disc(draw, cx, cy, r)
    side = rng.choice([-1, 1])
    _disc(draw, cx + side * 0.55 * r, cy - 0.25 * r, 0.85 * r, fill=0)


def _star(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, rng: random.Random) -> None:
    turn = rng.uniform(-0.2, 0.2)
    points = []
    for k in range(10):
        radius = r * (1.15 if k % 2 == 0 else 0.48)
        angle = -math.pi / 2 + turn + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    draw.polygon(points, fill=255)


def _cloud(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, rng: random.Random) -> None:
    w = r * rng.uniform(1.6, 2.2)
    _disc(draw, cx, cy - 0.2 * r, 0.75 * r)
    _disc(draw, cx - 0.55 * w, cy + 0.15 * r, 0.5 * r)
    _disc(draw, cx + 0.55 * w, cy + 0.15 * r, 0.55 * r)
    draw.rounded_rectangle((cx - 0.6 * w, cy, cx + 0.6 * w, cy + 0.65 * r), 0.3 * r, fill=255)


def _tree(draw: ImageDraw.ImageDraw, cx: float, y: float, unit: float, rng: random.Random) -> None:
    h = rng.uniform(0.4, 0.6) * unit
    trunk, half = 0.06 * h, 0.28 * h
    draw.rectangle((cx - trunk, y - 0.3 * h, cx + trunk, y), fill=255)
    for low, high, scale in ((0.2, 0.75, 1.0), (0.5, 1.0, 0.75)):
        w = half * scale
        draw.polygon([(cx - w, y - low * h), (cx + w, y - low * h), (cx, y - high * h)], fill=255)


def _house(draw: ImageDraw.ImageDraw, cx: float, y: float, unit: float, rng: random.Random) -> None:
    w = rng.uniform(0.3, 0.42) * unit
    body = 0.7 * w
    draw.rectangle((cx - w / 2, y - body, cx + w / 2, y), fill=255)
    roof = [(cx - 0.62 * w, y - body), (cx + 0.62 * w, y - body), (cx, y - body - 0.5 * w)]
    draw.polygon(roof, fill=255)
    door = 0.13 * w
    draw.rectangle((cx - door, y - 0.5 * body, cx + door, y), fill=0)


def _flower(
    draw: ImageDraw.ImageDraw, cx: float, y: float, unit: float, rng: random.Random
) -> None:
    h = rng.uniform(0.34, 0.48) * unit
    head_y = y - 0.72 * h
    draw.rectangle((cx - 0.05 * h, head_y, cx + 0.05 * h, y), fill=255)
    for k in range(5):
        angle = k * 2 * math.pi / 5 - math.pi / 2
        _disc(draw, cx + 0.17 * h * math.cos(angle), head_y + 0.17 * h * math.sin(angle), 0.14 * h)
    _disc(draw, cx, head_y, 0.12 * h)


def _mountain(
    draw: ImageDraw.ImageDraw, cx: float, y: float, unit: float, rng: random.Random
) -> None:
    w, h = rng.uniform(0.45, 0.75) * unit, rng.uniform(0.22, 0.38) * unit
    peak = cx + rng.uniform(-0.15, 0.15) * w
    draw.polygon([(cx - w / 2, y), (cx + w / 2, y), (peak, y - h)], fill=255)


_SKY_SHAPES = {"sun": _sun, "moon": _moon, "star": _star, "cloud": _cloud}
_GROUND_SHAPES = {"tree": _tree, "house": _house, "flower": _flower, "mountain": _mountain}


@dataclass
class DrawnSet:
    """Scenes of one size: pictures as a uint8 array, where their objects are, and captions."""

    images: np.ndarray  # (n, height, width, 3)
    objects: np.ndarray  # (n, height, width) coverage 0..1
    captions: list[str]


def draw_sets(scale: float) -> dict[Size, DrawnSet]:
    """Every training scene, drawn from one seeded generator per size."""
    sets = {}
    for index, (size, (count, _, _)) in enumerate(SIZES.items()):
        rng = random.Random(SEED * 1000 + index)
        scenes = [random_scene(rng) for _ in range(max(64, int(count * scale)))]
        drawn = [draw_scene(scene, size, rng) for scene in scenes]
        images, objects = (np.stack(parts) for parts in zip(*drawn, strict=True))
        sets[size] = DrawnSet(images, objects, [caption_for(scene, rng) for scene in scenes])
    return sets


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, h, w, 3) to float (n, 3, h, w) in [-1, 1], as the VAE expects."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ---------------------------------------------------------------- models


def build_vae() -> AutoencoderKL:
    """8x down, 4 latent channels; no attention, so the VAE is local and trains on crops."""
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        mid_block_add_attention=False,
    )


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    return clip_text_encoder(tokenizer, TEXT_DIM, 2 * TEXT_DIM)


def build_unet() -> UNet2DConditionModel:
    """Cross-attention at both resolutions: 8x8 places objects, 4x4 (and mid) sets the scene."""
    return UNet2DConditionModel(
        sample_size=8,
        layers_per_block=1,
        block_out_channels=(48, 96),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,  # read by diffusers as the number of heads
        norm_num_groups=16,
    )


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- training helpers


@dataclass
class Budget:
    """Progress through a phase: by wall clock, or by a pinned step count when given."""

    seconds: float
    steps: int | None
    start: float = field(default_factory=time.monotonic)
    step: int = 0

    def progress(self) -> float:
        if self.steps is not None:
            return self.step / self.steps
        return (time.monotonic() - self.start) / self.seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def lr_factor(budget: Budget) -> float:
    """Linear warm-up, then a cosine down to a tenth, so the last steps refine."""
    warm = min(1.0, (budget.step + 1) / WARMUP_STEPS)
    cosine = 0.55 + 0.45 * math.cos(math.pi * min(1.0, budget.progress()))
    return warm * cosine


class Ema:
    """An exponential moving average of weights; starts fast so short runs are usable."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.live = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.live]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(EMA_DECAY, (1 + self.updates) / (10 + self.updates))
        for avg, live in zip(self.shadow, self.live, strict=True):
            avg.lerp_(live, 1 - decay)

    @torch.no_grad()
    def copy_to_live(self) -> None:
        for avg, live in zip(self.shadow, self.live, strict=True):
            live.copy_(avg)


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- VAE


def random_crops(
    sets: dict[Size, DrawnSet], rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of crops from one size's scenes (large scenes teach soft, big shapes too), and
    each pixel's loss weight (1 on background, up to 1 + VAE_OBJECT_WEIGHT on objects)."""
    size = list(sets)[rng.choice(len(sets), p=[0.6, 0.2, 0.2])]
    picks = rng.choice(len(sets[size].images), VAE_BATCH, replace=False)
    width, height = size
    out = np.empty((VAE_BATCH, VAE_CROP, VAE_CROP, 3), dtype=np.uint8)
    cover = np.empty((VAE_BATCH, VAE_CROP, VAE_CROP), dtype=np.float32)
    for i, pick in enumerate(picks):
        y, x = rng.integers(0, height - VAE_CROP + 1), rng.integers(0, width - VAE_CROP + 1)
        window = (slice(y, y + VAE_CROP), slice(x, x + VAE_CROP))
        crop, objects = sets[size].images[pick][window], sets[size].objects[pick][window]
        flip = rng.random() < 0.5
        out[i] = crop[:, ::-1] if flip else crop
        cover[i] = objects[:, ::-1] if flip else objects
    return to_tensor(out), 1.0 + VAE_OBJECT_WEIGHT * torch.from_numpy(cover)[:, None]


def vae_losses(
    vae: AutoencoderKL, x: torch.Tensor, weight: torch.Tensor
) -> dict[str, torch.Tensor]:
    posterior = vae.encode(x).latent_dist
    z = posterior.sample()
    recon = vae.decode(z).sample
    edge = (_dx(recon) - _dx(x)).abs().mean() + (_dy(recon) - _dy(x)).abs().mean()
    losses = {
        "l1": ((recon - x).abs() * weight).mean() / weight.mean(),
        "edge": edge,
        "kl": posterior.kl().mean() / z[0].numel(),
    }
    losses["total"] = losses["l1"] + EDGE_WEIGHT * edge + KL_WEIGHT * losses["kl"]
    return losses


def _dx(x: torch.Tensor) -> torch.Tensor:
    return x[..., :, 1:] - x[..., :, :-1]


def _dy(x: torch.Tensor) -> torch.Tensor:
    return x[..., 1:, :] - x[..., :-1, :]


def train_vae(vae: AutoencoderKL, sets: dict[Size, DrawnSet], budget: Budget) -> dict[str, float]:
    optimizer = torch.optim.AdamW(vae.parameters(), lr=VAE_LR, weight_decay=0.0)
    rng = np.random.default_rng(SEED)
    running: dict[str, float] = {}
    vae.train()
    while budget.progress() < 1.0:
        for group in optimizer.param_groups:
            group["lr"] = VAE_LR * lr_factor(budget)
        losses = vae_losses(vae, *random_crops(sets, rng))
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        budget.step += 1
        for key, value in losses.items():
            running[key] = 0.98 * running.get(key, value.item()) + 0.02 * value.item()
        if budget.step % 50 == 0:
            shown = " ".join(f"{k} {v:.4f}" for k, v in running.items())
            log(f"vae step {budget.step} {budget.elapsed():.0f}s {shown}")
    vae.eval()
    return running


@torch.no_grad()
def vae_psnr(vae: AutoencoderKL, images: np.ndarray) -> float:
    """Reconstruction PSNR in dB over whole scenes (not crops)."""
    x = to_tensor(images)
    recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    mse = ((recon - x) / 2).pow(2).mean().item()
    return 10 * math.log10(1 / mse)


@torch.no_grad()
def vae_round_trip_colour(vae: AutoencoderKL) -> float:
    """Share of the evaluation captions, drawn and sent through the VAE, whose object colour the
    judge still reads right: the ceiling of what the UNet can score on object colours."""
    rng = random.Random(SEED)
    captions = [p for p in EVALUATION_PROMPTS for _ in EVALUATION_SEEDS]
    drawn = np.stack([draw_scene(parse_caption(c), (64, 64), rng)[0] for c in captions])
    recon = vae.decode(vae.encode(to_tensor(drawn)).latent_dist.mode()).sample
    pictures = ((recon.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255)
    pairs = zip(pictures.astype(np.uint8), captions, strict=True)
    hits = [object_colour_matches(picture, caption) for picture, caption in pairs]
    return sum(hits) / len(hits)


@dataclass
class LatentSet:
    """One size's scenes as posterior mean and std, with their token ids and loss weights."""

    mean: torch.Tensor
    std: torch.Tensor
    ids: torch.Tensor
    weight: torch.Tensor  # (n, 1, h/8, w/8): 1 on background, up to 1 + OBJECT_WEIGHT on objects


@torch.no_grad()
def encode_sets(
    vae: AutoencoderKL, sets: dict[Size, DrawnSet], tokenizer: CLIPTokenizer
) -> dict[Size, LatentSet]:
    """Encode every scene once; the UNet then samples from the stored posteriors."""
    encoded = {}
    for size, drawn in sets.items():
        means, stds = [], []
        step = max(8, 8192 // (size[0] * size[1] // 64))
        for start in range(0, len(drawn.images), step):
            dist = vae.encode(to_tensor(drawn.images[start : start + step])).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
        ids = tokenize(tokenizer, drawn.captions)
        encoded[size] = LatentSet(torch.cat(means), torch.cat(stds), ids, latent_weight(drawn))
    return encoded


def latent_weight(drawn: DrawnSet) -> torch.Tensor:
    """Per latent pixel, 1 plus OBJECT_WEIGHT times the share of it an object covers."""
    coverage = torch.from_numpy(drawn.objects)[:, None]
    return 1.0 + OBJECT_WEIGHT * torch.nn.functional.avg_pool2d(coverage, 8)


def tokenize(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    """Token ids exactly as StableDiffusionPipeline makes them (padded to MAX_LENGTH)."""
    return tokenizer(
        captions, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt"
    ).input_ids


def scaling_factor(latents: dict[Size, LatentSet]) -> float:
    """1 / RMS of the latents, so the diffusion sees unit-scale data like SD's 0.18215 gives."""
    mean = latents[(64, 64)].mean
    return float(1.0 / mean.pow(2).mean().sqrt())


# ---------------------------------------------------------------- UNet


def ddpm() -> DDPMScheduler:
    """SD 1.5's training noise schedule (the PNDM config's betas)."""
    keys = ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "prediction_type")
    return DDPMScheduler(**{k: PNDM_CONFIG[k] for k in keys})


def train_unet(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    latents: dict[Size, LatentSet],
    empty_ids: torch.Tensor,
    scale: float,
    budget: Budget,
) -> float:
    scheduler = ddpm()
    snr = scheduler.alphas_cumprod / (1 - scheduler.alphas_cumprod)
    optimizer = torch.optim.AdamW(
        [
            {"params": list(unet.parameters()), "base": UNET_LR},
            {"params": list(text_encoder.parameters()), "base": TEXT_LR},
        ],
        weight_decay=1e-2,
    )
    ema = Ema([unet, text_encoder])
    generator = torch.Generator().manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    sizes = list(latents)
    shares = [SIZES[s][2] for s in sizes]
    running = None
    unet.train()
    text_encoder.train()
    while budget.progress() < 1.0:
        for group in optimizer.param_groups:
            group["lr"] = group["base"] * lr_factor(budget)
        size = sizes[rng.choice(len(sizes), p=shares)]
        loss = unet_loss(
            unet,
            text_encoder,
            latents[size],
            SIZES[size][1],
            empty_ids,
            scale,
            scheduler,
            snr,
            generator,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*unet.parameters(), *text_encoder.parameters()], 1.0)
        optimizer.step()
        ema.update()
        budget.step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if budget.step % 50 == 0:
            log(f"unet step {budget.step} {budget.elapsed():.0f}s loss {running:.4f}")
    ema.copy_to_live()
    unet.eval()
    text_encoder.eval()
    return float(running or 0.0)


def unet_loss(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    data: LatentSet,
    batch: int,
    empty_ids: torch.Tensor,
    scale: float,
    scheduler: DDPMScheduler,
    snr: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Epsilon loss with min-SNR weighting, on latents sampled from the stored posteriors."""
    pick = torch.randperm(len(data.mean), generator=generator)[:batch]
    mean, std = data.mean[pick], data.std[pick]
    clean = (mean + std * torch.randn(mean.shape, generator=generator)) * scale
    dropped = torch.rand(batch, generator=generator) < EMPTY_CAPTION_SHARE
    ids = torch.where(dropped[:, None], empty_ids, data.ids[pick])
    t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
    noise = torch.randn(clean.shape, generator=generator)
    noisy = scheduler.add_noise(clean, noise, t)
    hidden = text_encoder(ids).last_hidden_state  # what the pipeline passes as prompt_embeds
    predicted = unet(noisy, t, hidden).sample
    per_pixel = (predicted - noise).pow(2) * data.weight[pick]
    weight = snr[t].clamp(max=MIN_SNR_GAMMA) / snr[t]
    return (weight * per_pixel.mean(dim=(1, 2, 3))).mean()


# ---------------------------------------------------------------- saving


def save_pipeline(
    out: Path,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    unet: UNet2DConditionModel,
) -> int:
    """Save a float16 SD 1.5-style pipeline folder; returns its size in bytes."""
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler.from_config(PNDM_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(out, safe_serialization=True)
    return sum(f.stat().st_size for f in out.rglob("*") if f.is_file())


# ---------------------------------------------------------------- evaluation (numpy only)


def jump_ratio(frames: list[np.ndarray]) -> float:
    """J = max / median of adjacent-frame mean absolute differences (1 = perfectly even)."""
    pairs = zip(frames[:-1], frames[1:], strict=True)
    steps = [np.abs(a.astype(float) - b.astype(float)).mean() for a, b in pairs]
    return float(max(steps) / max(np.median(steps), 1e-6))


# ---------------------------------------------------------------- evaluation (rendering)


def render(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    seeds: list[int],
    guidance: float,
    size: Size = (64, 64),
    steps: int = 20,
    latents: torch.Tensor | None = None,
) -> list[np.ndarray]:
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    result = pipe(
        prompts,
        width=size[0],
        height=size[1],
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generators,
        latents=latents,
        output_type="np",
    )
    return [(img * 255).round().astype(np.uint8) for img in result.images]


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    angle = torch.acos((a * b).sum() / (a.norm() * b.norm()))
    return (torch.sin((1 - t) * angle) * a + torch.sin(t * angle) * b) / torch.sin(angle)


def evaluate(out: Path, sheet: Path) -> dict[str, object]:
    """Load the saved folder as a user would and measure what the issue asks for."""
    start = time.monotonic()
    pipe = StableDiffusionPipeline.from_pretrained(out, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    results: dict[str, object] = {"load_s": time.monotonic() - start}
    prompts = [p for p in EVALUATION_PROMPTS for _ in EVALUATION_SEEDS]
    seeds = [s for _ in EVALUATION_PROMPTS for s in EVALUATION_SEEDS]
    rows: dict[str, list[np.ndarray]] = {}
    for guidance in (7.5, 1.0):
        images = render(pipe, prompts, seeds, guidance)
        rows[f"g{guidance}"] = images
        colour, ground = follows_words(images, prompts)
        results[f"colour_g{guidance}"] = colour
        results[f"background_g{guidance}"] = ground
    results["misses_g7.5"] = [
        f"{p} (seed {s}): {measured_object_colour(i, p)}"
        for i, p, s in zip(rows["g7.5"], prompts, seeds, strict=True)
        if not object_colour_matches(i, p)
    ]
    results["layout_spread"] = _layout_spread(rows["g7.5"])
    results.update(_timings(pipe))
    big = render(pipe, list(EVALUATION_PROMPTS[:4]), [5] * 4, 7.5, size=(128, 128))
    wide = render(pipe, list(EVALUATION_PROMPTS[4:8]), [6] * 4, 7.5, size=(128, 96))
    strips, ratios = _transitions(pipe)
    results["jump_ratios"] = ratios
    _contact_sheet(sheet, rows, big, wide, strips)
    return results


def _layout_spread(images: list[np.ndarray]) -> float:
    """Mean absolute pixel difference between seeds of one prompt (0 = identical layouts)."""
    spreads = []
    for start in range(0, len(images), len(EVALUATION_SEEDS)):
        group = [i.astype(float) for i in images[start : start + len(EVALUATION_SEEDS)]]
        spreads += [np.abs(a - b).mean() for k, a in enumerate(group) for b in group[k + 1 :]]
    return float(np.mean(spreads))


def _timings(pipe: StableDiffusionPipeline) -> dict[str, float]:
    render(pipe, ["a red sun over the sea"], [0], 7.5, size=(128, 128))  # warm-up
    times = []
    for seed in range(3):
        start = time.monotonic()
        render(pipe, ["a red sun over the sea"], [seed], 7.5, size=(128, 128))
        times.append(time.monotonic() - start)
    return {"render_128_s": float(np.median(times))}


def _transitions(pipe: StableDiffusionPipeline) -> tuple[list[list[np.ndarray]], list[float]]:
    """Keyframe-to-keyframe morphs: slerp of the initial noise between two seeds."""
    strips, ratios = [], []
    for prompt, (a, b) in (
        ("a red sun over the sea", (1, 2)),
        ("a white house in the forest", (3, 4)),
    ):
        noise = [
            torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(s)) for s in (a, b)
        ]
        frames = torch.cat([slerp(noise[0], noise[1], t) for t in np.linspace(0, 1, 12)])
        images = render(pipe, [prompt] * 12, [0] * 12, 7.5, latents=frames)
        strips.append(images)
        ratios.append(jump_ratio(images))
    return strips, ratios


def _contact_sheet(
    path: Path,
    rows: dict[str, list[np.ndarray]],
    big: list[np.ndarray],
    wide: list[np.ndarray],
    strips: list[list[np.ndarray]],
) -> None:
    """Eval renders (guidance 7.5, then 1) as rows of four seeds, 128px renders, morph strips."""
    n = len(EVALUATION_SEEDS)
    lines = [
        np.concatenate(rows["g7.5"][k : k + n] + rows["g1.0"][k : k + n], axis=1)
        for k in range(0, len(rows["g7.5"]), n)
    ]
    grid = np.concatenate(lines, axis=0)
    extra = [np.concatenate(big, axis=1), np.concatenate(wide, axis=1)]
    extra += [np.concatenate(s, axis=1) for s in strips]
    width = max(grid.shape[1], *(e.shape[1] for e in extra))
    blocks = [np.pad(b, ((0, 4), (0, width - b.shape[1]), (0, 0))) for b in [grid, *extra]]
    Image.fromarray(np.concatenate(blocks, axis=0)).save(path)


# ---------------------------------------------------------------- main


def write_report(out: Path, facts: dict[str, object], results: dict[str, object]) -> None:
    lines = [
        "# Training record of the built-in `tiny` model",
        "",
        f"Made by `scripts/train_tiny.py` (issue 21) on {facts['date']}, CPU only,",
        f"{facts['threads']} threads, torch {torch.__version__},",
        f"diffusers {diffusers.__version__}, transformers {transformers.__version__}. Command:",
        "",
        f"    {facts['command']}",
        "",
        "To repeat the same step counts exactly, add "
        f"`--vae-steps {facts['vae_steps']} --unet-steps {facts['unet_steps']}`.",
        "",
        "## Phases",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in facts.items() if k not in ("date", "command", "threads")]
    lines += ["", "## Evaluation (64x64, 20 PNDM steps, prompts x seeds 0-3)", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in results.items()]
    (out / "TRAINING.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list) and value and isinstance(value[0], str):
        return "".join(f"\n  - {v}" for v in value)
    if isinstance(value, list):
        return ", ".join(f"{v:.2f}" for v in value)
    return str(value)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--minutes-vae", type=float, default=10.0)
    parser.add_argument("--minutes-unet", type=float, default=40.0)
    parser.add_argument("--vae-steps", type=int, help="pin the VAE step count (overrides time)")
    parser.add_argument("--unet-steps", type=int, help="pin the UNet step count (overrides time)")
    parser.add_argument("--data-scale", type=float, default=1.0, help="fraction of the scenes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sheet", type=Path, default=Path("/tmp/tiny_sheet.png"))
    return parser.parse_args(argv)


def _passive_openmp(argv: list[str]) -> None:
    """Re-run this script with OMP_WAIT_POLICY=PASSIVE unless the caller chose a policy.

    On a shared 2-core machine, OpenMP threads spinning while they wait made every step five
    to ten times slower; the variable only takes effect if set before torch is loaded.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)


def main(argv: list[str]) -> None:
    _passive_openmp(argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    facts: dict[str, object] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", "scripts/train_tiny.py", *argv]),
        "threads": args.threads,
    }
    start = time.monotonic()
    sets = draw_sets(args.data_scale)
    facts["scenes"] = {f"{w}x{h}": len(s.captions) for (w, h), s in sets.items()}
    facts["drawing_s"] = round(time.monotonic() - start)
    log(f"drew {facts['scenes']} in {facts['drawing_s']}s; e.g. {sets[(64, 64)].captions[:3]}")

    vae = build_vae()
    vae_budget = Budget(args.minutes_vae * 60, args.vae_steps)
    vae_loss = train_vae(vae, sets, vae_budget)
    facts.update(
        vae_params=count(vae),
        vae_steps=vae_budget.step,
        vae_s=round(vae_budget.elapsed()),
        vae_final_losses=_rounded(vae_loss),
    )
    facts["vae_psnr_db"] = round(vae_psnr(vae, sets[(64, 64)].images[:256]), 2)
    facts["vae_round_trip_colour"] = round(vae_round_trip_colour(vae), 3)
    log(
        f"vae done: {facts['vae_steps']} steps, PSNR {facts['vae_psnr_db']} dB, "
        f"object colours kept {facts['vae_round_trip_colour']}"
    )

    tokenizer = bpe_tokenizer(WORDS)
    tokenizer.model_max_length = MAX_LENGTH  # saved with it: the pipeline pads prompts to this
    start = time.monotonic()
    latents = encode_sets(vae, sets, tokenizer)
    scale = scaling_factor(latents)
    vae.register_to_config(scaling_factor=scale)
    facts.update(encoding_s=round(time.monotonic() - start), scaling_factor=round(scale, 4))
    log(f"encoded in {facts['encoding_s']}s, scaling factor {scale:.4f}")
    del sets

    text_encoder, unet = build_text_encoder(tokenizer), build_unet()
    empty_ids = tokenize(tokenizer, [""])
    unet_budget = Budget(args.minutes_unet * 60, args.unet_steps)
    unet_loss_value = train_unet(unet, text_encoder, latents, empty_ids, scale, unet_budget)
    facts.update(
        unet_params=count(unet),
        text_encoder_params=count(text_encoder),
        unet_steps=unet_budget.step,
        unet_s=round(unet_budget.elapsed()),
        unet_final_loss=round(unet_loss_value, 4),
    )

    size = save_pipeline(args.out, vae, text_encoder, tokenizer, unet)
    facts["weights_bytes"] = size
    log(f"saved {args.out} ({size / 1e6:.2f} MB); evaluating")
    results = evaluate(args.out, args.sheet)
    for key, value in results.items():
        log(f"{key}: {_fmt(value)}")
    write_report(args.out, facts, results)
    log(f"wrote {args.out / 'TRAINING.md'}; contact sheet {args.sheet}")


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 5) for k, v in values.items()}


if __name__ == "__main__":
    main(sys.argv[1:])
