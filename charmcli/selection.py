"""Which scored photos a command works on, and where each stands: the one selection everything calls.

``top``, the cull commands (``groups``, ``rate``, ``report``) and the review desk describe what
they want as one :class:`Query` and get one :class:`Selection` back from :func:`select`: the
photos (latest score of one scoring model, files that still exist), best first, each row with
its rank, library percentile and the decision last recorded for it. Nothing else attaches those.
Plain functions over the :class:`~charmcli.store.Store` and :mod:`charmcli.cull.groups`, no
printing, no torch (numpy only).

Two kinds of percentile appear, on purpose:

* **library percentile** (``percentile`` in ``top``/``show``/``groups``/``report``/the desk): a
  photo's standing among every photo scored with that model, the "calibrated score" that reads
  the same for any model (``p95`` = better than 95 % of the library);
* **selection percentile** (``charm rate``): within the photos being rated, because stars express
  "the best tenth of *this* shoot", which is how people cull (:mod:`charmcli.cull.ratings`).

Extending the query (a new filter, a new ranking, a new fact about a score) means one field on
:class:`Query` and one step in :func:`select`:

* a filter the database can answer goes into :meth:`Query.ranking_filter` →
  :class:`~charmcli.store.TopFilter` → the store's SQL; one that needs a rule written in Python
  (technical flags: their limits are settable, see :mod:`charmcli.flags`) is a step of
  :func:`_flagged`, before grouping and before the limit;
* a fact that is part of a score's identity (e.g. *the precision it was computed at*) is a
  :class:`~charmcli.store.TopFilter` field too, so ``latest_scores`` is read for that identity;
* another order (e.g. *rank by a learned taste model*) replaces :func:`_ranked_rows`' order
  before the limit; what it adds to each row is attached in :func:`_attach`, next to the
  percentile and the decision.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from charmcli.cull.groups import (
    DEFAULT_MAX_GAP_S,
    DEFAULT_MIN_SIMILARITY,
    Chain,
    Group,
    PhotoRecord,
    find_groups,
    record_from_row,
)
from charmcli.cull.ratings import percentile_rank
from charmcli.flags import DEFAULT_LIMITS, Limits, evaluate
from charmcli.model.registry import DEFAULT_MODEL  # the registry is torch-free
from charmcli.store import RankedPhoto, Store, TopFilter
from charmcli.taste.learn import load as load_taste
from charmcli.taste.learn import predict as predict_taste
from charmcli.taste.model import TasteModel


def resolve_model(store: Store, model: str | None) -> str | None:
    """The scoring model asked for, else the one with the most scored photos (the default on ties)."""
    if model:
        return model.lower()
    scored = store.models_scored()
    if not scored:
        return None
    best = max(n for _, n in scored)
    names = [m for m, n in scored if n == best]
    return DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]


def resolve_precision(store: Store, model: str, precision: str | None) -> tuple[str, list[tuple[str, int]]]:
    """The precision whose scores rank (the one asked for, else the model's most used; ties:
    fp32) and the model's other precisions with their photo counts: a ranking reads one
    precision, never a mix, and says what it left out."""
    scored = store.precisions_scored(model)
    chosen = precision or (scored[0][0] if scored else "fp32")
    return chosen, [(p, n) for p, n in scored if p != chosen]


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


@dataclass(frozen=True)
class Grouping:
    """How frames are put into bursts (see :func:`charmcli.cull.groups.find_groups`)."""

    gap: float = DEFAULT_MAX_GAP_S  #: seconds between neighbouring frames
    similarity: float = DEFAULT_MIN_SIMILARITY  #: cosine similarity of their embeddings
    chain: Chain = "previous"  #: compare with the previous frame or the group's best (--chain)

    def groups(self, records: Sequence[PhotoRecord]) -> list[Group]:
        """Bursts among ``records``; ``ValueError`` for embeddings of different sizes (mixed checkpoints)."""
        return find_groups(records, max_gap=self.gap, min_similarity=self.similarity, chain=self.chain)


def liked(records: Sequence[PhotoRecord], tastes: Sequence[float | None]) -> list[PhotoRecord]:
    """``records`` scored by a taste's predictions, so that a burst's pick is the frame the taste
    likes best; a photo it cannot judge (None) is picked only where no frame can be judged."""
    return [dataclasses.replace(r, score=v) for r, v in zip(records, tastes, strict=True)]


@dataclass
class Query:
    """What to select and what to attach: the one description ``top``, the cull commands and the desk build.

    ``None`` means "no constraint". See the module docstring for where a new field goes.
    """

    model: str | None = None  #: the scoring model; ``None``: the one with the most scored photos
    #: the precision of the scores ranked (fp32, bf16, fp16); ``None``: the model's most used one
    precision: str | None = None
    min_score: float | None = None
    since: str | None = None  #: ISO date prefix, inclusive
    until: str | None = None  #: ISO date prefix, inclusive
    camera: str | None = None  #: substring of "make camera_model", case-insensitive
    lens: str | None = None
    folder: str | None = None  #: substring of the parent folder path, case-insensitive
    paths: Sequence[str] = ()  #: files or folders the photo must be (under); made absolute
    limit: int | None = None  #: at most this many rows (after every filter)
    best_of_group: Grouping | None = None  #: only the best frame of each burst
    embeddings: bool = True  #: read the CLS vectors (needed to group the selection)
    percentiles: bool = True  #: attach each row's library percentile
    decisions: bool = True  #: attach the rating/label last recorded for each path
    flag_limits: Limits = DEFAULT_LIMITS  #: thresholds turning measures into technical flags
    hide_flags: frozenset[str] = frozenset()  #: leave out photos with any of these flags
    #: rank by this learned taste (``charm learn``) instead of the score, and attach ``taste``
    #: (predicted stars, None for a photo without the features it was learned on); the best
    #: frame of a burst is then the one the taste likes best
    taste: str | None = None

    def ranking_filter(self, model: str, precision: str = "fp32") -> TopFilter:
        """The part of the query the store answers in SQL."""
        return TopFilter(
            model=model, precision=precision, min_score=self.min_score, since=self.since, until=self.until, camera=self.camera,
            lens=self.lens, folder=self.folder, paths=[os.path.abspath(p) for p in self.paths],
        )  # fmt: skip


class SelectedPhoto(RankedPhoto):
    """The store's ranked row with what :func:`select` attaches (what a new attachment extends)."""

    rank: int  #: 1 = best in the selection
    percentile: float | None  #: library percentile (None when not asked for)
    rating: int | None  #: the rating last recorded (-1 rejected, 0 none, 1..5), or None
    label: str | None  #: the colour label last recorded, or None
    flags: list[str]  #: technical flag names under the query's limits (charmcli.flags)
    flag_reasons: list[str]  #: the same flags in words
    taste: float | None  #: the query's taste: predicted stars (None: no taste asked, or no features)


