"""A loaded Charm model: :class:`CharmPreparer` (CPU) and :class:`CharmScorer` (the network).

The scorer takes decoded RGB images (it knows nothing of files or databases), applies the
training set's own official pre-resize (para and spaq: long side > 1024 → 1024), tokenizes at
native resolution and aspect ratio, runs the network and maps outputs to the training set's
rating scale. ``prepare`` (CPU work: resize + tokenize) is thread-safe and separate from
``score_prepared`` (the network), so callers can overlap the two. Built by
:func:`charmcli.model.factory.create_scorer` (or ``Scorer.from_pretrained``/``from_files``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from charmcli.library.resize import long_side_size
from charmcli.model.base import Preparer, Scorer, ScoreResult, resolve_device
from charmcli.model.charm.activations import AADB_ATTRIBUTES
from charmcli.model.charm.checkpoint import (
    CheckpointError,
    NetworkConfig,
    load_checkpoint,
    load_position_table,
)
from charmcli.model.charm.network import CharmViT
from charmcli.model.charm.specs import CharmSpec
from charmcli.model.charm.tokenizer import CELL, CharmTokenizer, PositionTable, Tokenized
from charmcli.model.precision import PrecisionChoice, resolve_precision
from charmcli.model.registry import (
    MODELS,
    converted_cache_dir,
    describe_head,
    fetch_position_table,
    get_spec,
    position_table_for,
)
from charmcli.model.spec import ModelFiles, ModelSpec


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


class CharmPreparer(Preparer):
    """Charm's CPU half: the official pre-resize and the tokenizer with its position table."""

    def __init__(self, pos_table: torch.Tensor, spec: ModelSpec | None, checkpoint_id: str) -> None:
        self.spec = spec
        self.checkpoint_id = checkpoint_id
        budget = spec.budget if spec else 1025
        self.tokenizer = CharmTokenizer(PositionTable(pos_table), budget)  # thread-safe
        self._key: tuple[object, ...] | None = None

    @property
    def preprocess_key(self) -> tuple[object, ...]:
        """The pre-resize, the token budget and the position table's content."""
        if self._key is None:
            table = self.tokenizer.pos
            digest = hashlib.sha256(table.cls.numpy().tobytes())
            digest.update(table._grid.numpy().tobytes())
            max_side = self.spec.resize_max_side if self.spec else None
            self._key = ("charm", max_side, self.tokenizer.budget, digest.hexdigest()[:16])
        return self._key

    def prepare(self, image: Image.Image) -> Tokenized:
        """CPU preprocessing of one RGB image: official pre-resize, tensor, tokens (thread-safe)."""
        image = official_resize(image, self.spec.resize_max_side if self.spec else None)
        if image.mode != "RGB":
            image = image.convert("RGB")
        # uint8 (3, H, W) view of the pixels: the tokenizer divides by 255 once cells are cut,
        # which gives the same tokens as image_to_tensor() with a quarter of the memory traffic
        return self.tokenizer(torch.from_numpy(np.array(image)).permute(2, 0, 1))


