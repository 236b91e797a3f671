"""Bursts and near-duplicates: photos close in capture time *and* similar in Charm's eyes.

A culling pass wants one decision per moment, not one per frame: a 10-frame burst should show up
as one group whose best frame is the pick: the highest Charm score among the frames without a
technical flag that ruins a frame (soft, motion blur, closed eyes: :data:`BURST_BLOCKERS`), and
only when every frame has one, the highest score of all. Two signals decide membership:

* **Capture time.** Photos are sorted by capture time (EXIF ``DateTimeOriginal`` with sub-seconds,
  else the file's mtime) and a group only continues while the gap to the *previous* frame is at
  most ``max_gap`` seconds. Gaps chain: a 20-second burst at 5 fps is one run, because each frame
  is close to the one before it.
* **Similarity.** Within such a run a frame joins the current group only if the cosine similarity
  of its CLS embedding (stored as float16 by the scorer) is at least ``min_similarity``. Time
  alone would merge "portrait, then turn round and shoot the view" into one group and hide a
  good frame behind another one's score; similarity alone would merge the same view shot an hour
  apart, which is a different moment the user may want to keep.

**What a new frame is compared with** (``chain``, ``--chain``). The default ``"previous"`` compares it with the
previous frame of the run (single linkage along time). Bursts change gradually (a bird crossing
the frame, a slow pan), so the first and last frames of one burst may be less similar than any
two neighbours; linking to the previous frame follows that drift, and it makes grouping depend
only on times and embeddings, never on scores (re-scoring with another model does not regroup
unless embeddings change). It is fully vectorised. The alternative ``"best"`` compares with the
group's best frame so far: stricter against drift (every member looks like the pick), at the
price of being sequential and score-dependent. Pick ``"best"`` for slowly changing scenes shot
continuously (time-lapse-like walking shots), where chaining could glue many scenes together.

**Defaults and how they were chosen.**

* ``max_gap`` = 3 s. EXIF times without sub-seconds have a resolution of one second, so two
  frames 1.2 s apart can read as 2 s apart (12:00:00.9 → :00, 12:00:02.1 → :02); a gap below
  2 s would split such bursts. Bursts run at 3–30 fps and a quick recompose takes 1–3 s; longer
  pauses are usually a new idea. Raise it (10–30 s) to also group deliberate re-takes.
* ``min_similarity`` = 0.90. This is a prior, *not* a measured optimum: it comes from how
  DINOv2-family CLS embeddings (Charm's backbone) behave for copy/near-duplicate detection, where
  light edits and small motions stay above ~0.9 while different scenes fall far lower. Charm
  fine-tunes the backbone for aesthetics, and the real published weights were not available
  when this was written, so it has not been calibrated on them. The random-weight conformance
  checkpoints are useless for this: their CLS vectors of *unrelated* photos already have cosine
  0.7–0.99, so tests use synthetic embeddings instead. To calibrate on a real library, look at
  :func:`adjacent_similarities` (frames within ``max_gap`` of each other: mostly bursts, a
  bimodal distribution) and :func:`suggest_min_similarity`, which places a threshold between
  the two modes. Both thresholds are parameters (CLI options).

Embeddings from different models live in different spaces: never mix them in one call (a
dimension mismatch raises; same-dimension models are the caller's responsibility).
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from charmcli.flags import BURST_BLOCKERS

DEFAULT_MAX_GAP_S = 3.0
DEFAULT_MIN_SIMILARITY = 0.90

TimeSource = Literal["exif", "mtime"]
Chain = Literal["previous", "best"]


@dataclass(eq=False)
class PhotoRecord:
    """What grouping needs to know about one scored photo.

    ``timestamp`` is in seconds on a scale that only has to be consistent among records of the
    same ``time_source`` (use :func:`capture_time` to get both). ``embedding`` is the scorer's CLS
    vector (any float dtype, typically float16) or ``None`` when unknown.
    """

    id: Hashable
    path: str | Path
    timestamp: float | None
    embedding: np.ndarray | None
    score: float | None
    time_source: TimeSource | None = "exif"
    flags: frozenset[str] = frozenset()  #: technical flag names (charmcli.flags)


@dataclass(eq=False)
class Group:
    """One burst / set of near-duplicates (possibly a single photo), members in capture order."""

    index: int  #: 0-based position in capture order among the returned groups
    members: list[PhotoRecord]
    best: PhotoRecord  #: highest score among unblocked frames (all, if none); ties: earliest
    number: int = 0  #: what every listing shows, see :func:`number_groups`
    ids: list[Hashable] = field(init=False)

    def __post_init__(self) -> None:
        self.ids = [m.id for m in self.members]

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def start(self) -> float | None:
        return self.members[0].timestamp

    @property
    def end(self) -> float | None:
        return self.members[-1].timestamp


# -- capture time -------------------------------------------------------------------------------

_DATE_RE = re.compile(
    r"^\s*(\d{4})[-:](\d{2})[-:](\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_capture_time(text: str | None) -> float | None:
    """Seconds since the epoch for an EXIF/ISO date, or ``None`` when absent or not a real date.

    Accepts ``2024-05-01T12:00:00.123``, ``2024:05:01 12:00:00`` (raw EXIF), any number of
    sub-second digits and an optional ``Z``/``±HH:MM`` offset. A date without an offset (the usual
    EXIF case: camera wall-clock time) is read as if it were UTC; only differences between photos
    matter for grouping, and frames of one burst share the camera's clock. Cameras write
    ``0000:00:00 00:00:00`` or blanks when the clock was never set; those give ``None``.
    """
    if not text:
        return None
    m = _DATE_RE.match(text)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(v) for v in m.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        return None
    if year < 1900:
        return None
    if m.group(8) and m.group(8) != "Z":
        sign = 1 if m.group(8)[0] == "+" else -1
        digits = m.group(8)[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    fraction = float("0." + m.group(7)) if m.group(7) else 0.0
    return (moment - _EPOCH).total_seconds() + fraction


def capture_time(date_taken: str | None, mtime: float | None) -> tuple[float | None, TimeSource | None]:
    """The best capture time available and where it came from: EXIF date, else file mtime (s).

    The source travels with the time because the two clocks are not comparable (EXIF is camera
    wall-clock time without a zone, mtime is UTC and often the copy time), so a group never links
    an EXIF-timed frame to an mtime-timed one.
    """
    parsed = parse_capture_time(date_taken)
    if parsed is not None:
        return parsed, "exif"
    if mtime is not None and math.isfinite(mtime):
        return float(mtime), "mtime"
    return None, None


def record_from_row(row: Mapping[str, Any], *, embedding_dtype: str = "float16") -> PhotoRecord:
    """Build a :class:`PhotoRecord` from a store row (a dict).

    Keys used: ``id`` (else ``path``), ``path``, ``date_taken`` (ISO string), ``mtime`` (seconds)
    or ``mtime_ns``, ``score``, ``embedding`` (an array, or the raw bytes of the float16 vector as
    stored in SQLite), ``flags`` (flag names, optional).
    """
    mtime = row.get("mtime")
    if mtime is None and row.get("mtime_ns") is not None:
        mtime = row["mtime_ns"] / 1e9
    ts, source = capture_time(row.get("date_taken"), mtime)
    emb = row.get("embedding")
    if isinstance(emb, (bytes, bytearray, memoryview)):
        emb = np.frombuffer(bytes(emb), dtype=embedding_dtype)
    score = row.get("score")
    return PhotoRecord(
        id=row.get("id", row.get("path")),
        path=row["path"],
        timestamp=ts,
        embedding=None if emb is None else np.asarray(emb),
        score=None if score is None else float(score),
        time_source=source,
        flags=frozenset(row.get("flags") or ()),
    )


# -- grouping -----------------------------------------------------------------------------------


def _unit_embeddings(records: Sequence[PhotoRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 unit vectors and a mask of rows that have a usable embedding."""
    dims = {np.asarray(r.embedding).size for r in records if r.embedding is not None}
    if len(dims) > 1:
        raise ValueError(f"embeddings of different sizes {sorted(dims)}: were they made by different models?")
    d = dims.pop() if dims else 1
    matrix = np.zeros((len(records), d), dtype=np.float32)
    present = np.zeros(len(records), dtype=bool)
    for i, r in enumerate(records):
        if r.embedding is not None:
            matrix[i] = np.asarray(r.embedding, dtype=np.float32).reshape(-1)
            present[i] = True
    norms = np.linalg.norm(matrix, axis=1)
    usable = present & np.isfinite(norms) & (norms > 0)
    matrix[usable] /= norms[usable, None]
    matrix[~usable] = 0.0
    return matrix, usable


