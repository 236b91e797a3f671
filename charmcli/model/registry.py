"""The published Charm models: one per training set, each with its own rating scale.

Like timm's registry, a name is all a user needs: ``aadb`` (the default, as in the official
package), ``tad66k``, ``para``, ``baid``, ``spaq``, ``koniq10k`` and ``ava``. Each entry says
which hub file holds its weights, which position table it uses, its token budget and how its
outputs map to the training set's rating scale.

Files come from the Hugging Face hub repo ``FatemehBehrad/Charm`` through ``huggingface_hub``
(so ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are honoured). Offline and not cached,
:class:`ModelUnavailableError` says how to get the files; local files can always be given instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charmcli.model.errors import ModelUnavailableError

HUB_REPO = "FatemehBehrad/Charm"


@dataclass(frozen=True)
class ModelSpec:
    """One published Charm model."""

    name: str
    filename: str  #: checkpoint file in the hub repo
    pos_filename: str  #: position table in the hub repo
    backbone: str  #: timm architecture the blocks follow
    budget: int  #: official token budget + 1 (CLS): above it, the multi-scale path
    num_classes: int
    scale: str  #: the training set's rating scale, for display
    factor: float = 1.0  #: one-output models: score = output x factor
    grades: tuple[float, ...] = ()  #: distribution models: score = sum(p_i x grades_i)
    resize_max_side: int | None = None  #: official pre-resize of the long side (para, spaq)
    description: str = ""

    def to_score(self, outputs: Any) -> Any:
        """Map activated outputs (…, C) — a torch tensor — to the training set's scale (…)."""
        if self.grades:
            import torch

            grades = torch.tensor(self.grades, dtype=torch.float32, device=outputs.device)
            return (outputs.float() * grades).sum(dim=-1)
        return outputs[..., 0] * self.factor


# score grades of the distribution heads, as the official mean_score (arange in float32)
_PARA = tuple(1.0 + 0.5 * i for i in range(9))  # 1.0, 1.5, …, 5.0
_AVA = tuple(float(i) for i in range(1, 11))  # 1 … 10

MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("aadb", "aadb_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 1025, 1, "0..1",
                  factor=1.0, description="AADB: aesthetic attributes, photography-oriented"),
        ModelSpec("tad66k", "tad66k_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 769, 1, "0..10",
                  factor=10.0, description="TAD66K: theme-aware aesthetics"),
        ModelSpec("para", "para_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 1025, 9, "1..5",
                  grades=_PARA, resize_max_side=1024,
                  description="PARA: personalised aesthetics, score distribution 1..5"),
        ModelSpec("baid", "baid_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 1025, 1, "0..10",
                  factor=10.0, description="BAID: artistic images"),
        ModelSpec("spaq", "spaq_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 1025, 1, "0..100",
                  factor=100.0, resize_max_side=1024, description="SPAQ: smartphone photo quality"),
        ModelSpec("koniq10k", "koniq10k_charm.pth", "dino_small_pos.pt", "vit_small_patch14_dinov2", 1025, 1,
                  "0..5", factor=5.0, description="KonIQ-10k: technical image quality"),
        ModelSpec("ava", "Ava_large_charm.pth", "dino_large.pt", "vit_large_patch14_dinov2", 513, 10, "1..10",
                  grades=_AVA, description="AVA: aesthetics, DINOv2-large, distribution 1..10"),
    ]
}  # fmt: skip
MODEL_NAMES: list[str] = list(MODELS)
DEFAULT_MODEL = "aadb"


def get_spec(name: str) -> ModelSpec:
    """The spec of a model name (case-insensitive); ValueError listing the names otherwise."""
    spec = MODELS.get(name.lower())
    if spec is None:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return spec


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (tests change it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def cached_file(filename: str) -> Path | None:
    """The local copy of a hub file, if it is in the cache (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(HUB_REPO, filename, cache_dir=str(hub_cache_dir()))
    return Path(found) if isinstance(found, str) else None


def fetch(filename: str, model: str) -> Path:
    """A hub file's local path: from the cache, else downloaded; one-line error if impossible."""
    local = cached_file(filename)
    if local is not None:
        return local
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(HUB_REPO, filename, cache_dir=str(hub_cache_dir()), local_files_only=_offline())
        )
    except Exception as exc:  # offline mode, no network, DNS, HTTP errors, …
        why = (
            "offline mode is on (HF_HUB_OFFLINE)"
            if _offline()
            else f"the hub is unreachable ({type(exc).__name__})"
        )
        raise ModelUnavailableError(
            f"model {model!r} needs {HUB_REPO}/{filename}, which is not in the local cache ({hub_cache_dir()}) "
            f"and {why}. On a connected machine run `charm models download {model}` (same HF_HOME), "
            f"or pass local files: --checkpoint {MODELS[model].filename} --pos-embed {MODELS[model].pos_filename}"
        ) from None


def is_cached(name: str) -> bool:
    """Whether both files of a model are in the local hub cache."""
    spec = get_spec(name)
    return cached_file(spec.filename) is not None and cached_file(spec.pos_filename) is not None


def download(name: str) -> tuple[Path, Path]:
    """Fetch a model's checkpoint and position table into the hub cache (for use offline later)."""
    spec = get_spec(name)
    return fetch(spec.filename, spec.name), fetch(spec.pos_filename, spec.name)
