"""What every published model says about itself, whatever its family (torch-free).

A family subclasses :class:`ModelSpec` in its own package (``model/charm/specs.py``,
``model/eat/specs.py``) with its scoring rule, where its weights come from and which class
loads them; the registry only lists the names. Nothing here imports torch: ``charm models``,
the option checks and a fully cached run read specs without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

#: Each training set's rating scale, as charm reports its scores; one entry per set, because both
#: families have models trained on AVA and TAD66K.
SCALES = {"aadb": "0..1", "tad66k": "1..10", "para": "1..5", "baid": "0..10", "spaq": "0..100",
          "koniq10k": "0..5", "ava": "1..10"}  # fmt: skip
#: AVA's grades, the support of its distribution heads (the official mean_score's arange)
AVA_GRADES = tuple(float(i) for i in range(1, 11))


@dataclass(frozen=True)
class ModelFiles:
    """Where one model's weights are, found before torch loads (a missing file is known early).

    ``name_given``: the user named the model; without it a checkpoint's own stored name wins.
    """

    spec: ModelSpec
    checkpoint: Path
    pos_embed: Path | None = None  #: Charm's position table (None: matched to the checkpoint later)
    arch_config: Path | None = None  #: EAT: the architecture in the official YAML format
    name_given: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """One published model: its files, rating scale and how its outputs become a score."""

    name: str
    filename: str  #: checkpoint file (in the hub repo, or the authors' published name)
    pos_filename: str  #: position table in the hub repo ("" for families without one)
    backbone: str  #: the architecture the weights follow
    budget: int  #: token budget + 1 (CLS); 0 for a fixed-size input
    num_classes: int
    scale: str  #: the training set's rating scale, for display
    factor: float = 1.0  #: one-output models: score = output x factor
    grades: tuple[float, ...] = ()  #: distribution models: score = sum(p_i x grades_i)
    resize_max_side: int | None = None  #: official pre-resize of the long side (para, spaq)
    description: str = ""
    #: the head activation the published file is expected to carry, and how sure that is:
    #: "code" (the official package and the authors' training code agree), "inferred" (from
    #: published outputs), "unsure" (the code says sigmoid, its comment ReLU). The file decides.
    head: str = "sigmoid"
    head_basis: str = "unsure"

    #: the family's name, for display (``charm models --json``)
    family: ClassVar[str] = ""
    #: the weights cannot come from the hub: the user brings the file
    needs_local_file: ClassVar[bool] = False
    #: the model's architecture can be given as a config file (``--arch-config``)
    takes_arch_config: ClassVar[bool] = False
    #: ``module:Class`` of the family's scorer, imported only when a model is really built
    scorer_class: ClassVar[str] = ""
    #: the family has a bf16 path on a CPU (else reduced precision is for GPUs only)
    cpu_reduced_precision: ClassVar[bool] = False

    def to_score(self, outputs: Any, activation: str = "sigmoid") -> Any:
        """Map outputs (…, C) — a torch tensor — to the training set's rating scale."""
        raise NotImplementedError

    def score_rule(self, activation: str = "sigmoid") -> str:
        """The rule of :meth:`to_score` in words, for `charm models` and `charm show`."""
        raise NotImplementedError

    def locate(
        self, checkpoint: Path | None = None, pos_embed: Path | None = None, arch_config: Path | None = None,
        *, name_given: bool = True,
    ) -> ModelFiles:  # fmt: skip
        """The files to load, given or found (hub cache, models folder); a missing one raises
        :class:`~charmcli.model.errors.ModelUnavailableError` with one actionable line."""
        raise NotImplementedError

    def expectation(self, outputs: Any) -> Any:
        """A distribution head's score: the expectation over the grades (the official ``mean_score``)."""
        import torch

        grades = torch.tensor(self.grades, dtype=torch.float32, device=outputs.device)
        return (outputs.float() * grades).sum(dim=-1)
