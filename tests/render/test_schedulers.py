"""Scheduler names, few-step samplers, and per-step noise shared by the frames of a transition."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from diffusers import PNDMScheduler, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from sdmorph.core.errors import ModelError
from sdmorph.core.interp import frame_times, lerp, slerp
from sdmorph.formats.profile import Profile
from sdmorph.formats.song import load_prompts, load_song
from sdmorph.render.engine import Engine, FrameInput, _shared_step, _step_kwargs
from sdmorph.render.renderer import open_renderer
from sdmorph.render.scheduler_names import SCHEDULER_ALIASES
from sdmorph.render.schedulers import is_stochastic, make_scheduler, scheduler_class
from sdmorph.render.sources import profile_problems
from sdmorph.render.tiny import PNDM_CONFIG, build_tiny_pipeline
from songs import SETTINGS, write_song

SIZE = 64
STEPS = 4
FRAMES = 7


def _base() -> PNDMScheduler:
    return PNDMScheduler.from_config(PNDM_CONFIG)


@pytest.mark.parametrize(("name", "cls"), [
    ("lcm", "LCMScheduler"), ("tcd", "TCDScheduler"),
    ("euler_a", "EulerAncestralDiscreteScheduler"),
    ("dpm++_2m", "DPMSolverMultistepScheduler"), ("DDIMScheduler", "DDIMScheduler"),
    ("Euler_A", "EulerAncestralDiscreteScheduler"),
])
def test_names_and_aliases_build_diffusers_schedulers(name: str, cls: str) -> None:
    built = make_scheduler(name, _base())
    assert type(built).__name__ == cls == scheduler_class(name).__name__
    assert built.config.beta_schedule == "scaled_linear"  # the model's own schedule carries over


def test_timestep_spacing_and_alias_options_reach_the_scheduler() -> None:
    turbo = make_scheduler("euler_a", _base(), "trailing")
    assert turbo.config.timestep_spacing == "trailing"
    turbo.set_timesteps(1)
    assert int(turbo.timesteps[0]) == 999  # trailing starts at the last training step
    karras = make_scheduler("dpm++_2m_karras", _base())
    assert karras.config.use_karras_sigmas and karras.config.algorithm_type == "dpmsolver++"
    assert make_scheduler(None, _base()).config == _base().config


def test_stochastic_schedulers_are_known() -> None:
    assert all(is_stochastic(make_scheduler(n, _base()))
               for n in ("lcm", "tcd", "euler_a", "dpm++_2m_sde"))
    assert not any(is_stochastic(make_scheduler(n, _base()))
                   for n in ("ddim", "euler", "dpm++_2m", "unipc", "pndm"))


def test_bad_names_are_refused_in_one_line_listing_the_aliases() -> None:
    with pytest.raises(ModelError) as caught:
        scheduler_class("fancy")
    message = str(caught.value)
    assert "\n" not in message and "lcm" in message and "euler_a" in message
    [problem] = profile_problems(Profile(model_string="tiny-random", scheduler="fancy"),
                                 Path("s.json"))
    assert "scheduler 'fancy'" in problem.message
    assert all(not profile_problems(Profile(model_string="tiny-random", scheduler=name),
                                    Path("s.json"))
               for name in SCHEDULER_ALIASES)


@pytest.mark.parametrize("name", ["lcm", "tcd", "euler_a", "dpm++_2m_sde"])
def test_shared_step_puts_the_given_noise_in_place_of_the_drawn(name: str) -> None:
    """Given the noise a generator would draw, the step equals the scheduler's own."""
    scheduler = make_scheduler(name, _base())
    scheduler.set_timesteps(STEPS)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn((2, 4, 8, 8), generator=gen) * scheduler.init_noise_sigma
    t = scheduler.timesteps[0]
    pred = torch.randn((2, 4, 8, 8), generator=gen)
    kwargs = _step_kwargs(scheduler, "cpu")
    gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
    wanted = randn_tensor(pred.shape, generator=[torch.Generator().manual_seed(s) for s in (7, 8)])
    own = copy.deepcopy(scheduler).step(pred, t, latents, **{**kwargs, "generator": gens},
                                        return_dict=False)[0]
    shared = _shared_step(scheduler, pred, t, latents, kwargs, wanted)
    assert torch.allclose(shared, own, atol=1e-4)
    other = _shared_step(copy.deepcopy(scheduler), pred, t, latents, kwargs, wanted * 0)
    assert (other - own).abs().mean() > 0.01  # the noise does matter at this step


# ------------------------------------------------------------ flicker, measured


def _j(images: list[Image.Image]) -> tuple[float, float]:
    """J = max / median of adjacent-frame pixel L2 distances, and that median."""
    pixels = [np.asarray(im).astype(np.float64) for im in images]
    steps = [float(np.linalg.norm(a - b)) for a, b in zip(pixels, pixels[1:], strict=False)]
    return max(steps) / float(np.median(steps)), float(np.median(steps))


