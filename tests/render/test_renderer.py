"""The renderer on the built-in tiny model: recipes, engine inputs, keyframes on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdmorph import __version__
from sdmorph.core.ids import ImageId
from sdmorph.formats import recipe
from sdmorph.formats.song import Song, load_song
from sdmorph.media.masks import crossfade, load_mask, to_control
from sdmorph.render.engine import Engine, FrameInput
from sdmorph.render.renderer import Renderer, open_renderer, png_info
from songs import SETTINGS, write_song

LUNA = ImageId("luna", 1001)  # guidance 7.5 in songs.SHEET
STAR = ImageId("star", 3001)  # guidance 8
SIZE = 64


@pytest.fixture(scope="module")
def plain() -> Engine:
    return Engine("tiny-random", device="cpu")


@pytest.fixture(scope="module")
def cnet() -> Engine:
    return Engine("tiny-random", "tiny-random", device="cpu")


def load(root: Path) -> Song:
    return load_song(root / "meta" / "song", root / "media" / "song")


@pytest.fixture
def renderer(tmp_path: Path, plain: Engine) -> Renderer:
    write_song(tmp_path)
    return open_renderer(load(tmp_path), engine=plain)


def cnet_renderer(root: Path, engine: Engine) -> Renderer:
    sheet = ("name,prompt,seeds,mask,cnet_scale\nluna,a moon,1001,square,0.5\n"
             "sun,a sun,2001,circle,\n")
    settings = {"default": {**SETTINGS["default"], "controlnet_string": "tiny-random",
                            "pipe_kwargs": {"num_inference_steps": 2,
                                            "controlnet_conditioning_scale": 1.5}}}
    meta, _ = write_song(root, sheet=sheet, settings=settings,
                         scenes=",scene,duration,section\n0,luna,0,1\n1,sun,0,1\n")
    (meta / "masks").mkdir()
    square = Image.new("RGB", (96, 54), "black")
    square.paste((255, 255, 255), (20, 10, 60, 40))
    square.save(meta / "masks" / "square.png")
    circle = Image.new("RGBA", (96, 54), (0, 0, 0, 0))
    circle.paste((255, 255, 255, 255), (60, 5, 90, 50))
    circle.save(meta / "masks" / "circle.png")
    return open_renderer(load(root), engine=engine)


def same_input(x: FrameInput, y: FrameInput) -> bool:
    """Bit for bit: the noise, both embeddings, the guidance and the ControlNet input."""
    def same(p: np.ndarray | None, q: np.ndarray | None) -> bool:
        if p is None or q is None:
            return p is q
        return p.dtype == q.dtype and p.shape == q.shape and p.tobytes() == q.tobytes()

    return (same(x.latents, y.latents) and same(x.cond, y.cond) and same(x.uncond, y.uncond)
            and same(x.control, y.control)
            and (x.guidance, x.cnet_scale) == (y.guidance, y.cnet_scale))


# ------------------------------------------------------------------ recipes


def test_recipes_are_the_recipe_modules_definition(renderer: Renderer) -> None:
    song, engine = renderer.song, renderer.engine
    facts = renderer.engine_facts
    assert facts == recipe.EngineFacts(scheduler=engine.scheduler_name, noise="cpu",
                                       dtype="float32")
    assert renderer.settings() == recipe.settings(song, "tiny-random", facts) == {
        "model": "tiny-random", "width": SIZE, "height": SIZE, "steps": 3,
        "scheduler": engine.scheduler_name, "noise": "cpu", "dtype": "float32",
    }
    wanted = renderer.keyframe_recipe(LUNA)
    assert wanted == recipe.keyframe_recipe(song, "tiny-random", facts, LUNA)
    assert wanted == {**renderer.settings(), "prompt": "a moon, glowing", "negative_prompt": "",
                      "seed": 1001, "guidance": 7.5}
    # A plain song's recipe has none of the ControlNet fields.
    shared, own = recipe.absent_fields(song)
    assert not (set(shared) | set(own)) & set(wanted)
    transition = renderer.transition_recipe(LUNA, STAR, 4)
    assert transition == recipe.transition_recipe(song, "tiny-random", facts, LUNA, STAR, 4)
    assert transition["frames"] == 4
    assert transition["from"] == recipe.image_recipe(song, LUNA)
    assert transition["to"]["guidance"] == 8.0 and transition["to"]["seed"] == 3001


def test_png_text_is_the_recipe_with_its_key(renderer: Renderer) -> None:
    text = renderer.png_text(STAR)
    wanted = recipe.keyframe_recipe(renderer.song, "tiny-random", renderer.engine_facts, STAR)
    assert text == {**wanted, "recipe_key": recipe.recipe_key(wanted),
                    "sdmorph_version": __version__}
    assert renderer.png_text(LUNA)["recipe_key"] != text["recipe_key"]


def test_stored_keyframes_are_judged_by_their_recipe_key(
    renderer: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = renderer.song.keyframe_path(LUNA)
    assert renderer.keyframe_state(LUNA) == "missing"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (SIZE, SIZE), (10, 20, 30)).save(path, pnginfo=png_info(
        renderer.png_text(LUNA)))
    assert renderer.keyframe_state(LUNA) == "current"
    rendered: list[int] = []
    monkeypatch.setattr(renderer, "render", lambda inputs: rendered.append(len(inputs)) or [])
    # A current keyframe is read from disk, not rendered again.
    assert renderer.keyframe(LUNA).getpixel((0, 0)) == (10, 20, 30)
    assert rendered == []
    other = {**renderer.png_text(LUNA), "recipe_key": "0" * 64}
    Image.new("RGB", (SIZE, SIZE)).save(path, pnginfo=png_info(other))
    assert renderer.keyframe_state(LUNA) == "stale"
    Image.new("RGB", (SIZE, SIZE)).save(path)  # no recipe: the old scripts'
    assert renderer.keyframe_state(LUNA) == "legacy"


# ------------------------------------------------------------------ engine inputs


def test_frame_inputs_at_the_ends_are_the_keyframe_inputs(renderer: Renderer) -> None:
    key_a = renderer.frame_input(LUNA, LUNA, 0.0)
    key_b = renderer.frame_input(STAR, STAR, 0.0)
    assert same_input(renderer.frame_input(LUNA, STAR, 0.0), key_a)
    assert same_input(renderer.frame_input(LUNA, STAR, 1.0), key_b)
    # The keyframe's noise is the seed's own noise, bit for bit.
    noise = renderer.engine.noise(LUNA.seed, "cpu", SIZE, SIZE)
    assert key_a.latents.tobytes() == noise.tobytes()
    assert (key_a.guidance, key_b.guidance) == (7.5, 8.0) and key_a.control is None
    middle = renderer.frame_input(LUNA, STAR, 0.5)
    assert middle.guidance == pytest.approx(7.75)
    assert not np.array_equal(middle.latents, key_a.latents)
    assert not np.array_equal(middle.latents, key_b.latents)
    assert np.allclose(middle.cond, (key_a.cond + key_b.cond) / 2, atol=1e-6)


def test_a_transitions_first_frame_renders_as_the_keyframe(renderer: Renderer) -> None:
    keyframe = renderer.render_keyframes([LUNA])[0]
    first = renderer.render([renderer.frame_input(LUNA, STAR, 0.0)])[0]
    assert keyframe.size == (SIZE, SIZE)
    assert first.tobytes() == keyframe.tobytes()
    assert renderer.keyframe(LUNA) is keyframe  # kept for the run


def test_noise_is_drawn_once_per_seed(renderer: Renderer, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []
    noise = renderer.engine.noise

    def counted(seed: int, *args: object) -> np.ndarray:
        drawn.append(seed)
        return noise(seed, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(renderer.engine, "noise", counted)
    for t in (0.0, 0.25, 0.5, 1.0):
        renderer.frame_input(LUNA, STAR, t)
    assert sorted(drawn) == [LUNA.seed, STAR.seed]
    assert renderer.noise(LUNA.seed) is renderer.noise(LUNA.seed)
    assert drawn.count(LUNA.seed) == 1


@pytest.mark.slow
def test_controlnet_masks_cross_fade_and_scales_interpolate(
    tmp_path: Path, cnet: Engine
) -> None:
    renderer = cnet_renderer(tmp_path, cnet)
    luna, sun = ImageId("luna", 1001), ImageId("sun", 2001)
    masks = renderer.song.masks_dir
    square = load_mask(masks / "square.png", SIZE, SIZE, masks)
    circle = load_mask(masks / "circle.png", SIZE, SIZE, masks)
    start, end = renderer.frame_input(luna, sun, 0.0), renderer.frame_input(luna, sun, 1.0)
    assert start.control is not None and end.control is not None
    assert np.array_equal(start.control, to_control(square))
    assert np.array_equal(end.control, to_control(circle))
    # luna's own scale 0.5; sun has none, so the profile's 1.5.
    assert (start.cnet_scale, end.cnet_scale) == (0.5, 1.5)
    middle = renderer.frame_input(luna, sun, 0.25)
    assert middle.cnet_scale == pytest.approx(0.75)
    assert middle.control is not None
    assert np.array_equal(middle.control, to_control(crossfade(square, circle, 0.25)))
    assert not np.array_equal(middle.control, start.control)
    assert same_input(start, renderer.frame_input(luna, luna, 0.0))
    wanted = renderer.keyframe_recipe(luna)
    assert (wanted["controlnet"], wanted["mask"], wanted["cnet_scale"]) == (
        "tiny-random", "square", 0.5)
    assert renderer.keyframe_recipe(sun)["cnet_scale"] == 1.5
    picture = renderer.render([start])[0]
    assert picture.size == (SIZE, SIZE)
