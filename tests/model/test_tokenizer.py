"""Unit and property tests of the tokenizer on small synthetic inputs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charmcli.model.charm.tokenizer import CharmTokenizer, PositionTable, _size_28, frequency_metric


def table(dim: int = 8, side: int = 37, seed: int = 0) -> PositionTable:
    g = torch.Generator().manual_seed(seed)
    return PositionTable(torch.randn(1, 1 + side * side, dim, generator=g))


def _pad_or_crop_28(image: torch.Tensor) -> torch.Tensor:
    """The whole image padded (zeros, right/bottom) or cropped to the size ``_size_28`` picks."""
    _, h, w = image.shape
    hp, wp = _size_28(h, w)
    return torch.nn.functional.pad(image[:, : min(h, hp), : min(w, wp)], (0, max(0, wp - w), 0, max(0, hp - h)))


def noise(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def test_short_path_is_row_major_with_zero_padding():
    img = noise(30, 45)
    t = CharmTokenizer(table(), 1025)(img)
    assert t.route == "short" and t.num_tokens == 1 + 3 * 4
    assert torch.equal(t.tokens[0], img[:, :14, :14])
    assert torch.equal(t.tokens[1], img[:, :14, 14:28])
    last = t.tokens[-1]  # bottom-right: 2 real rows and 3 real columns, the rest zeros
    assert torch.equal(last[:, :2, :3], img[:, 28:30, 42:45])
    assert last[:, 2:].abs().sum() == 0 and last[:, :, 3:].abs().sum() == 0
    assert t.scale_ids.sum() == 0


def test_budget_boundary_picks_the_path():
    # 25 x 41 = 1025 patches -> short; 26 x 41 = 1066 -> multi-scale (budget 1025)
    tok = CharmTokenizer(table(), 1025)
    assert tok(noise(25 * 14, 41 * 14)).route == "short"
    assert tok(noise(25 * 14 + 1, 41 * 14)).route == "multiscale"
    assert CharmTokenizer(table(), 513)(noise(20 * 14, 26 * 14)).route == "multiscale"


def test_pad_or_crop_rule():
    # W % 28 = 26, H % 28 = 26: crop costs 26*26, pad costs 2*2 -> pad
    assert _pad_or_crop_28(noise(54, 54)).shape[1:] == (56, 56)
    # W % 28 = 1, H % 28 = 2: crop 1*2 < pad 27*26 -> crop
    assert _pad_or_crop_28(noise(58, 57)).shape[1:] == (56, 56)
    # one side already a multiple counts 1 for both: H=56 (1,1), W=57 -> crop 1*1 vs pad 27*1 -> crop
    assert _pad_or_crop_28(noise(56, 57)).shape[1:] == (56, 56)
    # a tie pads: W%28=14 -> crop 14*1 vs pad 14*1
    assert _pad_or_crop_28(noise(56, 42)).shape[1:] == (56, 56)
    # never crops an axis to nothing (the official code would crash here)
    assert _pad_or_crop_28(noise(20, 2801)).shape[1:] == (28, 2828)


def test_flat_cells_score_minus_inf_and_ties_keep_highest_indices():
    assert torch.isinf(frequency_metric(torch.full((1, 3, 28, 28), 0.5))).all()
    img = torch.full((3, 28 * 20, 28 * 20), 0.3)  # all 400 cells flat -> all -inf, all tied
    t = CharmTokenizer(table(), 1025)(img)
    assert t.kept_cells.tolist() == list(range(400 - 64, 400))


def test_sharpest_cells_are_kept_and_emitted_last_in_quarters():
    img = torch.full((3, 28 * 20, 28 * 24), 0.5)
    sharp = [5, 17, 230, 399]
    for i, idx in enumerate(sharp):
        r, c = divmod(idx, 24)
        img[:, r * 28 : r * 28 + 28, c * 28 : c * 28 + 28] = noise(28, 28, seed=i)
    t = CharmTokenizer(table(), 1025)(img)
    assert set(sharp) <= set(t.kept_cells.tolist())
    n_low = 480 - 64
    assert t.tokens.shape[0] == n_low + 256 and t.scale_ids[:n_low].sum() == 0 and t.scale_ids[n_low:].all()
    # kept cells in ascending order, each as TL, TR, BL, BR
    k = t.kept_cells.tolist().index(230)
    r, c = divmod(230, 24)
    cell = img[:, r * 28 : r * 28 + 28, c * 28 : c * 28 + 28]
    quarters = t.tokens[n_low + 4 * k : n_low + 4 * k + 4]
    assert torch.equal(quarters[0], cell[:, :14, :14]) and torch.equal(quarters[1], cell[:, :14, 14:])
    assert torch.equal(quarters[2], cell[:, 14:, :14]) and torch.equal(quarters[3], cell[:, 14:, 14:])


def test_high_res_positions_follow_fine_grid_row_major_order():
    pos = table()
    img = torch.full((3, 28 * 20, 28 * 24), 0.5)
    img[:, :28, :56] = noise(28, 56)  # cells 0 and 1 share a row
    t = CharmTokenizer(pos, 1025)(img)
    kept = t.kept_cells.tolist()
    assert kept[:2] == [0, 1]
    fine = pos.grid(40, 48)
    # fine-grid row-major: cell0-TL, cell0-TR, cell1-TL, cell1-TR, ... so token 2 (cell0-BL) gets cell1-TL's row
    n_low = t.tokens.shape[0] - 256
    assert torch.equal(t.pos_embed[1 + n_low + 2], fine[2])
    assert torch.equal(t.pos_embed[1 + n_low + 0], fine[0])


def test_separable_points_match_full_interpolation():
    pos = table(dim=4)
    rows, cols = 150, 130  # > 16384 cells: the separable path
    idx = torch.tensor([0, 1, 129, 130, 7777, rows * cols - 1])
    full = torch.nn.functional.interpolate(
        pos._grid, scale_factor=((rows + 0.1) / 37, (cols + 0.1) / 37), mode="bicubic", align_corners=False
    )
    full = full.permute(0, 2, 3, 1).reshape(rows * cols, -1)
    torch.testing.assert_close(pos.points(rows, cols, idx), full[idx], rtol=0, atol=1e-5)


def test_position_table_must_be_square():
    with pytest.raises(ValueError, match="square"):
        PositionTable(torch.zeros(1, 1 + 37 * 36, 8))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.one_of(st.integers(1, 80), st.integers(80, 900), st.just(1)),
    w=st.one_of(st.integers(1, 80), st.integers(80, 900), st.integers(2000, 6000)),
    budget=st.sampled_from([1025, 769, 513]),
)
def test_token_counts_follow_the_formula_of_each_path(h, w, budget):
    pos = table(dim=4)
    img = torch.rand(3, h, w)
    t = CharmTokenizer(pos, budget)(img)
    assert t.pos_embed.shape == (t.num_tokens, 4)
    assert t.tokens.shape == (t.num_tokens - 1, 3, 14, 14)
    assert t.scale_ids.shape == (t.num_tokens - 1,)
    n14 = math.ceil(h / 14) * math.ceil(w / 14)
    if n14 <= budget:
        assert t.route == "short" and t.num_tokens == n14 + 1 and t.scale_ids.sum() == 0
    else:
        rows, cols = t.grid28
        ph, pw = rows * 28, cols * 28
        assert ph in (h - h % 28, h + (-h) % 28) and pw in (w - w % 28, w + (-w) % 28)
        k = min(64, rows * cols)
        assert t.num_tokens == 1 + (rows * cols - k) + 4 * k
        assert int(t.scale_ids.sum()) == 4 * k
        assert t.kept_cells.shape == (k,) and bool((t.kept_cells.diff() > 0).all())
    assert torch.isfinite(t.tokens).all() and torch.isfinite(t.pos_embed).all()


def reference_multiscale(image: torch.Tensor, pos: PositionTable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The multi-scale path written the plain way: whole image, one cell at a time.

    Returns (metric, tokens, pos_embed) to check the banded, vectorised tokenizer against.
    """
    img = _pad_or_crop_28(image)
    rows, cols = img.shape[1] // 28, img.shape[2] // 28
    cells = [img[:, r * 28 : r * 28 + 28, c * 28 : c * 28 + 28] for r in range(rows) for c in range(cols)]
    metric = torch.stack(
        [(20 * torch.log10(torch.abs(torch.fft.fftshift(torch.fft.fft2(c))))).mean() for c in cells]
    )
    kept = torch.sort(metric, stable=True).indices[-64:].sort().values.tolist()
    low = [i for i in range(len(cells)) if i not in kept]
    small = torch.nn.functional.interpolate(
        torch.stack([cells[i] for i in low]), size=(14, 14), mode="bicubic", align_corners=False
    )
    quarters = [q for i in kept for q in (cells[i][:, :14, :14], cells[i][:, :14, 14:],
                                          cells[i][:, 14:, :14], cells[i][:, 14:, 14:])]  # fmt: skip
    fine_rows = sorted((2 * (i // cols) + dr) * 2 * cols + 2 * (i % cols) + dc for i in kept for dr in (0, 1) for dc in (0, 1))
    positions = torch.cat([pos.cls[None], pos.grid(rows, cols)[low], pos.grid(2 * rows, 2 * cols)[fine_rows]])
    return metric, torch.cat([small, torch.stack(quarters)]), positions


@pytest.mark.parametrize("band_cells", [1, 7, 384])
@pytest.mark.parametrize(
    ("h", "w"), [(28 * 20, 28 * 24), (28 * 19 + 5, 28 * 23 + 9), (28 * 19 + 20, 28 * 23 + 26)], ids=["exact", "crop", "pad"]
)
def test_banded_tokenizer_matches_the_plain_whole_image_version(monkeypatch, band_cells, h, w):
    """Bands of any height (one cell, a partial last band, one band for all) give the same bits,
    on padded, cropped and exact sizes, from float and from uint8 pixels."""
    import charmcli.model.charm.tokenizer as tokenizer_mod

    monkeypatch.setattr(tokenizer_mod, "_BAND_CELLS", band_cells)
    pixels = (noise(h, w, seed=h) * 255).round().to(torch.uint8)
    pixels[:, :60, :90] = 128  # flat cells: -inf metric and ties
    pos = table()
    metric, tokens, positions = reference_multiscale(pixels.float() / 255, pos)
    for image in (pixels, pixels.float() / 255):
        t = CharmTokenizer(pos, 1025)(image)
        assert t.route == "multiscale"
        assert torch.equal(t.frequency, metric)
        assert torch.equal(t.tokens, tokens)
        assert torch.equal(t.pos_embed, positions)
    rows, cols = t.grid28
    if rows * 28 > h:  # the padded case keeps cells that straddle the edge (cut one by one)
        assert any(i // cols == rows - 1 or i % cols == cols - 1 for i in t.kept_cells.tolist())


def test_tokenizer_threads_share_one_position_table():
    """The pipeline tokenizes in several decode threads at once with one (cached) position table."""
    from concurrent.futures import ThreadPoolExecutor

    sizes = [(28 * 20 + i, 28 * 24 - i) for i in range(8)]
    images = [noise(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    serial = [CharmTokenizer(table(), 1025)(im) for im in images]
    shared = CharmTokenizer(table(), 1025)
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(shared, images * 3))
    for a, b in zip(serial * 3, parallel, strict=True):
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pos_embed, b.pos_embed)


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 6, 8, 12, 16, 32, 64])
def test_metric_batches_split_into_whole_vector_steps_per_thread(threads):
    """Replays ATen's split of an elementwise op over threads: no share may end in a scalar tail."""
    from charmcli.model.charm.tokenizer import _CELL_VALUES, _GRAIN, _VECTOR_STEP, _rows_without_tails

    for n in [1, 2, 7, 13, 14, 55, 56, 57, 100, 255, 384, 385, 1000]:
        rows = _rows_without_tails(n, threads)
        assert n <= rows < n + 4 * threads
        total = rows * _CELL_VALUES
        shares = 1 if threads == 1 or total < _GRAIN else min(threads, -(-total // _GRAIN))
        size = -(-total // shares)
        starts = range(0, total, size)
        assert all((min(total, b + size) - b) % _VECTOR_STEP == 0 for b in starts), (n, rows, shares)


def test_metric_bits_do_not_depend_on_the_thread_count():
    cells = torch.rand(97, 3, 28, 28, generator=torch.Generator().manual_seed(5))
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(frequency_metric(cells))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(results[0], r) for r in results[1:])
    assert torch.equal(results[0][:5], torch.stack([frequency_metric(c[None])[0] for c in cells[:5]]))


_PRODUCTION_MODE_CHECK = r"""
import json, os, torch
from charmcli.model.charm.tokenizer import CharmTokenizer, PositionTable

def per_cell(image):  # the official expression, one strided view of the padded image at a time
    _, h, w = image.shape
    return torch.stack([
        (20 * torch.log10(torch.abs(torch.fft.fftshift(torch.fft.fft2(image[:, y:y + 28, x:x + 28]))))).mean()
        for y in range(0, h - 27, 28) for x in range(0, w - 27, 28)
    ])

tok = CharmTokenizer(PositionTable(torch.randn(1, 1 + 37 * 37, 4)), 1025)
checked = []
for threads in (1, 3):
    torch.set_num_threads(threads)
    for seed, (rows, cols) in enumerate([(20, 24), (33, 17)]):
        g = torch.Generator().manual_seed(seed)
        pixels = (torch.rand(3, rows * 28, cols * 28, generator=g) * 255).round().to(torch.uint8)
        pixels[:, :56, :84] = 200  # flat cells: exact zeros in the spectrum
        pixels[:, 100:300:7, :] = 0  # structured cells
        t = tok(pixels)
        ref = per_cell(pixels.float() / 255)
        kept = torch.sort(ref, stable=True).indices[-64:].sort().values
        checked.append([threads, rows, cols, torch.equal(t.frequency, ref), torch.equal(t.kept_cells, kept),
                        int(torch.isinf(ref).sum())])
print(json.dumps({"mkl_cbwr": os.environ.get("MKL_CBWR"), "checked": checked}))
"""


def test_metric_matches_the_per_cell_code_in_the_production_mkl_mode():
    """The suite pins MKL's generic FFT path (tests/conftest.py); production runs MKL on AUTO,
    i.e. its AVX2 / AVX-512 kernels on Intel. charm must equal the official per-cell code there too:
    the batched FFT, the contiguous ``hypot`` and the vector-step padding hold for either ISA."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    run = subprocess.run([sys.executable, "-c", _PRODUCTION_MODE_CHECK], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["mkl_cbwr"] is None
    assert len(result["checked"]) == 4 and all(r[5] > 0 for r in result["checked"])  # -inf cells were exercised
    assert all(same_metric and same_kept for _, _, _, same_metric, same_kept, _ in result["checked"]), result
