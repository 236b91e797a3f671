"""Load the published Charm checkpoints without running any code they contain.

How the published files were written: the authors' ``train.py`` saves
``torch.save({'epoch': e, 'model_state_dict': model})`` of the whole ``model.Model`` (their
``best_model.pth`` uses the key ``'model'``), still in training mode. The pickle names their
classes, ``transformers``' DINOv2 modules, the training config (an ``ml_collections.ConfigDict``
kept as ``Model.config``) and a ``torch.nn`` head activation (Sigmoid, Softmax, and in some files
ReLU). :func:`charmcli.model.charm.safe_pickle.safe_unpickle` reads such a file into tensors and inert
stand-ins; nothing in it is imported or called.

What is trusted is the structure: the tensors of the module tree must map exactly onto
:class:`charmcli.model.charm.network.CharmViT` (timm blocks): every parameter present, none extra,
every shape right. The head's activation is read from the tree and rebuilt from torch's own
elementwise activations (never the pickled object). Bare state dicts and safetensors files are
accepted too; a converted copy is cached as safetensors keyed by the source file's sha256, so
the pickle is read once.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from charmcli.model.charm.activations import AADB_ATTRIBUTES, read_activation
from charmcli.model.charm.safe_pickle import StandIn, safe_unpickle
from charmcli.model.errors import CheckpointError
from charmcli.model.files import sha256_file, weights_format

CONVERTED_FORMAT = "charm-timm-2"
_OLDER_FORMATS = ("charm-timm-1",)  # sigmoid/softmax only, no activation arguments

def _module_tree(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Flatten a pickled nn.Module (as stand-ins) the way ``state_dict()`` would."""
    attrs = obj.attrs() if isinstance(obj, StandIn) else {}
    for bucket in ("_parameters", "_buffers"):
        skip = attrs.get("_non_persistent_buffers_set") or set()
        for name, value in (attrs.get(bucket) or {}).items():
            if value is None or name in skip:
                continue
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"checkpoint entry {prefix}{name} is not a tensor ({value!r})")
            out[prefix + name] = value.detach()
    for name, child in (attrs.get("_modules") or {}).items():
        if child is not None:
            _module_tree(child, f"{prefix}{name}.", out)


def _find(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, StandIn):
            return None
        attrs = obj.attrs()
        obj = (attrs.get("_modules") or {}).get(part, attrs.get(part))
    return obj


