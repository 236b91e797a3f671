"""The public Python API: load a Charm model once, score images.

    >>> from charmcli.model import Scorer
    >>> scorer = Scorer.from_pretrained("aadb")            # or Scorer.from_files(ckpt, pos)
    >>> result = scorer.score(PIL.Image.open("photo.jpg"))
    >>> result.score, result.kept_cells

The scorer takes decoded RGB images (it knows nothing of files or databases), applies the
training set's own official pre-resize (para and spaq: long side > 1024 → 1024), tokenizes at
native resolution and aspect ratio, runs the network and maps outputs to the training set's
rating scale. :meth:`Scorer.prepare` (CPU work: resize + tokenize) is thread-safe and separate
from :meth:`Scorer.score_prepared` (the network), so callers can overlap the two.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from charmcli.library.resize import long_side_size
from charmcli.model.activations import AADB_ATTRIBUTES
from charmcli.model.checkpoint import CheckpointError, NetworkConfig, load_checkpoint, load_position_table
from charmcli.model.network import CharmViT
from charmcli.model.precision import PrecisionChoice, resolve_precision
from charmcli.model.registry import (
    MODELS,
    ModelSpec,
    charm_cache_dir,
    describe_head,
    fetch,
    fetch_position_table,
    get_spec,
    position_table_for,
)
from charmcli.model.tokenizer import CELL, CharmTokenizer, PositionTable, Tokenized


@dataclass
class ScoreResult:
    """What Charm says about one image."""

    score: float  #: on the training set's scale (see ``Scorer.spec.scale``), full precision
    outputs: list[float]  #: the model's outputs after Sigmoid/Softmax
    n_tokens: int  #: sequence length including CLS
    input_size: tuple[int, int]  #: (W, H) the tokenizer saw (after the para/spaq pre-resize)
    path: str  #: "short" or "multiscale"
    kept_cells: list[tuple[int, int]] = field(default_factory=list)  #: (row, col) of kept 28 px cells
    cell_size: int = CELL  #: side of a kept cell in ``input_size`` pixels
    embedding: np.ndarray | None = None  #: CLS output (float16): a compact image descriptor
    seconds: float = 0.0  #: network time for this image (its share of a batch)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but this PyTorch build sees no CUDA device; use --device cpu")
    return dev


def default_cache_dir() -> Path:
    """Where converted checkpoints are cached (``CHARM_CACHE_DIR`` overrides)."""
    return charm_cache_dir()


def batch_for_memory(free_bytes: int, tokens: int, cfg: NetworkConfig, *, cap: int = 128, share: float = 0.6) -> int:
    """Images per forward pass that fit in ``share`` of ``free_bytes``, between 1 and ``cap``.

    The estimate is fp32 throughout (autocast only makes it safer) and counts, per token, the
    inputs (pixels, position row) and the widest moment of a block in inference: the residual
    stream, its norm, q/k/v and their head-split copies, the attention and projection outputs
    (10 x dim) and the MLP's hidden layer before and after GELU (2 x hidden). Attention itself
    adds no tokens-squared term: scaled-dot-product attention uses a memory-efficient kernel on
    CUDA, with or without the padding mask. A 1.5x margin covers the allocator's slack.
    """
    per_token = 4 * (3 * 14 * 14 + cfg.dim + 10 * cfg.dim + 2 * cfg.mlp_hidden)
    per_image = 1.5 * per_token * max(1, tokens)
    return max(1, min(cap, int(free_bytes * share // per_image)))


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 in [0, 1], as ``torchvision.ToTensor`` does."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    array = np.asarray(image)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)


def official_resize(image: Image.Image, max_side: int | None) -> Image.Image:
    """The official para/spaq pre-resize (bicubic), by the rule decoding uses too."""
    size = long_side_size(image.width, image.height, max_side)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


class Scorer:
    """A loaded Charm model ready to score images."""

    def __init__(
        self,
        network: CharmViT,
        pos_table: torch.Tensor,
        spec: ModelSpec | None,
        checkpoint_id: str,
        device: str | torch.device = "auto",
        precision: str = "fp32",
    ) -> None:
        self.device = resolve_device(device)
        self.precision_choice: PrecisionChoice = resolve_precision(precision, self.device)
        network = network.to(self.device).eval().requires_grad_(False)
        self.network = network.set_precision(self.precision_choice.precision)
        self.spec = spec
        self.checkpoint_id = checkpoint_id
        if pos_table.shape[-1] != network.cfg.dim:
            raise CheckpointError(
                f"position table width {pos_table.shape[-1]} does not match the checkpoint's {network.cfg.dim}"
            )
        budget = spec.budget if spec else 1025
        self.tokenizer = CharmTokenizer(PositionTable(pos_table), budget)  # thread-safe

    # -- construction --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Training-set name (``custom`` for a checkpoint that matches none)."""
        return self.spec.name if self.spec else "custom"

    @property
    def config(self) -> NetworkConfig:
        return self.network.cfg

    @property
    def precision(self) -> str:
        """What the network runs in (``fp32``, ``bf16`` or ``fp16``): part of a score's identity."""
        return self.precision_choice.precision

    @property
    def preprocess_key(self) -> tuple[object, ...]:
        """Scorers with equal keys prepare identical inputs, so a multi-model run prepares once
        per key (issue 13): the pre-resize, the token budget and the position table's content."""
        if not hasattr(self, "_pos_digest"):
            import hashlib

            table = self.tokenizer.pos
            digest = hashlib.sha256(table.cls.numpy().tobytes())
            digest.update(table._grid.numpy().tobytes())
            self._pos_digest = digest.hexdigest()[:16]
        max_side = self.spec.resize_max_side if self.spec else None
        return ("charm", max_side, self.tokenizer.budget, self._pos_digest)

    @classmethod
    def from_pretrained(cls, name: str = "aadb", device: str | torch.device = "auto", **kwargs) -> Scorer:
        """Load a published model by name from the hub cache (downloading it if online)."""
        spec = get_spec(name)
        checkpoint = fetch(spec.filename, spec.name)
        pos = fetch(spec.pos_filename, spec.name)
        return cls.from_files(checkpoint, pos, name=spec.name, device=device, **kwargs)

    @classmethod
    def from_files(
        cls,
        checkpoint: str | Path,
        pos_embed: str | Path | None = None,
        name: str | None = None,
        device: str | torch.device = "auto",
        cache_dir: Path | None = None,
        precision: str = "fp32",
    ) -> Scorer:
        """Load local files: an official ``.pth`` (read safely) or a ``.safetensors`` checkpoint.

        ``name`` picks the training set (scale, token budget, pre-resize); without it the name
        stored in the checkpoint is used, else it is guessed from the head (9 outputs: para,
        10: ava, 1: aadb). Without ``pos_embed`` the position table comes from the hub cache.
        """
        state, cfg, digest = load_checkpoint(Path(checkpoint), cache_dir or default_cache_dir())
        stored = cfg.dataset.lower() if cfg.dataset else None
        if name is not None:
            spec = get_spec(name)
            if stored in MODELS and stored != spec.name:
                raise CheckpointError(
                    f"checkpoint was trained on {stored!r}, not {spec.name!r}; drop --model or fix it"
                )
        elif stored in MODELS:
            spec = MODELS[stored]
        else:
            spec = {9: MODELS["para"], 10: MODELS["ava"]}.get(cfg.num_classes, MODELS["aadb"])
        if cfg.num_classes != spec.num_classes and not (spec.name == "aadb" and cfg.activation == AADB_ATTRIBUTES):
            raise CheckpointError(
                f"checkpoint head has {cfg.num_classes} outputs but {spec.name} needs {spec.num_classes}"
            )
        if pos_embed is None:
            pos_embed = fetch_position_table(position_table_for(cfg.dim, spec.pos_filename), spec.name)
        table = load_position_table(Path(pos_embed))
        network = CharmViT(cfg)
        network.load_state_dict(state, strict=True)
        return cls(network, table, spec, digest, device=device, precision=precision)

    # -- scoring -------------------------------------------------------------------------------

    def prepare(self, image: Image.Image) -> Tokenized:
        """CPU preprocessing of one RGB image: official pre-resize, tensor, tokens (thread-safe)."""
        image = official_resize(image, self.spec.resize_max_side if self.spec else None)
        if image.mode != "RGB":
            image = image.convert("RGB")
        # uint8 (3, H, W) view of the pixels: the tokenizer divides by 255 once cells are cut,
        # which gives the same tokens as image_to_tensor() with a quarter of the memory traffic
        return self.tokenizer(torch.from_numpy(np.array(image)).permute(2, 0, 1))

    def batch_limit(self, tokens: int, cap: int = 128) -> int:
        """How many images of ``tokens`` tokens one forward pass takes: 1 on CPU (batching does
        not pay there), else as many as fit in the GPU's free memory (see
        :func:`batch_for_memory`)."""
        if self.device.type != "cuda":
            return 1
        free, _total = torch.cuda.mem_get_info(self.device)
        return batch_for_memory(free, tokens, self.network.cfg, cap=cap)

    def score_prepared(self, batch: Sequence[Tokenized]) -> list[ScoreResult]:
        """Run the network on tokenized images (padded into one batch when there are several)."""
        if not batch:
            return []
        start = time.perf_counter()
        lengths = torch.tensor([t.tokens.shape[0] for t in batch])
        longest = int(lengths.max())
        dim = self.network.cfg.dim
        tokens = torch.zeros(len(batch), longest, 3, 14, 14)
        pos = torch.zeros(len(batch), longest + 1, dim)
        scale = torch.zeros(len(batch), longest, dtype=torch.long)
        for i, t in enumerate(batch):
            n = t.tokens.shape[0]
            tokens[i, :n], pos[i, : n + 1], scale[i, :n] = t.tokens, t.pos_embed, t.scale_ids
        pin = self.device.type == "cuda"
        to = lambda x: (x.pin_memory() if pin else x).to(self.device, non_blocking=pin)  # noqa: E731
        with torch.inference_mode():
            logits, features = self.network(
                to(tokens), to(pos), to(scale), lengths if len(batch) > 1 else None
            )
            outputs = self.network.activate(logits)
            scores = self.to_score(outputs)
        outputs, scores = outputs.float().cpu(), scores.float().cpu()
        cls = features[:, :dim].float().cpu().numpy().astype(np.float16)
        share = (time.perf_counter() - start) / len(batch)
        return [
            ScoreResult(
                score=float(scores[i]),
                outputs=[float(v) for v in outputs[i]],
                n_tokens=t.num_tokens,
                input_size=t.input_size,
                path=t.path,
                kept_cells=t.kept_cells_rc(),
                embedding=cls[i],
                seconds=share,
            )
            for i, t in enumerate(batch)
        ]

    def to_score(self, outputs: torch.Tensor) -> torch.Tensor:
        """Map activated outputs to the training set's rating scale (see ``ModelSpec.to_score``)."""
        if self.spec is None:
            return outputs[..., 0]
        return self.spec.to_score(outputs, self.network.cfg.activation)

    @property
    def head(self) -> str:
        """The head as loaded, e.g. ``1 output, ReLU -> raw output (no factor)``."""
        cfg = self.network.cfg
        return describe_head(cfg.num_classes, cfg.activation, cfg.activation_args, self.spec, cfg.activation_source)

    def score(self, image: Image.Image) -> ScoreResult:
        """Score one RGB image."""
        return self.score_prepared([self.prepare(image)])[0]

    def score_many(self, images: Iterable[Image.Image], batch_size: int = 1) -> Iterator[ScoreResult]:
        """Score images in order, ``batch_size`` at a time (batching pays off on a GPU)."""
        pending: list[Tokenized] = []
        for image in images:
            pending.append(self.prepare(image))
            if len(pending) >= batch_size:
                yield from self.score_prepared(pending)
                pending = []
        yield from self.score_prepared(pending)
