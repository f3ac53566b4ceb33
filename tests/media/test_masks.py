"""ControlNet masks: PNG and SVG files, fitted to the render size, cross-faded."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdmorph.core.errors import SongError
from sdmorph.media.masks import crossfade, find_mask, load_mask, to_control

# 200x100 drawing: the left half is a white square, the right half transparent.
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100">'
    '<rect x="0" y="0" width="100" height="100" fill="white"/></svg>'
)


@pytest.fixture
def masks(tmp_path: Path) -> Path:
    folder = tmp_path / "masks"
    (folder / "shapes").mkdir(parents=True)
    Image.new("RGBA", (96, 54), (255, 255, 255, 255)).save(folder / "shapes" / "square.png")
    (folder / "half.svg").write_text(SVG, encoding="utf-8")
    Image.new("L", (10, 10), 255).save(folder / "both.png")
    (folder / "both.svg").write_text(SVG, encoding="utf-8")
    return folder


def test_find_mask_png_then_svg_in_sub_folders(masks: Path) -> None:
    assert find_mask(masks, "shapes/square") == masks / "shapes" / "square.png"
    assert find_mask(masks, "shapes\\square") == masks / "shapes" / "square.png"
    assert find_mask(masks, "half") == masks / "half.svg"
    assert find_mask(masks, "both") == masks / "both.png"
    assert find_mask(masks, "half.svg") == masks / "half.svg"
    assert find_mask(masks, "gone") is None
    assert find_mask(masks, "shapes") is None  # a folder is not a mask
    assert find_mask(masks, "") is None


@pytest.mark.parametrize("name", ["../x", "shapes/../../secret", "/etc/passwd"])
def test_find_mask_refuses_paths_outside_the_masks_folder(masks: Path, name: str) -> None:
    (masks.parent / "x.png").write_bytes(b"")
    with pytest.raises(SongError, match="inside"):
        find_mask(masks, name)


def test_png_is_fitted_to_the_render_size_as_rgba(masks: Path) -> None:
    image = load_mask(masks / "shapes" / "square.png", 64, 48)
    assert image.size == (64, 48) and image.mode == "RGBA"
    assert np.asarray(image).min() == 255
    gray = load_mask(masks / "both.png", 16, 16)
    assert gray.mode == "RGBA" and gray.size == (16, 16)


def test_svg_is_rasterised_white_on_black(masks: Path) -> None:
    image = load_mask(masks / "half.svg", 64, 64)
    assert image.size == (64, 64) and image.mode == "RGBA"
    pixels = np.asarray(image)
    assert (pixels[:, :, 3] == 255).all()  # opaque: transparent parts became black
    assert (pixels[:, :28, :3] == 255).all()
    assert (pixels[:, 36:, :3] == 0).all()


@pytest.mark.parametrize("name", ["broken.png", "broken.svg"])
def test_undecodable_mask_names_the_file(masks: Path, name: str) -> None:
    (masks / name).write_bytes(b"\x89PNG not really")
    with pytest.raises(SongError, match=name):
        load_mask(masks / name, 32, 32)


def test_crossfade_blends_rgba_with_weight_t() -> None:
    a = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
    b = Image.new("RGBA", (8, 8), (200, 100, 50, 255))
    assert crossfade(a, b, 0.0).tobytes() == a.tobytes()
    assert crossfade(a, b, 1.0).tobytes() == b.tobytes()
    assert crossfade(a, b, 0.5).getpixel((3, 3)) == (100, 50, 25, 255)


def test_to_control_drops_alpha_like_diffusers() -> None:
    image = Image.new("RGBA", (6, 4), (255, 255, 255, 0))
    image.putpixel((0, 0), (51, 102, 0, 255))
    control = to_control(image)
    assert control.shape == (4, 6, 3) and control.dtype == np.float32
    assert control[1, 1].tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(control[0, 0], [0.2, 0.4, 0.0])


def _image_svg(href: str, prolog: str = "") -> str:
    return (f'{prolog}<svg xmlns="http://www.w3.org/2000/svg" '
            'xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10">'
            f'<image xlink:href="{href}" width="10" height="10"/></svg>')


@pytest.fixture
def outside_png(tmp_path: Path) -> Path:
    path = tmp_path / "secret.png"
    Image.new("RGB", (10, 10), (255, 0, 0)).save(path)
    return path


@pytest.mark.parametrize("kind", ["absolute", "relative", "escaped", "entity"])
def test_svg_may_not_read_pictures_outside_the_masks_folder(
        masks: Path, outside_png: Path, kind: str) -> None:
    absolute = str(outside_png)
    svg = {
        "absolute": _image_svg(absolute),
        "relative": _image_svg("../../secret.png"),
        "escaped": _image_svg(absolute.replace("/", "&#47;")),
        "entity": _image_svg("&p;", f'<!DOCTYPE svg [<!ENTITY p "{absolute}">]>'),
    }[kind]
    (masks / "shapes" / "leak.svg").write_text(svg, encoding="utf-8")
    with pytest.raises(SongError, match=r"leak\.svg.*outside"):
        load_mask(masks / "shapes" / "leak.svg", 10, 10, masks)


def test_svg_may_embed_data_uris_and_pictures_in_the_masks_folder(masks: Path) -> None:
    (masks / "shapes" / "uses_square.svg").write_text(_image_svg("square.png"), encoding="utf-8")
    inner = load_mask(masks / "shapes" / "uses_square.svg", 10, 10, masks)
    assert (np.asarray(inner)[5, 5, :3] > 240).all()  # the white square, drawn (resampled)
    (masks / "shapes" / "up.svg").write_text(_image_svg("../both.png"), encoding="utf-8")
    assert np.asarray(load_mask(masks / "shapes" / "up.svg", 10, 10, masks))[5, 5, 0] > 240
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 255, 255)).save(buffer, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    (masks / "data.svg").write_text(_image_svg(uri), encoding="utf-8")
    assert np.asarray(load_mask(masks / "data.svg", 10, 10))[5, 5, 0] == 255
