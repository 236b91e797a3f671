"""The Scorer API: batching, pre-resize, registry and the offline hub path."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from charmcli.model import MODEL_NAMES, ModelUnavailableError, Scorer
from charmcli.model.charm.scorer import official_resize, resolve_device
from charmcli.model.factory import create_scorer
from charmcli.model.registry import download, get_spec, is_cached

from official_format import build_official_model, save_official, save_pos_table


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    ckpt = save_official(build_official_model(dim=64, depth=2, heads=4, dataset="aadb"), d / "m.pth")
    return Scorer.from_files(ckpt, save_pos_table(d / "pos.pt", 64), device="cpu", cache_dir=d / "cache")


def _img(w: int, h: int, seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).byte().numpy())


def test_padded_batches_score_like_single_images(scorer):
    images = [_img(100, 70, 0), _img(640, 480, 1), _img(30, 300, 2), _img(700, 560, 3)]
    single = [scorer.score(im) for im in images]
    batched = list(scorer.score_many(images, batch_size=4))
    for a, b in zip(single, batched, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert a.n_tokens == b.n_tokens and a.kept_cells == b.kept_cells
        assert abs(a.embedding.astype(float) - b.embedding.astype(float)).max() < 1e-2  # float16


def test_result_describes_the_tokenization(scorer):
    r = scorer.score(_img(700, 560, 5))
    assert r.route == "multiscale" and len(r.kept_cells) == 64 and r.input_size == (700, 560)
    assert all(0 <= row < 20 and 0 <= col < 25 for row, col in r.kept_cells)
    assert r.embedding.dtype.name == "float16" and r.embedding.shape == (64,)
    small = scorer.score(_img(50, 40, 6))
    assert small.route == "short" and small.kept_cells == [] and small.n_tokens == 1 + 4 * 3


def test_result_carries_the_head_input_that_gives_its_outputs(scorer):
    r = scorer.score(_img(300, 200, 7))
    assert r.head_input is not None and r.head_input.shape == (2 * 64,)  # [CLS, mean of patches]
    assert (r.head_input[:64].astype("float16") == r.embedding).all()
    with torch.inference_mode():
        outputs = scorer.network.activate(scorer.network.head(torch.from_numpy(r.head_input)[None]))
    assert outputs[0].tolist() == pytest.approx(r.outputs, abs=1e-6)


def test_every_family_is_a_scorer_with_a_weight_free_preparer(scorer):
    from charmcli.model import CharmScorer, Preparer

    assert isinstance(scorer, CharmScorer) and isinstance(scorer, Scorer)
    preparer = scorer.preparer()
    assert isinstance(preparer, Preparer) and not isinstance(preparer, Scorer)
    assert not hasattr(preparer, "network") and preparer.preprocess_key == scorer.preprocess_key
    image = _img(120, 90, 8)
    assert torch.equal(preparer.prepare(image).tokens, scorer.prepare(image).tokens)


def test_official_resize_rule():
    assert official_resize(_img(1024, 700, 0), 1024).size == (1024, 700)  # exactly 1024 is kept
    assert official_resize(_img(1600, 1200, 0), 1024).size == (1024, 768)
    assert official_resize(_img(1025, 333, 0), 1024).size == (1024, 332)  # int() truncation
    assert official_resize(_img(1600, 1200, 0), None).size == (1600, 1200)


def test_para_and_spaq_resize_first():
    assert get_spec("para").resize_max_side == get_spec("spaq").resize_max_side == 1024
    assert get_spec("aadb").resize_max_side is None
    assert [get_spec(n).budget for n in ("ava", "tad66k", "aadb")] == [513, 769, 1025]


def test_score_scales():
    out1 = torch.tensor([[0.5]])
    assert [float(get_spec(n).to_score(out1)[0]) for n in ("aadb", "tad66k", "baid", "spaq", "koniq10k")] == [
        0.5, 5.0, 5.0, 50.0, 2.5,
    ]  # fmt: skip
    para = torch.zeros(1, 9)
    para[0, -1] = 1.0
    assert float(get_spec("para").to_score(para)[0]) == 5.0
    ava = torch.full((1, 10), 0.1)
    assert float(get_spec("ava").to_score(ava)[0]) == pytest.approx(5.5)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="aadb"):
        get_spec("nope")
    assert MODEL_NAMES[0] == "aadb"


def test_offline_hub_gives_one_actionable_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not is_cached("aadb")
    with pytest.raises(ModelUnavailableError) as err:
        create_scorer("aadb", device="cpu")  # what `charm score` builds; Scorer.from_pretrained: test_hub_offline
    msg = str(err.value)
    assert "\n" not in msg and "charm models download aadb" in msg and "--checkpoint" in msg
    with pytest.raises(ModelUnavailableError):
        download("ava")


def test_cuda_request_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_gpu_batch_size_follows_free_memory_and_sequence_length():
    from charmcli.model.charm.checkpoint import NetworkConfig
    from charmcli.model.charm.scorer import batch_for_memory

    small = NetworkConfig(dim=384, depth=12, heads=6, mlp_hidden=1536, num_classes=1, activation="sigmoid")
    large = NetworkConfig(dim=1024, depth=24, heads=16, mlp_hidden=4096, num_classes=10, activation="softmax")
    gib = 1 << 30
    # an 80 GB card: default-resolution photos (~1.6k tokens) fill the cap of 128
    assert batch_for_memory(78 * gib, 1562, small) == 128
    # less memory, longer sequences or a wider model -> fewer images, never below one
    mid = batch_for_memory(2 * gib, 1562, small)
    assert 1 < mid < 128
    assert batch_for_memory(1 * gib, 1562, small) < mid
    assert batch_for_memory(2 * gib, 1562, large) < mid
    assert batch_for_memory(78 * gib, 30938, small) < batch_for_memory(78 * gib, 1562, small)
    assert batch_for_memory(0, 30938, small) == 1
    # the estimate is linear in tokens: twice the tokens, about half the batch
    assert batch_for_memory(8 * gib, 2000, small) in range(
        batch_for_memory(8 * gib, 1000, small) // 2 - 1, batch_for_memory(8 * gib, 1000, small) // 2 + 2
    )


def test_cpu_batches_one_image_at_a_time(scorer):
    assert scorer.batch_limit(1229) == 1
