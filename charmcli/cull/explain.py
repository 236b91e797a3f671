"""Show why Charm liked a photo: which 28-px cells it kept at full resolution.

Charm's multi-scale tokenizer keeps the highest-frequency cells (detail, texture, sharp edges)
at full resolution and downsamples the rest, so the kept cells are where the model looked
closely. The scorer reports them as ``(row, col)`` of ``cell_size`` (28) pixel cells in the
coordinates of the image the tokenizer saw (``input_size``, after the model's own pre-resize and
before padding to a multiple of 28). Drawing them over the photo, scaled to whatever size it is
shown at, makes that visible; it is not a saliency map of the score itself.

Pass the photo oriented the way it was scored (EXIF orientation applied, as the default decode
policy does), otherwise the cells land on the wrong part of the picture.
"""

from __future__ import annotations

from collections.abc import Iterable

from PIL import Image, ImageDraw

DEFAULT_COLOR = (255, 196, 0)  #: amber: visible on skies, foliage and skin alike


def cell_boxes(
    kept_cells: Iterable[tuple[int, int]],
    cell_size: int,
    input_size: tuple[int, int],
    image_size: tuple[int, int],
) -> list[tuple[int, int, int, int]]:
    """Pixel boxes ``(x0, y0, x1, y1)`` (end-exclusive) of the kept cells on an image of ``image_size``.

    Cell edges are scaled and rounded independently of the cell, so neighbouring cells share their
    edge exactly (no gaps, no overlap). Cells are clipped to the image: the tokenizer pads the
    input up to a multiple of 28, so edge cells can extend past it; cells wholly outside are dropped.
    """
    in_w, in_h = input_size
    out_w, out_h = image_size
    if in_w <= 0 or in_h <= 0 or cell_size <= 0:
        raise ValueError(f"bad geometry: input_size={input_size}, cell_size={cell_size}")
    sx, sy = out_w / in_w, out_h / in_h
    boxes = []
    for row, col in kept_cells:
        x0 = min(out_w, max(0, round(col * cell_size * sx)))
        x1 = min(out_w, max(0, round((col + 1) * cell_size * sx)))
        y0 = min(out_h, max(0, round(row * cell_size * sy)))
        y1 = min(out_h, max(0, round((row + 1) * cell_size * sy)))
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1, y1))
    return boxes


def draw_kept_cells(
    image: Image.Image,
    kept_cells: Iterable[tuple[int, int]],
    cell_size: int = 28,
    input_size: tuple[int, int] | None = None,
    *,
    color: tuple[int, int, int] = DEFAULT_COLOR,
    fill_alpha: int = 72,
    outline_alpha: int = 230,
    outline_width: int | None = None,
) -> Image.Image:
    """A copy of ``image`` (RGB) with the kept cells tinted and outlined; pixels elsewhere unchanged.

    ``input_size`` is ``ScoreResult.input_size`` (W, H); None means the image is that size. The
    outline (default: about 1/14 of a cell, at least 1 px) is drawn inside each cell so that the
    overlay never spills onto pixels that were not kept.
    """
    base = image.convert("RGBA")
    boxes = cell_boxes(kept_cells, cell_size, input_size or image.size, image.size)
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for x0, y0, x1, y1 in boxes:
        side = min(x1 - x0, y1 - y0)
        width = outline_width if outline_width is not None else max(1, round(side / 14))
        width = max(0, min(width, (side + 1) // 2))
        # ImageDraw replaces pixels on the overlay (no blending), so touching cells stay uniform.
        draw.rectangle(
            (x0, y0, x1 - 1, y1 - 1),
            fill=(*color, fill_alpha),
            outline=(*color, outline_alpha) if width else None,
            width=width,
        )
    return Image.alpha_composite(base, overlay).convert("RGB")
