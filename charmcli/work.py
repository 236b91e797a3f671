"""The work done for one photo, the same on a laptop and on a cluster.

Every path that scores photos calls these, so each rule is written once:

* :func:`load_scorer` / :func:`load_preparer`: the model of a run's options, through the one
  factory (:mod:`charmcli.model.factory`), every failure one line (:class:`FatalError`);
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from charmcli.library.decode import DEFAULT_MAX_PIXELS, preprocess_tag
from charmcli.model.registry import DEFAULT_MODEL  # the registry is torch-free

if TYPE_CHECKING:  # torch is imported only when a file really needs the network
    from charmcli.model.base import Preparer, Scorer
    from charmcli.model.spec import ModelFiles


class FatalError(Exception):
    """The run cannot go on (model unavailable, bad checkpoint); ``str()`` is one line."""


@dataclass
class ScoreOptions:
    """What to score with and how to decode; ``preprocess`` goes into the cache key."""

    model: str = DEFAULT_MODEL
    model_given: bool = False  #: the user named the model (else a checkpoint's own name wins)
    checkpoint: Path | None = None
    pos_embed: Path | None = None
    device: str = "auto"
    exact: bool = False
    max_side: int = 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    rescore: bool = False
    retry_failed: bool = False
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    batch_size: int | None = None  #: None: 1 on CPU; on CUDA, from free memory (up to 128)
    #: issue 13: every model of a multi-model run (``model`` is the first); empty = just ``model``
    models: list[str] = field(default_factory=list)
    arch_config: Path | None = None  #: EAT: the architecture in the official YAML format

    @property
    def model_names(self) -> list[str]:
        return [m.lower() for m in self.models] or [self.model.lower()]

    @property
    def preprocess(self) -> str:
        return preprocess_tag(exact=self.exact, max_side=self.max_side)

    @property
    def failure_options(self) -> str:
        """Decode options a failure depends on: a failure under other options is retried."""
        return f"{self.preprocess};max_pixels={self.max_pixels}"

    @property
    def source(self) -> str:
        """Where the weights come from, the key of the checkpoint-identity memo."""
        arch = ""
        if self.arch_config is not None:  # same weights, another architecture: another identity
            try:
                arch = "#arch=" + hashlib.sha256(Path(self.arch_config).read_bytes()).hexdigest()[:16]
            except OSError:
                arch = "#arch=" + os.path.abspath(self.arch_config)
        if self.checkpoint is not None:
            return "file:" + os.path.abspath(self.checkpoint) + arch
        return "hub:" + self.model.lower() + arch


# -- the model ---------------------------------------------------------------------------------


def _fatal(options: ScoreOptions, exc: BaseException, multi: bool) -> FatalError:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return FatalError(f"{options.model}: {message}" if multi else message)


def model_files(options: ScoreOptions, *, multi: bool = False) -> ModelFiles:
    """Where the weights of ``options`` are (torch-free: a missing file is known before torch loads).

    A named model is that model; a checkpoint without ``--model`` holds its own name.
    """
    from charmcli.model import factory
    from charmcli.model.errors import CheckpointError, ModelUnavailableError

    name = options.model if options.model_given or options.checkpoint is None else None
    try:
        return factory.locate(name, checkpoint=options.checkpoint, pos_embed=options.pos_embed,
                              arch_config=options.arch_config)  # fmt: skip
    except (ModelUnavailableError, CheckpointError, ValueError, OSError) as exc:
        raise _fatal(options, exc, multi) from None


def load_scorer(options: ScoreOptions, *, multi: bool = False) -> tuple[Scorer, Path]:
    """The scorer ``options`` name on ``options.device``, and the weights file it came from;
    :class:`FatalError` (one line, naming the model when ``multi``) if it cannot be loaded."""
    files = model_files(options, multi=multi)
    from charmcli.model.errors import CheckpointError, ModelUnavailableError

    try:
        from charmcli.model import factory

        return factory.load(files, device=options.device), files.checkpoint
    except ImportError as exc:  # pragma: no cover - broken installation
        raise FatalError(f"cannot import the model engine: {exc}") from None
    except (ModelUnavailableError, CheckpointError, ValueError, OSError) as exc:
        raise _fatal(options, exc, multi) from None


def load_preparer(options: ScoreOptions) -> Preparer:
    """The CPU half of the model ``options`` name, without its network (cluster CPU workers)."""
    files = model_files(options)
    from charmcli.model.errors import CheckpointError, ModelUnavailableError

    try:
        from charmcli.model import factory

        return factory.load_preparer(files)
    except (ModelUnavailableError, CheckpointError, ValueError, OSError) as exc:
        raise _fatal(options, exc, False) from None
