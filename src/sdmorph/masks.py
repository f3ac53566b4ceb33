"""ControlNet conditioning images: finding, loading, cross-fading masks (no torch here).

Masks live in `<meta_dir>/<song>/masks/` as `<name>.png`, or `<name>.svg` (white shapes on
transparent, rasterised white on black). PNG masks stay RGBA as the old scripts kept them:
the alpha channel is dropped only when the picture becomes the ControlNet input, the way
diffusers converts images to RGB.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import resvg_py
from PIL import Image

from sdmorph.errors import Problem, SdmorphError, SongError
from sdmorph.fsio import inside

MASK_SUFFIXES = (".png", ".svg")


def find_mask(masks_dir: Path, name: str) -> Path | None:
    """`<masks_dir>/<name>.png`, else `.svg`; None if neither exists.

    `name` may hold sub-folders (`shapes/square`, also written with backslashes) but may not
    leave `masks_dir`.
    """
    clean = name.strip().replace("\\", "/")
    if not clean:
        return None
    names = [clean] if clean.lower().endswith(MASK_SUFFIXES) else []
    names += [clean + suffix for suffix in MASK_SUFFIXES]
    for candidate in names:
        path = masks_dir / candidate
        try:
            inside(masks_dir, path)
            if path.is_file():
                return path
        except SdmorphError:
            raise SongError(
                f"mask '{name}': must name a file inside {masks_dir} (like shapes/square)"
            ) from None
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise SongError(f"mask '{name[:60]}...': not a usable file name ({exc.strerror})"
                            ) from None
    return None


def load_mask(path: Path, width: int, height: int) -> Image.Image:
    """The mask as an RGBA image of exactly width x height (stretched to fit, like the old
    scripts' masks that were drawn at another size)."""
    image = _rasterise(path, width, height) if path.suffix.lower() == ".svg" else _open(path)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def crossfade(a: Image.Image, b: Image.Image, t: float) -> Image.Image:
    """RGBA blend of two masks: `a` at t=0, `b` at t=1, as transitions fade masks."""
    a_rgba, b_rgba = a.convert("RGBA"), b.convert("RGBA")
    if b_rgba.size != a_rgba.size:
        b_rgba = b_rgba.resize(a_rgba.size, Image.Resampling.LANCZOS)
    return Image.blend(a_rgba, b_rgba, float(t))


def to_control(image: Image.Image) -> np.ndarray:
    """The ControlNet input: (H, W, 3) float32 in [0, 1], alpha dropped as diffusers does."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGBA")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SongError(Problem(f"mask does not decode as an image ({exc})", file=path)) from None


def _rasterise(path: Path, width: int, height: int) -> Image.Image:
    """Render an SVG at least width x height, white shapes composited on opaque black."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        # Rendered straight into a box of twice the target size: an SVG declaring an absurd
        # size (100000 px) can then never allocate gigabytes.
        drawn = _svg_png(text, path, 2 * width, 2 * height)
    except (OSError, ValueError, UnicodeDecodeError, Image.DecompressionBombError) as exc:
        raise SongError(Problem(f"mask does not render as an SVG ({exc})", file=path)) from None
    canvas = Image.new("RGBA", drawn.size, (0, 0, 0, 255))
    canvas.alpha_composite(drawn.convert("RGBA"))
    return canvas


def _svg_png(text: str, path: Path, width: int, height: int) -> Image.Image:
    data = resvg_py.svg_to_bytes(svg_string=text, width=width, height=height,
                                 resources_dir=str(path.parent))
    with Image.open(io.BytesIO(bytes(data))) as image:
        image.load()
        return image.copy()