def _resolve(files: ModelFiles, cache_dir: Path | None) -> tuple[dict[str, torch.Tensor], NetworkConfig, str,
                                                                  ModelSpec, torch.Tensor]:  # fmt: skip
    """Checkpoint → (state, config, sha256, spec, position table), every check a one-line error.

    The model is the one named (``files.name_given``); else the name stored in the checkpoint;
    else it is guessed from the head (9 outputs: para, 10: ava, 1: aadb). Without a position
    table the hub cache's one that fits the checkpoint's width is used.
    """
    state, cfg, digest = load_checkpoint(Path(files.checkpoint), cache_dir or converted_cache_dir())
    stored = cfg.dataset.lower() if cfg.dataset else None
    if files.name_given:
        spec = get_spec(files.spec.name)
        if stored in MODELS and stored != spec.name:
            raise CheckpointError(
                f"checkpoint was trained on {stored!r}, not {spec.name!r}; drop --model or fix it"
            )
    elif stored in MODELS:
        spec = MODELS[stored]
    else:
        spec = {9: MODELS["para"], 10: MODELS["ava"]}.get(cfg.num_classes, MODELS["aadb"])
    if not isinstance(spec, CharmSpec):
        raise CheckpointError(f"checkpoint holds {spec.name!r}, a {spec.family} model, not a Charm one")
    if cfg.num_classes != spec.num_classes and not (spec.name == "aadb" and cfg.activation == AADB_ATTRIBUTES):
        raise CheckpointError(
            f"checkpoint head has {cfg.num_classes} outputs but {spec.name} needs {spec.num_classes}"
        )
    pos_embed = files.pos_embed
    if pos_embed is None:
        pos_embed = fetch_position_table(position_table_for(cfg.dim, spec.pos_filename), spec.name)
    table = load_position_table(Path(pos_embed))
    if table.shape[-1] != cfg.dim:
        raise CheckpointError(f"position table width {table.shape[-1]} does not match the checkpoint's {cfg.dim}")
    return state, cfg, digest, spec, table


class CharmScorer(Scorer):
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
        self._preparer = CharmPreparer(pos_table, spec, checkpoint_id)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def load(
        cls, files: ModelFiles, *, device: str | torch.device = "auto", cache_dir: Path | None = None,
        precision: str = "fp32",
    ) -> CharmScorer:  # fmt: skip
        """An official ``.pth`` (read safely) or a ``.safetensors`` checkpoint and its position table.

        ``precision``: ``fp32`` (exact), ``bf16`` or ``auto`` (:mod:`charmcli.model.precision`)."""
        state, cfg, digest, spec, table = _resolve(files, cache_dir)
        network = CharmViT(cfg)
        network.load_state_dict(state, strict=True)
        return cls(network, table, spec, digest, device=device, precision=precision)

    @classmethod
    def load_preparer(cls, files: ModelFiles, *, cache_dir: Path | None = None) -> CharmPreparer:
        """The tokenizer of the model of ``files``: the checkpoint is read for its identity, its
        training set and its width, no network is built."""
        _state, _cfg, digest, spec, table = _resolve(files, cache_dir)
        return CharmPreparer(table, spec, digest)

    def preparer(self) -> CharmPreparer:
        return self._preparer

    @property
    def tokenizer(self) -> CharmTokenizer:
        return self._preparer.tokenizer

    @property
    def config(self) -> NetworkConfig:
        return self.network.cfg

    # -- scoring -------------------------------------------------------------------------------

    def prepare(self, image: Image.Image) -> Tokenized:
        return self._preparer.prepare(image)

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
        head_input = features.float().cpu().numpy()
        cls = head_input[:, :dim].astype(np.float16)
        share = (time.perf_counter() - start) / len(batch)
        return [
            ScoreResult(
                score=float(scores[i]),
                outputs=[float(v) for v in outputs[i]],
                n_tokens=t.num_tokens,
                input_size=t.input_size,
                route=t.route,
                kept_cells=t.kept_cells_rc(),
                cell_size=CELL,
                embedding=cls[i],
                head_input=head_input[i],
                seconds=share,
            )
            for i, t in enumerate(batch)
        ]

    def to_score(self, outputs: torch.Tensor) -> torch.Tensor:
        """Map activated outputs to the training set's rating scale (see ``CharmSpec.to_score``)."""
        if self.spec is None:
            return outputs[..., 0]
        return self.spec.to_score(outputs, self.network.cfg.activation)

    @property
    def head(self) -> str:
        """The head as loaded, e.g. ``1 output, ReLU -> raw output (no factor)``."""
        cfg = self.network.cfg
        return describe_head(cfg.num_classes, cfg.activation, cfg.activation_args, self.spec, cfg.activation_source)
