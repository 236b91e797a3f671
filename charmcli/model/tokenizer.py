"""The Charm tokenizer: an image tensor in, a sequence of 14 px tokens out.

This re-implements the behaviour of the official ``Charm_Tokenizer.preprocess`` of
``charm-tokenizer==1.0.17`` with ``patch_selection='frequency'``, ``scales=2``, ``factor=0.5``
and ``without_pad_or_dropping=True``, vectorised (no Python loop over patches).

Two paths, chosen by the number of 14 px patches the image needs:

* **short path** (``ceil(H/14) * ceil(W/14) <= budget``): zero-pad right/bottom to multiples
  of 14 and emit every 14 px patch in row-major order;
* **multi-scale path**: pad or crop to multiples of 28, score every 28 px cell by its
  high-frequency content, keep the 64 best at full resolution (4 tokens each), and downscale
  every other cell to one 14 px token (bicubic).

The quirks that decide which pixels go where are reproduced on purpose, because the published
weights were trained with them:

* the frequency metric is the mean of ``20*log10|fftshift(fft2(cell))|`` over the whole
  3x28x28 cell computed with ``torch.fft`` in float32, so any exact zero in the spectrum
  (flat cells, zero padding) gives ``-inf``;
* selection is a *stable* ascending sort, the last 64 kept, so among ties the higher cell
  indices win;
* high-resolution tokens are emitted cell by cell (TL, TR, BL, BR) but their position rows are
  taken from the fine grid in *fine-grid row-major order*; the two orders differ whenever two
  kept cells share a 28 px row, and the k-th token simply gets the k-th row;
* position tables are interpolated with ``scale_factor=(rows + 0.1) / 37`` (not ``size=``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PATCH = 14  #: token side in pixels
CELL = 2 * PATCH  #: multi-scale cell side (a kept cell becomes 2x2 tokens)
NUM_HIGHRES_CELLS = 64  #: cells kept at full resolution on the multi-scale path
INTERPOLATE_OFFSET = 0.1  #: the official offset added to the grid size before interpolation


@dataclass
class Tokenized:
    """One image as the network sees it.

    ``tokens`` excludes the CLS slot; ``pos_embed`` includes the class row first, so
    ``len(pos_embed) == len(tokens) + 1``.
    """

    tokens: torch.Tensor  #: (L, 3, 14, 14) float32 pixel patches
    pos_embed: torch.Tensor  #: (L + 1, D) position rows, class row first
    scale_ids: torch.Tensor  #: (L,) int64: 0 low-resolution / short path, 1 high-resolution
    input_size: tuple[int, int]  #: (W, H) of the image the tokenizer worked on
    path: str  #: "short" or "multiscale"
    grid28: tuple[int, int] | None = None  #: (rows, cols) of 28 px cells (multi-scale only)
    kept_cells: torch.Tensor | None = None  #: (64,) ascending row-major cell indices kept at full res
    frequency: torch.Tensor | None = None  #: (rows*cols,) frequency metric per cell

    @property
    def num_tokens(self) -> int:
        """Sequence length including the CLS slot (the official ``N``)."""
        return int(self.tokens.shape[0]) + 1

    def kept_cells_rc(self) -> list[tuple[int, int]]:
        """Kept 28 px cells as (row, col), for drawing which regions stayed at full resolution."""
        if self.kept_cells is None or self.grid28 is None:
            return []
        cols = self.grid28[1]
        return [(int(i) // cols, int(i) % cols) for i in self.kept_cells.tolist()]


class PositionTable:
    """A square DINOv2 position table, interpolated on demand to each image's grid.

    Interpolated grids are cached (LRU) because photo libraries repeat a handful of sizes.
    """

    def __init__(self, table: torch.Tensor, cache_size: int = 32) -> None:
        table = table.detach().float().reshape(-1, table.shape[-1])
        side = math.isqrt(table.shape[0] - 1)
        if side * side != table.shape[0] - 1:
            raise ValueError(
                f"position table has {table.shape[0]} rows; expected 1 + a square grid (e.g. 1 + 37*37)"
            )
        self.side = side
        self.dim = int(table.shape[1])
        self.cls = table[0].clone()
        # (1, D, side, side): the layout the official interpolation works on
        self._grid = table[1:].reshape(1, side, side, self.dim).permute(0, 3, 1, 2).contiguous()
        self._cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    def _scale(self, n: int) -> float:
        return float(n + INTERPOLATE_OFFSET) / float(self.side)

    def grid(self, rows: int, cols: int) -> torch.Tensor:
        """(rows*cols, D) position rows of a rows x cols grid, row-major."""
        key = (rows, cols)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        out = F.interpolate(
            self._grid,
            scale_factor=(self._scale(rows), self._scale(cols)),
            mode="bicubic",
            align_corners=False,
        )
        if out.shape[-2:] != (rows, cols):  # the official code asserts the same
            raise RuntimeError(f"position interpolation gave {tuple(out.shape[-2:])}, wanted {(rows, cols)}")
        out = out.permute(0, 2, 3, 1).reshape(rows * cols, self.dim)
        self._cache[key] = out
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

    def _axis_weights(self, n: int) -> torch.Tensor:
        """(n, side) bicubic weights along one axis, identical to the 2-D kernel's factors."""
        eye = torch.eye(self.side).reshape(1, 1, self.side, self.side)
        w = F.interpolate(eye, scale_factor=(self._scale(n), 1.0), mode="bicubic", align_corners=False)
        return w[0, 0]

    def points(self, rows: int, cols: int, index: torch.Tensor) -> torch.Tensor:
        """Position rows of selected cells (row-major ``index``) of a rows x cols grid.

        Bicubic interpolation is separable, so only the needed rows are computed: this keeps a
        native-resolution 24 MP photo (a fine grid of ~120k cells) cheap.
        """
        if rows * cols <= 16384:
            return self.grid(rows, cols)[index]
        wr = self._axis_weights(rows)[index // cols]  # (k, side)
        wc = self._axis_weights(cols)[index % cols]  # (k, side)
        return torch.einsum("ki,kj,dij->kd", wr, wc, self._grid[0])


def _pad_or_crop_28(image: torch.Tensor) -> torch.Tensor:
    """The official pad-or-crop to multiples of 28: the cheaper of the two in pixels, ties pad.

    An axis whose length is already a multiple counts 1 for both crop and pad (as officially).
    Where cropping would empty an axis (images under 28 px on a side, where the official code
    crashes), charm pads instead.
    """
    _, h, w = image.shape
    crop_w, crop_h = (w % CELL) or 1, (h % CELL) or 1
    pad_w = (CELL - w % CELL) % CELL if w % CELL else 1
    pad_h = (CELL - h % CELL) % CELL if h % CELL else 1
    if pad_w * pad_h > crop_w * crop_h and h >= CELL and w >= CELL:
        return image[:, : h - h % CELL, : w - w % CELL]
    return F.pad(image, (0, (-w) % CELL, 0, (-h) % CELL))


def _shift_index() -> torch.Tensor:
    """Flat (3*28*28) index that reads an unshifted spectrum in ``fftshift`` order (all 3 dims)."""
    c = torch.arange(3)[:, None, None]
    h = torch.arange(CELL)[None, :, None]
    w = torch.arange(CELL)[None, None, :]
    return ((((c - 1) % 3) * CELL + (h - PATCH) % CELL) * CELL + (w - PATCH) % CELL).reshape(-1)


_SHIFT = _shift_index()
_METRIC_CHUNK = 4096  #: cells per FFT batch: bounded memory (a 24 MP photo has ~31k cells)


def frequency_metric(cells: torch.Tensor) -> torch.Tensor:
    """Mean log-magnitude spectrum of each (3, 28, 28) cell, as the official code computes it.

    Batched over cells; bit-identical to the official per-cell loop on CPU (checked against the
    conformance fixtures), which matters because ties and ``-inf`` decide the selection.
    The official order is fft2 -> fftshift -> abs -> log -> mean; ``abs``/``log`` are elementwise,
    so they run first here and the shift becomes one gather of real values (the mean then sums
    the very same values in the very same order), in chunks to bound memory.
    """
    n = cells.shape[0]
    out = torch.empty(n, dtype=torch.float32)
    for start in range(0, n, _METRIC_CHUNK):
        spectrum = torch.view_as_real(torch.fft.fft2(cells[start : start + _METRIC_CHUNK]))
        # hypot(re, im) is what complex abs computes (same bits), but vectorised and threaded
        magnitude = torch.log10(torch.hypot(spectrum[..., 0], spectrum[..., 1])).mul_(20)
        del spectrum
        shifted = magnitude.reshape(magnitude.shape[0], -1)[:, _SHIFT]
        out[start : start + _METRIC_CHUNK] = shifted.mean(dim=1)
    return out


def _split(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, R*size, C*size) -> (R*C, 3, size, size) in row-major order.

    A uint8 image (0..255) comes out as float32 in [0, 1] (``x / 255``, as ``ToTensor``): the
    copy into cells is then done on bytes, and the conversion on the contiguous result.
    """
    c, h, w = image.shape
    r, k = h // size, w // size
    out = image.reshape(c, r, size, k, size).permute(1, 3, 0, 2, 4).reshape(r * k, c, size, size)
    if out.dtype == torch.uint8:
        return out.float().div_(255)
    return out


class CharmTokenizer:
    """Turns a (3, H, W) float image in [0, 1] into Charm tokens.

    ``budget`` is the official ``hidden_size``: 1025 for most training sets, 769 for tad66k and
    513 for ava (token count + 1 for CLS).
    """

    def __init__(self, pos_table: PositionTable, budget: int = 1025) -> None:
        self.pos = pos_table
        self.budget = budget

    def __call__(self, image: torch.Tensor) -> Tokenized:
        """``image``: (3, H, W) float in [0, 1], or uint8 in 0..255 (same tokens as ``x / 255``,
        cheaper: padding and cutting move bytes; any strides, e.g. a permuted HWC array)."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(image.shape)}")
        if image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError("image is empty")
        if image.dtype != torch.uint8:
            image = image.float()
        _, h, w = image.shape
        if math.ceil(h / PATCH) * math.ceil(w / PATCH) <= self.budget:
            return self._short(image)
        return self._multiscale(image)

    def _short(self, image: torch.Tensor) -> Tokenized:
        _, h, w = image.shape
        rows, cols = math.ceil(h / PATCH), math.ceil(w / PATCH)
        padded = F.pad(image, (0, cols * PATCH - w, 0, rows * PATCH - h))
        tokens = _split(padded, PATCH)
        pos = torch.cat([self.pos.cls[None], self.pos.grid(rows, cols)])
        return Tokenized(
            tokens=tokens,
            pos_embed=pos,
            scale_ids=torch.zeros(tokens.shape[0], dtype=torch.long),
            input_size=(w, h),
            path="short",
        )

    def _multiscale(self, image: torch.Tensor) -> Tokenized:
        _, h, w = image.shape
        image = _pad_or_crop_28(image)
        rows, cols = image.shape[1] // CELL, image.shape[2] // CELL
        cells = _split(image, CELL)  # (rows*cols, 3, 28, 28)
        n = cells.shape[0]

        metric = frequency_metric(cells)
        k = min(NUM_HIGHRES_CELLS, n)
        kept = torch.sort(metric, stable=True).indices[n - k :].sort().values
        is_kept = torch.zeros(n, dtype=torch.bool)
        is_kept[kept] = True

        low = F.interpolate(cells[~is_kept], size=(PATCH, PATCH), mode="bicubic", align_corners=False)
        # each kept cell -> its four 14 px quarters: top-left, top-right, bottom-left, bottom-right
        high = cells[kept].reshape(k, 3, 2, PATCH, 2, PATCH).permute(0, 2, 4, 1, 3, 5)
        high = high.reshape(4 * k, 3, PATCH, PATCH)

        coarse = self.pos.grid(rows, cols)[~is_kept]
        # fine-grid row-major order of the kept cells' quarters (the official pairing)
        fine_mask = is_kept.reshape(rows, cols).repeat_interleave(2, 0).repeat_interleave(2, 1)
        fine_index = fine_mask.flatten().nonzero().squeeze(1)
        fine = self.pos.points(2 * rows, 2 * cols, fine_index)

        return Tokenized(
            tokens=torch.cat([low, high]),
            pos_embed=torch.cat([self.pos.cls[None], coarse, fine]),
            scale_ids=torch.cat([torch.zeros(n - k, dtype=torch.long), torch.ones(4 * k, dtype=torch.long)]),
            input_size=(w, h),
            path="multiscale",
            grid28=(rows, cols),
            kept_cells=kept,
            frequency=metric,
        )
