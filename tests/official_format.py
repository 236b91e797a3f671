"""Build checkpoints in the *official* Charm file format, for tests, without the official code.

The published checkpoints pickle a whole ``model.Model`` whose parts are ``transformers``' DINOv2
modules. Pickle records classes by module and name, so stand-in classes registered under those
names (only while saving) produce byte-for-byte the same structure: same globals, same
attribute layout, same ``state_dict`` keys. This lets the tests exercise charm's loader on
checkpoints of any depth, width, head count and head size.
"""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

_DINO = "transformers.models.dinov2.modeling_dinov2"
_MODULES = {
    "model": ["Model", "PatchEmbeddings", "Transformer", "MlpHead"],
    _DINO: ["Dinov2Encoder", "Dinov2Layer", "Dinov2Attention", "Dinov2SelfAttention", "Dinov2SelfOutput",
            "Dinov2LayerScale", "Dinov2MLP"],
    "transformers.models.dinov2.configuration_dinov2": ["Dinov2Config"],
    "transformers.activations": ["GELUActivation"],
    # the authors' training code keeps its config, an ml_collections.ConfigDict, on the model
    "ml_collections.config_dict.config_dict": ["ConfigDict"],
}  # fmt: skip


def _make_classes() -> dict[str, type]:
    classes: dict[str, type] = {}
    for module, names in _MODULES.items():
        for name in names:
            base = object if name in ("Dinov2Config", "ConfigDict") else nn.Module
            cls = type(name, (base,), {"__module__": module})
            cls.__qualname__ = name
            classes[name] = cls
    return classes


_CLASSES = _make_classes()


@contextmanager
def _registered_modules():
    """Make ``model`` and the transformers modules importable by pickle while saving."""
    saved = {}
    for module, names in _MODULES.items():
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in saved:
                saved[name] = sys.modules.get(name)
                sys.modules[name] = types.ModuleType(name)
        for n in names:
            setattr(sys.modules[module], n, _CLASSES[n])
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _new(name: str, **children) -> nn.Module:
    obj = _CLASSES[name]()
    nn.Module.__init__(obj)
    for key, value in children.items():
        setattr(obj, key, value)
    return obj


def build_official_model(
    *,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    num_classes: int = 1,
    dataset: str = "aadb",
    mlp_ratio: int = 4,
    seed: int = 0,
    activation: str | nn.Module | None = None,
    authors: bool = False,
) -> nn.Module:
    """An official-structure Charm model with random, visibly non-trivial weights.

    ``activation`` is the head's: a name (sigmoid, softmax, relu, identity) or any torch module.
    ``authors=True`` writes the attributes of the authors' *training* code instead of the
    official package's: ``Model.data``, a ``ConfigDict`` as ``Model.config`` and
    ``PatchEmbeddings.config``, a Dropout(0.1) head, and training mode (as ``train.py`` saves).
    """
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 0.2, offset: float = 0.0) -> nn.Parameter:
        return nn.Parameter(torch.randn(*shape, generator=g) * scale + offset)

    def linear(i: int, o: int) -> nn.Linear:
        lin = nn.Linear(i, o)
        lin.weight, lin.bias = rnd(o, i, scale=i**-0.5), rnd(o, scale=0.05)
        return lin

    def norm() -> nn.LayerNorm:
        ln = nn.LayerNorm(dim, eps=1e-6)
        ln.weight, ln.bias = rnd(dim, scale=0.1, offset=1.0), rnd(dim, scale=0.1)
        return ln

    config = _CLASSES["Dinov2Config"]()
    config.__dict__.update(
        hidden_size=dim,
        num_attention_heads=heads,
        mlp_ratio=mlp_ratio,
        patch_size=14,
        image_size=518,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
    )
    gelu = _new("GELUActivation", act=nn.functional.gelu)
    layers = []
    for _ in range(depth):
        self_attn = _new(
            "Dinov2SelfAttention",
            query=linear(dim, dim),
            key=linear(dim, dim),
            value=linear(dim, dim),
            dropout=nn.Dropout(0.0),
        )
        self_attn.num_attention_heads = heads
        self_attn.attention_head_size = dim // heads
        self_attn.all_head_size = dim
        attention = _new(
            "Dinov2Attention",
            attention=self_attn,
            output=_new("Dinov2SelfOutput", dense=linear(dim, dim), dropout=nn.Dropout(0.0)),
        )
        ls1, ls2 = _new("Dinov2LayerScale"), _new("Dinov2LayerScale")
        ls1.lambda1, ls2.lambda1 = rnd(dim, scale=0.3, offset=0.8), rnd(dim, scale=0.3, offset=0.8)
        mlp = _new(
            "Dinov2MLP", fc1=linear(dim, dim * mlp_ratio), activation=gelu, fc2=linear(dim * mlp_ratio, dim)
        )
        layers.append(
            _new(
                "Dinov2Layer",
                norm1=norm(),
                attention=attention,
                layer_scale1=ls1,
                drop_path=nn.Identity(),
                norm2=norm(),
                mlp=mlp,
                layer_scale2=ls2,
            )
        )
    encoder = _new("Dinov2Encoder", layer=nn.ModuleList(layers))
    encoder.config = config
    encoder.gradient_checkpointing = False
    conv = nn.Conv2d(3, dim, kernel_size=14, stride=14)
    conv.weight, conv.bias = rnd(dim, 3, 14, 14, scale=0.05), rnd(dim, scale=0.05)
    patch = _new("PatchEmbeddings", patch_embedder=conv)
    patch.cls_token, patch.se, patch.mask_token = (
        rnd(1, 1, dim, scale=1.0),
        rnd(1, 2, dim, scale=1.0),
        rnd(1, 1, dim),
    )
    patch.patch_selection, patch.scales, patch.patch_size = "frequency", 2, 14
    act = activation or ("softmax" if num_classes > 1 else "sigmoid")
    if isinstance(act, str):
        act = {"softmax": nn.Softmax(dim=-1), "sigmoid": nn.Sigmoid(), "relu": nn.ReLU(),
               "identity": nn.Identity()}[act]  # fmt: skip
    head = _new(
        "MlpHead",
        linear=linear(2 * dim, num_classes),
        dropout=nn.Dropout(0.1 if authors else 0.0),
        activation=act,
    )
    model = _new(
        "Model",
        patch_embeddings=patch,
        encoder=_new("Transformer", encoder=encoder, layernorm=norm()),
        mlp_head=head,
    )
    if authors:
        config = _CLASSES["ConfigDict"]()
        config.__dict__.update(
            _fields={"encoder_name": "facebook/dinov2-small", "frozen_vit": False, "masked": False,
                     "mixout": False, "mixout_prob": 0.7, "dropout_prob": 0.1, "multi_class": False,
                     "hidden_size": dim, "num_classes": num_classes},
            _locked=False, _type_safe=True, _convert_dict=True, _allow_dotted_keys=False, _sort_keys=True,
        )  # fmt: skip
        model.data, model.patch_selection, model.config = dataset, "frequency", config
        patch.config = config
        model.train()
    else:
        model.dataset, model.patch_selection, model.model = dataset, "frequency", "facebook/dinov2-small"
    return model


