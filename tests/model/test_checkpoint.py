"""Loading official-format checkpoints safely, mapping names, and refusing hostile pickles."""

from __future__ import annotations

import builtins
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from charmcli.model import CheckpointError, Scorer, UnsafeCheckpointError
from charmcli.model.charm.checkpoint import load_checkpoint, load_position_table, map_official_state_dict
from charmcli.model.charm.tokenizer import CharmTokenizer, PositionTable

from official_format import build_official_model, reference_forward, save_official, save_pos_table


@pytest.mark.parametrize(
    ("dim", "depth", "heads", "classes", "dataset"),
    [(64, 2, 4, 1, "aadb"), (96, 3, 2, 9, "para"), (128, 1, 8, 10, "ava"), (64, 2, 1, 1, "koniq10k")],
)
def test_loader_rebuilds_the_official_model(tmp_path, dim, depth, heads, classes, dataset):
    model = build_official_model(
        dim=dim, depth=depth, heads=heads, num_classes=classes, dataset=dataset, seed=depth
    )
    ckpt = save_official(model, tmp_path / "m.pth")
    pos = save_pos_table(tmp_path / "pos.pt", dim)
    scorer = Scorer.from_files(ckpt, pos, device="cpu", cache_dir=tmp_path / "cache")
    cfg = scorer.config
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.num_classes, cfg.dataset) == (
        dim,
        depth,
        heads,
        classes,
        dataset,
    )
    assert scorer.name == dataset
    # the charm network on charm tokens == the official math written out from the official tree
    tokenizer = CharmTokenizer(PositionTable(load_position_table(pos)), scorer.spec.budget)
    for h, w in [(60, 90), (560, 700)]:
        t = tokenizer(torch.rand(3, h, w, generator=torch.Generator().manual_seed(h)))
        expected = reference_forward(model, t.tokens, t.pos_embed, t.scale_ids)
        got = scorer.score_prepared([t])[0]
        torch.testing.assert_close(torch.tensor(got.outputs), expected, rtol=0, atol=1e-5)
        assert got.score == pytest.approx(float(scorer.spec.to_score(expected)), abs=1e-5)


def test_name_mapping_fuses_qkv_in_order():
    model = build_official_model(dim=32, depth=1, heads=2)
    mapped = map_official_state_dict(model.state_dict())
    sd = model.state_dict()
    p = "encoder.encoder.layer.0.attention.attention."
    expected = torch.cat([sd[p + "query.weight"], sd[p + "key.weight"], sd[p + "value.weight"]])
    assert torch.equal(mapped["blocks.0.attn.qkv.weight"], expected)
    assert torch.equal(mapped["blocks.0.ls1.gamma"], sd["encoder.encoder.layer.0.layer_scale1.lambda1"])
    assert torch.equal(mapped["scale_embed"], sd["patch_embeddings.se"][0])
    assert torch.equal(mapped["norm.weight"], sd["encoder.layernorm.weight"])


def test_converted_cache_and_safetensors_give_identical_scores(tmp_path):
    model = build_official_model(dim=64, depth=2, heads=4)
    ckpt = save_official(model, tmp_path / "m.pth")
    pos = save_pos_table(tmp_path / "pos.pt", 64)
    cache = tmp_path / "cache"
    first = Scorer.from_files(ckpt, pos, device="cpu", cache_dir=cache)
    cached = list(cache.glob("*.safetensors"))
    assert [p.stem for p in cached] == [first.checkpoint_id]
    again = Scorer.from_files(ckpt, pos, device="cpu", cache_dir=cache)  # served from the cache
    direct = Scorer.from_files(cached[0], pos, device="cpu", cache_dir=tmp_path / "other")
    img = torch.rand(3, 100, 130)
    outs = [s.score_prepared([s.tokenizer(img)])[0].score for s in (first, again, direct)]
    assert outs[0] == outs[1] == outs[2]
    assert again.checkpoint_id == first.checkpoint_id


