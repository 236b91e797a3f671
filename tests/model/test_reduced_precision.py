"""bf16 scoring against fp32 on the conformance checkpoints and images (runs on any CPU: bf16 is
emulated where the CPU lacks it, so the numbers are the same, only slower)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from charmcli.model import Scorer

from shared_paths import CONFORMANCE, PHOTOS

#: Stated tolerance of a bf16 score against fp32: 0.5 % of the rating scale's range (aadb 0..1,
#: para 1..5); measured on these fixtures: aadb 1.7e-3, para 5.4e-3 (docs/speed.md).
SCORE_TOL = {"aadb": 0.005, "para": 0.02}
OUTPUT_TOL = 0.005  # per output after Sigmoid / Softmax; measured max 1.7e-3


def _images() -> list[Image.Image]:
    files = sorted((CONFORMANCE / "images").iterdir()) + sorted((PHOTOS / "exif_orientation").iterdir())[:2]
    return [Image.open(p).convert("RGB") for p in files]


@pytest.fixture(scope="module", params=["aadb", "para"])
def pair(request):
    ckpt, pos = CONFORMANCE / "checkpoints" / f"{request.param}_charm.pth", CONFORMANCE / "dino_small_pos.pt"
    if not ckpt.is_file():
        pytest.skip(f"{CONFORMANCE} is absent (the shared test data sits beside the repository)")
    fp32 = Scorer.from_files(ckpt, pos, device="cpu", precision="fp32")
    bf16 = Scorer.from_files(ckpt, pos, device="cpu", precision="bf16")
    return request.param, fp32, bf16


def test_bf16_stays_within_the_stated_tolerance_of_fp32(pair):
    ds, fp32, bf16 = pair
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    moved = 0
    for image in _images():
        a, b = fp32.score(image), bf16.score(image)
        assert abs(a.score - b.score) <= SCORE_TOL[ds], (a.score, b.score)
        assert max(abs(x - y) for x, y in zip(a.outputs, b.outputs, strict=True)) <= OUTPUT_TOL
        assert a.n_tokens == b.n_tokens and a.kept_cells == b.kept_cells  # the tokenizer is untouched
        moved += a.score != b.score
    assert moved, "bf16 gave fp32's scores bit for bit: it did not run in bf16"


def test_only_the_block_products_are_reduced(pair):
    """The matrix products of the blocks run in bf16; LayerNorms, layer scales, embedding and head
    stay fp32 (that keeps max |Δ| 2.6x smaller than a whole-network bf16 cast, docs/speed.md)."""
    _ds, _fp32, bf16 = pair
    net = bf16.network
    low = {id(p) for b in net.blocks for m in (b.attn.qkv, b.attn.proj, b.mlp.fc1, b.mlp.fc2) for p in m.parameters()}
    assert low
    for name, p in net.named_parameters():
        assert p.dtype == (torch.bfloat16 if id(p) in low else torch.float32), name


def test_bf16_batches_score_like_single_images(pair):
    _ds, _fp32, bf16 = pair
    images = _images()[:4]
    single = [bf16.score(im).score for im in images]
    batched = [r.score for r in bf16.score_many(images, batch_size=4)]
    assert batched == pytest.approx(single, abs=2e-3)


def test_fp32_scorer_is_untouched_by_the_precision_option(pair):
    _ds, fp32, _bf16 = pair
    assert all(p.dtype == torch.float32 for p in fp32.network.parameters())
    assert fp32.network.low_dtype is None
