"""One way to build a model: by name, from the hub cache, the models folder or given files.

The spec of the name (:mod:`charmcli.model.registry`) says where the weights are
(:meth:`~charmcli.model.spec.ModelSpec.locate`, torch-free: a missing file is one line before
torch loads) and which class loads them (``scorer_class``); that class's ``load`` and
``load_preparer`` do the rest. Nothing here asks which family a model is.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from charmcli.model.registry import DEFAULT_MODEL, get_spec
from charmcli.model.spec import ModelFiles

if TYPE_CHECKING:
    import torch

    from charmcli.model.base import Preparer, Scorer


def locate(
    name: str | None = None,
    *,
    checkpoint: Path | None = None,
    pos_embed: Path | None = None,
    arch_config: Path | None = None,
) -> ModelFiles:
    """The files of model ``name`` (``None``: whatever model the given checkpoint holds, read
    from the file by its family's loader; the default model's family)."""
    spec = get_spec(name or DEFAULT_MODEL)
    return spec.locate(checkpoint, pos_embed, arch_config, name_given=name is not None)


def _family(files: ModelFiles) -> type[Scorer]:
    """The family's scorer class, once torch is known to import (a broken install: one line)."""
    from charmcli.model.engine import require_engine

    require_engine()
    module, _, cls = files.spec.scorer_class.partition(":")
    return getattr(importlib.import_module(module), cls)


def load(
    files: ModelFiles,
    *,
    device: str | torch.device = "auto",
    cache_dir: Path | None = None,
    precision: str = "fp32",
) -> Scorer:
    """The scorer of located files (see :func:`locate`), its network on ``device``."""
    return _family(files).load(files, device=device, cache_dir=cache_dir, precision=precision)


def load_preparer(files: ModelFiles, *, cache_dir: Path | None = None) -> Preparer:
    """The CPU half of the model of located ``files``, without building its network."""
    return _family(files).load_preparer(files, cache_dir=cache_dir)


def create_scorer(
    name: str | None = None,
    *,
    checkpoint: Path | None = None,
    pos_embed: Path | None = None,
    arch_config: Path | None = None,
    device: str | torch.device = "auto",
    cache_dir: Path | None = None,
    precision: str = "fp32",
) -> Scorer:
    """A loaded scorer for model ``name``; :class:`~charmcli.model.errors.ModelUnavailableError`,
    :class:`~charmcli.model.errors.CheckpointError` or ``ValueError`` with one line otherwise."""
    files = locate(name, checkpoint=checkpoint, pos_embed=pos_embed, arch_config=arch_config)
    return load(files, device=device, cache_dir=cache_dir, precision=precision)


def create_preparer(
    name: str | None = None,
    *,
    checkpoint: Path | None = None,
    pos_embed: Path | None = None,
    arch_config: Path | None = None,
    cache_dir: Path | None = None,
) -> Preparer:
    """The CPU half of model ``name`` (what :meth:`Scorer.prepare` does), without building its
    network: a CPU worker of a cluster holds no weights it never runs."""
    files = locate(name, checkpoint=checkpoint, pos_embed=pos_embed, arch_config=arch_config)
    return load_preparer(files, cache_dir=cache_dir)
