"""What the culling desk shows and changes, independent of HTTP.

The desk works on one *selection*: the photos the store knows under the PATHs given to ``charm
review`` (all of them without PATHs), with their latest score for one model, files that still
exist. Everything about it comes from the layers below, never re-implemented here:

* which photos: :func:`charmcli.selection.select` (latest score per content, files that still
  exist, rank, library percentile and last decision attached, exactly as ``top``, ``groups`` and
  ``report`` get them), narrowed by the page's score/date/camera/folder filters;
* bursts, their best frame and their number: :class:`charmcli.selection.Grouping` over the
  *whole* selection (so a filter never splits, merges or renumbers a group);
* decisions: :func:`charmcli.cull.xmp.apply_ratings` (the merge ``charm rate`` uses: foreign
  fields kept, atomic, same naming styles), then :meth:`Store.record_decisions` stores what the
  sidecar now says. A sidecar that cannot be merged leaves the database unchanged.

Photos are addressed by their ``photos.id`` row id. An id outside the selection is unknown to the
desk, whatever the database holds, so no request can reach a file the user did not put on it.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charmcli.cull.groups import DEFAULT_MAX_GAP_S, DEFAULT_MIN_SIMILARITY, Chain
from charmcli.cull.ratings import DEFAULT_BEST_LABEL, REJECTED
from charmcli.cull.report import camera_name
from charmcli.cull.xmp import SidecarStyle, XmpError, apply_ratings, rating_number, read_sidecar, sidecar_path
from charmcli.flags import DEFAULT_LIMITS, FLAG_NAMES, Limits, parse_names
from charmcli.library.scan import display_path
from charmcli.selection import Grouping, Query, liked, select
from charmcli.store import Store, check_date
from charmcli.taste.learn import TasteError

#: Lightroom's standard colour labels (what Bridge, darktable and digiKam map too).
LABELS = ("Red", "Yellow", "Green", "Blue", "Purple")


class DeskError(Exception):
    """A request the desk refuses; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DeskFilter:
    """The page's filters (``None`` = no constraint); they narrow the list, never the groups."""

    min_score: float | None = None
    since: str | None = None
    until: str | None = None
    camera: str | None = None
    folder: str | None = None
    hide: frozenset[str] = frozenset()  #: leave out photos with any of these technical flags
    only: str | None = None  #: only photos with this technical flag

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.min_score, self.since, self.until, self.camera, self.folder))

    def shows(self, flags: Sequence[str]) -> bool:
        """Do the flag filters let a photo with these flags through?"""
        return not (self.hide & set(flags)) and (self.only is None or self.only in flags)

    @classmethod
    def from_query(cls, query: dict[str, str]) -> DeskFilter:
        """Parse ``?min_score=&since=&until=&camera=&folder=&hide=&only=``; blanks mean "no constraint".

        ``hide`` is a comma-separated list of flag names (``all``: every flag), ``only`` one name.
        """
        values = {k: (query.get(k) or "").strip() or None for k in ("min_score", "since", "until", "camera", "folder")}
        score = None
        if values["min_score"] is not None:
            try:
                score = float(values["min_score"])
            except ValueError:
                raise DeskError(f"min_score must be a number, not {values['min_score']!r}") from None
            if not math.isfinite(score):
                raise DeskError("min_score must be finite")
        for key in ("since", "until"):
            if values[key] is not None:
                try:
                    values[key] = check_date(values[key])
                except ValueError as exc:
                    raise DeskError(f"{key}: {exc}") from None
        hide_text = (query.get("hide") or "").strip()
        only = (query.get("only") or "").strip().lower() or None
        try:
            hide = frozenset(FLAG_NAMES) if hide_text.lower() == "all" else frozenset(parse_names(hide_text))
            if only is not None:
                parse_names(only)
        except ValueError as exc:
            raise DeskError(str(exc)) from None
        return cls(score, values["since"], values["until"], values["camera"], values["folder"], hide, only)