# ---------------------------------------------------------------------------------------------
# Name mapping: official (transformers DINOv2) -> charm (timm blocks)


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild the network; read from the checkpoint, never assumed."""

    dim: int
    depth: int
    heads: int
    mlp_hidden: int
    num_classes: int
    activation: str  #: head activation, a key of activations.HEAD_ACTIVATIONS ("sigmoid", "relu", …)
    num_scales: int = 2
    layer_norm_eps: float = 1e-6
    dataset: str | None = None  #: training set recorded in the pickle, if any
    activation_args: dict[str, Any] = field(default_factory=dict)  #: e.g. {"negative_slope": 0.2}
    #: where the activation came from: "checkpoint" (read from the pickled head) or "inferred"
    #: (a bare state dict has no head module: sigmoid for one output, softmax for several)
    activation_source: str = "checkpoint"
    encoder_name: str | None = None  #: the authors' config, e.g. "facebook/dinov2-small"

    def __hash__(self) -> int:  # frozen, but activation_args is a dict
        return hash((self.dim, self.depth, self.heads, self.num_classes, self.activation))


_LAYER = re.compile(r"^encoder\.encoder\.layer\.(\d+)\.(.+)$")
_LAYER_NAMES = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
}
_TOP_NAMES = {
    "patch_embeddings.cls_token": "cls_token",
    "patch_embeddings.mask_token": "mask_token",
    "patch_embeddings.patch_embedder.weight": "patch_embed.weight",
    "patch_embeddings.patch_embedder.bias": "patch_embed.bias",
    "encoder.layernorm.weight": "norm.weight",
    "encoder.layernorm.bias": "norm.bias",
    "mlp_head.linear.weight": "head.weight",
    "mlp_head.linear.bias": "head.bias",
}


def map_official_state_dict(official: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official Charm state dict to charm's timm-based names (fusing q, k, v)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = collections.defaultdict(dict)
    unexpected = []
    for key, value in official.items():
        if key in _TOP_NAMES:
            out[_TOP_NAMES[key]] = value
        elif key == "patch_embeddings.se":
            out["scale_embed"] = value.reshape(value.shape[-2], value.shape[-1])
        elif m := _LAYER.match(key):
            i, rest = int(m.group(1)), m.group(2)
            if rest in _LAYER_NAMES:
                out[f"blocks.{i}.{_LAYER_NAMES[rest]}"] = value
            elif (
                a := re.match(r"attention\.attention\.(query|key|value)\.(weight|bias)$", rest)
            ) is not None:
                qkv[(i, a.group(2))][a.group(1)] = value
            else:
                unexpected.append(key)
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError(f"checkpoint has unexpected parameters: {', '.join(sorted(unexpected)[:5])}")
    for (i, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise CheckpointError(
                f"checkpoint layer {i} lacks attention {sorted({'query', 'key', 'value'} - set(parts))}"
            )
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out


def expected_shapes(cfg: NetworkConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of :class:`CharmViT` with its shape, for validating a checkpoint."""
    d, h = cfg.dim, cfg.mlp_hidden
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "mask_token": (1, 1, d),
        "scale_embed": (cfg.num_scales, d),
        "patch_embed.weight": (d, 3, 14, 14),
        "patch_embed.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
        "head.weight": (cfg.num_classes, 2 * d),
        "head.bias": (cfg.num_classes,),
    }
    for i in range(cfg.depth):
        b = f"blocks.{i}."
        shapes.update({
            b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "norm2.weight": (d,), b + "norm2.bias": (d,),
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "ls1.gamma": (d,), b + "ls2.gamma": (d,),
            b + "mlp.fc1.weight": (h, d), b + "mlp.fc1.bias": (h,),
            b + "mlp.fc2.weight": (d, h), b + "mlp.fc2.bias": (d,),
        })  # fmt: skip
    return shapes


def validate(state: Mapping[str, torch.Tensor], cfg: NetworkConfig) -> None:
    """Raise a one-line CheckpointError on missing, unexpected or wrongly shaped parameters."""
    want = expected_shapes(cfg)
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    if missing:
        raise CheckpointError(f"checkpoint is missing parameters: {', '.join(missing[:5])}")
    if extra:
        raise CheckpointError(f"checkpoint has unexpected parameters: {', '.join(extra[:5])}")
    for key, shape in want.items():
        if tuple(state[key].shape) != shape:
            raise CheckpointError(
                f"checkpoint parameter {key} has shape {tuple(state[key].shape)}, expected {shape}"
            )
        if not state[key].is_floating_point():
            raise CheckpointError(f"checkpoint parameter {key} is not floating point")


