"""Which star ratings are the photographer's own judgement, and which are charm's guesses.

Ratings come from two places: the XMP sidecars beside the photos (Lightroom, darktable, digiKam,
``charm review`` and ``charm rate`` all write ``xmp:Rating``: 1..5 stars, -1 rejected, 0 none)
and the ``decisions`` table, which remembers what charm itself last wrote to each sidecar and
from where (``review``: the user chose it at the desk; ``rate``: charm's guess from scores).

Learning from charm's own guesses would teach the taste model the generic score back, so
:func:`user_rating` — the one place this rule lives — drops a sidecar rating that still equals
what ``charm rate`` wrote there. Once the user changes it, in any tool, it counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from charmcli.cull.ratings import REJECTED
from charmcli.cull.xmp import sidecar_ratings

#: ``decisions.source`` of ratings charm computed itself (``charm rate``, with or without --taste).
CHARM_SOURCE = "rate"
#: ``decisions.source`` of ratings the user chose at the review desk.
DESK_SOURCE = "review"


@dataclass(frozen=True)
class UserRating:
    """One photo's rating as the user gave it: ``stars`` is -1 (rejected) or 1..5."""

    path: str
    stars: int
    source: str  #: "sidecar" (any tool, or the desk's write) or "review" (the desk, sidecar gone)


def _judgement(stars: int | None) -> int | None:
    """A rating that says something about the photo: rejected or 1..5 stars (0 means "none")."""
    return stars if stars is not None and (stars == REJECTED or 1 <= stars <= 5) else None


def user_rating(sidecar: int | None, decision: Mapping[str, Any] | None) -> UserRating | None:
    """The user's rating of one photo, or None; ``path`` is left empty for the caller to fill.

    ``sidecar`` is the ``xmp:Rating`` in the photo's sidecar now (None: no sidecar, or no rating
    in it); ``decision`` is the photo's ``decisions`` row (None: charm never wrote its sidecar).

    * A sidecar rating is the current truth, whoever wrote it — unless ``charm rate`` wrote that
      very value and nobody changed it since: that is charm's guess, not the user's judgement.
      (A user who sets the same stars charm guessed cannot be told apart; it is not learned.)
    * Without a sidecar rating, a decision made at the review desk still counts (the sidecar was
      removed or written in the other naming style); one from ``charm rate`` never does.
    """
    if sidecar is not None:
        if decision is not None and decision.get("source") == CHARM_SOURCE and decision.get("rating") == sidecar:
            return None
        stars = _judgement(sidecar)
        return None if stars is None else UserRating("", stars, "sidecar")
    if decision is not None and decision.get("source") == DESK_SOURCE:
        stars = _judgement(decision.get("rating"))
        return None if stars is None else UserRating("", stars, DESK_SOURCE)
    return None


def user_ratings(
    paths: Iterable[str], decisions: Mapping[str, Mapping[str, Any]]
) -> tuple[list[UserRating], dict[str, str]]:
    """The user's ratings among ``paths`` (sidecars read now, ``decisions`` by path), and the
    sidecars that could not be read (path → reason; those photos fall back to their decision)."""
    paths = list(paths)
    found, problems = sidecar_ratings(paths)
    out: list[UserRating] = []
    for path in paths:
        rating = user_rating(found.get(path), decisions.get(path))
        if rating is not None:
            out.append(UserRating(path, rating.stars, rating.source))
    return out, problems