class _Payload:
    """Pickles as a call to ``func(*args)``: what a hostile checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _marker_cmd(marker: Path) -> str:
    return f"touch {marker}"


@pytest.mark.parametrize(
    "make",
    [
        lambda m: _Payload(os.system, _marker_cmd(m)),
        lambda m: _Payload(subprocess.call, ["touch", str(m)]),
        lambda m: _Payload(eval, f"open({str(m)!r}, 'w')"),
        lambda m: _Payload(exec, f"open({str(m)!r}, 'w')"),
        lambda m: _Payload(builtins.__import__, "os"),
        lambda m: _Payload(getattr, _Payload(builtins.__import__, "os"), "system"),
        lambda m: _Payload(open, str(m), "w"),
    ],
    ids=["os.system", "subprocess", "eval", "exec", "__import__", "getattr", "open"],
)
def test_hostile_pickles_are_refused_and_never_run(tmp_path, make):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    cache = tmp_path / "cache"
    # A good checkpoint first: its conversion is what lands in this cache (so an empty cache
    # below means "nothing cached", not "cached somewhere else").
    good = save_official(build_official_model(dim=32, depth=1, heads=2), tmp_path / "good.pth")
    Scorer.from_files(good, save_pos_table(tmp_path / "pos.pt", 32), device="cpu", cache_dir=cache)
    entries = sorted(cache.iterdir())
    assert len(entries) == 1
    torch.save({"model_state_dict": make(marker), "epoch": 0}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        Scorer.from_files(path, device="cpu", cache_dir=cache)
    assert not marker.exists()
    assert sorted(cache.iterdir()) == entries  # the refused file left nothing behind


def test_payload_hidden_inside_a_real_model_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    model = build_official_model(dim=32, depth=1, heads=2)
    model.mlp_head.extra = _Payload(os.system, _marker_cmd(marker))
    ckpt = save_official(model, tmp_path / "m.pth")
    with pytest.raises(UnsafeCheckpointError, match=r"(posix|os)\.system"):
        load_checkpoint(ckpt, tmp_path / "cache")
    assert not marker.exists()


def test_truncated_and_garbage_checkpoints_give_one_line_errors(tmp_path):
    model = build_official_model(dim=32, depth=1, heads=2)
    good = save_official(model, tmp_path / "m.pth").read_bytes()
    cases = {
        "truncated.pth": good[: len(good) // 2],
        "empty.pth": b"",
        "text.pth": b"this is not a checkpoint\n" * 10,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / name, tmp_path / "cache")
        assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pth")


def test_missing_and_misshapen_parameters_are_named(tmp_path):
    model = build_official_model(dim=32, depth=2, heads=2)
    del model.encoder.encoder.layer[1].mlp.fc2
    with pytest.raises(CheckpointError, match=r"(layer|blocks)\.1\.mlp"):
        load_checkpoint(save_official(model, tmp_path / "a.pth"))
    model = build_official_model(dim=32, depth=1, heads=2)
    model.mlp_head.linear = torch.nn.Linear(40, 1)
    with pytest.raises(CheckpointError, match=r"head\.weight"):
        load_checkpoint(save_official(model, tmp_path / "b.pth"))


def test_position_table_errors(tmp_path):
    bad = tmp_path / "pos.pt"
    torch.save(torch.nn.Parameter(torch.zeros(1, 100, 64)), bad)
    with pytest.raises(CheckpointError, match="square"):
        load_position_table(bad)
    model = build_official_model(dim=64, depth=1, heads=4)
    ckpt = save_official(model, tmp_path / "m.pth")
    wrong_width = save_pos_table(tmp_path / "p32.pt", 32)
    with pytest.raises(CheckpointError, match="width"):
        Scorer.from_files(ckpt, wrong_width, device="cpu")
    (tmp_path / "cut.pt").write_bytes(save_pos_table(tmp_path / "p.pt", 64).read_bytes()[:500])
    with pytest.raises(CheckpointError):
        load_position_table(tmp_path / "cut.pt")


def test_wrong_model_name_for_checkpoint(tmp_path):
    ckpt = save_official(build_official_model(dim=32, depth=1, heads=2, dataset="aadb"), tmp_path / "m.pth")
    pos = save_pos_table(tmp_path / "pos.pt", 32)
    with pytest.raises(CheckpointError, match="trained on 'aadb'"):
        Scorer.from_files(ckpt, pos, name="para", device="cpu")


def test_converted_file_is_a_plain_zip_free_safetensors(tmp_path):
    ckpt = save_official(build_official_model(dim=32, depth=1, heads=2), tmp_path / "m.pth")
    load_checkpoint(ckpt, tmp_path / "cache")
    (converted,) = (tmp_path / "cache").glob("*.safetensors")
    assert not zipfile.is_zipfile(converted)
