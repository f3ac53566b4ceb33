"""Contact sheets and sweep grids: many candidate images on one labelled picture.

`explore` renders a prompt with many seeds (or one seed with several settings) and the
artist picks by eye; every tile carries its label in a band of its own, in a font scaled
to the tiles so even 64x64 previews stay readable.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

from sdmorph.core.errors import SdmorphError

GAP = 4  # pixels between tiles and around the sheet
MIN_FONT = 12
MAX_FONT = 40
BACKGROUND = (24, 24, 24)
BAND = (0, 0, 0)
TEXT = (255, 255, 255)
HEADER = (48, 48, 48)
MISSING = (90, 90, 90)
SWEEP_FORM = "KEY=V1,V2,... (e.g. guidance_scale=5,7.5,10 or pipe_kwargs.num_inference_steps=20,30)"
MAX_SWEEP_KEYS = 2
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def label_font_size(tile_height: int) -> int:
    """Label font size for tiles of this height: grows with the tiles, never unreadable."""
    return max(MIN_FONT, min(MAX_FONT, round(tile_height / 8)))


def label_band_height(tile_height: int) -> int:
    """Height of the label band drawn with tiles of this height."""
    size = label_font_size(tile_height)
    return _font(size).getbbox("Ag0")[3] + 2 * _pad(size)


def contact_sheet(
    images: Sequence[tuple[str, Image.Image]], columns: int | None = None
) -> Image.Image:
    """A grid of tiles, each with its label in a band underneath, in reading order.

    `columns` defaults to a near-square grid and is capped at the number of images. Tiles
    of different sizes are centred in cells of the largest size; a cell is widened if its
    label would not fit.
    """
    if not images:
        raise SdmorphError("no images to put on the contact sheet")
    if columns is not None and columns < 1:
        raise SdmorphError(f"contact sheet columns must be at least 1, not {columns}")
    cols = min(columns or math.ceil(math.sqrt(len(images))), len(images))
    rows = math.ceil(len(images) / cols)
    tile_w = max(img.width for _, img in images)
    tile_h = max(img.height for _, img in images)
    font = _font(label_font_size(tile_h))
    band = label_band_height(tile_h)
    pad = _pad(label_font_size(tile_h))
    cell_w = max(tile_w, *(_text_width(font, label) + 2 * pad for label, _ in images))
    size = (cols * (cell_w + GAP) + GAP, rows * (tile_h + band + GAP) + GAP)
    sheet = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for index, (label, img) in enumerate(images):
        x = GAP + (index % cols) * (cell_w + GAP)
        y = GAP + (index // cols) * (tile_h + band + GAP)
        _paste_centred(sheet, img, (x, y, x + cell_w, y + tile_h))
        box = (x, y + tile_h, x + cell_w, y + tile_h + band)
        _label(draw, box, label, font, BAND)
    return sheet


def sweep_grid(
    cells: Mapping[tuple[str, str], Image.Image],
    row_values: Sequence[str],
    col_values: Sequence[str],
    row_key: str,
    col_key: str,
    title: str = "",
) -> Image.Image:
    """A grid of `cells[(row_value, col_value)]` with a header row and a header column.

    The column key is written above the column headers, the row key in the corner above
    the row headers, an optional title above everything. A missing cell is drawn as a grey
    tile marked "missing". For a one-key sweep use `sweep_row`.
    """
    if not row_values or not col_values:
        raise SdmorphError("a sweep grid needs at least one row value and one column value")
    present = list(cells.values())
    tile_w = max((img.width for img in present), default=64)
    tile_h = max((img.height for img in present), default=64)
    size = label_font_size(tile_h)
    font, pad, band = _font(size), _pad(size), label_band_height(tile_h)
    cell_w = max(tile_w, *(_text_width(font, str(v)) + 2 * pad for v in col_values))
    head_w = max(_text_width(font, str(v)) + 2 * pad for v in [row_key, *row_values])
    grid_w = len(col_values) * (cell_w + GAP) + GAP
    top = (band if title else 0) + 2 * band
    key_w = _text_width(font, col_key) + 2 * pad
    width = max(head_w + max(grid_w, key_w), _text_width(font, title) + 2 * pad)
    sheet = Image.new("RGB", (width, top + len(row_values) * (tile_h + GAP) + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        _label(draw, (0, 0, width, band), title, font, BACKGROUND)
    _label(draw, (head_w, top - 2 * band, width, top - band), col_key, font, HEADER)
    _label(draw, (0, top - band, head_w, top), row_key, font, HEADER)
    for c, col in enumerate(col_values):
        x = head_w + GAP + c * (cell_w + GAP)
        _label(draw, (x, top - band, x + cell_w, top), str(col), font, BAND)
    for r, row in enumerate(row_values):
        y = top + GAP + r * (tile_h + GAP)
        mid = y + tile_h // 2
        _label(draw, (0, mid - band // 2, head_w, mid - band // 2 + band), str(row), font, BAND)
        for c, col in enumerate(col_values):
            x = head_w + GAP + c * (cell_w + GAP)
            img = cells.get((row, col))
            if img is None:
                _label(draw, (x, y, x + cell_w, y + tile_h), "missing", font, MISSING)
            else:
                _paste_centred(sheet, img, (x, y, x + cell_w, y + tile_h))
    return sheet


def sweep_row(
    cells: Mapping[str, Image.Image], values: Sequence[str], key: str, title: str = ""
) -> Image.Image:
    """A one-key sweep: a single row, named by the key, with one column per value."""
    keyed = {(key, value): img for value, img in cells.items()}
    return sweep_grid(keyed, [key], values, "", key, title)


def parse_sweep(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Parse `KEY=V1,V2,...` specs (at most two: rows, then columns); values stay strings."""
    parsed: list[tuple[str, list[str]]] = []
    for spec in specs:
        key, sep, rest = spec.partition("=")
        key = key.strip()
        values = [v.strip() for v in rest.split(",")]
        if not sep or not _KEY.fullmatch(key) or not all(values):
            raise SdmorphError(f"bad sweep {spec!r}: expected {SWEEP_FORM}")
        if len(set(values)) != len(values):
            raise SdmorphError(f"bad sweep {spec!r}: a value is repeated; expected {SWEEP_FORM}")
        if key in (k for k, _ in parsed):
            raise SdmorphError(f"bad sweep {spec!r}: key {key!r} is swept twice")
        parsed.append((key, values))
    if len(parsed) > MAX_SWEEP_KEYS:
        keys = ", ".join(k for k, _ in parsed)
        raise SdmorphError(
            f"at most {MAX_SWEEP_KEYS} sweep keys (rows x columns) can be shown, got {keys}"
        )
    return parsed


@functools.lru_cache(maxsize=16)
def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _pad(font_size: int) -> int:
    return max(2, font_size // 4)


def _text_width(font: Font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(math.ceil(right - left))


def _paste_centred(sheet: Image.Image, img: Image.Image, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    tile = img if img.mode == "RGB" else img.convert("RGB")
    sheet.paste(tile, (x0 + (x1 - x0 - tile.width) // 2, y0 + (y1 - y0 - tile.height) // 2))


def _label(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    text: str,
    font: Font,
    fill: tuple[int, int, int],
) -> None:
    """Fill `box` and centre `text` in it."""
    x0, y0, x1, y1 = box
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    if not text:
        return
    left, top, right, bottom = font.getbbox(text)
    x = x0 + (x1 - x0 - (right - left)) / 2 - left
    y = y0 + (y1 - y0 - (bottom - top)) / 2 - top
    draw.text((x, y), text, font=font, fill=TEXT)
