"""The head activations a Charm checkpoint may carry, rebuilt from torch, never from the pickle.

The authors' ``MlpHead`` reads ``nn.Sigmoid() #ReLU()``: which activation a published head
uses is a property of the file, not of the data set. The loader reads the class name and its
plain numeric attributes from the pickled tree; this module turns them into the real torch
module. Only parameter-free activations are here (elementwise ones, plus the softmax family over
the last dimension), so nothing but the listed arguments comes from the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from charmcli.model.errors import CheckpointError

if TYPE_CHECKING:  # torch only where a module is built: `charm models` describes heads without it
    from torch import nn

# lower-case class name -> (torch.nn class name, the attributes that configure it)
HEAD_ACTIVATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sigmoid": ("Sigmoid", ()),
    "softmax": ("Softmax", ("dim",)),
    "logsoftmax": ("LogSoftmax", ("dim",)),
    "softmin": ("Softmin", ("dim",)),
    "identity": ("Identity", ()),
    "relu": ("ReLU", ()),
    "relu6": ("ReLU6", ()),
    "leakyrelu": ("LeakyReLU", ("negative_slope",)),
    "elu": ("ELU", ("alpha",)),
    "celu": ("CELU", ("alpha",)),
    "selu": ("SELU", ()),
    "gelu": ("GELU", ("approximate",)),
    "silu": ("SiLU", ()),
    "mish": ("Mish", ()),
    "tanh": ("Tanh", ()),
    "hardtanh": ("Hardtanh", ("min_val", "max_val")),
    "hardsigmoid": ("Hardsigmoid", ()),
    "hardswish": ("Hardswish", ()),
    "softplus": ("Softplus", ("beta", "threshold")),
    "softsign": ("Softsign", ()),
    "tanhshrink": ("Tanhshrink", ()),
    "threshold": ("Threshold", ("threshold", "value")),
    "logsigmoid": ("LogSigmoid", ()),
    "hardshrink": ("Hardshrink", ("lambd",)),
    "softshrink": ("Softshrink", ("lambd",)),
}
_DIM_WISE = {"softmax", "logsoftmax", "softmin"}
#: the authors' multi-attribute AADB head (``config.multi_class``): Tanh on the attribute
#: outputs, Sigmoid on the overall score, which sits third from the end
AADB_ATTRIBUTES = "aadb-attributes"
SCORE_INDEX = {AADB_ATTRIBUTES: -3}  #: which output is the score, where it is not the first
_TORCH_MODULES = ("torch.nn.modules.activation", "torch.nn.modules.linear", "torch.nn")


def read_activation(qualname: str, attrs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name, arguments) of a pickled head activation ``module.Class`` with its ``__dict__``.

    Raises a one-line :class:`CheckpointError` for anything that is not a torch activation
    charm can rebuild exactly.
    """
    module, _, cls = qualname.rpartition(".")
    name = cls.lower()
    if module not in _TORCH_MODULES or name not in HEAD_ACTIVATIONS:
        known = ", ".join(v[0] for v in HEAD_ACTIVATIONS.values())
        raise CheckpointError(f"checkpoint head uses {qualname}, not a torch activation charm knows ({known})")
    args: dict[str, Any] = {}
    for key in HEAD_ACTIVATIONS[name][1]:
        value = attrs.get(key)
        if value is None and key == "dim":
            continue
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise CheckpointError(f"checkpoint head {cls} has an unreadable {key!r} ({type(value).__name__})")
        args[key] = value
    if name in _DIM_WISE and args.get("dim", -1) not in (-1, 1):
        raise CheckpointError(f"checkpoint head {cls} runs over dim {args['dim']}, not the outputs")
    return name, args


def build_activation(name: str, args: dict[str, Any] | None = None) -> nn.Module:
    """The torch module for a head activation read by :func:`read_activation`."""
    if name == AADB_ATTRIBUTES:
        return _aadb_attributes()
    try:
        cls_name, allowed = HEAD_ACTIVATIONS[name]
    except KeyError:
        raise CheckpointError(f"unknown head activation {name!r}") from None
    from torch import nn

    kwargs = {k: v for k, v in (args or {}).items() if k in allowed}
    if name in _DIM_WISE:
        kwargs["dim"] = -1  # (B, C) logits: dim 1 and -1 are the same axis
    return getattr(nn, cls_name)(**kwargs)


def _aadb_attributes() -> nn.Module:
    import torch
    from torch import nn

    class AadbAttributes(nn.Module):
        """Tanh on every output but the score (third from the end), which gets a Sigmoid."""

        def forward(self, logits: torch.Tensor) -> torch.Tensor:
            out = torch.tanh(logits)
            out[..., -3] = torch.sigmoid(logits[..., -3])
            return out

    return AadbAttributes()


def describe(name: str, args: dict[str, Any] | None = None) -> str:
    """Display form, e.g. ``Sigmoid``, ``LeakyReLU(negative_slope=0.2)``."""
    if name == AADB_ATTRIBUTES:
        return "Tanh attributes + Sigmoid score"
    cls_name, _ = HEAD_ACTIVATIONS.get(name, (name, ()))
    shown = {k: v for k, v in (args or {}).items() if k != "dim"}
    return cls_name + (f"({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else "")
