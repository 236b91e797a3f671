"""An EAT model ready to score images, with the same two-stage face as Charm's :class:`Scorer`.

``prepare(image)`` is the official resize + normalise (CPU, thread-safe); ``score_prepared(batch)``
runs the network. Every image is scored as if it were alone in its batch: the learned reference
map is computed per image, so a photo's score never depends on what else is in the folder
(the official code averages it over the batch; see ``docs``/README for how much that moves scores).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from charmcli.model.charm.scorer import ScoreResult, resolve_device
from charmcli.model.eat.checkpoint import load_arch_config, load_eat
from charmcli.model.eat.network import DatConfig, EatNet
from charmcli.model.eat.preprocess import EatPreprocess
from charmcli.model.errors import CheckpointError, ModelUnavailableError, eat_weights_message
from charmcli.model.registry import ModelSpec, get_spec, local_weights, models_dir


@dataclass
class EatInput:
    """One prepared image: the normalised (3, S, S) tensor and the size it was squashed to."""

    tensor: torch.Tensor
    input_size: tuple[int, int]
    key: tuple[str, str, int]

    @property
    def num_tokens(self) -> int:
        """Stem tokens (56² at 224 px), for the pipeline's batch sizing."""
        return (self.input_size[0] // 4) * (self.input_size[1] // 4)


class EatScorer:
    """A loaded EAT model (``eat-ava`` or ``eat-tad66k``)."""

    family = "eat"

    def __init__(
        self,
        network: EatNet,
        spec: ModelSpec,
        checkpoint_id: str,
        device: str | torch.device = "auto",
        precision: str = "fp32",
    ) -> None:
        if spec.family != "eat":
            raise ValueError(f"{spec.name} is not an EAT model")
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval().requires_grad_(False)
        self.spec = spec
        self.checkpoint_id = checkpoint_id
        self.preprocessor = EatPreprocess(spec.resample or "bicubic", network.cfg.img_size)
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError("precision must be fp32, bf16 or fp16")
        self.precision = precision

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def config(self) -> DatConfig:
        return self.network.cfg

    @property
    def preprocess_key(self) -> tuple[str, str, int]:
        """Models with equal keys get identical prepared inputs (a multi-model run prepares once)."""
        return self.preprocessor.key

    @classmethod
    def from_files(
        cls,
        checkpoint: str | Path,
        name: str,
        arch_config: str | Path | None = None,
        device: str | torch.device = "auto",
        precision: str = "fp32",
    ) -> EatScorer:
        """Load the authors' state dict (``weights_only``) into the architecture of ``arch_config``."""
        spec = get_spec(name)
        if spec.family != "eat":
            raise CheckpointError(
                f"{spec.name} is a Charm model; EAT files go with --model eat-ava or eat-tad66k"
            )
        cfg = load_arch_config(Path(arch_config) if arch_config else None, spec.num_classes)
        network, digest = load_eat(Path(checkpoint), cfg, spec.name, spec.filename)
        return cls(network, spec, digest, device=device, precision=precision)

    @classmethod
    def from_pretrained(cls, name: str, device: str | torch.device = "auto", **kwargs) -> EatScorer:
        """The published file from the models folder (charm cannot download EAT weights)."""
        spec = get_spec(name)
        path = local_weights(spec)
        if path is None:
            raise ModelUnavailableError(eat_weights_message(spec.name, spec.filename, models_dir()))
        return cls.from_files(path, spec.name, device=device, **kwargs)

    # -- scoring -------------------------------------------------------------------------------

    def prepare(self, image: Image.Image) -> EatInput:
        """The official eval transform of this variant (thread-safe)."""
        size = self.preprocessor.size
        return EatInput(self.preprocessor(image), (size, size), self.preprocessor.key)

    def batch_limit(self, tokens: int = 0, cap: int = 64) -> int:
        """1 on CPU; on CUDA as many 224-px images as a generous 64 MB each fits in free memory."""
        if self.device.type != "cuda":
            return 1
        free, _total = torch.cuda.mem_get_info(self.device)
        return max(1, min(cap, int(free * 0.5 // (64 << 20))))

    def _autocast(self):
        if self.device.type == "cuda" and self.precision != "fp32":
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return torch.autocast(self.device.type, enabled=False)

    def score_prepared(self, batch: Sequence[EatInput]) -> list[ScoreResult]:
        """Scores of prepared images; each image's score is what it gets alone."""
        if not batch:
            return []
        start = time.perf_counter()
        x = torch.stack([b.tensor for b in batch]).to(self.device)
        with torch.inference_mode(), self._autocast():
            logits, features = self.network(x)
        logits = logits.float().cpu()
        scores = self.to_score(logits)
        embedding = features.float().cpu().numpy().astype("float16")
        share = (time.perf_counter() - start) / len(batch)
        return [
            ScoreResult(
                score=float(scores[i]),
                outputs=[float(v) for v in logits[i]],
                n_tokens=None,  # type: ignore[arg-type]  # no tokenizer: a fixed 224x224 input
                input_size=b.input_size,
                path=None,  # type: ignore[arg-type]
                kept_cells=[],
                cell_size=None,  # type: ignore[arg-type]
                embedding=embedding[i],
                seconds=share,
            )
            for i, b in enumerate(batch)
        ]

    def to_score(self, logits: torch.Tensor) -> torch.Tensor:
        """AVA: Σ i·yᵢ over the 10 raw outputs (no softmax, as the official get_score); TAD66K: 10 x output."""
        return self.spec.to_score(logits)

    def score(self, image: Image.Image) -> ScoreResult:
        return self.score_prepared([self.prepare(image)])[0]
