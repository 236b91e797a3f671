"""The structure check of the Charm loader: every parameter named, none extra, every shape, in one line."""

from __future__ import annotations

from dataclasses import asdict

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


# -- what the tensors decide, and what only the recorded config can ----------------------------------


def _mapped(**kw) -> dict[str, torch.Tensor]:
    return map_official_state_dict(build_official_model(**kw).state_dict())


def test_a_bare_state_dict_is_read_from_its_tensors_alone(official):
    cfg = infer_config(map_official_state_dict(official))
    assert asdict(cfg) == {
        "dim": 32, "depth": 2, "heads": 1, "mlp_hidden": 128, "num_classes": 1, "activation": "sigmoid",
        "num_scales": 2, "layer_norm_eps": 1e-6, "dataset": None, "activation_args": {},
        "activation_source": "inferred", "encoder_name": None,
    }  # fmt: skip
    assert asdict(infer_config(map_official_state_dict(official), {})) == asdict(cfg)


@pytest.mark.parametrize(("classes", "head"), [(1, "sigmoid"), (2, "softmax"), (9, "softmax")])
def test_without_a_head_module_one_output_is_a_sigmoid_and_several_a_softmax(classes, head):
    cfg = infer_config(_mapped(dim=32, depth=1, heads=2, num_classes=classes))
    assert (cfg.num_classes, cfg.activation, cfg.activation_args, cfg.activation_source) == (
        classes, head, {}, "inferred")


@pytest.mark.parametrize(("dim", "heads"), [(32, 1), (64, 1), (128, 2), (384, 6)])
def test_without_a_recorded_head_count_there_is_one_head_per_64_channels(dim, heads):
    """As DINOv2 (small: 384 wide, 6 heads); the tensors cannot tell how a width is split."""
    cfg = infer_config(_mapped(dim=dim, depth=3, heads=1, mlp_ratio=2))
    assert (cfg.dim, cfg.depth, cfg.mlp_hidden, cfg.heads) == (dim, 3, 2 * dim, heads)


def test_the_recorded_config_decides_only_what_the_tensors_cannot(official):
    state = map_official_state_dict(official)
    recorded = {
        "heads": 4, "activation": "leakyrelu", "activation_args": {"negative_slope": 0.2},
        "layer_norm_eps": 1e-5, "dataset": "tad66k", "encoder_name": "facebook/dinov2-large",
        # what the tensors say wins: a config that disagrees about the shape changes nothing
        "dim": 1024, "depth": 24, "mlp_hidden": 4096, "num_classes": 10, "num_scales": 3,
    }  # fmt: skip
    assert asdict(infer_config(state, recorded)) == {
        "dim": 32, "depth": 2, "heads": 4, "mlp_hidden": 128, "num_classes": 1, "activation": "leakyrelu",
        "num_scales": 2, "layer_norm_eps": 1e-5, "dataset": "tad66k", "activation_args": {"negative_slope": 0.2},
        "activation_source": "checkpoint", "encoder_name": "facebook/dinov2-large",
    }  # fmt: skip
    # the recorded head is the head, even where the tensors would suggest another
    several = _mapped(dim=32, depth=1, heads=2, num_classes=5)
    cfg = infer_config(several, {"activation": "sigmoid"})
    assert (cfg.activation, cfg.activation_args, cfg.activation_source) == ("sigmoid", {}, "checkpoint")
    # nothing recorded, or recorded as empty: the defaults
    cfg = infer_config(state, {"heads": None, "activation": None, "layer_norm_eps": None})
    assert (cfg.heads, cfg.activation, cfg.activation_source, cfg.layer_norm_eps) == (1, "sigmoid", "inferred", 1e-6)


@pytest.mark.parametrize("heads", [3, 5, 64])
def test_a_recorded_head_count_that_does_not_divide_the_width_is_one_line(official, heads):
    assert _refused(infer_config, map_official_state_dict(official), {"heads": heads}) == (
        f"checkpoint width 32 is not divisible by {heads} attention heads")


@pytest.mark.parametrize("key", ["cls_token", "blocks.0.mlp.fc1.weight", "head.weight", "scale_embed"])
def test_a_state_without_a_part_the_shape_is_read_from_names_it(official, key):
    state = {k: v for k, v in map_official_state_dict(official).items() if k != key}
    assert _refused(infer_config, state) == f"checkpoint is not a Charm model (cannot find {key!r})"


def test_a_state_without_any_block_names_the_first_it_lacks(official):
    state = {k: v for k, v in map_official_state_dict(official).items() if not k.startswith("blocks.")}
    assert _refused(infer_config, state) == "checkpoint is not a Charm model (cannot find 'blocks.0.mlp.fc1.weight')"


def test_the_number_of_scales_is_read_from_the_scale_embedding(official):
    """The published models embed two scales; a file with three says so in its tensor."""
    state = map_official_state_dict({**official, "patch_embeddings.se": torch.randn(1, 3, 32)})
    cfg = infer_config(state)
    assert (cfg.num_scales, cfg.dim) == (3, 32)
    validate(state, cfg)
    assert _refused(validate, {**state, "scale_embed": torch.zeros(2, 32)}, cfg) == (
        "checkpoint parameter scale_embed has shape (2, 32), expected (3, 32)")
