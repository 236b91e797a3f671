"""The kept-cells overlay marks exactly the kept cells, at any display size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from charmcli.cull.explain import cell_boxes, draw_kept_cells

GREY = (128, 128, 128)


def changed_mask(before: Image.Image, after: Image.Image) -> np.ndarray:
    a = np.asarray(before.convert("RGB"), dtype=np.int16)
    b = np.asarray(after.convert("RGB"), dtype=np.int16)
    return np.any(a != b, axis=2)


def test_same_size_marks_exactly_the_cells():
    cell = 28
    img = Image.new("RGB", (6 * cell, 4 * cell), GREY)
    kept = [(0, 0), (1, 2), (1, 3), (3, 5)]
    out = draw_kept_cells(img, kept, cell, img.size)
    assert out.size == img.size and out.mode == "RGB"
    expected = np.zeros((img.height, img.width), dtype=bool)
    for r, c in kept:
        expected[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = True
    np.testing.assert_array_equal(changed_mask(img, out), expected)
    # the outline is stronger than the fill: the cell's edge differs from its centre
    px = np.asarray(out)
    assert tuple(px[0, 0]) != tuple(px[cell // 2, cell // 2])


def test_scaled_display_with_padding_cells_clipped():
    """Tokenizer saw 150x100 (padded to 168x112 → 6x4 cells); the photo is shown at 300x200 (x2)."""
    img = Image.new("RGB", (300, 200), GREY)
    kept = [(0, 0), (2, 1), (3, 5)]  # (3, 5) lies partly in the padding
    out = draw_kept_cells(img, kept, 28, (150, 100))
    expected = np.zeros((200, 300), dtype=bool)
    for r, c in kept:
        expected[r * 56:min(200, (r + 1) * 56), c * 56:min(300, (c + 1) * 56)] = True
    np.testing.assert_array_equal(changed_mask(img, out), expected)


def test_non_integer_scale_tiles_without_gaps_or_spill():
    img = Image.new("RGB", (333, 217), GREY)
    rows, cols, cell, in_size = 4, 5, 28, (140, 112)
    every = [(r, c) for r in range(rows) for c in range(cols)]
    mask = changed_mask(img, draw_kept_cells(img, every, cell, in_size))
    assert mask.all()  # all cells kept: the whole picture is covered, no seams between cells
    boxes = cell_boxes(every, cell, in_size, img.size)
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes)
    assert area == img.width * img.height  # and no overlaps
    one = changed_mask(img, draw_kept_cells(img, [(1, 2)], cell, in_size))
    sx, sy = img.width / in_size[0], img.height / in_size[1]
    ys, xs = np.nonzero(one)
    assert xs.min() >= int(2 * cell * sx) and xs.max() < int(3 * cell * sx) + 1
    assert ys.min() >= int(1 * cell * sy) and ys.max() < int(2 * cell * sy) + 1


def test_no_cells_and_short_path_leave_the_image_alone():
    img = Image.new("RGB", (64, 48), GREY)
    out = draw_kept_cells(img, [], 28, (64, 48))
    assert out is not img and not changed_mask(img, out).any()
    with pytest.raises(ValueError):
        draw_kept_cells(img, [(0, 0)], 28, (0, 48))


def test_on_a_real_photo_keeps_mode_and_size(photos_dir):
    with Image.open(photos_dir / "exif_orientation" / "landscape_6.jpg") as im:
        photo = ImageOps.exif_transpose(im)
    photo.load()
    assert photo.size == (600, 450)
    out = draw_kept_cells(photo, [(0, 0), (15, 21)], 28, (600, 450))
    mask = changed_mask(photo, out)
    assert mask[:28, :28].any() and mask[420:448, 588:600].any()
    assert not mask[100:400, 100:500].any()