@dataclass
class Selection:
    """Scored photos (latest score of one model), best first, whose files still exist.

    Each row is the store's ranked row (``photos`` columns plus ``score``, ``model``,
    ``checkpoint_id``, ``preprocess``, ``scored_at``, ``measures``) with ``rank`` (1 = best),
    ``percentile`` (library, or None), ``rating``/``label`` (the last decision, or None),
    ``flags`` (technical flag names) and ``flag_reasons`` (the same in words) attached.
    """

    model: str | None
    precision: str | None = None  #: the precision of every score in ``rows``
    #: the model's scores in other precisions, (precision, photos): not ranked, not mixed in
    other_precisions: list[tuple[str, int]] = field(default_factory=list)
    rows: list[SelectedPhoto] = field(default_factory=list)
    records: list[PhotoRecord] = field(default_factory=list)  #: one per row, for grouping
    missing: int = 0  #: rows whose file is gone (``charm forget`` drops them)

    @property
    def by_id(self) -> dict[Hashable, SelectedPhoto]:
        return {r.id: row for r, row in zip(self.records, self.rows, strict=True)}


def select(store: Store, query: Query) -> Selection:
    """The photos ``query`` selects, best first, with rank, percentile and decision attached.

    ``ValueError`` when ``best_of_group`` meets embeddings of different sizes (mixed checkpoints).
    """
    model = resolve_model(store, query.model)
    if model is None:
        return Selection(None)
    precision, others = resolve_precision(store, model, query.precision)
    taste = _taste(store, query.taste)
    flt = query.ranking_filter(model, precision)
    keep = None
    if query.best_of_group is not None:
        every = _existing(_flagged(store.iter_ranked(flt, embeddings=True), query), Selection(model, precision))
        records = every.records if taste is None else liked(every.records, _tasted(store, taste, every.rows))
        keep = {g.best.id for g in query.best_of_group.groups(records)}
    sel = Selection(model, precision, others)
    rows = _flagged(store.iter_ranked(flt, embeddings=query.embeddings or keep is not None), query)
    ranked = _ranked_rows(rows, keep)
    if taste is not None:
        ranked = _by_taste(store, taste, list(ranked))
    _existing(ranked, sel, query.limit)
    _attach(store, query, sel)
    return sel