def _score_key(r: PhotoRecord) -> float:
    s = r.score
    return -math.inf if s is None or not math.isfinite(s) else s


def _pick_key(r: PhotoRecord) -> tuple[bool, float]:
    """Which frame of a group is its best: an unblocked frame beats any blocked one, then score."""
    return (not (r.flags & BURST_BLOCKERS), _score_key(r))


def _sorted_view(records: Sequence[PhotoRecord]):
    """Time order (stable: ties keep input order), and per sorted position: time, source, unit vectors."""
    times = np.array([np.nan if r.timestamp is None else r.timestamp for r in records], dtype=np.float64)
    order = np.argsort(times, kind="stable")  # NaN (no time) sorts last
    units, usable = _unit_embeddings(records)
    sources = np.array([r.time_source or "" for r in records], dtype=object)
    return order, times[order], sources[order], units[order], usable[order]


def _time_links(times: np.ndarray, sources: np.ndarray, usable: np.ndarray, max_gap: float) -> np.ndarray:
    """For sorted positions 1..n-1: may this frame continue the previous frame's run in time?"""
    gap = np.diff(times)
    same = sources[1:] == sources[:-1]
    both = usable[1:] & usable[:-1] & np.isfinite(times[1:]) & np.isfinite(times[:-1])
    with np.errstate(invalid="ignore"):
        return both & same & (gap <= max_gap)


