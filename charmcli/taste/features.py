"""Stored scores → the feature matrix a taste is fitted on and predicts from.

A photo's features are, for each model it was scored with, the head's whole input (Charm:
``[CLS, mean of patch tokens]``; ``scores.head_input``, float16), and the scores of every
scoring model it has. Each block is named by model *and* checkpoint
(``head:aadb:<checkpoint id>``): features of another checkpoint mean something else, so a taste
predicts nothing for a photo scored only with another one, rather than something wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: photo content → scoring model → its latest score's ``checkpoint_id``, ``score`` and ``head_input``.
Found = Mapping[str, Mapping[str, Mapping[str, Any]]]


def lacks_features(score: Mapping[str, Any]) -> bool:
    """Whether a stored score predates the head input being kept: ``charm score`` then scores the
    photo again rather than reuse it, so that a taste can learn from it."""
    return score.get("head_input") is None


def head_vector(entry: Mapping[str, Any]) -> np.ndarray | None:
    """The head input of one stored score (Charm: ``[CLS, mean of patches]``), or None when not kept."""
    data = entry.get("head_input")
    return None if data is None else np.frombuffer(bytes(data), "<f2").astype(np.float32)


def _block(kind: str, model: str, checkpoint: str) -> str:
    return f"{kind}:{model}:{checkpoint}"


def _parse(name: str) -> tuple[str, str, str]:
    kind, model, checkpoint = name.split(":", 2)
    return kind, model, checkpoint


@dataclass
class Layout:
    """The feature blocks of a taste, in column order: heads first, then scores (the free columns)."""

    blocks: list[tuple[str, int]]

    @property
    def free(self) -> list[int]:
        """Column indices of the scores: not penalized when fitting."""
        out, col = [], 0
        for name, width in self.blocks:
            if name.startswith("score:"):
                out += list(range(col, col + width))
            col += width
        return out


def choose_layout(found: Found, sha256s: Sequence[str]) -> tuple[Layout, list[str]]:
    """The blocks to learn from for these rated photos, and the photos that have all of them.

    The Charm model (and checkpoint) whose head features cover the most rated photos comes first;
    another joins only if it covers every one of those, and so does each score. Photos scored
    before features were kept have none (``charm score`` adds them).
    """
    heads: dict[tuple[str, str], set[str]] = {}
    scores: dict[tuple[str, str], set[str]] = {}
    for sha in dict.fromkeys(sha256s):
        for model, entry in found.get(sha, {}).items():
            key = (model, entry["checkpoint_id"])
            scores.setdefault(key, set()).add(sha)
            if entry.get("head_input") is not None:
                heads.setdefault(key, set()).add(sha)
    if not heads:
        return Layout([]), []
    primary = max(heads, key=lambda k: (len(heads[k]), k))
    covered = heads[primary]
    chosen_heads = sorted(k for k, shas in heads.items() if covered <= shas)
    chosen_scores = sorted(k for k, shas in scores.items() if covered <= shas)
    sample = next(iter(covered))
    blocks = [(_block("head", m, c), int(head_vector(found[sample][m]).size)) for m, c in chosen_heads]  # type: ignore[union-attr]
    blocks += [(_block("score", m, c), 1) for m, c in chosen_scores]
    return Layout(blocks), [s for s in dict.fromkeys(sha256s) if s in covered]


def feature_rows(found: Found, sha256s: Sequence[str], blocks: Sequence[tuple[str, int]]) -> np.ndarray:
    """One row per photo in ``blocks`` order; a photo missing any block (or with another checkpoint
    or width) gets a row of NaN."""
    X = np.full((len(sha256s), sum(w for _n, w in blocks)), np.nan, dtype=np.float32)
    for i, sha in enumerate(sha256s):
        have = found.get(sha, {})
        parts = []
        for name, width in blocks:
            kind, model, checkpoint = _parse(name)
            entry = have.get(model)
            if entry is None or entry["checkpoint_id"] != checkpoint:
                break
            value = head_vector(entry) if kind == "head" else np.array([entry["score"]], dtype=np.float32)
            if value is None or value.size != width:
                break
            parts.append(value)
        else:
            X[i] = np.concatenate(parts) if parts else X[i]
    return X
