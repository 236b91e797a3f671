"""The face every model family shows, whatever its network: two stages and a result.

``prepare(image)`` is the CPU work (resize, tensor, tokens): thread-safe, and available without
weights (:meth:`Scorer.preparer`), so CPU workers of a cluster never hold a network.
``score_prepared(batch)`` runs the network on one device. The laptop pipeline runs the two in
threads and a loop, the cluster as a CPU map stage and a GPU actor stage; a multi-model run
prepares once per distinct :attr:`Preparer.preprocess_key`.

Families implement these classes in their own package (``model/charm``, ``model/eat``); the
factory (:mod:`charmcli.model.factory`) builds them by model name. ``Scorer`` is also the
public entry of the Python API: ``Scorer.from_pretrained("aadb")`` or ``Scorer.from_files(…)``
returns the scorer of the model's family.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from charmcli.model.precision import PrecisionChoice
    from charmcli.model.spec import ModelFiles, ModelSpec


@dataclass
class ScoreResult:
    """What a model says about one image."""

    score: float  #: on the training set's scale (see ``Scorer.spec.scale``), full precision
    outputs: list[float]  #: the model's outputs (after the head's activation, if it has one)
    input_size: tuple[int, int]  #: (W, H) the network's input was made from (after any pre-resize)
    n_tokens: int | None = None  #: sequence length including CLS (None: a fixed-size input)
    route: str | None = None  #: the tokenizer's route, "short" or "multiscale" (None: no tokenizer)
    kept_cells: list[tuple[int, int]] = field(default_factory=list)  #: (row, col) of kept cells
    cell_size: int | None = None  #: side of a kept cell in ``input_size`` pixels
    embedding: np.ndarray | None = None  #: float16 image descriptor (CLS): groups near-duplicates
    #: float32 input of the head (Charm: [CLS, mean of patches]; EAT: the pooled features), what a
    #: head fitted on top of the model (e.g. a photographer's taste) reads
    head_input: np.ndarray | None = None
    seconds: float = 0.0  #: network time for this image (its share of a batch)


class Prepared(Protocol):
    """One image made ready for the network by :meth:`Preparer.prepare`."""

    @property
    def num_tokens(self) -> int:
        """Sequence length the network will see (sizes batches by memory)."""
        ...


class Preparer(ABC):
    """The CPU half of a model: decoded RGB image → network input. Holds no weights."""

    spec: ModelSpec | None
    checkpoint_id: str  #: sha256 identifying the weights (the cache key's model half)

    @property
    def name(self) -> str:
        """The model's name (``custom`` for a checkpoint that matches none)."""
        return self.spec.name if self.spec is not None else "custom"

    @property
    @abstractmethod
    def preprocess_key(self) -> Hashable:
        """Preparers with equal keys prepare identical inputs (a multi-model run prepares once)."""

    @abstractmethod
    def prepare(self, image: Image.Image) -> Prepared:
        """CPU preprocessing of one RGB image (thread-safe)."""


class Scorer(Preparer):
    """A loaded model ready to score images: the family-agnostic face and the Python API's entry.

        >>> from charmcli.model import Scorer
        >>> scorer = Scorer.from_pretrained("aadb")           # or Scorer.from_files(ckpt, pos)
        >>> result = scorer.score(PIL.Image.open("photo.jpg").convert("RGB"))

    ``score`` scores the image exactly as given. ``charm score`` first decodes a file with
    :func:`charmcli.library.decode.load_image` (EXIF orientation, long side shrunk to 1024 px):
    decode with it too and a script gets the CLI's score for the same file.
    """

    device: torch.device
    #: the precision the network runs in and why (:mod:`charmcli.model.precision`)
    precision_choice: PrecisionChoice

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` or ``fp16``: part of the identity of every score this model gives."""
        return self.precision_choice.precision

    @abstractmethod
    def batch_limit(self, tokens: int, cap: int = 128) -> int:
        """How many inputs of ``tokens`` tokens one forward pass takes on this device."""

    @abstractmethod
    def score_prepared(self, batch: Sequence[Any]) -> list[ScoreResult]:
        """Run the network on prepared inputs (one batch, one device)."""

    @abstractmethod
    def preparer(self) -> Preparer:
        """The CPU half of this model, sharing nothing that holds weights."""

    # -- what a family implements for the factory ----------------------------------------------

    @classmethod
    @abstractmethod
    def load(
        cls, files: ModelFiles, *, device: str | torch.device = "auto", cache_dir: Path | None = None,
        precision: str = "fp32",
    ) -> Scorer:  # fmt: skip
        """The model of located ``files`` (:func:`charmcli.model.factory.locate`) on ``device``."""

    @classmethod
    @abstractmethod
    def load_preparer(cls, files: ModelFiles, *, cache_dir: Path | None = None) -> Preparer:
        """The CPU half of the model of ``files``, without building its network."""

    # -- shared by every family ----------------------------------------------------------------

    def prepare(self, image: Image.Image) -> Prepared:
        return self.preparer().prepare(image)

    @property
    def preprocess_key(self) -> Hashable:
        return self.preparer().preprocess_key

    def score(self, image: Image.Image) -> ScoreResult:
        """Score one decoded RGB image as given (``load_image`` applies the CLI's size policy)."""
        return self.score_prepared([self.prepare(image)])[0]

    def score_many(self, images: Iterable[Image.Image], batch_size: int = 1) -> Iterator[ScoreResult]:
        """Score images in order, ``batch_size`` at a time (batching pays off on a GPU)."""
        pending: list[Any] = []
        for image in images:
            pending.append(self.prepare(image))
            if len(pending) >= batch_size:
                yield from self.score_prepared(pending)
                pending = []
        yield from self.score_prepared(pending)

    # -- the Python API's constructors ---------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name: str = "aadb", device: str | torch.device = "auto", **kwargs: Any) -> Scorer:
        """A published model by name: hub cache (downloaded if online) or the models folder."""
        from charmcli.model.errors import ModelUnavailableError
        from charmcli.model.factory import create_scorer

        try:
            scorer = create_scorer(name, device=device, **kwargs)
        except ModelUnavailableError as exc:  # advise Python, not the command line's flags
            if exc.python_advice is None:
                raise
            raise ModelUnavailableError(exc.python_advice) from None
        return cls._checked(scorer)

    @classmethod
    def from_files(
        cls,
        checkpoint: str | Path,
        pos_embed: str | Path | None = None,
        name: str | None = None,
        device: str | torch.device = "auto",
        **kwargs: Any,
    ) -> Scorer:
        """Local files: ``name`` picks the model (without it, Charm reads it from the checkpoint).

        Charm: an official ``.pth`` (read safely) or a ``.safetensors`` checkpoint, and its
        position table (without it, from the hub cache). EAT: ``name="eat-ava"`` and the
        authors' state dict (``arch_config=`` for another architecture).
        """
        from charmcli.model.factory import create_scorer

        files = {"checkpoint": Path(checkpoint), "pos_embed": None if pos_embed is None else Path(pos_embed)}
        return cls._checked(create_scorer(name, device=device, **files, **kwargs))

    @classmethod
    def _checked(cls, scorer: Scorer) -> Scorer:
        if not isinstance(scorer, cls):  # e.g. CharmScorer.from_pretrained("eat-ava")
            from charmcli.model.errors import CheckpointError

            raise CheckpointError(f"{scorer.name} is not a {cls.__name__} model; use Scorer.from_files")
        return scorer


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is a clear error."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but this PyTorch build sees no CUDA device; use --device cpu")
    return dev
