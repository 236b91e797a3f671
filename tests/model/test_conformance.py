"""Charm against the official pipeline's own outputs (../shared/conformance).

Every image x checkpoint entry is reproduced from the image file: tokens, position rows, scale
mask, the multi-scale selection and pairing, head input, logits, outputs and score. The
fixture README explains why 1e-5 separates a correct implementation from the likely mistakes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from charmcli.model import Scorer
from charmcli.model.charm.checkpoint import sha256_file
from charmcli.model.charm.scorer import image_to_tensor, official_resize

from shared_paths import CONFORMANCE, SHARED

TOL = 1e-5


SUMMARY = CONFORMANCE / "summary.json"


def _cases():
    """Every image x checkpoint of the fixture; without it, one case that says why it skips."""
    if not SUMMARY.exists():
        why = (
            f"{SHARED} is absent (the shared test data sits beside the repository)"
            if not SHARED.exists()
            else f"{SUMMARY} is missing: test_fixture_summary_is_present fails"
        )
        return [pytest.param(None, None, id="no-fixture", marks=pytest.mark.skip(reason=why))]
    data = json.loads(SUMMARY.read_text())
    cases = [(case, ds) for case in data["cases"] for ds in data["datasets"]]
    assert cases, f"{SUMMARY} lists no cases"
    return cases


def test_fixture_summary_is_present():
    """With ../shared beside the repository, a missing fixture is a failure, not a quiet skip."""
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is absent (the shared test data sits beside the repository)")
    assert SUMMARY.is_file(), f"{SUMMARY} is missing although {SHARED} is present"
    data = json.loads(SUMMARY.read_text())
    assert data["cases"] and data["datasets"] and data["checkpoints"]


@pytest.fixture(scope="module")
def scorers(conformance_dir):
    return {
        ds: Scorer.from_files(conformance_dir / f"checkpoints/{ds}_charm.pth", conformance_dir / "dino_small_pos.pt",
                              device="cpu")
        for ds in ("aadb", "para")
    }  # fmt: skip


def _arrays(case):
    return np.load(CONFORMANCE / case["npz"])


def _key(arrays, ds: str, name: str) -> str:
    """Arrays shared with aadb ('tokenization_same_as') are stored once under aadb_."""
    return f"{ds}_{name}" if f"{ds}_{name}" in arrays else f"aadb_{name}"


def _tokenized(scorers, case, ds):
    image = Image.open(CONFORMANCE / case["image"]).convert("RGB")
    return scorers[ds].prepare(image)


@pytest.mark.parametrize(("case", "ds"), _cases(), ids=lambda v: v["id"] if isinstance(v, dict) else v)
def test_decoder_matches(case, ds):
    image = Image.open(CONFORMANCE / case["image"]).convert("RGB")
    import hashlib

    assert hashlib.sha256(np.asarray(image).tobytes()).hexdigest() == case["rgb_sha256"]


@pytest.mark.parametrize(("case", "ds"), _cases(), ids=lambda v: v["id"] if isinstance(v, dict) else v)
def test_tokens_positions_and_mask(scorers, case, ds):
    a, r = _arrays(case), case["results"][ds]
    t = _tokenized(scorers, case, ds)
    assert list(t.input_size) == [r["input_W"], r["input_H"]] == a[f"{ds}_input_size"].tolist()
    assert t.num_tokens == r["n_tokens"]
    assert t.route == {"normal_flow": "short", "multiscale": "multiscale"}[r["path"]]
    tokens = torch.cat([torch.zeros(1, 3, 14, 14), t.tokens]).numpy()
    mask = np.concatenate([[0.0], t.scale_ids.numpy()]).astype(np.float32)
    np.testing.assert_array_equal(mask, a[_key(a, ds, "mask")])
    if _key(a, ds, "tokens") in a:
        np.testing.assert_allclose(tokens, a[_key(a, ds, "tokens")], rtol=0, atol=TOL)
        np.testing.assert_allclose(t.pos_embed.numpy(), a[_key(a, ds, "pos_embed")], rtol=0, atol=TOL)
    else:  # large sequences are stored as row-wise projections
        flat = tokens.reshape(len(tokens), -1).astype(np.float64)
        np.testing.assert_allclose(
            flat @ a["proj_tokens"], a[_key(a, ds, "tokens_proj")], rtol=0, atol=TOL * 10
        )
        np.testing.assert_allclose(flat.sum(1), a[_key(a, ds, "tokens_row_sum")], rtol=0, atol=TOL * 10)
        pos = t.pos_embed.numpy().astype(np.float64)
        np.testing.assert_allclose(
            pos @ a["proj_pos"], a[_key(a, ds, "pos_embed_proj")], rtol=0, atol=TOL * 10
        )
        np.testing.assert_allclose(t.pos_embed[0].numpy(), a[_key(a, ds, "pos_embed_cls")], rtol=0, atol=TOL)
        if _key(a, ds, "pos_embed_highres") in a:
            np.testing.assert_allclose(
                t.pos_embed[-256:].numpy(), a[_key(a, ds, "pos_embed_highres")], rtol=0, atol=TOL
            )


@pytest.mark.parametrize(("case", "ds"), _cases(), ids=lambda v: v["id"] if isinstance(v, dict) else v)
def test_multiscale_selection_and_pairing(scorers, case, ds):
    r = case["results"][ds]
    if r["path"] != "multiscale":
        pytest.skip("short path: no selection")
    a = _arrays(case)
    t = _tokenized(scorers, case, ds)
    assert list(t.grid28) == a[_key(a, ds, "grid28")].tolist() == r["grid28_HxW"]
    metric = a[_key(a, ds, "frequency_metric")]
    np.testing.assert_array_equal(np.isinf(t.frequency.numpy()), np.isinf(metric))
    finite = np.isfinite(metric)
    np.testing.assert_allclose(t.frequency.numpy()[finite], metric[finite], rtol=0, atol=TOL)
    assert t.kept_cells.tolist() == a[_key(a, ds, "selected")].tolist() == r["selected_patches28"]
    # high-resolution tokens carry the pixels of their own fine cell...
    rows, cols = t.grid28
    fine_cols = 2 * cols
    own = a[_key(a, ds, "highres_token_own_fine_rows")]
    image = official_resize(
        Image.open(CONFORMANCE / case["image"]).convert("RGB"), scorers[ds].spec.resize_max_side
    )
    padded = torch.nn.functional.pad(image_to_tensor(image), (0, fine_cols * 14, 0, 2 * rows * 14))
    for k in (0, 1, 2, 3, 100, 255):
        fr, fc = divmod(int(own[k]), fine_cols)
        expected = padded[:, fr * 14 : fr * 14 + 14, fc * 14 : fc * 14 + 14]
        torch.testing.assert_close(t.tokens[-256 + k], expected, rtol=0, atol=TOL)
    # ...but the position row of the k-th *row-major* fine cell (the official pairing quirk)
    pos_rows = a[_key(a, ds, "highres_pos_fine_rows")]
    fine = scorers[ds].tokenizer.pos.grid(2 * rows, fine_cols)
    torch.testing.assert_close(t.pos_embed[-256:], fine[torch.from_numpy(pos_rows)], rtol=0, atol=TOL)
    assert int((own != pos_rows).sum()) == r["highres_tokens_with_pos_of_other_cell"]


@pytest.mark.parametrize(("case", "ds"), _cases(), ids=lambda v: v["id"] if isinstance(v, dict) else v)
def test_outputs_and_score(scorers, case, ds):
    a, r = _arrays(case), case["results"][ds]
    scorer = scorers[ds]
    t = _tokenized(scorers, case, ds)
    with torch.inference_mode():
        logits, features = scorer.network(t.tokens[None], t.pos_embed[None], t.scale_ids[None])
    np.testing.assert_allclose(features[0].numpy(), a[f"{ds}_head_input"], rtol=0, atol=TOL)
    np.testing.assert_allclose(logits[0].numpy(), a[f"{ds}_logits"], rtol=0, atol=TOL)
    result = scorer.score(Image.open(CONFORMANCE / case["image"]).convert("RGB"))
    np.testing.assert_allclose(result.outputs, a[f"{ds}_output"], rtol=0, atol=TOL)
    assert abs(result.score - float(a[f"{ds}_score"])) < TOL
    assert round(result.score, 3) == pytest.approx(r["score_rounded"], abs=1e-3)


def test_checkpoint_identity(conformance_dir, scorers):
    summary = json.loads((conformance_dir / "summary.json").read_text())
    for ds, info in summary["checkpoints"].items():
        assert scorers[ds].checkpoint_id == info["sha256"] == sha256_file(conformance_dir / info["file"])
        cfg = scorers[ds].config
        assert (cfg.depth, cfg.num_classes, cfg.dataset) == (info["num_layers"], info["num_classes"], ds)
        assert cfg.activation == info["activation"]