def find_groups(
    records: Sequence[PhotoRecord],
    *,
    max_gap: float = DEFAULT_MAX_GAP_S,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    chain: Chain = "previous",
) -> list[Group]:
    """Partition ``records`` into groups of bursts / near-duplicates; every record is in one group.

    Photos without a capture time or without an embedding are singletons (they cannot be placed
    or compared). Groups come in capture order (photos without time last, in input order); each
    group's members are in capture order and ``best`` is its highest-scoring member without a
    blocking flag (its highest-scoring member when all are blocked).
    """
    if max_gap < 0:
        raise ValueError("max_gap must be >= 0 seconds")
    if chain not in ("previous", "best"):
        raise ValueError(f"chain must be 'previous' or 'best', not {chain!r}")
    n = len(records)
    if n == 0:
        return []
    order, times, sources, units, usable = _sorted_view(records)
    in_time = _time_links(times, sources, usable, max_gap)

    if chain == "previous":
        sim_prev = np.einsum("ij,ij->i", units[1:], units[:-1])
        joins = in_time & (sim_prev >= min_similarity)
        labels = np.concatenate([[0], np.cumsum(~joins)])
    else:
        labels = np.zeros(n, dtype=np.int64)
        best_pos, best_key, label = 0, _pick_key(records[order[0]]), 0
        for pos in range(1, n):
            rec = records[order[pos]]
            if not (in_time[pos - 1] and float(units[pos] @ units[best_pos]) >= min_similarity):
                label += 1
                best_pos, best_key = pos, _pick_key(rec)
            elif _pick_key(rec) > best_key:
                best_pos, best_key = pos, _pick_key(rec)
            labels[pos] = label

    groups: list[Group] = []
    boundaries = np.flatnonzero(np.diff(labels)) + 1
    for chunk in np.split(np.arange(n), boundaries):
        members = [records[i] for i in order[chunk]]
        best = max(members, key=_pick_key)  # max() keeps the first of equals: the earliest frame
        groups.append(Group(index=len(groups), members=members, best=best))
    number_groups(groups)
    return groups


def number_groups(groups: Sequence[Group]) -> None:
    """Number ``groups`` (in capture order) as ``charm groups``, the contact sheet and the desk show them.

    Bursts of 2+ frames are 1, 2, … in capture order, so a burst keeps its number whether single
    photos are listed or not; single photos continue after the last burst (``groups --all``).
    """
    bursts = [g for g in groups if g.size > 1]
    singles = [g for g in groups if g.size <= 1]
    for number, g in enumerate([*bursts, *singles], start=1):
        g.number = number


def best_frames(groups: Sequence[Group]) -> list[PhotoRecord]:
    """One photo per group (its best), highest score first: what ``top --best-of-group`` lists."""
    return sorted((g.best for g in groups), key=_score_key, reverse=True)


def group_index(groups: Sequence[Group]) -> dict[Hashable, Group]:
    """Record id → its group, for annotating listings and reports."""
    return {m.id: g for g in groups for m in g.members}


# -- calibration --------------------------------------------------------------------------------


def adjacent_similarities(records: Sequence[PhotoRecord], *, max_gap: float = DEFAULT_MAX_GAP_S) -> np.ndarray:
    """Cosine similarities of consecutive frames that are within ``max_gap`` (same time source).

    These pairs are what ``min_similarity`` decides on; in a real library they are mostly burst
    neighbours (high) plus some "turned to something else" pairs (low), so their histogram shows
    where the threshold belongs for the model at hand.
    """
    if len(records) < 2:
        return np.zeros(0, dtype=np.float32)
    _order, times, sources, units, usable = _sorted_view(records)
    in_time = _time_links(times, sources, usable, max_gap)
    sims = np.einsum("ij,ij->i", units[1:], units[:-1])
    return sims[in_time]


def suggest_min_similarity(similarities: np.ndarray, *, min_pairs: int = 20, bins: int = 128) -> float | None:
    """A data-driven ``min_similarity``: Otsu's threshold between the two modes of the similarities.

    Returns ``None`` with fewer than ``min_pairs`` pairs (too little evidence) or when all values
    are equal. The result is clamped to [0.5, 0.99] so that one odd library cannot produce a
    threshold that merges everything or nothing; treat it as a hint to show the user.
    """
    sims = np.asarray(similarities, dtype=np.float64)
    sims = sims[np.isfinite(sims)]
    if sims.size < min_pairs or np.ptp(sims) == 0:
        return None
    hist, edges = np.histogram(sims, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mass = np.cumsum(hist * centers)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = mass / weight_low
        mean_high = (mass[-1] - mass) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    cut = int(np.argmax(between))
    return float(np.clip(edges[cut + 1], 0.5, 0.99))
