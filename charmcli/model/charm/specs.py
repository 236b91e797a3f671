"""The published Charm models: one per training set, each with its own rating scale (torch-free).

``aadb`` (the default, as in the official package), ``tad66k``, ``para``, ``baid``, ``spaq``,
``koniq10k`` and ``ava``. Each entry says which hub file holds its weights, which position
table it uses, its token budget and how its outputs map to the training set's rating scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from charmcli.model.charm.activations import AADB_ATTRIBUTES
from charmcli.model.spec import AVA_GRADES, SCALES, ModelFiles, ModelSpec


@dataclass(frozen=True)
class CharmSpec(ModelSpec):
    """A Charm model: weights and position table from the hub ``FatemehBehrad/Charm``."""

    family: ClassVar[str] = "charm"
    scorer_class: ClassVar[str] = "charmcli.model.charm.scorer:CharmScorer"
    cpu_reduced_precision: ClassVar[bool] = True

    def to_score(self, outputs: Any, activation: str = "sigmoid") -> Any:
        """Map activated outputs (…, C) to the training set's rating scale.

        A distribution head gives the expectation over the grades (the official ``mean_score``).
        A one-output *sigmoid* head predicts a 0..1 fraction of the scale, so it is multiplied by
        the data set's factor. Any other one-output head (ReLU, Identity, …) was trained to output
        the rating itself: its raw output is the score, as the official package reports it.
        """
        if self.grades:
            return self.expectation(outputs)
        if activation == AADB_ATTRIBUTES:  # the attribute head: its score output is a sigmoid
            return outputs[..., -3] * self.factor
        return outputs[..., 0] * self.factor if activation == "sigmoid" else outputs[..., 0]

    def score_rule(self, activation: str = "sigmoid") -> str:
        if self.grades:
            return f"expectation over grades {self.grades[0]:g}..{self.grades[-1]:g}"
        if activation == AADB_ATTRIBUTES:
            return "score output (third from the end)"
        if activation == "sigmoid":
            return f"output x {self.factor:g}" if self.factor != 1 else "output"
        return "raw output (no factor)"

    def locate(
        self, checkpoint: Path | None = None, pos_embed: Path | None = None, arch_config: Path | None = None,
        *, name_given: bool = True,
    ) -> ModelFiles:  # fmt: skip
        """The hub's files when no checkpoint is given (a missing one is known before torch loads);
        a given checkpoint without ``pos_embed`` gets the table that fits its width when loaded."""
        if checkpoint is None:
            from charmcli.model.registry import fetch

            return ModelFiles(self, fetch(self.filename, self.name), fetch(self.pos_filename, self.name))
        return ModelFiles(self, Path(checkpoint).absolute(), pos_embed, name_given=name_given)


# score grades of the distribution heads, as the official mean_score (arange in float32)
_PARA = tuple(1.0 + 0.5 * i for i in range(9))  # 1.0, 1.5, …, 5.0

SPECS: list[CharmSpec] = [
    CharmSpec("aadb", "aadb_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 1025, 1, SCALES["aadb"],
              factor=1.0, head_basis="code", description="AADB: aesthetic attributes, photography-oriented"),
    CharmSpec("tad66k", "tad66k_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 769, 1, SCALES["tad66k"],
              factor=10.0, head="relu", head_basis="inferred", description="TAD66K: theme-aware aesthetics"),
    CharmSpec("para", "para_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 1025, 9, SCALES["para"],
              grades=_PARA, resize_max_side=1024, head="softmax", head_basis="code",
              description="PARA: personalised aesthetics, score distribution 1..5"),
    CharmSpec("baid", "baid_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 1025, 1, SCALES["baid"],
              factor=10.0, description="BAID: artistic images"),
    CharmSpec("spaq", "spaq_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 1025, 1, SCALES["spaq"],
              factor=100.0, resize_max_side=1024, description="SPAQ: smartphone photo quality"),
    CharmSpec("koniq10k", "koniq10k_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 1025, 1,
              SCALES["koniq10k"], factor=5.0, description="KonIQ-10k: technical image quality"),
    CharmSpec("ava", "Ava_large_charm.pth", "dino_large.pt", "vit_large_patch14_dinov2", 513, 10, SCALES["ava"],
              grades=AVA_GRADES, head="softmax", head_basis="code", description="AVA: aesthetics, DINOv2-large, distribution 1..10"),
]  # fmt: skip
