"""Star ratings from Charm scores, by percentile within the selection.

Raw scores are on each training set's own scale (0..1 for aadb, 1..10 for ava, ...) and a model's
scores cluster in a narrow band, so a fixed "score ≥ 0.7 is five stars" rule would give every
photo of one library the same rating. Ranking within the selection is what a photographer does
anyway ("the best tenth of this shoot"), is the same for every model, and is robust to the model
being over- or under-confident.

Percentiles use the mid-rank (Hazen) definition: ``100 · (below + ½·equal) / n``. It is symmetric
(the worst of 10 is 5 %, the best 95 %, so "bottom 10 %" and "top 10 %" each catch exactly one),
ties get the same value, and it never claims 0 % or 100 %.

Ratings follow Lightroom/XMP conventions: 1..5 stars, ``-1`` for rejected, and a colour label for
the pick of each burst. The label is ``"Green"`` by default: Lightroom's standard label set is
Red/Yellow/Green/Blue/Purple, Bridge, digiKam and exiftool read ``xmp:Label`` as text, and green
("go") is the conventional colour for "keep this one". It is configurable.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from charmcli.cull.groups import Group

#: Percentile cut points between 1|2, 2|3, 3|4 and 4|5 stars: bottom 10 % → 1 star, 10–30 % → 2,
#: 30–70 % → 3, 70–90 % → 4, top 10 % → 5 (a bell-ish spread, like a typical hand cull).
DEFAULT_STAR_THRESHOLDS: tuple[float, float, float, float] = (10.0, 30.0, 70.0, 90.0)
DEFAULT_BEST_LABEL = "Green"
REJECTED = -1


def percentile_rank(scores: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Mid-rank percentile (0..100) of each score within ``reference`` (default: ``scores`` itself).

    Pass the whole scored library for one model as ``reference`` to get "calibrated scores": a
    photo's standing in the library, comparable across models. NaN scores give NaN; NaNs in the
    reference are ignored. Vectorised: O((n + m) log m).
    """
    values = np.asarray(scores, dtype=np.float64)
    ref = values if reference is None else np.asarray(reference, dtype=np.float64)
    ref = np.sort(ref[np.isfinite(ref)])
    out = np.full(values.shape, np.nan)
    if ref.size == 0:
        return out
    ok = np.isfinite(values)
    below = np.searchsorted(ref, values[ok], side="left")
    at_or_below = np.searchsorted(ref, values[ok], side="right")
    out[ok] = 100.0 * (below + at_or_below) / (2.0 * ref.size)
    return out


def stars_for_percentiles(
    percentiles: Sequence[float] | np.ndarray,
    thresholds: Sequence[float] = DEFAULT_STAR_THRESHOLDS,
) -> np.ndarray:
    """1..5 stars: one star plus one for each threshold the percentile reaches (NaN → 0, unrated)."""
    cuts = np.asarray(thresholds, dtype=np.float64)
    if cuts.shape != (4,) or np.any(np.diff(cuts) < 0) or cuts[0] < 0 or cuts[-1] > 100:
        raise ValueError(f"need 4 ascending percentile thresholds within 0..100, got {list(thresholds)}")
    pct = np.asarray(percentiles, dtype=np.float64)
    stars = 1 + np.searchsorted(cuts, np.nan_to_num(pct, nan=-1.0), side="right")
    return np.where(np.isfinite(pct), stars, 0).astype(np.int64)


@dataclass(frozen=True)
class Rating:
    """What to write for one photo: ``stars`` is -1 (reject) or 1..5; ``label`` None = leave as is."""

    stars: int
    percentile: float
    label: str | None = None
    #: Remove the photo's label if it currently equals this (a stale "best of burst" mark from an
    #: earlier run); a label the user chose themselves is left alone.
    clear_label: str | None = None


def plan_ratings(
    scores: Mapping[Hashable, float],
    *,
    thresholds: Sequence[float] = DEFAULT_STAR_THRESHOLDS,
    reject_below: float | None = None,
    best_of_group: Mapping[Hashable, bool] | None = None,
    best_label: str | None = DEFAULT_BEST_LABEL,
    flagged: Collection[Hashable] = (),
    reject_flagged: bool = False,
) -> dict[Hashable, Rating]:
    """Ratings for a selection: id → :class:`Rating`.

    ``reject_below`` (a percentile, e.g. 5) rejects photos under it with ``-1`` instead of giving
    them one star. ``best_of_group`` maps id → whether the photo is its group's best frame; bests
    get ``best_label``, other members of multi-frame groups get ``clear_label`` so that re-running
    after regrouping does not leave stale labels. Photos without a finite score are left out.
    ``flagged`` ids (a technical flag: soft, closed eyes, ...) get at most one star whatever
    their score, or are rejected with ``reject_flagged``; they still count in the percentiles.
    """
    ids = [k for k, v in scores.items() if v is not None and math.isfinite(v)]
    values = np.array([scores[k] for k in ids], dtype=np.float64)
    pct = percentile_rank(values)
    stars = stars_for_percentiles(pct, thresholds)
    if reject_below is not None:
        stars = np.where(pct < reject_below, REJECTED, stars)
    if flagged:
        hit = np.array([k in flagged for k in ids], dtype=bool)
        stars = np.where(hit, REJECTED if reject_flagged else np.minimum(stars, 1), stars)
    plans: dict[Hashable, Rating] = {}
    for key, p, s in zip(ids, pct.tolist(), stars.tolist(), strict=True):
        label = clear = None
        if best_of_group is not None and best_label and key in best_of_group:
            if best_of_group[key]:
                label = best_label
            else:
                clear = best_label
        plans[key] = Rating(stars=int(s), percentile=float(p), label=label, clear_label=clear)
    return plans


def best_of_group_flags(groups: Sequence[Group], *, include_singletons: bool = False) -> dict[Hashable, bool]:
    """id → "is its group's best frame", for :func:`plan_ratings`.

    Singletons are left out by default: every lone photo is trivially the best of its group, and
    labelling all of them would drown the label's meaning ("the pick of a burst").
    """
    flags: dict[Hashable, bool] = {}
    for g in groups:
        if g.size > 1 or include_singletons:
            for m in g.members:
                flags[m.id] = m is g.best
    return flags
