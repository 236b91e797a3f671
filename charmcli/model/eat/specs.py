"""The published EAT models (torch-free): weights the user brings, by the authors' file names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from charmcli.model.spec import AVA_GRADES, SCALES, ModelFiles, ModelSpec


@dataclass(frozen=True)
class EatSpec(ModelSpec):
    """An EAT model: a 224 px input, no position table, weights from the authors' drive."""

    resample: str = ""  #: the official 224x224 resize filter (bicubic for AVA, bilinear for TAD66K)

    family: ClassVar[str] = "eat"
    needs_local_file: ClassVar[bool] = True
    takes_arch_config: ClassVar[bool] = True
    scorer_class: ClassVar[str] = "charmcli.model.eat.scorer:EatScorer"

    def to_score(self, outputs: Any, activation: str = "identity") -> Any:
        """AVA: Σ i·yᵢ over the 10 raw outputs (no softmax, as the official get_score); TAD66K: the raw
        Linear output, trained against the score / factor, times the factor."""
        if self.grades:
            return self.expectation(outputs)
        return outputs[..., 0] * self.factor

    def score_rule(self, activation: str = "identity") -> str:
        if self.grades:
            return f"expectation over grades {self.grades[0]:g}..{self.grades[-1]:g}"
        return f"raw output x {self.factor:g}"

    def locate(
        self, checkpoint: Path | None = None, pos_embed: Path | None = None, arch_config: Path | None = None,
        *, name_given: bool = True,
    ) -> ModelFiles:  # fmt: skip
        """The given file, else the authors' file under its published name in the models folder."""
        from charmcli.model.registry import local_weights

        weights = Path(checkpoint).absolute() if checkpoint is not None else local_weights(self)
        if weights is None:  # known before torch loads, like a hub file
            from charmcli.model.errors import unavailable_eat
            from charmcli.model.registry import models_dir

            raise unavailable_eat(self.name, self.filename, models_dir())
        return ModelFiles(self, weights, arch_config=arch_config, name_given=name_given)



# the file names the authors publish on their drive; no position table
SPECS: list[EatSpec] = [
    EatSpec("eat-ava", "AVA_AOT_vacc_0.8259_srcc_0.7596_vlcc_0.7710.pth", "", "dat_base", 0, 10, SCALES["ava"],
            grades=AVA_GRADES, resample="bicubic", head="identity", head_basis="code",
            description="EAT, AVA: aesthetics, deformable attention at 224 px, distribution 1..10"),
    EatSpec("eat-tad66k", "TAD66K_AOT_vacc_0.6882_srcc_0.5171_vlcc_0.5460.pth", "", "dat_base", 0, 1,
            SCALES["tad66k"], factor=10.0, resample="bilinear", head="identity", head_basis="code",
            description="EAT, TAD66K: theme-aware aesthetics, deformable attention at 224 px"),
]  # fmt: skip
