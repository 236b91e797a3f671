"""An EAT model ready to score images, with the two-stage face of :class:`~charmcli.model.base.Scorer`.

``prepare(image)`` is the official resize + normalise (CPU, thread-safe); ``score_prepared(batch)``
runs the network. Every image is scored as if it were alone in its batch: the learned reference
map is computed per image, so a photo's score never depends on what else is in the folder
(the official code averages it over the batch; see ``docs``/README for how much that moves scores).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from charmcli.model.base import Preparer, Scorer, ScoreResult, resolve_device
from charmcli.model.eat.checkpoint import config_digest, load_arch_config, load_eat
from charmcli.model.eat.network import DatConfig, EatNet
from charmcli.model.eat.preprocess import EatPreprocess
from charmcli.model.eat.specs import EatSpec
from charmcli.model.errors import CheckpointError
from charmcli.model.files import sha256_file
from charmcli.model.precision import resolve_precision
from charmcli.model.spec import ModelFiles, ModelSpec


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


class EatPreparer(Preparer):
    """EAT's CPU half: the official resize + normalise of one variant (no weights)."""

    def __init__(self, spec: ModelSpec, checkpoint_id: str, size: int = 224) -> None:
        if not isinstance(spec, EatSpec):
            raise ValueError(f"{spec.name} is not an EAT model")
        self.spec = spec
        self.checkpoint_id = checkpoint_id
        self.preprocessor = EatPreprocess(spec.resample or "bicubic", size)

    @property
    def preprocess_key(self) -> tuple[str, str, int]:
        return self.preprocessor.key

    def prepare(self, image: Image.Image) -> EatInput:
        """The official eval transform of this variant (thread-safe)."""
        size = self.preprocessor.size
        return EatInput(self.preprocessor(image), (size, size), self.preprocessor.key)


class EatScorer(Scorer):
    """A loaded EAT model (``eat-ava`` or ``eat-tad66k``)."""

    def __init__(
        self,
        network: EatNet,
        spec: ModelSpec,
        checkpoint_id: str,
        device: str | torch.device = "auto",
        precision: str = "fp32",
    ) -> None:
        self._preparer = EatPreparer(spec, checkpoint_id, network.cfg.img_size)
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval().requires_grad_(False)
        self.spec = spec
        self.checkpoint_id = checkpoint_id
        # EAT's reduced precision is CUDA autocast; on a CPU it runs, and says it ran, fp32
        self.precision_choice = resolve_precision(precision, self.device, cpu_reduced=spec.cpu_reduced_precision)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def config(self) -> DatConfig:
        return self.network.cfg

    @property
    def preprocessor(self) -> EatPreprocess:
        return self._preparer.preprocessor

    def preparer(self) -> EatPreparer:
        return self._preparer

    @classmethod
    def load(
        cls, files: ModelFiles, *, device: str | torch.device = "auto", cache_dir: Path | None = None,
        precision: str = "fp32",
    ) -> EatScorer:  # fmt: skip
        """The authors' state dict (``weights_only``) in the architecture of ``files.arch_config``."""
        spec = files.spec
        cfg = load_arch_config(files.arch_config, spec.num_classes)
        network, digest = load_eat(files.checkpoint, cfg, spec.name, spec.filename)
        return cls(network, spec, digest, device=device, precision=precision)

    @classmethod
    def load_preparer(cls, files: ModelFiles, *, cache_dir: Path | None = None) -> EatPreparer:
        """The resize + normalise of the model of ``files``: its identity is the file's and the
        architecture's digest, as :func:`load_eat` computes it, without building the network."""
        spec = files.spec
        cfg = load_arch_config(files.arch_config, spec.num_classes)
        if not Path(files.checkpoint).is_file():
            raise CheckpointError(f"checkpoint {files.checkpoint}: no such file")
        digest = hashlib.sha256(f"{sha256_file(files.checkpoint)}:{config_digest(cfg)}".encode()).hexdigest()
        return EatPreparer(spec, digest, cfg.img_size)

    # -- scoring -------------------------------------------------------------------------------

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
        head_input = features.float().cpu().numpy()
        embedding = head_input.astype("float16")
        share = (time.perf_counter() - start) / len(batch)
        return [  # no tokenizer: a fixed 224x224 input, no route, no kept cells
            ScoreResult(
                score=float(scores[i]),
                outputs=[float(v) for v in logits[i]],
                input_size=b.input_size,
                embedding=embedding[i],
                head_input=head_input[i],
                seconds=share,
            )
            for i, b in enumerate(batch)
        ]

    def to_score(self, logits: torch.Tensor) -> torch.Tensor:
        """AVA: Σ i·yᵢ over the 10 raw outputs (no softmax, as the official get_score); TAD66K: 10 x output."""
        return self.spec.to_score(logits)
