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
  (flat cells, zero padding) gives ``-inf`` (which bins are exactly zero depends on the CPU's
  FFT kernels, see :func:`frequency_metric`);
* selection is a *stable* ascending sort, the last 64 kept, so among ties the higher cell
  indices win;
* high-resolution tokens are emitted cell by cell (TL, TR, BL, BR) but their position rows are
  taken from the fine grid in *fine-grid row-major order*; the two orders differ whenever two
  kept cells share a 28 px row, and the k-th token simply gets the k-th row;
* position tables are interpolated with ``scale_factor=(rows + 0.1) / 37`` (not ``size=``).
"""

from __future__ import annotations

import math
import threading
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
    route: str  #: "short" or "multiscale"
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

    Interpolated grids are cached (LRU) because photo libraries repeat a handful of sizes; the
    cache is thread-safe, so one table serves tokenizers running in several threads.
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
        self._lock = threading.Lock()  # the pipeline tokenizes in its decode threads

    def _scale(self, n: int) -> float:
        return float(n + INTERPOLATE_OFFSET) / float(self.side)

    def grid(self, rows: int, cols: int) -> torch.Tensor:
        """(rows*cols, D) position rows of a rows x cols grid, row-major."""
        key = (rows, cols)
        with self._lock:
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
        with self._lock:  # two threads may both compute a new grid; the values are the same
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


def _size_28(h: int, w: int) -> tuple[int, int]:
    """(H', W') after the official pad-or-crop to multiples of 28: the cheaper of the two in
    pixels, ties pad.

    An axis whose length is already a multiple counts 1 for both crop and pad (as officially).
    Where cropping would empty an axis (images under 28 px on a side, where the official code
    crashes), charm pads instead.
    """
    crop_w, crop_h = (w % CELL) or 1, (h % CELL) or 1
    pad_w = (CELL - w % CELL) % CELL if w % CELL else 1
    pad_h = (CELL - h % CELL) % CELL if h % CELL else 1
    if pad_w * pad_h > crop_w * crop_h and h >= CELL and w >= CELL:
        return h - h % CELL, w - w % CELL
    return h + (-h) % CELL, w + (-w) % CELL


def _shift_blocks() -> list[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """``fftshift`` over all three dims of (3, 28, 28) cells as 8 block copies (dst, src).

    Channels roll by 1 (3 // 2), rows and columns by 14; every block keeps unit inner stride.
    """
    channel = [((1, 3), (0, 2)), ((0, 1), (2, 3))]
    half = [((PATCH, CELL), (0, PATCH)), ((0, PATCH), (PATCH, CELL))]
    return [
        (
            (slice(None), slice(*dc), slice(*dh), slice(*dw)),
            (slice(None), slice(*sc), slice(*sh), slice(*sw)),
        )
        for dc, sc in channel
        for dh, sh in half
        for dw, sw in half
    ]


_SHIFT_BLOCKS = _shift_blocks()
_BAND_CELLS = 384  #: cells per working band: its spectra (~7 MB) stay in cache; bounded memory


_CELL_VALUES = 3 * CELL * CELL  #: values in one cell's spectrum
_GRAIN = 32768  #: ATen's elementwise grain: fewer values than this run in one thread
_VECTOR_STEP = 32  #: values per step of ATen's vector loop (2 vectors: 16 on AVX2, 32 on AVX-512)


def _rows_without_tails(n: int, threads: int) -> int:
    """The fewest cells >= ``n`` whose values split into thread shares of whole vector steps.

    ATen gives ``min(threads, ceil(values / grain))`` threads ``ceil(values / k)`` values each;
    a share that is not a whole number of vector steps ends in a scalar loop, whose ``hypot``
    can differ in the last bit from the vector one the official per-cell code uses.
    """
    rows = n
    for _ in range(64 * max(1, threads)):  # a few steps in practice; bounded to be safe
        total = rows * _CELL_VALUES
        shares = 1 if threads <= 1 or total < _GRAIN else min(threads, -(-total // _GRAIN))
        if total % shares == 0 and (total // shares) % _VECTOR_STEP == 0:
            return rows
        rows += 1
    return n  # not reached for any real thread count; tails then only risk a last-bit difference


def frequency_metric(cells: torch.Tensor) -> torch.Tensor:
    """Mean log-magnitude spectrum of each (3, 28, 28) float cell, as the official code computes it.

    The official code runs ``20 * log10(abs(fftshift(fft2(cell)))).mean()`` one cell at a time;
    ties and ``-inf`` (exact zeros in a spectrum) decide the selection, so this reproduces its
    bits rather than its value:

    * ``fft2`` of a batch gives each cell the bits it gets alone;
    * the official complex ``abs`` of a whole cell runs the vectorised kernel, which is
      ``hypot`` of the real and imaginary parts: a ``hypot`` of contiguous float copies of the
      parts gives the same bits;
    * elementwise kernels fall back to a scalar loop (other bits) on the tail of each thread's
      share of the elements that does not fill a whole step of the vector loop; the official
      2,352-element cell has no such tail on AVX2, so the batch is padded with empty cells until
      every share is a whole number of steps (:func:`_rows_without_tails`);
    * ``fftshift`` is then 8 block copies of the magnitudes, and ``mean`` sums the very same
      values in the very same order.

    The bits also depend on the machine, for the official code as much as for this one: torch's
    CPU FFT is oneMKL's, which runs its AVX-512 or AVX2 DFT kernels on Intel CPUs and its generic
    ones on AMD (or on any x86 CPU under ``MKL_CBWR=COMPATIBLE``). The kernels differ in the last
    bits, so near-zero bins turn into exact zeros (``-inf``) on one and not on another, and now and
    then a kept cell changes; on 16 test photos one cell in ~1,000 kept cells did. What holds on
    every CPU is that this function equals the official per-cell code run in the same process; the
    conformance fixtures come from an AMD machine and the tests pin the generic path to reproduce
    them (``tests/conftest.py``). Production leaves MKL on AUTO: its CNR mode is process-wide and
    fixed at MKL's first call, and the generic path makes the network's matrix products 2-4x
    slower. Set ``MKL_CBWR=COMPATIBLE`` before starting charm for CPU-independent tokens (e.g. a
    cluster of mixed CPUs, or a GPU run where the network does not use MKL).

    Call it on bounded batches (see :data:`_BAND_CELLS`).
    """
    n = cells.shape[0]
    spectrum = torch.view_as_real(torch.fft.fft2(cells))
    rows = _rows_without_tails(n, torch.get_num_threads())
    parts = torch.empty(2, rows, 3, CELL, CELL)
    parts[:, n:] = 0
    parts[0, :n] = spectrum[..., 0]
    parts[1, :n] = spectrum[..., 1]
    del spectrum
    magnitude = torch.hypot(parts[0], parts[1], out=parts[0])
    shifted = parts[1]  # free again: reuse it
    for dst, src in _SHIFT_BLOCKS:
        shifted[:n][dst] = magnitude[:n][src]
    shifted = torch.log10(shifted, out=shifted).mul_(20)
    return shifted[:n].reshape(n, -1).mean(dim=1)


def _split(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, R*size, C*size) -> (R*C, 3, size, size) in row-major order, in one copy.

    A uint8 image (0..255) comes out as float32 in [0, 1] (``x / 255``, as ``ToTensor``): the
    bytes are read through a strided view and divided straight into the cells.
    """
    c, h, w = image.shape
    r, k = h // size, w // size
    view = image.reshape(c, r, size, k, size).permute(1, 3, 0, 2, 4)
    if view.dtype != torch.uint8:
        return view.reshape(r * k, c, size, size)
    out = torch.empty(r, k, c, size, size)
    torch.div(view, 255, out=out)
    return out.reshape(r * k, c, size, size)


def _band(image: torch.Tensor, r0: int, r1: int, size: tuple[int, int]) -> torch.Tensor:
    """28 px cell rows ``r0:r1`` of the padded-or-cropped image as (n, 3, 28, 28) float cells.

    Only this band is padded or cropped, so the whole image is never copied.
    """
    _, h, w = image.shape
    wp = size[1]
    top, bottom = r0 * CELL, r1 * CELL
    band = image[:, top : min(bottom, h), : min(w, wp)]
    pad_bottom, pad_right = bottom - top - band.shape[1], wp - band.shape[2]
    if pad_bottom or pad_right:
        band = F.pad(band, (0, pad_right, 0, pad_bottom))
    return _split(band, CELL)


def _cells_at(image: torch.Tensor, index: torch.Tensor, cols: int, size: tuple[int, int]) -> torch.Tensor:
    """The 28 px cells at row-major ``index`` of the padded-or-cropped image, (k, 3, 28, 28) float.

    Cells wholly inside the image are gathered in one indexing op; the few on a padded edge
    are cut one by one.
    """
    c, h, w = image.shape
    full_rows, full_cols = min(h, size[0]) // CELL, min(w, size[1]) // CELL
    grid = image[:, : full_rows * CELL, : full_cols * CELL].reshape(c, full_rows, CELL, full_cols, CELL)
    grid = grid.permute(1, 3, 0, 2, 4)
    r, q = index // cols, index % cols
    inside = (r < full_rows) & (q < full_cols)
    out = torch.zeros(len(index), c, CELL, CELL, dtype=image.dtype)
    out[inside] = grid[r[inside], q[inside]]
    for j in (~inside).nonzero().flatten().tolist():
        top, left = int(r[j]) * CELL, int(q[j]) * CELL
        patch = image[:, top : min(top + CELL, h), left : min(left + CELL, w)]
        out[j, :, : patch.shape[1], : patch.shape[2]] = patch
    return out.float().div_(255) if out.dtype == torch.uint8 else out


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
            route="short",
        )

    def _multiscale(self, image: torch.Tensor) -> Tokenized:
        """One pass over bands of cells (metric and low-resolution tokens), then the 64 kept
        cells are cut again from the image: no full-size float copy of the image is made."""
        _, h, w = image.shape
        size = _size_28(h, w)
        rows, cols = size[0] // CELL, size[1] // CELL
        n = rows * cols
        band_rows = max(1, _BAND_CELLS // cols)
        metric = torch.empty(n)
        low_all = torch.empty(n, 3, PATCH, PATCH)
        for r0 in range(0, rows, band_rows):
            r1 = min(rows, r0 + band_rows)
            cells = _band(image, r0, r1, size)
            metric[r0 * cols : r1 * cols] = frequency_metric(cells)
            # every cell's low-resolution token; the 64 kept ones are dropped below (cheap)
            low_all[r0 * cols : r1 * cols] = F.interpolate(
                cells, size=(PATCH, PATCH), mode="bicubic", align_corners=False
            )

        k = min(NUM_HIGHRES_CELLS, n)
        kept = torch.sort(metric, stable=True).indices[n - k :].sort().values
        is_kept = torch.zeros(n, dtype=torch.bool)
        is_kept[kept] = True
        low_index = (~is_kept).nonzero().squeeze(1)

        tokens = torch.empty(n - k + 4 * k, 3, PATCH, PATCH)
        torch.index_select(low_all, 0, low_index, out=tokens[: n - k])
        del low_all
        # each kept cell -> its four 14 px quarters: top-left, top-right, bottom-left, bottom-right
        high = _cells_at(image, kept, cols, size)
        tokens[n - k :] = high.reshape(k, 3, 2, PATCH, 2, PATCH).permute(0, 2, 4, 1, 3, 5).reshape(-1, 3, PATCH, PATCH)

        coarse = self.pos.grid(rows, cols)[low_index]
        # fine-grid row-major order of the kept cells' quarters (the official pairing)
        fine_mask = is_kept.reshape(rows, cols).repeat_interleave(2, 0).repeat_interleave(2, 1)
        fine_index = fine_mask.flatten().nonzero().squeeze(1)
        fine = self.pos.points(2 * rows, 2 * cols, fine_index)

        return Tokenized(
            tokens=tokens,
            pos_embed=torch.cat([self.pos.cls[None], coarse, fine]),
            scale_ids=torch.cat([torch.zeros(n - k, dtype=torch.long), torch.ones(4 * k, dtype=torch.long)]),
            input_size=(w, h),
            route="multiscale",
            grid28=(rows, cols),
            kept_cells=kept,
            frequency=metric,
        )