def _flagged(rows: Iterator[RankedPhoto], query: Query) -> Iterator[SelectedPhoto]:
    """Each row's technical flags under the query's limits; rows with a hidden flag left out.

    Attached before grouping, so a burst's best frame is chosen knowing its frames' flags.
    """
    for ranked in rows:
        found = evaluate(ranked.get("measures"), query.flag_limits)
        if query.hide_flags and any(f.name in query.hide_flags for f in found):
            continue
        row = cast(SelectedPhoto, ranked)  # completed by _attach, before anyone reads it
        row["flags"] = [f.name for f in found]
        row["flag_reasons"] = [f.reason for f in found]
        yield row
def _taste(store: Store, name: str | None) -> TasteModel | None:
    """The learned taste ``name`` (:class:`~charmcli.taste.learn.TasteError` when there is none), or None."""
    return None if name is None else load_taste(store, name)


def _tasted(store: Store, taste: TasteModel, rows: Sequence[RankedPhoto]) -> list[float | None]:
    """Each row's predicted stars (None without the features the taste was learned on)."""
    return predict_taste(store, taste, [r["sha256"] for r in rows])


def _by_taste(store: Store, taste: TasteModel, rows: list[RankedPhoto]) -> Iterator[RankedPhoto]:
    """``rows`` with ``taste`` attached, best liked first; photos it cannot judge last, by score."""
    for row, value in zip(rows, _tasted(store, taste, rows), strict=True):
        row["taste"] = value  # type: ignore[typeddict-unknown-key]
    return iter(sorted(rows, key=lambda r: (r["taste"] is None, -(r["taste"] or 0.0))))  # stable: score order


def _ranked_rows(rows: Iterator[SelectedPhoto], keep: set[Hashable] | None) -> Iterator[SelectedPhoto]:
    """The store's ranking (best score first), narrowed to ``keep`` ids when given."""
    return rows if keep is None else (r for r in rows if r["id"] in keep)


def _existing(rows: Iterator[SelectedPhoto], sel: Selection, limit: int | None = None) -> Selection:
    """Fill ``sel`` with the rows whose file exists (a vanished best frame must not hide its group)."""
    for row in rows:
        if limit is not None and len(sel.rows) >= limit:
            break
        if not os.path.exists(row["path"]):
            sel.missing += 1  # moved or deleted since it was scored; `charm forget` tidies up
            continue
        sel.rows.append(row)
        sel.records.append(record_from_row(row))
    return sel


def _attach(store: Store, query: Query, sel: Selection) -> None:
    """Rank, library percentile and decision (and ``taste`` where none was asked): the one place
    they are attached to a row."""
    pcts: list[float | None] = [None] * len(sel.rows)
    if query.percentiles and sel.model is not None:
        pcts = library_percentiles(store, sel.model, [r["score"] for r in sel.rows], sel.precision or "fp32")
    decided = store.decisions_for([r["path"] for r in sel.rows]) if query.decisions else {}
    for rank, (row, pct) in enumerate(zip(sel.rows, pcts, strict=True), start=1):
        made = decided.get(row["path"], {})
        row.update(rank=rank, percentile=pct, rating=made.get("rating"), label=made.get("label"))
        row.setdefault("taste", None)  # ranked by a taste: set by _by_taste


def library_percentiles(
    store: Store, model: str, scores: Sequence[float], precision: str = "fp32"
) -> list[float | None]:
    """Each score's mid-rank percentile (0..100) among all photos scored with ``model`` at ``precision``."""
    if not scores:
        return []
    reference = store.model_scores(model, precision)
    values = percentile_rank(np.asarray(scores, dtype=np.float64), reference=reference)
    return [None if not math.isfinite(v) else round(float(v), 2) for v in values]


__all__ = [
    "DEFAULT_MODEL",
    "Grouping",
    "Query",
    "SelectedPhoto",
    "Selection",
    "library_percentiles",
    "resolve_model",
    "resolve_precision",
    "select",
    "unscored_model",
]
