"""Reading a pickled module tree: its tensors as ``state_dict()`` would list them, and the few
things only the recorded objects can tell (head count, head activation, LayerNorm epsilon).

Small files in the authors' and the official format (a 32-wide, one-layer model): each loads in
milliseconds, so these run for every mutant of the loader's structure check. The loader itself is
the safe unpickler: nothing in these files is imported or called when they are read.
"""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

from charmcli.model import CheckpointError
from charmcli.model.charm.checkpoint import load_checkpoint, map_official_state_dict

from official_format import build_official_model, save_official


def _load(model: nn.Module, tmp_path, name: str = "m.pth"):
    state, cfg, _ = load_checkpoint(save_official(model, tmp_path / name))
    return state, cfg


def _refused(model: nn.Module, tmp_path) -> str:
    with pytest.raises(CheckpointError) as err:
        _load(model, tmp_path)
    assert "\n" not in str(err.value)
    return str(err.value)


def _same(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


# -- the tree's tensors -------------------------------------------------------------------------------


def test_the_tree_gives_what_state_dict_gives_and_nothing_else(tmp_path):
    """Empty parameter slots, non-persistent buffers, empty and non-module children add nothing."""
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    expected = map_official_state_dict(model.state_dict())
    lin = model.mlp_head.linear  # an empty slot first: the parameters after it still count
    lin._parameters = collections.OrderedDict([("spare", None), *lin._parameters.items()])
    model.patch_embeddings.register_buffer("cache", torch.ones(5), persistent=False)
    model.encoder.register_module("pooler", None)
    _same(map_official_state_dict(model.state_dict()), expected)  # torch's own reading agrees
    model.mlp_head._modules["note"] = "not a module"  # torch's state_dict() would fail here
    state, cfg = _load(model, tmp_path)
    _same(state, expected)
    assert (cfg.dim, cfg.depth, cfg.heads) == (32, 1, 2)


def test_a_persistent_buffer_is_part_of_the_state_and_must_belong(tmp_path):
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    model.patch_embeddings.register_buffer("running", torch.ones(5))
    assert _refused(model, tmp_path) == "checkpoint has unexpected parameters: patch_embeddings.running"


def test_an_entry_that_is_not_a_tensor_is_named_in_one_line(tmp_path):
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    model.mlp_head.linear._parameters["bias"] = "0.5"
    assert _refused(model, tmp_path) == "checkpoint entry mlp_head.linear.bias is not a tensor ('0.5')"
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    model.encoder.encoder.layer[0].norm1._buffers["extra"] = 3
    assert _refused(model, tmp_path) == "checkpoint entry encoder.encoder.layer.0.norm1.extra is not a tensor (3)"


# -- what only the recorded objects can tell ----------------------------------------------------------


def test_the_recorded_config_decides_where_the_tensors_cannot_and_never_the_shape(tmp_path):
    """The authors' ConfigDict says 768 wide and 10 outputs, DINOv2's config 8 heads and eps 1e-5;
    the tensors say 32 wide and one output and the attention modules 2 heads, as they ran."""
    model = build_official_model(dim=32, depth=1, heads=2, dataset="spaq", authors=True)
    model.config._fields.update(hidden_size=768, num_classes=10, multi_class=True,
                                encoder_name="facebook/dinov2-base")  # fmt: skip
    dino = model.encoder.encoder.config
    dino.num_attention_heads, dino.layer_norm_eps, dino.hidden_size = 8, 1e-5, 768
    state, cfg = _load(model, tmp_path)
    assert (cfg.dim, cfg.num_classes, cfg.mlp_hidden, cfg.depth) == (32, 1, 128, 1)  # the tensors
    assert (cfg.heads, cfg.layer_norm_eps) == (2, 1e-5)
    assert (cfg.activation, cfg.activation_source) == ("sigmoid", "checkpoint")  # the pickled head
    assert (cfg.dataset, cfg.encoder_name) == ("spaq", "facebook/dinov2-base")  # recorded, as recorded
    assert state["head.weight"].shape == (1, 64)


def test_the_head_count_comes_from_the_attention_modules_then_the_config_then_the_width(tmp_path):
    model = build_official_model(dim=64, depth=2, heads=4, authors=True)
    model.encoder.encoder.config.num_attention_heads = 8
    assert _load(model, tmp_path, "modules.pth")[1].heads == 4
    for layer in model.encoder.encoder.layer:
        del layer.attention.attention.num_attention_heads
    assert _load(model, tmp_path, "config.pth")[1].heads == 8
    del model.encoder.encoder.config.num_attention_heads
    assert _load(model, tmp_path, "width.pth")[1].heads == 1


@pytest.mark.parametrize(
    ("head", "classes", "activation", "args"),
    [
        (nn.ReLU(), 1, "relu", {}),  # a bare state dict would say sigmoid
        (nn.Sigmoid(), 5, "sigmoid", {}),  # a bare state dict would say softmax
        (nn.Softmax(dim=1), 5, "softmax", {"dim": 1}),
        (nn.LeakyReLU(0.25), 1, "leakyrelu", {"negative_slope": 0.25}),
    ],
    ids=["relu", "sigmoid-over-5", "softmax-dim1", "leakyrelu"],
)
def test_the_pickled_head_decides_the_activation(tmp_path, head, classes, activation, args):
    model = build_official_model(dim=32, depth=1, heads=2, num_classes=classes, activation=head)
    cfg = _load(model, tmp_path)[1]
    assert (cfg.num_classes, cfg.activation, cfg.activation_args, cfg.activation_source) == (
        classes, activation, args, "checkpoint")


def test_the_multi_attribute_head_is_found_by_its_flag(tmp_path):
    model = build_official_model(dim=32, depth=1, heads=2, num_classes=12, authors=True)
    head = model.mlp_head
    del head.activation
    head.sigmoid, head.tanh, head.multi = nn.Sigmoid(), nn.Tanh(), True
    cfg = _load(model, tmp_path)[1]
    assert (cfg.num_classes, cfg.activation, cfg.activation_source) == (12, "aadb-attributes", "checkpoint")


@pytest.mark.parametrize("layout", ["state_dict", "bare_state_dict"])
def test_a_file_of_weights_only_is_read_as_a_state_dict(tmp_path, layout):
    """No module tree, so no recorded head: the weights load and the head is inferred (and says so)."""
    model = build_official_model(dim=32, depth=1, heads=2, num_classes=3, activation="relu", authors=True)
    state, cfg, _ = load_checkpoint(save_official(model, tmp_path / "m.pth", layout=layout))
    _same(state, map_official_state_dict(model.state_dict()))
    assert (cfg.activation, cfg.activation_source, cfg.heads) == ("softmax", "inferred", 1)


def test_an_empty_model_entry_holds_no_model(tmp_path):
    torch.save({"model_state_dict": {}, "epoch": 0}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "empty.pth")
    assert str(err.value) == (
        "empty.pth: no Charm model inside (expected a 'model_state_dict' or 'model' entry)")


def test_a_config_kept_as_a_plain_dict_is_read_like_a_config_dict(tmp_path):
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    model.config = {"encoder_name": "facebook/dinov2-base", "hidden_size": 768}
    model.encoder.encoder.config = {"num_attention_heads": 2, "layer_norm_eps": 1e-5}
    for layer in model.encoder.encoder.layer:
        del layer.attention.attention.num_attention_heads
    cfg = _load(model, tmp_path)[1]
    assert (cfg.encoder_name, cfg.heads, cfg.layer_norm_eps, cfg.dim) == ("facebook/dinov2-base", 2, 1e-5, 32)


def test_a_head_activation_that_is_not_a_module_is_one_line(tmp_path):
    model = build_official_model(dim=32, depth=1, heads=2, authors=True)
    del model.mlp_head.activation
    model.mlp_head.activation = "sigmoid"  # a plain attribute where the module belongs
    assert _refused(model, tmp_path) == "checkpoint head activation is not a module (str)"


@pytest.mark.parametrize(
    "parts", [{"sigmoid": nn.ReLU(), "tanh": nn.Tanh()}, {"sigmoid": nn.Sigmoid()}, {"sigmoid": nn.Sigmoid(), "tanh": 1}],
    ids=["relu-for-sigmoid", "no-tanh", "tanh-not-a-module"],
)
def test_a_multi_attribute_head_without_its_sigmoid_and_tanh_is_one_line(tmp_path, parts):
    model = build_official_model(dim=32, depth=1, heads=2, num_classes=12, authors=True)
    head = model.mlp_head
    del head.activation
    head.multi = True
    for name, part in parts.items():
        setattr(head, name, part)
    assert _refused(model, tmp_path) == "checkpoint has a multi-output head without its Sigmoid and Tanh"


def test_a_file_without_a_model_entry_says_where_it_looked(tmp_path):
    torch.save({"epoch": 3, "optimizer": {"lr": 3e-5}}, tmp_path / "opt.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "opt.pth")
    assert str(err.value) == "opt.pth: no Charm model inside (expected a 'model_state_dict' or 'model' entry)"


@pytest.mark.parametrize("layout", ["model_state_dict", "bare_state_dict"])
def test_a_scale_count_kept_as_a_tensor_is_not_a_weight(tmp_path, layout):
    """The official code's ``PatchEmbeddings.scales`` (a number of scales) is dropped, not refused."""
    model = build_official_model(dim=32, depth=1, heads=2)
    expected = map_official_state_dict(model.state_dict())
    del model.patch_embeddings.scales
    model.patch_embeddings.register_buffer("scales", torch.tensor(2))
    state, _, _ = load_checkpoint(save_official(model, tmp_path / "m.pth", layout=layout))
    _same(state, expected)