def save_official(model: nn.Module, path: Path, layout: str = "model_state_dict", location: str | None = None) -> Path:
    """Save as the authors' code does: ``torch.save({'model_state_dict': model, 'epoch': 0})``.

    ``layout`` ``"model"`` is their ``best_model.pth``; ``"state_dict"`` keeps only the weights
    under ``model_state_dict``; ``"bare_state_dict"`` is a plain state dict. ``location`` tags
    the storages (e.g. ``"cuda:0"``, as a file saved from a GPU has them).
    """
    obj = {
        "model_state_dict": lambda: {"model_state_dict": model, "epoch": 0},
        "model": lambda: {"model": model, "epoch": 3},
        "state_dict": lambda: {"model_state_dict": model.state_dict(), "epoch": 0},
        "bare_state_dict": lambda: model.state_dict(),
    }[layout]()
    tag = torch.serialization.location_tag
    if location is not None:
        torch.serialization.location_tag = lambda storage: location
    try:
        with _registered_modules():
            torch.save(obj, path)
    finally:
        torch.serialization.location_tag = tag
    return path


def save_pos_table(path: Path, dim: int, side: int = 37, seed: int = 0) -> Path:
    """A random position table in the official format (a pickled ``nn.Parameter``)."""
    g = torch.Generator().manual_seed(seed)
    torch.save(nn.Parameter(torch.randn(1, 1 + side * side, dim, generator=g)), path)
    return path


def reference_forward(
    model: nn.Module, tokens: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The Charm forward pass written directly from the official module tree (no timm).

    ``tokens`` (L, 3, 14, 14) without the CLS slot, ``pos`` (L+1, D), ``mask`` (L,) scale ids.
    Returns the head's activated outputs. An independent check of charm's name mapping.
    """
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    d = sd["patch_embeddings.cls_token"].shape[-1]
    w = sd["patch_embeddings.patch_embedder.weight"]
    x = tokens.reshape(len(tokens), -1) @ w.reshape(d, -1).T + sd["patch_embeddings.patch_embedder.bias"]
    x = x + sd["patch_embeddings.se"][0][mask.long()]
    x = torch.cat([sd["patch_embeddings.cls_token"][0], x]) + pos
    layers = model.encoder.encoder.layer
    for i, layer in enumerate(layers):
        p = f"encoder.encoder.layer.{i}."
        heads = layer.attention.attention.num_attention_heads
        h = nn.functional.layer_norm(x, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        q, k, v = (
            h @ sd[p + f"attention.attention.{n}.weight"].T + sd[p + f"attention.attention.{n}.bias"]
            for n in ("query", "key", "value")
        )
        q, k, v = (t.reshape(len(t), heads, -1).transpose(0, 1) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(1, 2) / (d // heads) ** 0.5, dim=-1) @ v
        a = a.transpose(0, 1).reshape(len(x), d) @ sd[p + "attention.output.dense.weight"].T
        x = x + sd[p + "layer_scale1.lambda1"] * (a + sd[p + "attention.output.dense.bias"])
        h = nn.functional.layer_norm(x, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        h = nn.functional.gelu(h @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        x = x + sd[p + "layer_scale2.lambda1"] * (h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"])
    x = nn.functional.layer_norm(x, (d,), sd["encoder.layernorm.weight"], sd["encoder.layernorm.bias"], 1e-6)
    feat = torch.cat([x[0], x[1:].mean(0)])
    logits = feat @ sd["mlp_head.linear.weight"].T + sd["mlp_head.linear.bias"]
    return model.mlp_head.activation(logits)  # the real torch module the file was built with
