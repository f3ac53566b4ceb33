"""Contact sheets and sweep grids: tiles where they belong, labels actually drawn."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdmorph.core.errors import SdmorphError
from sdmorph.media.contact_sheet import (
    GAP,
    contact_sheet,
    label_band_height,
    parse_sweep,
    sweep_grid,
    sweep_row,
)


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.new("RGB", size, colour)


def bbox_of(image: Image.Image, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) of the pixels exactly of `colour`."""
    ys, xs = np.nonzero(np.all(np.asarray(image) == colour, axis=-1))
    assert xs.size, f"colour {colour} not found"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def distinct_colours(region: Image.Image) -> int:
    return len(np.unique(np.asarray(region).reshape(-1, 3), axis=0))


COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250)]


def test_contact_sheet_size_and_tile_positions():
    tiles = [(str(seed), solid(c)) for seed, c in zip(range(5), COLOURS, strict=True)]
    sheet = contact_sheet(tiles, columns=3)
    band = label_band_height(64)
    assert sheet.size == (3 * (64 + GAP) + GAP, 2 * (64 + band + GAP) + GAP)
    for index, colour in enumerate(COLOURS):
        x = GAP + (index % 3) * (64 + GAP)
        y = GAP + (index // 3) * (64 + band + GAP)
        assert bbox_of(sheet, colour) == (x, y, x + 64, y + 64)


def test_contact_sheet_labels_are_drawn_in_the_band_under_each_tile():
    tiles = [("1234", solid(COLOURS[0])), ("", solid(COLOURS[1]))]
    sheet = contact_sheet(tiles, columns=2)
    band = label_band_height(64)
    assert band >= 14  # large enough to read at 64x64
    labelled = sheet.crop((GAP, GAP + 64, GAP + 64, GAP + 64 + band))
    unlabelled = sheet.crop((2 * GAP + 64, GAP + 64, 2 * GAP + 128, GAP + 64 + band))
    assert distinct_colours(labelled) > 2
    assert distinct_colours(unlabelled) == 1


def test_long_labels_widen_small_tiles_instead_of_being_cut():
    seed = "5842234013956479"
    sheet = contact_sheet([(seed, solid(COLOURS[0]))])
    assert sheet.width > 64 + 2 * GAP
    band = sheet.crop((0, GAP + 64, sheet.width, GAP + 64 + label_band_height(64)))
    ink = np.nonzero(np.asarray(band.convert("L")) > 128)[1]
    assert ink.min() > GAP and ink.max() < sheet.width - GAP


def test_contact_sheet_default_columns_and_mixed_tile_sizes():
    tiles = [(str(i), solid(COLOURS[i % 5], (32 + 8 * i, 48))) for i in range(9)]
    sheet = contact_sheet(tiles)
    band = label_band_height(48)
    assert sheet.height == 3 * (48 + band + GAP) + GAP
    assert contact_sheet(tiles[:2], columns=10).width == contact_sheet(tiles[:2], columns=2).width


def test_label_font_grows_with_tiles():
    assert label_band_height(512) > label_band_height(64)


@pytest.mark.parametrize("columns", [0, -1])
def test_contact_sheet_rejects_bad_columns(columns):
    with pytest.raises(SdmorphError, match="columns"):
        contact_sheet([("1", solid(COLOURS[0]))], columns=columns)


def test_contact_sheet_needs_images():
    with pytest.raises(SdmorphError, match="no images"):
        contact_sheet([])


ROWS = ["5", "7.5", "10"]
COLS = ["0.5", "1.0"]


def grid_cells() -> dict[tuple[str, str], Image.Image]:
    return {
        (r, c): solid((40 + 70 * i, 30 + 100 * j, 7))
        for i, r in enumerate(ROWS)
        for j, c in enumerate(COLS)
    }


def test_sweep_grid_places_each_cell_by_row_and_column_value():
    cells = grid_cells()
    grid = sweep_grid(cells, ROWS, COLS, "guidance_scale", "cnet_scale", title="luna 1234")
    boxes = {key: bbox_of(grid, img.getpixel((0, 0))) for key, img in cells.items()}
    for (r, c), (x0, y0, x1, y1) in boxes.items():
        assert (x1 - x0, y1 - y0) == (64, 64)
        i, j = ROWS.index(r), COLS.index(c)
        if i:
            assert y0 == boxes[(ROWS[i - 1], c)][3] + GAP
            assert x0 == boxes[(ROWS[i - 1], c)][0]
        if j:
            assert x0 == boxes[(r, COLS[j - 1])][2] + GAP
            assert y0 == boxes[(r, COLS[j - 1])][1]
    assert grid.size[0] - boxes[("10", "1.0")][2] <= GAP
    assert grid.size[1] - boxes[("10", "1.0")][3] == GAP


def test_sweep_grid_draws_headers_and_keys():
    cells = grid_cells()
    grid = sweep_grid(cells, ROWS, COLS, "guidance_scale", "cnet_scale", title="luna 1234")
    first = bbox_of(grid, cells[(ROWS[0], COLS[0])].getpixel((0, 0)))
    band = label_band_height(64)
    for j in range(len(COLS)):
        x0 = first[0] + j * (64 + GAP)
        assert distinct_colours(grid.crop((x0, first[1] - band - GAP, x0 + 64, first[1]))) > 2
    for i in range(len(ROWS)):
        y0 = first[1] + i * (64 + GAP)
        assert distinct_colours(grid.crop((0, y0, first[0] - GAP, y0 + 64))) > 2
    key_bands = grid.crop((0, 0, grid.width, first[1] - band - GAP))
    assert distinct_colours(key_bands) > 3
    plain = sweep_grid(cells, ROWS, COLS, "guidance_scale", "cnet_scale")
    assert plain.height == grid.height - band


def test_sweep_grid_marks_missing_cells():
    cells = grid_cells()
    missing = cells.pop(("7.5", "1.0"))
    grid = sweep_grid(cells, ROWS, COLS, "g", "c")
    above = bbox_of(grid, cells[("5", "1.0")].getpixel((0, 0)))
    hole = grid.crop((above[0], above[3] + GAP, above[2], above[3] + GAP + 64))
    assert list(missing.getpixel((0, 0))) not in np.asarray(hole).reshape(-1, 3).tolist()
    assert distinct_colours(hole) > 2


def test_sweep_row_is_one_row_named_by_the_key():
    cells = {"20": solid(COLOURS[0]), "30": solid(COLOURS[1])}
    grid = sweep_row(cells, ["20", "30"], "pipe_kwargs.num_inference_steps")
    a, b = bbox_of(grid, COLOURS[0]), bbox_of(grid, COLOURS[1])
    assert a[1] == b[1] and b[0] == a[2] + GAP
    assert grid.height == 2 * label_band_height(64) + 64 + 2 * GAP
    assert distinct_colours(grid.crop((0, a[1], a[0] - GAP, a[3]))) > 2


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        ([], []),
        (["guidance_scale=5,7.5,10"], [("guidance_scale", ["5", "7.5", "10"])]),
        (
            [" pipe_kwargs.controlnet_conditioning_scale = 0.5, 1 ", "seed=1,2"],
            [("pipe_kwargs.controlnet_conditioning_scale", ["0.5", "1"]), ("seed", ["1", "2"])],
        ),
        (["steps=30"], [("steps", ["30"])]),
    ],
)
def test_parse_sweep_good(specs, expected):
    assert parse_sweep(specs) == expected


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["guidance_scale"], "expected KEY=V1,V2"),
        (["=1,2"], "expected KEY=V1,V2"),
        (["guidance_scale="], "expected KEY=V1,V2"),
        (["guidance_scale=1,,2"], "expected KEY=V1,V2"),
        (["pipe_kwargs..x=1"], "expected KEY=V1,V2"),
        (["1abc=1"], "expected KEY=V1,V2"),
        (["a=1,1"], "repeated"),
        (["a=1", "a=2"], "twice"),
        (["a=1", "b=2", "c=3"], "at most 2"),
    ],
)
def test_parse_sweep_bad(specs, message):
    with pytest.raises(SdmorphError, match=message) as info:
        parse_sweep(specs)
    assert "\n" not in str(info.value)