def infer_config(state: Mapping[str, torch.Tensor], hints: Mapping[str, Any] | None = None) -> NetworkConfig:
    """Depth, width, heads and head size from the parameters (plus what the pickle recorded)."""
    hints = dict(hints or {})
    try:
        dim = int(state["cls_token"].shape[-1])
        mlp_hidden = int(state["blocks.0.mlp.fc1.weight"].shape[0])  # first: no blocks at all names it
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        num_classes = int(state["head.weight"].shape[0])
        num_scales = int(state["scale_embed"].shape[0])
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"checkpoint is not a Charm model (cannot find {exc})") from None
    heads = int(hints.get("heads") or max(1, dim // 64))
    if dim % heads:
        raise CheckpointError(f"checkpoint width {dim} is not divisible by {heads} attention heads")
    if hints.get("activation"):
        activation, args, source = hints["activation"], dict(hints.get("activation_args") or {}), "checkpoint"
    else:
        activation, args, source = ("softmax" if num_classes > 1 else "sigmoid"), {}, "inferred"
    return NetworkConfig(
        dim=dim, depth=depth, heads=heads, mlp_hidden=mlp_hidden, num_classes=num_classes,
        activation=activation, num_scales=num_scales,
        layer_norm_eps=float(hints.get("layer_norm_eps") or 1e-6), dataset=hints.get("dataset"),
        activation_args=args, activation_source=source, encoder_name=hints.get("encoder_name"),
    )  # fmt: skip


def _config_fields(obj: Any) -> dict[str, Any]:
    """The fields of a pickled config object: an ``ml_collections.ConfigDict`` keeps them in
    ``_fields``; a transformers config or a plain object in its ``__dict__``; a dict is itself."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, StandIn):
        attrs = obj.attrs()
        fields = attrs.get("_fields")
        return dict(fields) if isinstance(fields, Mapping) else attrs
    return {}


def _official_hints(root: Any) -> dict[str, Any]:
    """Heads, eps, head activation and training set, as recorded in the pickled objects.

    Read from the official package's attributes (``Model.dataset``) and the authors' training
    code's (``Model.data``, ``Model.config`` = the ``model`` section of their config); only plain
    values are taken, and the tensors alone decide the network's shape.
    """
    hints: dict[str, Any] = {}
    if not isinstance(root, StandIn):
        return hints
    attrs = root.attrs()
    config = _config_fields(attrs.get("config"))
    for key in ("dataset", "data"):
        if isinstance(attrs.get(key), str):
            hints["dataset"] = attrs[key]
            break
    if isinstance(config.get("encoder_name"), str):
        hints["encoder_name"] = config["encoder_name"]
    act = _find(root, "mlp_head.activation")
    if isinstance(act, StandIn):
        hints["activation"], hints["activation_args"] = read_activation(act.qualname, act.attrs())
    elif act is not None:
        raise CheckpointError(f"checkpoint head activation is not a module ({type(act).__name__})")
    elif _find(root, "mlp_head.multi") is True:  # the authors' multi-attribute AADB head
        parts = [_find(root, f"mlp_head.{n}") for n in ("sigmoid", "tanh")]
        if [p.qualname.rsplit(".", 1)[-1] if isinstance(p, StandIn) else None for p in parts] != ["Sigmoid", "Tanh"]:
            raise CheckpointError("checkpoint has a multi-output head without its Sigmoid and Tanh")
        hints["activation"], hints["activation_args"] = AADB_ATTRIBUTES, {}
    attention = _find(root, "encoder.encoder.layer.0.attention.attention")
    if isinstance(attention, StandIn) and isinstance(attention.attrs().get("num_attention_heads"), int):
        hints["heads"] = attention.attrs()["num_attention_heads"]
    dino = _config_fields(_find(root, "encoder.encoder.config"))
    if isinstance(dino.get("num_attention_heads"), int):
        hints.setdefault("heads", dino["num_attention_heads"])
    if isinstance(dino.get("layer_norm_eps"), float):
        hints["layer_norm_eps"] = dino["layer_norm_eps"]
    return hints


# The places the authors' code and the official package put the model in a checkpoint.
_MODEL_KEYS = ("model_state_dict", "model", "state_dict")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def convert_official(path: Path) -> tuple[dict[str, torch.Tensor], NetworkConfig]:
    """Read an official ``.pth`` checkpoint safely into charm's state dict and config.

    Accepted layouts: ``{'model_state_dict': Model}`` (the published files),
    ``{'model': Model}`` (the authors' ``best_model.pth``), either key holding a state dict, a
    bare pickled ``Model``, and a bare state dict.
    """
    obj = safe_unpickle(path)
    root = obj
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        root = next((obj[k] for k in _MODEL_KEYS if k in obj), None)
    if _is_state_dict(root):
        official, hints = dict(root), {}
    elif isinstance(root, StandIn):
        official = {}
        _module_tree(root, "", official)
        hints = _official_hints(root)
    else:
        raise CheckpointError(
            f"{Path(path).name}: no Charm model inside (expected a 'model_state_dict' or 'model' entry)"
        )
    official = {k: v.float() for k, v in official.items() if k != "patch_embeddings.scales"}
    state = map_official_state_dict(official)
    cfg = infer_config(state, hints)
    validate(state, cfg)
    return state, cfg


# ---------------------------------------------------------------------------------------------
# Converted (safetensors) files and the cache



def save_converted(
    path: Path, state: Mapping[str, torch.Tensor], cfg: NetworkConfig, source_sha256: str
) -> None:
    """Write a converted checkpoint atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    meta = {"format": CONVERTED_FORMAT, "config": json.dumps(asdict(cfg)), "source_sha256": source_sha256}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_converted(path: Path) -> tuple[dict[str, torch.Tensor], NetworkConfig, str | None]:
    """Read a charm safetensors checkpoint (as written by :func:`save_converted`)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{Path(path).name}: unreadable safetensors file ({exc})") from None
    if meta.get("format") in (CONVERTED_FORMAT, *_OLDER_FORMATS):
        cfg = NetworkConfig(**json.loads(meta["config"]))
    else:  # a bare safetensors state dict, in official or charm names
        if any(k.startswith(("encoder.", "patch_embeddings.")) for k in state):
            state = map_official_state_dict(state)
        cfg = infer_config(state)
    state = {k: v.float() for k, v in state.items()}
    validate(state, cfg)
    return state, cfg, meta.get("source_sha256")


def load_checkpoint(
    path: Path, cache_dir: Path | None = None
) -> tuple[dict[str, torch.Tensor], NetworkConfig, str]:
    """Load an official ``.pth`` or a ``.safetensors`` checkpoint; returns (state, config, sha256).

    Official pickles are converted once and cached as ``<cache_dir>/<sha256>.safetensors``.
    The sha256 is always that of the file the user gave, so scores stay keyed to it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    digest = sha256_file(path)
    if weights_format(path) == "safetensors":
        state, cfg, _ = load_converted(path)
        return state, cfg, digest
    cached = cache_dir / f"{digest}.safetensors" if cache_dir else None
    if cached is not None and cached.is_file():
        try:
            state, cfg, _ = load_converted(cached)
            return state, cfg, digest
        except CheckpointError:
            pass  # a damaged cache entry is rebuilt below
    state, cfg = convert_official(path)
    if cached is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs the conversion next run
            save_converted(cached, state, cfg, digest)
    return state, cfg, digest


def load_position_table(path: Path) -> torch.Tensor:
    """Load ``dino_small_pos.pt`` / ``dino_large.pt`` (a pickled Parameter) or a safetensors copy."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such position-embedding file")
    if zipfile.is_zipfile(path):
        obj = safe_unpickle(path)
    else:
        try:
            from safetensors.torch import load_file

            tensors = load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path.name}: not a position-embedding file ({exc})") from None
        obj = next(iter(tensors.values()), None)
    if isinstance(obj, Mapping):
        obj = next((v for v in obj.values() if isinstance(v, torch.Tensor)), None)
    if not isinstance(obj, torch.Tensor) or obj.ndim not in (2, 3) or not obj.is_floating_point():
        raise CheckpointError(f"{path.name}: expected a (1, 1 + N*N, D) position table")
    table = obj.detach().float().reshape(-1, obj.shape[-1])
    side = int((table.shape[0] - 1) ** 0.5)
    if side < 2 or side * side != table.shape[0] - 1:
        raise CheckpointError(f"{path.name}: position table has {table.shape[0]} rows, not 1 + a square grid")
    return table
