"""A learned taste: one weight per feature, on the star scale, and the numbers that justify it.

Standardization and the calibration onto stars are folded into the weights at fit time, so a
prediction is one dot product with the raw stored features: ``taste = features · weights + bias``,
about "how many stars would this photographer give it". The model is stored in the user's
database as an ``.npz`` (a few kilobytes: float32 weights plus a JSON header), read back with
``allow_pickle=False``: loading a taste never runs code from the file.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

#: Bumped when the stored form changes; an older or newer model is refused, not misread.
FORMAT = 1


class TasteFormatError(ValueError):
    """Stored bytes that are not a taste model this version can read."""


@dataclass
class TasteModel:
    """A fitted taste; ``layout`` names the feature blocks (name, width) the weights expect."""

    method: str  #: "ridge" or "rank"
    strength: float  #: the regularization cross-validation chose
    layout: list[tuple[str, int]]
    weights: np.ndarray  #: float32, one per feature column
    bias: float
    n_ratings: int
    counts: dict[int, int] = field(default_factory=dict)  #: stars → rated photos (-1 = rejected)
    cv_spearman: float | None = None
    cv_pairwise: float | None = None
    generic_spearman: float | None = None
    generic_pairwise: float | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def width(self) -> int:
        return sum(w for _n, w in self.layout)

    def predict(self, features: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Predicted stars for each row of ``features`` (in :attr:`layout` order); NaN rows give NaN."""
        X = np.asarray(features, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.shape[1] != self.width:
            raise ValueError(f"taste expects {self.width} features per photo, got {X.shape[1]}")
        return X @ self.weights.astype(np.float64) + self.bias

    def header(self) -> dict[str, Any]:
        """Everything but the weights, as JSON-ready values."""
        return {
            "format": FORMAT, "method": self.method, "strength": self.strength,
            "layout": [[n, w] for n, w in self.layout], "bias": self.bias, "n_ratings": self.n_ratings,
            "counts": {str(k): v for k, v in sorted(self.counts.items())}, "cv_spearman": self.cv_spearman,
            "cv_pairwise": self.cv_pairwise, "generic_spearman": self.generic_spearman,
            "generic_pairwise": self.generic_pairwise, "created": self.created,
        }  # fmt: skip

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, weights=self.weights.astype(np.float32), header=np.array(json.dumps(self.header())))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TasteModel:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                head = json.loads(str(npz["header"]))
                weights = np.asarray(npz["weights"], dtype=np.float32)
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise TasteFormatError(f"not a stored taste model: {exc}") from None
        if head.get("format") != FORMAT:
            raise TasteFormatError(f"taste model format {head.get('format')!r}; this charm reads {FORMAT}")
        layout = [(str(n), int(w)) for n, w in head["layout"]]
        if weights.shape != (sum(w for _n, w in layout),):
            raise TasteFormatError(f"taste weights {weights.shape} do not match the layout")
        return cls(
            method=head["method"], strength=float(head["strength"]), layout=layout, weights=weights,
            bias=float(head["bias"]), n_ratings=int(head["n_ratings"]),
            counts={int(k): int(v) for k, v in head["counts"].items()}, cv_spearman=head["cv_spearman"],
            cv_pairwise=head["cv_pairwise"], generic_spearman=head["generic_spearman"],
            generic_pairwise=head["generic_pairwise"], created=head["created"],
        )  # fmt: skip
