"""The engine renders what diffusers' own pipelines render, with per-frame guidance."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from sdmorph.core.errors import ModelError, RenderError
from sdmorph.media.masks import to_control
from sdmorph.render.engine import Engine, FrameInput
from sdmorph.render.pipelines import load_pipeline, pick_device
from sdmorph.render.schedulers import scheduler_class

SIZE = 64
STEPS = 6
LONG_SEED = 5842234013956479


@pytest.fixture(scope="module")
def plain() -> Engine:
    return Engine("tiny-random", device="cpu")


@pytest.fixture(scope="module")
def cnet() -> Engine:
    return Engine("tiny-random", "tiny-random", device="cpu")


def _square(size: int = SIZE) -> np.ndarray:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    ImageDraw.Draw(image).rectangle((size // 4, size // 4, 3 * size // 4, 3 * size // 4), "white")
    return to_control(image)


def _frame(engine: Engine, seed: int, guidance: float = 7.5, **extra: object) -> FrameInput:
    cond, uncond = engine.encode(["a red cat under the stars", "blurry"])
    latents = engine.noise(seed, "cpu", SIZE, SIZE)
    return FrameInput(latents, cond, uncond, guidance, **extra)  # type: ignore[arg-type]


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def _pipeline_pixels(engine: Engine, frame: FrameInput, **kwargs: object) -> np.ndarray:
    result = engine.pipe(
        prompt_embeds=torch.from_numpy(frame.cond[None]),
        negative_prompt_embeds=torch.from_numpy(frame.uncond[None]),
        latents=torch.from_numpy(frame.latents[None]),
        guidance_scale=frame.guidance,
        num_inference_steps=STEPS,
        output_type="np",
        **kwargs,
    )
    return (result.images[0] * 255).round().astype(np.int16)


def _render(engine: Engine, frames: list[FrameInput], **kwargs: object) -> list[Image.Image]:
    return engine.render(frames, steps=STEPS, width=SIZE, height=SIZE, **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("guidance", [7.5, 1.0])
def test_render_equals_the_diffusers_pipeline(plain: Engine, guidance: float) -> None:
    frame = _frame(plain, 42, guidance)
    image = _render(plain, [frame])[0]
    assert image.size == (SIZE, SIZE) and image.mode == "RGB"
    expected = _pipeline_pixels(plain, frame)
    assert np.abs(_pixels(image) - expected).max() <= 1


def test_controlnet_render_equals_the_diffusers_pipeline(cnet: Engine) -> None:
    frame = _frame(cnet, 42, 6.0, control=_square(), cnet_scale=0.8)
    image = _render(cnet, [frame], control_start=0.1, control_end=0.7)[0]
    expected = _pipeline_pixels(
        cnet,
        frame,
        image=Image.fromarray((frame.control * 255).round().astype(np.uint8)),
        controlnet_conditioning_scale=0.8,
        control_guidance_start=0.1,
        control_guidance_end=0.7,
    )
    assert np.abs(_pixels(image) - expected).max() <= 1


@pytest.mark.slow
def test_batch_with_per_frame_guidance_matches_single_frames(plain: Engine) -> None:
    frames = [_frame(plain, seed, guidance) for seed, guidance in ((1, 3.0), (2, 7.5), (3, 12.0))]
    batch = _render(plain, frames)
    for frame, image in zip(frames, batch, strict=True):
        alone = _render(plain, [frame])[0]
        assert np.abs(_pixels(image) - _pixels(alone)).max() <= 2
    again = _render(plain, frames)
    assert [im.tobytes() for im in again] == [im.tobytes() for im in batch]
    # Guidance really is per frame: the same noise at another scale is another picture.
    other = _render(plain, [_frame(plain, 1, 7.5)])[0]
    assert np.abs(_pixels(other) - _pixels(batch[0])).mean() > 1.0


def test_controlnet_follows_the_mask_and_its_scale(cnet: Engine) -> None:
    black = np.zeros((SIZE, SIZE, 3), np.float32)
    frames = [
        _frame(cnet, 9, control=_square(), cnet_scale=1.0),
        _frame(cnet, 9, control=black, cnet_scale=1.0),
        _frame(cnet, 9, control=_square(), cnet_scale=0.0),
        _frame(cnet, 9, control=black, cnet_scale=0.0),
    ]
    square, dark, off_square, off_dark = (_pixels(im) for im in _render(cnet, frames))
    assert np.abs(square - dark).mean() > 0.5
    assert np.abs(square - off_square).mean() > 0.5
    assert np.array_equal(off_square, off_dark)  # scale 0: the mask no longer matters


def test_counters_count_samples(plain: Engine) -> None:
    evals, decodes = plain.unet_evals, plain.vae_decodes
    _render(plain, [_frame(plain, 1), _frame(plain, 2)])
    scheduler = scheduler_class(plain.scheduler_name).from_config(plain.pipe.scheduler.config)
    scheduler.set_timesteps(STEPS)
    assert plain.unet_evals - evals == 2 * 2 * len(scheduler.timesteps)
    assert plain.vae_decodes - decodes == 2


def test_encode_matches_the_text_encoder_and_caches(plain: Engine) -> None:
    embeds = plain.encode(["a red cat", "a blue dog", "a red cat"])
    assert embeds.shape == (3, 77, 32) and embeds.dtype == np.float32
    assert np.array_equal(embeds[0], embeds[2])
    assert np.abs(embeds[0] - embeds[1]).mean() > 1e-3
    ids = plain.pipe.tokenizer(
        "a red cat", padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.inference_mode():
        direct = plain.pipe.text_encoder(ids)[0][0].numpy()
    assert np.array_equal(embeds[0], direct)
    assert plain.encode([]).shape == (0, 77, 32)


def test_noise_is_the_old_scripts_cpu_noise(plain: Engine) -> None:
    noise = plain.noise(LONG_SEED, "cpu", 72, 64)
    assert noise.shape == (4, 8, 9) and noise.dtype == np.float32
    generator = torch.Generator("cpu").manual_seed(LONG_SEED)
    expected = torch.randn((1, 4, 8, 9), generator=generator, dtype=torch.float32)[0].numpy()
    assert np.array_equal(noise, expected)
    assert np.array_equal(noise, plain.noise(LONG_SEED, "cpu", 72, 64))
    assert not np.array_equal(noise, plain.noise(LONG_SEED + 1, "cpu", 72, 64))
    assert plain.noise(1, "cpu", 100, 564).shape == (4, 70, 12)  # sizes round down to 8


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_noise_without_cuda_says_what_to_do(plain: Engine) -> None:
    with pytest.raises(RenderError, match="noise: cpu"):
        plain.noise(1, "cuda", SIZE, SIZE)


def test_bad_noise_requests_are_clear(plain: Engine) -> None:
    with pytest.raises(RenderError, match="seed -1"):
        plain.noise(-1, "cpu", SIZE, SIZE)
    with pytest.raises(RenderError, match="noise source 'gpu'"):
        plain.noise(1, "gpu", SIZE, SIZE)


def test_nan_frames_are_reported_with_their_position(plain: Engine) -> None:
    good = _frame(plain, 1)
    bad = FrameInput(np.full_like(good.latents, np.nan), good.cond, good.uncond, 7.5)
    with pytest.raises(RenderError, match=r"frame 1 of this batch came out NaN.*float32"):
        _render(plain, [good, bad])


def test_wrong_shapes_are_render_errors(plain: Engine, cnet: Engine) -> None:
    frame = _frame(plain, 1)
    with pytest.raises(RenderError, match="latents has shape"):
        plain.render([frame], steps=STEPS, width=SIZE * 2, height=SIZE)
    with pytest.raises(RenderError, match="needs a control image"):
        _render(cnet, [_frame(cnet, 1)])
    with pytest.raises(RenderError, match="no ControlNet"):
        _render(plain, [_frame(plain, 1, control=_square())])
    with pytest.raises(RenderError, match="control_guidance_start"):
        _render(cnet, [_frame(cnet, 1, control=_square())], control_start=0.8, control_end=0.2)
    assert _render(plain, []) == []


class _SmallMemoryEngine(Engine):
    """Stands in for a GPU that runs out of memory above two frames (cannot happen on CPU)."""

    def _render_batch(self, frames, job, offset):  # type: ignore[no-untyped-def]
        if len(frames) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return super()._render_batch(frames, job, offset)


@pytest.mark.slow
def test_out_of_memory_halves_the_batch_and_warns_once(plain: Engine) -> None:
    warnings: list[str] = []
    engine = _SmallMemoryEngine("tiny-random", device="cpu", on_warning=warnings.append)
    frames = [_frame(engine, seed) for seed in range(5)]
    images = _render(engine, frames)
    assert len(warnings) == 1
    assert "rendering 5 frames at once" in warnings[0] and "2 at a time" in warnings[0]
    assert engine.max_batch == 2
    expected = _render(plain, frames)
    assert all(
        np.abs(_pixels(a) - _pixels(b)).max() <= 2 for a, b in zip(images, expected, strict=True)
    )
    _render(engine, frames)
    assert len(warnings) == 1


def test_a_named_scheduler_is_used(plain: Engine) -> None:
    engine = Engine("tiny-random", device="cpu", scheduler="EulerDiscreteScheduler")
    assert engine.scheduler_name == "EulerDiscreteScheduler"
    frame = _frame(engine, 5)
    first, again = _render(engine, [frame])[0], _render(engine, [frame])[0]
    assert first.tobytes() == again.tobytes()
    assert np.abs(_pixels(first) - _pixels(_render(plain, [frame])[0])).mean() > 0.5


def test_unknown_scheduler_lists_valid_names() -> None:
    with pytest.raises(ModelError, match="EulerDiscreteScheduler"):
        Engine("tiny-random", device="cpu", scheduler="FancyScheduler")


def test_missing_hub_model_fails_fast_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Fast means: no attempt to reach the network (where timeouts and retries take the time).
    attempts: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        attempts.append(args[1:] or kwargs)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(ModelError) as info:
        load_pipeline("someone/no-such-model", cache_dir=tmp_path / "cache")
    assert attempts == []
    message = str(info.value)
    assert "\n" not in message
    assert "someone/no-such-model" in message and str(tmp_path / "cache") in message
    assert ".safetensors" in message


def test_missing_local_models_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file"):
        load_pipeline(str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelError, match="no such folder"):
        load_pipeline(str(tmp_path / "nowhere" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="did not load"):
        load_pipeline(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="only fits model 'tiny-random'"):
        load_pipeline(str(tmp_path / "empty"), controlnet="tiny-random")


def test_pick_device() -> None:
    best = pick_device(None)
    assert best in ("cuda", "mps", "cpu")
    assert pick_device("auto") == best
    assert pick_device("cpu") == "cpu"
    with pytest.raises(ModelError, match="unknown"):
        pick_device("warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="not available"):
            pick_device("cuda")