def _transition(engine: Engine, independent: bool = False) -> list[Image.Image]:
    """A transition between two seeds and prompts at guidance 1; `independent`: every frame
    gets step noise of its own seed (what drawing it per frame amounts to)."""
    cond_a, uncond_a, _, _ = engine.embed("a red sun over the sea", "")
    cond_b, uncond_b, _, _ = engine.embed("a blue moon in a dark forest", "")
    noise = [engine.noise(seed, "cpu", SIZE, SIZE) for seed in (11, 22)]
    steps = [engine.step_noise(seed, "cpu", SIZE, SIZE, STEPS) for seed in (11, 22)]
    frames = []
    for k, t in enumerate(frame_times(FRAMES)):
        if not engine.stochastic:
            step = None
        elif independent and 0 < k < FRAMES - 1:
            step = engine.step_noise(1000 + k, "cpu", SIZE, SIZE, STEPS)
        else:
            step = np.stack([slerp(x, y, t) for x, y in zip(*steps, strict=True)])
        frames.append(FrameInput(slerp(*noise, t), lerp(cond_a, cond_b, t).astype(np.float32),
                                 lerp(uncond_a, uncond_b, t).astype(np.float32), 1.0,
                                 step_noise=step))
    return engine.render(frames, steps=STEPS, width=SIZE, height=SIZE)


@pytest.mark.slow
def test_lcm_transitions_are_as_even_as_a_deterministic_samplers() -> None:
    lcm = Engine("tiny-random", device="cpu", scheduler="lcm")
    j_det, median_det = _j(_transition(Engine("tiny-random", device="cpu", scheduler="ddim")))
    j_lcm, median_lcm = _j(_transition(lcm))
    j_ind, median_ind = _j(_transition(lcm, independent=True))
    print(f"J ddim {j_det:.3f}, lcm {j_lcm:.3f}, lcm independent {j_ind:.3f}; median step "
          f"{median_det:.0f} / {median_lcm:.0f} / {median_ind:.0f}")
    assert j_lcm <= 1.10 * j_det
    # Independent noise flickers evenly (its J stays low) but every step is a jump: adjacent
    # frames differ far more than along the shared-noise path.
    assert median_ind >= 1.5 * median_lcm
    assert median_lcm <= 1.25 * median_det
    # guidance 1: no unconditional pass, one UNet pass per step and frame.
    assert lcm.unet_passes_per_frame == STEPS


def test_a_four_step_lcm_profile_takes_at_most_four_passes_per_frame(tmp_path: Path) -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["default"].update(scheduler="lcm", timestep_spacing="trailing")  # type: ignore[attr-defined]
    settings["default"]["pipe_kwargs"].update(num_inference_steps=STEPS, guidance_scale=1.0)  # type: ignore[index]
    sheet = "name,prompt,seeds,guidance_scale\nsun,a red sun,1 2,1\nmoon,a blue moon,3,0.5\n"
    meta, media = write_song(tmp_path, sheet=sheet, settings=settings)
    song = load_prompts(meta, media)
    renderer = open_renderer(song, device="cpu")
    a, b = song.all_images()[:2]
    keyframes = renderer.render_keyframes([a, b])
    inner = renderer.render([renderer.frame_input(a, b, t) for t in (0.25, 0.5, 0.75)])
    engine = renderer.engine
    assert engine.unet_evals <= STEPS * engine.frames_rendered == STEPS * 5
    # t = 0 is the keyframe: the step noise too is the seed's own (a batch of another size
    # may round a pixel differently, as for every sampler).
    again = np.asarray(renderer.render([renderer.frame_input(a, b, 0.0)])[0]).astype(int)
    assert np.abs(again - np.asarray(keyframes[0])).max() <= 2
    assert np.abs(np.asarray(inner[0]).astype(int) - again).mean() > 0.5
    text = renderer.png_text(a)
    assert text["scheduler"] == "LCMScheduler" and text["step_noise"] == "seeds"
    assert text["scheduler_options"] == {"timestep_spacing": "trailing"}


def test_sd1_recipes_keep_their_keys_without_new_settings(tmp_path: Path) -> None:
    meta, media = write_song(tmp_path)
    renderer = open_renderer(load_song(meta, media), device="cpu")
    settings = renderer.settings()
    assert not {"family", "scheduler_options", "step_noise", "loras"} & set(settings)
    assert json.dumps(settings)  # still plain JSON


def test_an_lcm_distilled_unet_gets_the_guidance_embedding_like_diffusers() -> None:
    """UNets with time_cond_proj_dim (LCM-distilled models) take guidance as an input: no
    negative pass, and the picture diffusers' own pipeline gives (same step generator)."""
    pipe = build_tiny_pipeline(trained=False)
    config = {k: v for k, v in pipe.unet.config.items() if not k.startswith("_")}
    pipe.unet = UNet2DConditionModel.from_config({**config, "time_cond_proj_dim": 32}).eval()
    pipe.scheduler = make_scheduler("lcm", pipe.scheduler)
    with mock.patch("sdmorph.render.engine.load_pipeline", return_value=pipe):
        engine = Engine("lcm-distilled", device="cpu")
    cond, uncond = engine.encode(["a red sun", ""])
    frame = FrameInput(engine.noise(1, "cpu", SIZE, SIZE), cond, uncond, 8.0)
    image = engine.render([frame], steps=STEPS, width=SIZE, height=SIZE)[0]
    assert engine.unet_passes_per_frame == STEPS
    expected = pipe(prompt_embeds=torch.from_numpy(cond[None]), guidance_scale=8.0,
                    latents=torch.from_numpy(frame.latents[None]), num_inference_steps=STEPS,
                    output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    assert np.abs(np.asarray(image).astype(int) - (expected * 255).round()).max() <= 1
