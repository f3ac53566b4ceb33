"""ControlNet conditioning images: finding, loading, cross-fading masks (no torch here).

Masks live in `<meta_dir>/<song>/masks/` as `<name>.png`, or `<name>.svg` (white shapes on
transparent, rasterised white on black). PNG masks stay RGBA as the old scripts kept them:
the alpha channel is dropped only when the picture becomes the ControlNet input, the way
diffusers converts images to RGB.
"""

from __future__ import annotations

import io
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import resvg_py
from PIL import Image

from sdmorph.core.errors import Problem, SdmorphError, SongError
from sdmorph.formats.fsio import inside
from sdmorph.formats.song import Song

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


def load_mask(path: Path, width: int, height: int, root: Path | None = None) -> Image.Image:
    """The mask as an RGBA image of exactly width x height (stretched to fit, like the old
    scripts' masks that were drawn at another size).

    An SVG may embed pictures by `href`; only `data:` URIs and files inside `root` (default:
    the SVG's folder) are allowed, so a song's mask can never read other files on the machine.
    """
    if path.suffix.lower() == ".svg":
        image = _rasterise(path, width, height, root or path.parent)
    else:
        image = _open(path)
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


def _rasterise(path: Path, width: int, height: int, root: Path) -> Image.Image:
    """Render an SVG at least width x height, white shapes composited on opaque black."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        _check_references(text, path, root)
        # Rendered straight into a box of twice the target size: an SVG declaring an absurd
        # size (100000 px) can then never allocate gigabytes.
        drawn = _svg_png(text, path, 2 * width, 2 * height)
    except (OSError, ValueError, UnicodeDecodeError, Image.DecompressionBombError) as exc:
        raise SongError(Problem(f"mask does not render as an SVG ({exc})", file=path)) from None
    canvas = Image.new("RGBA", drawn.size, (0, 0, 0, 255))
    canvas.alpha_composite(drawn.convert("RGBA"))
    return canvas


def _check_references(text: str, path: Path, root: Path) -> None:
    """Refuse an SVG whose `href`s point at files outside `root` (absolute, `../`, URLs).

    The attributes are read with an XML parser rather than a pattern, so character and
    entity references cannot hide a path from the check.
    """
    try:
        tree = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise SongError(Problem(f"mask does not parse as SVG ({exc})", file=path)) from None
    for element in tree.iter():
        for key, value in element.attrib.items():
            if key.rsplit("}", 1)[-1] != "href":
                continue
            ref = value.strip()
            if not ref or ref.startswith("#") or ref.lower().startswith("data:"):
                continue
            try:
                inside(root, path.parent / ref)
            except SdmorphError:
                raise SongError(Problem(
                    f"mask refers to '{ref[:80]}' outside {root}; embed the picture as a"
                    " data: URI or put it in the masks folder", file=path)) from None


def _svg_png(text: str, path: Path, width: int, height: int) -> Image.Image:
    data = resvg_py.svg_to_bytes(svg_string=text, width=width, height=height,
                                 resources_dir=str(path.parent))
    with Image.open(io.BytesIO(bytes(data))) as image:
        image.load()
        return image.copy()


# ---------------------------------------------------------------- a song's masks


def mask_problems(song: Song, decode: bool = True) -> list[Problem]:
    """Every prompt's mask (or the song-wide one) must exist and decode in ControlNet songs."""
    if not song.profile.controlnet:
        return []
    problems: list[Problem] = []
    seen: dict[str, Path | None] = {}
    for prompt in song.prompts.values():
        name = song.mask_name(prompt)
        column = "mask" if prompt.mask else None
        if name is None:
            problems.append(Problem("ControlNet song: no mask for this prompt and no mask_image "
                                    "in the settings", song.sheet_path, prompt.row, "mask"))
            continue
        if name not in seen:
            found: list[Problem] = []
            seen[name] = _checked_mask(song, name, decode, found)
            problems += [_at_row(p, song, prompt.row, column) for p in found]
        elif seen[name] is None and column:
            problems.append(Problem(f"mask {name!r} not found in {song.masks_dir} "
                                    "(.png or .svg)", song.sheet_path, prompt.row, column))
    return problems


def _at_row(problem: Problem, song: Song, row: int, column: str | None) -> Problem:
    """Place a mask problem of a prompt's own mask at its sheet row and column."""
    if column is None or problem.row is not None or problem.file is not None:
        return problem
    return Problem(problem.message, song.sheet_path, row, column)


def _checked_mask(song: Song, name: str, decode: bool, problems: list[Problem]) -> Path | None:
    try:
        path = find_mask(song.masks_dir, name)
    except SdmorphError as exc:
        problems += exc.problems
        return None
    if path is None:
        if name == song.profile.mask_image:
            problems.append(Problem(f"song-wide mask {name!r} not found in {song.masks_dir} "
                                    "(.png or .svg)", song.settings_path))
        else:
            problems.append(Problem(f"mask {name!r} not found in {song.masks_dir} "
                                    "(.png or .svg)"))
        return None
    if decode:
        try:
            load_mask(path, song.profile.res_width, song.profile.res_height, song.masks_dir)
        except SdmorphError as exc:
            problems += exc.problems
    return path
