"""The engine's shared denoising: frames that join other frames' states part-way."""

from __future__ import annotations

import numpy as np
import pytest

from sdmorph.core.errors import RenderError
from sdmorph.core.interp import lerp, slerp
from sdmorph.render.engine import Engine, FrameInput, Join, Snapshot

SIZE = 64
STEPS = 6


@pytest.fixture(scope="module", params=[None, "dpm++_2m", "euler_a"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """PNDM (the default), a multistep solver with a history of outputs, an ancestral one."""
    return Engine("tiny-random", device="cpu", scheduler=request.param)


def frame(engine: Engine, t: float, guidance: float = 7.5) -> FrameInput:
    """The frame at t between two prompts and seeds (each seed's own step noise)."""
    cond_a, cond_b, uncond = engine.encode(["a red sun", "a blue moon", ""])
    noise = [engine.noise(seed, "cpu", SIZE, SIZE) for seed in (11, 22)]
    steps = [engine.step_noise(seed, "cpu", SIZE, SIZE, STEPS) for seed in (11, 22)]
    step_noise = None if not engine.stochastic else np.asarray(
        [slerp(x, y, t) for x, y in zip(*steps, strict=True)], dtype=np.float32)
    return FrameInput(latents=slerp(*noise, t), cond=np.asarray(lerp(cond_a, cond_b, t)),
                      uncond=uncond, guidance=guidance, step_noise=step_noise)


def shared(engine: Engine, frames: list[FrameInput], joins: list[Join] | None,
           keep: set[int]) -> tuple[list[np.ndarray], list[dict[int, Snapshot]]]:
    images, kept = engine.render_shared(frames, joins, keep, steps=STEPS, width=SIZE,
                                        height=SIZE)
    return [np.asarray(image) for image in images], kept


def test_frames_from_their_own_noise_are_the_plain_render(engine: Engine) -> None:
    frames = [frame(engine, 0.0), frame(engine, 1.0)]
    plain = [np.asarray(i) for i in engine.render(frames, steps=STEPS, width=SIZE, height=SIZE)]
    images, kept = shared(engine, frames, None, {0, 3})
    assert all(np.array_equal(x, y) for x, y in zip(images, plain, strict=True))
    assert [sorted(k) for k in kept] == [[0, 3], [0, 3]]


def test_joining_at_the_first_step_is_the_render_from_the_slerped_noise(engine: Engine) -> None:
    _, (a,) = shared(engine, [frame(engine, 0.0)], None, {0})
    _, (b,) = shared(engine, [frame(engine, 1.0)], None, {0})
    joined, _ = shared(engine, [frame(engine, 0.25)], [Join(a[0], b[0], 0.25)], set())
    plain = engine.render([frame(engine, 0.25)], steps=STEPS, width=SIZE, height=SIZE)
    assert np.abs(joined[0].astype(int) - np.asarray(plain[0]).astype(int)).max() <= 1


def test_a_frame_joining_its_own_state_ends_as_it_would_have(engine: Engine) -> None:
    """Share 0 from a frame's own state at step 3, with its own inputs: the state (latents
    and the scheduler's per-frame history) carries over whole, so the picture is the same."""
    alone, (states,) = shared(engine, [frame(engine, 0.0)], None, {3})
    again, _ = shared(engine, [frame(engine, 0.0)], [Join(states[3], states[3], 0.0)], set())
    assert np.array_equal(again[0], alone[0])


def test_a_late_join_costs_only_the_steps_left(engine: Engine) -> None:
    _, kept = shared(engine, [frame(engine, 0.0), frame(engine, 1.0)], None, {4})
    iterations = engine.iterations(STEPS)
    before = engine.unet_evals
    middle = [frame(engine, 0.5)]
    images, _ = shared(engine, middle, [Join(kept[0][4], kept[1][4], 0.5)], set())
    assert engine.unet_evals - before == 2 * (iterations - 4)  # with and without the prompt
    assert engine.unet_passes(middle, iterations - 4) == 2 * (iterations - 4)
    assert images[0].std() > 0  # a picture, not a blank


def test_one_batch_joins_at_one_step() -> None:
    engine = Engine("tiny-random", device="cpu")
    _, kept = shared(engine, [frame(engine, 0.0), frame(engine, 1.0)], None, {2, 4})
    joins = [Join(kept[0][2], kept[1][2], 0.5), Join(kept[0][4], kept[1][4], 0.5)]
    with pytest.raises(RenderError, match="join at one step"):
        shared(engine, [frame(engine, 0.5)] * 2, joins, set())
    with pytest.raises(RenderError, match="1 joins for 2 frames"):
        shared(engine, [frame(engine, 0.5)] * 2, joins[:1], set())
