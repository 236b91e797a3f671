"""Which scored photos a command works on, and where each stands in the library.

Shared by ``top``, ``show`` and the cull commands (``groups``, ``rate``, ``report``), so it lives
outside the CLI: plain functions over the :class:`~charmcli.store.Store` and
:mod:`charmcli.cull.groups`, no printing, no torch (numpy only).

Two kinds of percentile appear, on purpose:

* **library percentile** (``percentile`` in ``top``/``show``/``groups``/``report``): a photo's
  standing among every photo scored with that model, the "calibrated score" that reads the same
  for any model (``p95`` = better than 95 % of the library);
* **selection percentile** (``charm rate``): within the photos being rated, because stars express
  "the best tenth of *this* shoot", which is how people cull.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charmcli.cull.groups import Group, PhotoRecord, find_groups, record_from_row
from charmcli.cull.ratings import percentile_rank
from charmcli.model.registry import DEFAULT_MODEL  # the registry is torch-free
from charmcli.store import Store, TopFilter


def resolve_model(store: Store, model: str | None) -> str | None:
    """The model asked for, else the one with the most scored photos (the default on ties)."""
    if model:
        return model.lower()
    scored = store.models_scored()
    if not scored:
        return None
    best = max(n for _, n in scored)
    names = [m for m, n in scored if n == best]
    return DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]


def unscored_model(store: Store, model: str | None) -> tuple[str, bool] | None:
    """Why ``model`` ranks nothing here: ``(one line, usage error?)``, or ``None`` when it can.

    A name that is neither a published model nor in the database is a usage error (a typo); a
    published model that nothing is scored with yet just has nothing to show.
    """
    if not model:
        return None
    from charmcli.model.registry import MODEL_NAMES  # torch-free

    name = model.lower()
    known = [m for m, _ in store.models_scored()]
    if name in known:
        return None
    scored = f"scored: {', '.join(known)}" if known else "nothing is scored yet"
    if name not in MODEL_NAMES:
        return f"unknown model {model!r} ({scored}; published: {', '.join(MODEL_NAMES)})", True
    return f"No photos scored with model {name} ({scored}).", False


@dataclass
class Selection:
    """Scored photos (latest score of one model), best first, whose files still exist."""

    model: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    records: list[PhotoRecord] = field(default_factory=list)
    missing: int = 0  #: rows whose file is gone (``charm forget`` drops them)

    @property
    def by_id(self) -> dict[Hashable, dict[str, Any]]:
        return {r.id: row for r, row in zip(self.records, self.rows, strict=True)}


def scored(store: Store, flt: TopFilter) -> Selection:
    """The photos ``flt`` selects, with embeddings, skipping files that no longer exist."""
    sel = Selection(flt.model)
    for row in store.iter_ranked(flt, embeddings=True):
        if not os.path.exists(row["path"]):  # a vanished best frame must not hide its group
            sel.missing += 1
            continue
        sel.rows.append(row)
        sel.records.append(record_from_row(row))
    return sel


def select(store: Store, model: str | None, paths: Sequence[str] = ()) -> Selection:
    """Scored photos under ``paths`` (absolute) for ``model`` (default: the most used one)."""
    chosen = resolve_model(store, model)
    if chosen is None:
        return Selection(None)
    return scored(store, TopFilter(model=chosen, paths=list(paths)))


def library_percentiles(store: Store, model: str, scores: Sequence[float]) -> list[float | None]:
    """Each score's mid-rank percentile (0..100) among all photos scored with ``model``."""
    if not scores:
        return []
    values = percentile_rank(np.asarray(scores, dtype=np.float64), reference=store.model_scores(model))
    return [None if not math.isfinite(v) else round(float(v), 2) for v in values]


def group_records(records: Sequence[PhotoRecord], gap: float, similarity: float, chain: str) -> list[Group]:
    """Bursts among ``records``; ``ValueError`` for embeddings of different sizes (mixed checkpoints)."""
    return find_groups(records, max_gap=gap, min_similarity=similarity, chain=chain)


def best_of_group_paths(store: Store, flt: TopFilter, gap: float, similarity: float, chain: str) -> set[str]:
    """Paths of the best frame of every group among the photos ``flt`` selects (for ``top``)."""
    records = scored(store, flt).records
    return {str(g.best.path) for g in group_records(records, gap, similarity, chain)}


__all__ = [
    "DEFAULT_MODEL",
    "Selection",
    "best_of_group_paths",
    "group_records",
    "library_percentiles",
    "resolve_model",
    "scored",
    "select",
    "unscored_model",
]
