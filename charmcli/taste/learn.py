"""Learn a taste from the user's ratings of selected photos, store it, and predict from it.

The CLI selects the photos (:func:`charmcli.selection.select`) and renders; this module does the
rest against the store: ratings in (:mod:`.ratings`), features (:mod:`.features`), the fit
(:mod:`.fit`), and the model in and out of the ``tastes`` table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charmcli.store import Store, TasteForgotten, TasteRow
from charmcli.taste.features import choose_layout, feature_rows
from charmcli.taste.fit import MIN_RATINGS, NotEnoughRatings, TasteFit, fit_taste
from charmcli.taste.model import TasteFormatError, TasteModel
from charmcli.taste.ratings import user_ratings

#: The name ``charm learn`` stores a taste under when none is given.
DEFAULT_TASTE = "mine"


class TasteError(Exception):
    """A taste that cannot be used (not learned yet, unreadable); ``str()`` is one line."""


@dataclass
class Learned:
    """What ``charm learn`` did: the fit, and what it could not use."""

    name: str
    fit: TasteFit
    generic_model: str
    ratings: int  #: user ratings found among the selected photos
    without_features: int = 0  #: rated photos whose scores carry no head features (scored before)
    unreadable: dict[str, str] = field(default_factory=dict)  #: sidecar problems, by photo path


def learn(store: Store, rows: Sequence[Mapping[str, Any]], generic_model: str, name: str = DEFAULT_TASTE) -> Learned:
    """Fit a taste on the user's ratings among ``rows`` (selected photos, ``generic_model``'s score
    in ``score``) and store it under ``name``, replacing any earlier one.

    Raises :class:`~charmcli.taste.fit.NotEnoughRatings` (nothing stored) when too few rated
    photos have features, or all carry the same rating.
    """
    by_path = {r["path"]: r for r in rows}
    ratings, problems = user_ratings(list(by_path), store.decisions_for(list(by_path)))
    shas = [by_path[r.path]["sha256"] for r in ratings]
    found = store.head_features(shas)
    layout, usable = choose_layout(found, shas)
    keep = set(usable)
    rated = [(r, sha) for r, sha in zip(ratings, shas, strict=True) if sha in keep]
    missing = len(ratings) - len(rated)
    if len(rated) < MIN_RATINGS and missing:
        more = MIN_RATINGS - len(rated)
        raise NotEnoughRatings(
            f"{len(ratings)} rating(s) found, but {missing} of those photo(s) were scored before charm kept "
            f"what a taste needs: run `charm score` on them again (or rate {more} more)", len(rated), more)  # fmt: skip
    X = feature_rows(found, [sha for _r, sha in rated], layout.blocks)
    stars = [r.stars for r, _sha in rated]
    generic = np.array([by_path[r.path]["score"] for r, _sha in rated], dtype=np.float64)
    fit = fit_taste(X, stars, layout=layout.blocks, free=layout.free, generic=generic)
    store.write([TasteRow(name, fit.model.to_bytes(), fit.model.n_ratings, fit.model.method)])
    return Learned(name, fit, generic_model, len(ratings), missing, problems)


def forget(store: Store, name: str) -> bool:
    """Remove the taste ``name``; False when there was none."""
    if store.taste(name) is None:
        return False
    store.write([TasteForgotten(name)])
    return True


def load(store: Store, name: str) -> TasteModel:
    """The stored taste ``name``, or a :class:`TasteError` saying how to get one."""
    row = store.taste(name)
    if row is None:
        known = [t["name"] for t in store.tastes()]
        also = f" (learned: {', '.join(known)})" if known else ""
        raise TasteError(f"no taste named {name!r} yet{also}: rate {MIN_RATINGS}+ photos, then run `charm learn`")
    try:
        return TasteModel.from_bytes(row["data"])
    except TasteFormatError as exc:
        raise TasteError(f"taste {name!r}: {exc}; run `charm learn --name {name}` again") from None


def predict(store: Store, model: TasteModel, sha256s: Sequence[str]) -> list[float | None]:
    """Predicted stars for each photo content; None where it lacks the features the taste was learned on."""
    if not sha256s:
        return []
    X = feature_rows(store.head_features(sha256s), sha256s, model.layout)
    values = model.predict(np.nan_to_num(X))
    ok = ~np.isnan(X).any(axis=1)
    return [round(float(v), 3) if good else None for v, good in zip(values, ok, strict=True)]


__all__ = ["DEFAULT_TASTE", "Learned", "NotEnoughRatings", "TasteError", "forget", "learn", "load", "predict"]
