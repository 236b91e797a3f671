"""The structure check of the Charm loader: every parameter named, none extra, every shape, in one line."""

from __future__ import annotations

import pytest
import torch

from charmcli.model import CheckpointError
from charmcli.model.charm.checkpoint import infer_config, map_official_state_dict, validate

from official_format import build_official_model


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    return dict(build_official_model(dim=32, depth=2, heads=2).state_dict())


def _refused(fn, *args) -> str:
    with pytest.raises(CheckpointError) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_unknown_official_names_are_listed_sorted_and_at_most_five(official):
    extra = {f"extra.{c}": torch.zeros(1) for c in "gfedcba"}
    assert _refused(map_official_state_dict, {**official, **extra}) == (
        "checkpoint has unexpected parameters: extra.a, extra.b, extra.c, extra.d, extra.e")
    layer = next(k for k in official if ".attention.attention.query.weight" in k).split(".attention.")[0]
    assert _refused(map_official_state_dict, {**official, f"{layer}.attention.attention.extra.weight": torch.zeros(1)}) == (
        f"checkpoint has unexpected parameters: {layer}.attention.attention.extra.weight")


@pytest.mark.parametrize("dropped", [("key",), ("key", "value"), ("query",)])
def test_a_layer_without_all_of_query_key_value_says_which(official, dropped):
    layer = next(k for k in official if ".attention.attention.query.weight" in k).split(".attention.")[0]
    state = {k: v for k, v in official.items()
             if not any(k == f"{layer}.attention.attention.{d}.weight" for d in dropped)}  # fmt: skip
    index = int(layer.rsplit(".", 1)[-1])
    assert _refused(map_official_state_dict, state) == f"checkpoint layer {index} lacks attention {sorted(dropped)}"


def test_the_mapped_state_is_checked_against_the_network(official):
    state = map_official_state_dict(official)
    cfg = infer_config(state)
    validate(state, cfg)
    missing = {k: v for k, v in state.items() if not k.startswith("blocks.1.")}
    assert _refused(validate, missing, cfg) == ("checkpoint is missing parameters: blocks.1.attn.proj.bias, "
        "blocks.1.attn.proj.weight, blocks.1.attn.qkv.bias, blocks.1.attn.qkv.weight, blocks.1.ls1.gamma")  # fmt: skip
    extra = {**state, **{f"zz.{c}": torch.zeros(1) for c in "fedcba"}}
    assert _refused(validate, extra, cfg) == "checkpoint has unexpected parameters: zz.a, zz.b, zz.c, zz.d, zz.e"
    assert _refused(validate, {**state, "norm.bias": torch.zeros(31)}, cfg) == (
        "checkpoint parameter norm.bias has shape (31,), expected (32,)")
    assert _refused(validate, {**state, "norm.bias": torch.zeros(32, dtype=torch.int64)}, cfg) == (
        "checkpoint parameter norm.bias is not floating point")