class Desk:
    """The selection, its groups, and the decisions made on it. Thread-safe."""

    def __init__(
        self,
        store: Store,
        model: str,
        paths: Sequence[str | os.PathLike[str]] = (),
        *,
        sidecar: SidecarStyle = "ext",
        pick_label: str = DEFAULT_BEST_LABEL,
        gap: float = DEFAULT_MAX_GAP_S,
        similarity: float = DEFAULT_MIN_SIMILARITY,
        chain: Chain = "previous",
        flag_limits: Limits = DEFAULT_LIMITS,
        taste: str | None = None,
    ) -> None:
        self.store = store
        self.flag_limits = flag_limits
        self.taste = taste  #: a learned taste (`charm learn`): each photo carries its prediction
        self.model = model
        self.roots = [os.path.abspath(p) for p in paths]
        self.sidecar: SidecarStyle = sidecar
        self.pick_label = pick_label
        self.gap, self.similarity, self.chain = gap, similarity, chain
        self.missing = 0  #: scored rows whose file is gone (skipped)
        self._lock = threading.RLock()
        self._entries: dict[int, dict[str, Any]] = {}
        self._order: list[int] = []
        self._version = -1
        self.n_groups = 0
        self.refresh()

    # -- the selection -------------------------------------------------------------------------

    def _query(self, flt: DeskFilter | None = None, **attach: bool) -> Query:
        f = flt or DeskFilter()
        return Query(model=self.model, min_score=f.min_score, since=f.since, until=f.until, camera=f.camera,
                     folder=f.folder, paths=self.roots, flag_limits=self.flag_limits, **attach)  # fmt: skip

    def _tasted(self) -> dict[int, float | None]:
        """Photo id → the taste's predicted stars (empty without a taste): the page can sort by it."""
        if self.taste is None:
            return {}
        try:
            sel = select(self.store, self._query(taste=self.taste, embeddings=False, percentiles=False, decisions=False))
        except TasteError as exc:
            raise DeskError(str(exc), 409) from None
        return {row["id"]: row["taste"] for row in sel.rows}

    def refresh(self) -> None:
        """Re-read the selection from the store (new scores, files gone) and regroup it."""
        version = self.store.data_version()
        sel = select(self.store, self._query())
        rows, missing = sel.rows, sel.missing
        tasted = self._tasted()
        # with a taste, a burst's best frame is the one it likes best, as in `rate` and `top`
        records = liked(sel.records, [tasted.get(r.id) for r in sel.records]) if self.taste else sel.records
        try:
            groups = Grouping(self.gap, self.similarity, self.chain).groups(records)
        except ValueError as exc:  # embeddings of different sizes: mixed checkpoints under one name
            raise DeskError(str(exc), 500) from None
        where = {m.id: (g, pos) for g in groups for pos, m in enumerate(g.members)}
        entries: dict[int, dict[str, Any]] = {}
        order: list[int] = []
        for row in rows:
            g, pos = where[row["id"]]
            entries[row["id"]] = {
                "id": row["id"],
                "path": row["path"],
                "name": display_path(os.path.basename(row["path"])),
                "folder": display_path(os.path.dirname(row["path"])),
                "rank": row["rank"],
                "score": row["score"],
                "percentile": row["percentile"],
                "rating": row["rating"],
                "label": row["label"],
                "date_taken": row["date_taken"],
                "camera": camera_name(row["make"], row["camera_model"]),
                "lens": row["lens"],
                "width": row["width"],
                "height": row["height"],
                "format": row["format"],
                "group": g.number,
                "group_size": g.size,
                "group_pos": pos,
                "best": g.size > 1 and g.best.id == row["id"],
                "flags": row["flags"],
                "flag_reasons": row["flag_reasons"],
                "taste": tasted.get(row["id"]),
                # private: what the image routes need (never sent to the page)
                "_sha256": row["sha256"],
                "_size": row["size"],
                "_preprocess": row["preprocess"],
                "_precision": row["precision"],
                "_checkpoint_id": row["checkpoint_id"],
            }
            order.append(row["id"])
        with self._lock:
            self._entries, self._order, self.missing, self.n_groups = entries, order, missing, len(groups)
            self._version = version

    def _refresh_if_changed(self) -> None:
        """Re-read only when another process committed (new scores, `charm rate`, `charm forget`).

        The desk's own decisions update its entries in place, so a 5,000-photo grid is listed
        again without regrouping it; a file deleted meanwhile shows until the next change, and
        its pictures answer 404.
        """
        if self.store.data_version() != self._version:
            self.refresh()

    @staticmethod
    def public(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in entry.items() if not k.startswith("_")}

    def photos(self, flt: DeskFilter | None = None) -> list[dict[str, Any]]:
        """The selection best first (narrowed by ``flt``), re-read when the database changed."""
        self._refresh_if_changed()
        with self._lock:
            entries, order = self._entries, self._order
        if flt is None or flt.empty:
            keep = None
        else:
            narrowed = select(self.store, self._query(flt, embeddings=False, percentiles=False, decisions=False))
            keep = {row["id"] for row in narrowed.rows}
        flagged = flt or DeskFilter()
        return [
            self.public(entries[i])
            for i in order
            if (keep is None or i in keep) and flagged.shows(entries[i]["flags"])
        ]

    def entry(self, photo_id: int) -> dict[str, Any]:
        """The desk's entry for ``photo_id`` (private fields included), or a 404 :class:`DeskError`."""
        with self._lock:
            found = self._entries.get(photo_id)
        if found is None:
            self._refresh_if_changed()  # scored since the page loaded?
            with self._lock:
                found = self._entries.get(photo_id)
        if found is None:
            raise DeskError(f"no photo {photo_id} on this desk", 404)
        return found

    def facets(self) -> dict[str, Any]:
        """What the page's filters offer: cameras and folders in the selection, and the settings."""
        with self._lock:
            entries = list(self._entries.values())
        return {
            "model": self.model,
            "photos": len(entries),
            "groups": self.n_groups,
            "missing": self.missing,
            "cameras": sorted({e["camera"] for e in entries if e["camera"]}),
            "folders": sorted({e["folder"] for e in entries}),
            "roots": [display_path(r) for r in self.roots],
            "sidecar": self.sidecar,
            "pick_label": self.pick_label,
            "taste": self.taste,
            "labels": list(LABELS),
            "flags": {name: sum(name in e["flags"] for e in entries) for name in FLAG_NAMES},
        }

    # -- decisions -----------------------------------------------------------------------------

    def set_rating(self, photo_id: int, rating: object) -> dict[str, Any]:
        """Write ``rating`` (-1 reject, 0 none, 1..5) to the sidecar, then record it."""
        if type(rating) is not int or not (rating == REJECTED or 0 <= rating <= 5):
            raise DeskError(f"rating must be an integer -1 (reject), 0 (none) or 1..5, not {rating!r}")
        return self._decide(self.entry(photo_id), rating=rating, label=None, clear_label=None)

    def set_label(self, photo_id: int, label: object) -> dict[str, Any]:
        """Set the colour label (one of :data:`LABELS` or the pick label), or remove it (None)."""
        if label is not None and (not isinstance(label, str) or label not in {*LABELS, self.pick_label}):
            raise DeskError(f"label must be one of {', '.join(sorted({*LABELS, self.pick_label}))} or null, not {label!r}")
        entry = self.entry(photo_id)
        if label is not None:
            return self._decide(entry, rating=None, label=label, clear_label=None)
        with self._lock:  # read and clear under one lock: no other decision in between
            current = self._sidecar_values(entry)["label"]  # whatever label it has, charm's or not
            return self._decide(entry, rating=None, label=None, clear_label=current)

    def _sidecar_values(self, entry: dict[str, Any]) -> dict[str, str | None]:
        path = sidecar_path(entry["path"], self.sidecar)
        if not path.exists():
            return {"rating": None, "label": None}
        try:
            return read_sidecar(path)
        except (XmpError, OSError) as exc:
            raise DeskError(f"{display_path(path)}: {exc}", 409) from None

    def _decide(self, entry: dict[str, Any], *, rating: int | None, label: str | None, clear_label: str | None) -> dict[str, Any]:
        with self._lock:  # one decision at a time: two quick keys must not interleave their merges
            change = apply_ratings([(Path(entry["path"]), rating, label, clear_label)], style=self.sidecar)[0]
            if change.error is not None:
                raise DeskError(f"{display_path(change.sidecar)}: {change.error}", 409)
            stars = rating_number(change.new_rating)
            self.store.record_decisions([(entry["path"], entry["_sha256"], stars, change.new_label)], source="review")
            entry["rating"], entry["label"] = stars, change.new_label
        out = self.public(entry)
        out["sidecar"] = display_path(change.sidecar)
        out["written"] = change.written
        return out

