"""Loading EAT weights the user brings: a plain state dict, read without running any code.

The authors publish their checkpoints on a file-sharing drive, not on the hub, so charm cannot
fetch them. What the official training script saves is ``torch.save(model.state_dict())``: an
ordered dict of tensors, which ``torch.load(..., weights_only=True)`` reads with torch's own
restricted unpickler. A file that asks for anything else (a pickled class, a function to call)
is refused before anything runs.

The architecture comes from a config in the official YAML format (``MODEL.DAT`` = the network's
keyword arguments); without one, the published ``dat_base``. Every key and shape of the file is
checked against the network built from that config, and every problem is one line that says
what to do.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from charmcli.model.eat.network import DatConfig, EatNet, relative_index, shift_mask
from charmcli.model.errors import EAT_WEIGHTS_URL, CheckpointError, UnsafeCheckpointError
from charmcli.model.files import sha256_file


def load_arch_config(path: Path | None, num_classes: int) -> DatConfig:
    """The architecture of an official YAML config (``MODEL.DAT``), or dat_base without one.

    ``num_classes`` is the model's (10 for AVA, 1 for TAD66K) whatever the file says: the
    official AVA and TAD66K configs differ only in it, so one file serves both variants.
    """
    if path is None:
        return DatConfig(num_classes=num_classes)
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except OSError as exc:
        raise CheckpointError(f"--arch-config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:160]
        raise CheckpointError(f"--arch-config {path}: not valid YAML ({first})") from None
    model = data.get("MODEL") if isinstance(data, dict) else None
    dat = model.get("DAT") if isinstance(model, dict) else None
    if not isinstance(dat, dict):
        raise CheckpointError(
            f"--arch-config {path}: no MODEL.DAT section (expected the official EAT/DAT format)"
        )
    kind = str(model.get("TYPE", "dat")).lower()
    if kind != "dat":
        raise CheckpointError(f"--arch-config {path}: MODEL.TYPE is {kind!r}; only 'dat' is an EAT network")
    values = {**dat, "num_classes": num_classes}
    try:
        return DatConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"--arch-config {path}: {exc}") from None


def config_digest(cfg: DatConfig) -> str:
    """A short stable hash of the architecture (the same weights under another config score differently)."""
    text = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]



def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from ``path``, loaded with ``weights_only=True``; one-line errors."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        first = " ".join(str(exc).split())
        what = (
            first.split("Unsupported global:")[-1].strip().split(" ")[0]
            if "Unsupported global" in first
            else ""
        )
        detail = f" (it asks for {what})" if what else ""
        raise UnsafeCheckpointError(
            f"{path.name}: refused, the file holds pickled code or classes{detail}, not a plain "
            f"state dict of tensors (a Charm checkpoint is a whole pickled model: it goes with a Charm "
            f"--model); nothing from it was run"
        ) from None
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated zip, not a torch file at all, …
        first = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({first})") from None
    if isinstance(obj, Mapping) and not _all_tensors(obj):
        for wrapper in ("state_dict", "model"):  # training-loop wrappers around the weights
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and _all_tensors(inner):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not _all_tensors(obj):
        raise CheckpointError(f"{path.name}: not a state dict of tensors (what EAT's training script saves)")
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _all_tensors(obj: Mapping[Any, Any]) -> bool:
    return all(isinstance(v, torch.Tensor) for v in obj.values())


def check_state_dict(state: Mapping[str, torch.Tensor], net: EatNet, model: str, path: Path) -> None:
    """CheckpointError naming the first missing, unexpected or wrong-shaped tensor (and a count)."""
    want = net.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    wrong = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    head = "cls_head.weight"
    if head in wrong and state[head].shape[0] != want[head].shape[0]:
        got, need = state[head].shape[0], want[head].shape[0]
        hint = (
            " (the TAD66K checkpoint? use --model eat-tad66k)"
            if got == 1
            else (" (the AVA checkpoint? use --model eat-ava)" if got == 10 else "")
        )
        raise CheckpointError(f"{path.name}: its head has {got} outputs but {model} needs {need}{hint}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} unexpected (first {extra[0]})")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} with the wrong shape (first {k}: {tuple(state[k].shape)} in the file, "
            f"{tuple(want[k].shape)} in the config)"
        )
    if problems:
        raise CheckpointError(
            f"{path.name} does not fit the EAT architecture ({'; '.join(problems)}); "
            f"is it an EAT checkpoint, and does --arch-config match it (default dat_base)?"
        )


def _check_fixed_buffers(state: Mapping[str, torch.Tensor], cfg: DatConfig, path: Path) -> None:
    """The stored index/mask buffers are functions of the config: they must equal ours."""
    for key, value in state.items():
        if key.endswith("relative_position_index"):
            expected = relative_index(math.isqrt(value.shape[0]))
        elif key.endswith("attn_mask"):
            stage = int(key.split(".")[1])
            fmap = cfg.img_size // cfg.patch_size // (2**stage)
            window = cfg.window_sizes[stage]
            expected = shift_mask(fmap, window, -(-window // 2))
        else:
            continue
        if not torch.equal(value.to(expected.dtype), expected):
            raise CheckpointError(
                f"{path.name}: buffer {key} differs from the one the config implies; wrong --arch-config?"
            )


def load_eat(path: Path, cfg: DatConfig, model: str, expected_name: str = "") -> tuple[EatNet, str]:
    """Build the network for ``cfg``, load ``path`` strictly; returns (network, checkpoint_id).

    The id is the sha256 of the file and the architecture together, so scores of one file under
    two configs never share a cache key.
    """
    path = Path(path)
    if not path.is_file():
        wanted = f" ({model} expects the authors' {expected_name})" if expected_name else ""
        raise CheckpointError(
            f"checkpoint {path}: no such file{wanted}; the EAT authors publish their weights on Google Drive "
            f"({EAT_WEIGHTS_URL})"
        )
    state = read_state_dict(path)
    net = EatNet(cfg)
    check_state_dict(state, net, model, path)
    _check_fixed_buffers(state, cfg, path)
    floats = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    net.load_state_dict(floats, strict=True)
    digest = hashlib.sha256(f"{sha256_file(path)}:{config_digest(cfg)}".encode()).hexdigest()
    return net.eval().requires_grad_(False), digest
