"""Checkpoints as the authors' training code writes them (issue 10).

``../shared/conformance/authors`` holds files written by the authors' own ``model.py`` and
``train.py`` save call, with the official package's outputs: charm must load every one (a
``ConfigDict`` inside, a ReLU head, training mode) and reproduce every score. The synthetic
cases go beyond them: other heads, save layouts, storages tagged ``cuda:0``, classes the loader
has never heard of, and payloads hidden where the new stand-ins could let them through.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image
from torch import nn

from charmcli.model import CheckpointError, Scorer, UnsafeCheckpointError
from charmcli.model.charm.checkpoint import load_checkpoint, sha256_file
from charmcli.model.charm.tokenizer import CharmTokenizer, PositionTable
from charmcli.model.registry import MODELS

from official_format import build_official_model, reference_forward, save_official, save_pos_table
from shared_paths import CONFORMANCE

AUTHORS = CONFORMANCE / "authors"


@pytest.fixture(scope="module")
def authors_summary() -> dict:
    path = AUTHORS / "summary.json"
    if not CONFORMANCE.exists():
        pytest.skip(f"{CONFORMANCE} is absent (the shared test data sits beside the repository)")
    assert path.is_file(), f"{path} is missing although {CONFORMANCE} is present"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def authors_scorers(authors_summary, tmp_path_factory) -> dict[str, Scorer]:
    cache = tmp_path_factory.mktemp("authors-cache")
    pos = CONFORMANCE / "dino_small_pos.pt"
    return {
        ds: Scorer.from_files(AUTHORS / info["file"], pos, device="cpu", cache_dir=cache)
        for ds, info in authors_summary["checkpoints"].items()
    }


def test_every_authors_file_loads_with_its_own_head(authors_summary, authors_scorers):
    assert set(authors_scorers) == {"aadb", "para", "tad66k", "koniq10k"}
    for ds, info in authors_summary["checkpoints"].items():
        scorer = authors_scorers[ds]
        assert scorer.name == ds  # from the pickled Model.data, no --model needed
        assert scorer.checkpoint_id == info["sha256"] == sha256_file(AUTHORS / info["file"])
        cfg = scorer.config
        assert (cfg.depth, cfg.num_classes) == (info["num_layers"], info["num_classes"])
        assert cfg.activation == info["head_activation"].lower() and cfg.activation_source == "checkpoint"
        assert cfg.encoder_name == info["config_model"]["encoder_name"]
    assert "ReLU" in authors_scorers["tad66k"].head and "raw output" in authors_scorers["tad66k"].head


def _cases(summary):
    return [(case, ds) for case in summary["cases"] for ds in case["results"]]


def test_authors_scores_and_outputs_match_the_official_package(authors_summary, authors_scorers):
    images = CONFORMANCE / "images"
    checked = 0
    for case, ds in _cases(authors_summary):
        r = case["results"][ds]
        result = authors_scorers[ds].score(Image.open(images / case["image"]).convert("RGB"))
        where = f"{case['id']} / {ds}"
        assert result.n_tokens == r["n_tokens"], where
        torch.testing.assert_close(torch.tensor(result.outputs), torch.tensor(r["outputs"]), rtol=0, atol=1e-5,
                                   msg=where)  # fmt: skip
        # spaq's x100 scale carries about 1e-5 of float32 rounding in the official score itself
        factor = MODELS[ds].factor if r["head_activation"] == "Sigmoid" and not MODELS[ds].grades else 1.0
        assert abs(result.score - r["score"]) <= 1e-5 * max(1.0, factor), where
        assert round(result.score if factor == 1 else result.score / factor, 3) == pytest.approx(
            r["official_predict"], abs=1.5e-3
        ), where
        checked += 1
    assert checked == len(authors_summary["cases"]) * len(authors_summary["checkpoints"])


def test_relu_head_score_is_the_raw_output_not_times_ten(authors_summary, authors_scorers):
    case = authors_summary["cases"][0]
    r = case["results"]["tad66k"]
    result = authors_scorers["tad66k"].score(Image.open(CONFORMANCE / "images" / case["image"]).convert("RGB"))
    assert result.score == pytest.approx(result.outputs[0], abs=0) and 1 < result.score < 10
    assert result.score == pytest.approx(r["score"], abs=1e-5)


# -- synthetic files in the authors' format -------------------------------------------------------


def _check_against_reference(scorer: Scorer, model: nn.Module, pos_file) -> None:
    tokenizer = CharmTokenizer(PositionTable(torch.load(pos_file).detach().reshape(-1, scorer.config.dim)),
                               scorer.spec.budget)  # fmt: skip
    for h, w in [(60, 90), (420, 560)]:
        t = tokenizer(torch.rand(3, h, w, generator=torch.Generator().manual_seed(h)))
        model.eval()
        with torch.no_grad():
            expected = reference_forward(model, t.tokens, t.pos_embed, t.scale_ids)
        got = scorer.score_prepared([t])[0]
        torch.testing.assert_close(torch.tensor(got.outputs), expected.float(), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("activation", "dataset", "rule"),
    [
        (nn.Sigmoid(), "tad66k", lambda out: out[0] * 10),
        (nn.ReLU(), "tad66k", lambda out: out[0]),
        (nn.Identity(), "koniq10k", lambda out: out[0]),
        (nn.LeakyReLU(0.2), "baid", lambda out: out[0]),
        (nn.Tanh(), "aadb", lambda out: out[0]),
        (nn.Softplus(beta=2.0), "spaq", lambda out: out[0]),
    ],
    ids=["sigmoid-x10", "relu-raw", "identity-raw", "leakyrelu-raw", "tanh-raw", "softplus-raw"],
)
def test_head_activation_is_read_from_the_file_and_scored_by_its_rule(tmp_path, activation, dataset, rule):
    model = build_official_model(dim=32, depth=1, heads=2, dataset=dataset, activation=activation, authors=True,
                                 seed=7)  # fmt: skip
    with torch.no_grad():
        model.mlp_head.linear.bias += 0.5  # keep ReLU-like heads away from 0 so the rule is visible
    ckpt = save_official(model, tmp_path / "m.pth")
    pos = save_pos_table(tmp_path / "pos.pt", 32)
    scorer = Scorer.from_files(ckpt, pos, device="cpu", cache_dir=tmp_path / "cache")
    assert scorer.name == dataset and scorer.config.activation == type(activation).__name__.lower()
    _check_against_reference(scorer, model, pos)
    result = scorer.score(Image.new("RGB", (90, 60), (120, 30, 200)))
    assert result.score == pytest.approx(rule(result.outputs), rel=1e-6, abs=1e-7)
    # the converted cache keeps the head: a second load (from safetensors) scores identically
    again = Scorer.from_files(ckpt, pos, device="cpu", cache_dir=tmp_path / "cache")
    assert again.config.activation_args == scorer.config.activation_args
    assert again.score(Image.new("RGB", (90, 60), (120, 30, 200))).score == result.score


def test_softmax_head_scores_the_expectation_over_grades(tmp_path):
    model = build_official_model(dim=32, depth=1, heads=2, num_classes=9, dataset="para", authors=True)
    scorer = Scorer.from_files(save_official(model, tmp_path / "m.pth"), save_pos_table(tmp_path / "p.pt", 32),
                               device="cpu", cache_dir=tmp_path / "c")  # fmt: skip
    result = scorer.score(Image.new("RGB", (70, 50), (10, 200, 90)))
    assert sum(result.outputs) == pytest.approx(1, abs=1e-6)
    assert result.score == pytest.approx(sum(p * g for p, g in zip(result.outputs, MODELS["para"].grades, strict=True)), abs=1e-5)


@pytest.mark.parametrize("layout", ["model_state_dict", "model", "state_dict", "bare_state_dict"])
def test_every_save_layout_of_the_authors_code(tmp_path, layout):
    # a state dict does not record the head count: 64 wide -> 1 head, as 384 -> 6 (DINOv2-small)
    model = build_official_model(dim=64, depth=2, heads=1, dataset="aadb", authors=True, seed=3)
    ckpt = save_official(model, tmp_path / "m.pth", layout=layout)
    pos = save_pos_table(tmp_path / "pos.pt", 64)
    scorer = Scorer.from_files(ckpt, pos, name="aadb", device="cpu", cache_dir=tmp_path / "cache")
    _check_against_reference(scorer, model, pos)
    # a state dict has no head module: the activation is inferred, and says so
    only_weights = layout in ("state_dict", "bare_state_dict")
    assert scorer.config.activation_source == ("inferred" if only_weights else "checkpoint")


def test_storages_tagged_cuda_load_on_a_cpu_machine(tmp_path):
    model = build_official_model(dim=32, depth=1, heads=2, authors=True, activation="relu")
    ckpt = save_official(model, tmp_path / "gpu.pth", location="cuda:0")
    assert b"cuda:0" in ckpt.read_bytes()  # the tag really is in the pickle
    pos = save_pos_table(tmp_path / "pos.pt", 32)
    scorer = Scorer.from_files(ckpt, pos, device="cpu", cache_dir=tmp_path / "cache")
    _check_against_reference(scorer, model, pos)


class _Harmless:
    """A class the loader has never heard of, holding only plain data and a tensor."""

    def __init__(self):
        self.run_name, self.lr, self.best_loss = "sweep-3", 3e-5, torch.tensor(0.25)


class _FancyLayerScale(nn.Module):
    """A renamed module with the same parameters as Dinov2LayerScale."""


def test_unknown_harmless_classes_load_and_score(tmp_path):
    model = build_official_model(dim=32, depth=2, heads=2, authors=True, seed=11)
    model.training_notes = _Harmless()
    for layer in model.encoder.encoder.layer:
        fancy = _FancyLayerScale()
        fancy.lambda1 = layer.layer_scale1.lambda1
        layer.layer_scale1 = fancy
    ckpt = save_official(model, tmp_path / "m.pth")
    data = ckpt.read_bytes()
    assert b"_Harmless" in data and b"_FancyLayerScale" in data
    pos = save_pos_table(tmp_path / "pos.pt", 32)
    scorer = Scorer.from_files(ckpt, pos, device="cpu", cache_dir=tmp_path / "cache")
    _check_against_reference(scorer, model, pos)


def test_unknown_class_with_extra_or_misshapen_parameters_is_one_line(tmp_path):
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    extra = _FancyLayerScale()
    extra.lambda1, extra.bonus = nn.Parameter(torch.ones(32)), nn.Parameter(torch.ones(3))
    model.encoder.encoder.layer[0].layer_scale1 = extra
    with pytest.raises(CheckpointError, match=r"unexpected parameters: .*bonus") as err:
        load_checkpoint(save_official(model, tmp_path / "extra.pth"))
    assert "\n" not in str(err.value)
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    wrong = _FancyLayerScale()
    wrong.lambda1 = nn.Parameter(torch.ones(31))
    model.encoder.encoder.layer[0].layer_scale2 = wrong
    with pytest.raises(CheckpointError, match=r"ls2\.gamma has shape \(31,\)") as err:
        load_checkpoint(save_official(model, tmp_path / "shape.pth"))
    assert "\n" not in str(err.value)


def test_a_head_that_is_not_a_torch_activation_is_one_line(tmp_path):
    model = build_official_model(dim=32, depth=1, heads=2, authors=True, activation=_FancyLayerScale())
    with pytest.raises(CheckpointError, match="not a torch activation") as err:
        load_checkpoint(save_official(model, tmp_path / "m.pth"))
    assert "\n" not in str(err.value)


def test_the_multi_attribute_aadb_head_of_the_training_code(tmp_path):
    """``config.multi_class``: Tanh on 11 attributes, Sigmoid on the score third from the end."""
    model = build_official_model(dim=32, depth=1, heads=2, num_classes=12, dataset="aadb", authors=True, seed=5)
    head = model.mlp_head
    del head.activation
    head.sigmoid, head.tanh, head.multi = nn.Sigmoid(), nn.Tanh(), True
    ckpt = save_official(model, tmp_path / "multi.pth")
    pos = save_pos_table(tmp_path / "pos.pt", 32)
    scorer = Scorer.from_files(ckpt, pos, device="cpu", cache_dir=tmp_path / "cache")
    assert scorer.name == "aadb" and scorer.config.num_classes == 12
    t = scorer.tokenizer(torch.rand(3, 80, 120, generator=torch.Generator().manual_seed(1)))
    head.activation = nn.Identity()  # the reference's logits
    with torch.no_grad():
        logits = reference_forward(model.eval(), t.tokens, t.pos_embed, t.scale_ids)
    expected = torch.tanh(logits)
    expected[-3] = torch.sigmoid(logits[-3])
    got = scorer.score_prepared([t])[0]
    torch.testing.assert_close(torch.tensor(got.outputs), expected, rtol=0, atol=1e-5)
    assert got.score == pytest.approx(float(expected[-3]), abs=1e-6)


# -- what the stand-ins must not let through ---------------------------------------------------------


class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def touch_marker(path: str) -> None:
    """A function of an importable, harmless-looking module: unpickled normally, it would run."""
    open(path, "w").close()


@pytest.mark.parametrize(
    "payload",
    [
        lambda m: _Payload(os.system, f"touch {m}"),
        lambda m: _Payload(eval, f"open({str(m)!r}, 'w')"),
        lambda m: _Payload(getattr, _Payload(__import__, "os"), "system"),
    ],
    ids=["os.system", "eval", "getattr-import"],
)
def test_payload_inside_the_config_dict_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    model.config._fields["encoder_name"] = payload(marker)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_checkpoint(save_official(model, tmp_path / "m.pth"), tmp_path / "cache")
    assert not marker.exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_callable_the_loader_does_not_know_is_never_called(tmp_path):
    """Where a plain value sits, a call to an unknown function becomes an inert stand-in."""
    marker = tmp_path / "touched"
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    model.config._fields["notes"] = _Payload(touch_marker, str(marker))
    model.mlp_head.hook = _Payload(touch_marker, str(marker))
    state, cfg, _ = load_checkpoint(save_official(model, tmp_path / "m.pth"))
    assert not marker.exists() and cfg.depth == 1 and "head.weight" in state


def test_a_callable_where_a_tensor_belongs_is_one_line_and_never_called(tmp_path):
    marker = tmp_path / "touched"
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    model.mlp_head.linear._parameters["bias"] = _Payload(touch_marker, str(marker))
    with pytest.raises(CheckpointError, match="not a tensor") as err:
        load_checkpoint(save_official(model, tmp_path / "m.pth"))
    assert "\n" not in str(err.value) and not marker.exists()
