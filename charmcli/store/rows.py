"""The store's typed rows: what callers hand in to be written, what lookups hand back, and the
filter rankings take.

A write is one of the dataclasses (:data:`WriteRow`); the store alone turns it into SQL
(:mod:`.writes`). A read returns a ``TypedDict`` (:class:`StoredPhoto`, :class:`StoredScore`,
:class:`StoredFailure`, :class:`StoredDecision`, :class:`StoredCheckpoint`, :class:`RankedPhoto`, …): plain dicts at run time,
typed keys for a reader and a type checker; ``tests/store`` checks them against the schema, so a
migration that adds a column adds it here too. Nothing here knows tensors or files: embeddings
arrive as float16 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

#: Columns of ``photos`` that come from EXIF (:class:`~charmcli.library.metadata.PhotoMeta` fields).
META_COLUMNS = (
    "date_taken",
    "make",
    "camera_model",
    "lens",
    "focal_length",
    "f_number",
    "exposure_time",
    "iso",
    "orientation",
)


@dataclass
class PhotoRow:
    """One file as last read (upserted by path; ``first_seen`` survives). ``meta`` holds
    :data:`META_COLUMNS` (missing keys = unknown)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    width: int | None = None
    height: int | None = None
    format: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoreRow:
    """One scoring model's verdict on one file content (no tensors: plain floats and bytes)."""

    sha256: str
    model: str  #: the scoring model (aadb, para, ...), never the camera
    checkpoint_id: str
    preprocess: str
    score: float
    outputs: list[float]
    n_tokens: int | None = None
    input_size: tuple[int, int] | None = None
    token_path: str | None = None
    kept_cells: list[tuple[int, int]] = field(default_factory=list)
    cell_size: int | None = None
    embedding: bytes | None = None  #: float16 bytes
    seconds: float | None = None
    #: float16 bytes: the head's whole input (Charm: ``[CLS, mean of patch tokens]``), what a
    #: learned taste works from
    head_input: bytes | None = None
    precision: str = "fp32"  #: the network's number format: part of the score's identity


@dataclass
class FailureRow:
    """A file that could not be scored (upserted by path); retried when ``options`` change."""

    path: str
    reason: str
    kind: str | None = None
    sha256: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    options: str | None = None


@dataclass
class MeasuresRow:
    """The technical measures of one file content, by the version that measured them."""

    sha256: str
    version: str  #: what measured them (pixel measures + face detector)
    values: dict[str, float | int | None]  #: plain numbers; ``None`` = not measured


@dataclass(frozen=True)
class PhotoSeen:
    """An unchanged file was seen again (its ``last_seen`` moves)."""

    path: str


@dataclass(frozen=True)
class FailureCleared:
    """A file that failed before now reads: its failure row goes."""

    path: str


@dataclass(frozen=True)
class PhotoDropped:
    """A file that changed and now fails no longer has the content its photo row describes."""

    path: str


@dataclass(frozen=True)
class DecisionRow:
    """What charm last wrote to a photo's XMP sidecar (keyed by path, not content)."""

    path: str
    sha256: str | None
    rating: int | None  #: -1 rejected, 0 none, 1..5, None unknown
    label: str | None
    source: str  #: review | rate


@dataclass(frozen=True)
class TasteRow:
    """A learned taste, stored under its name (a re-run of ``charm learn`` replaces it)."""

    name: str
    data: bytes  #: :meth:`charmcli.taste.TasteModel.to_bytes`
    ratings: int
    method: str


@dataclass(frozen=True)
class TasteForgotten:
    """``charm learn --forget NAME``."""

    name: str


#: Everything :meth:`Store.write <charmcli.store.Store.write>` and ``BatchWriter.add`` accept.
WriteRow = (
    PhotoRow | ScoreRow | MeasuresRow | FailureRow | PhotoSeen | FailureCleared | PhotoDropped | DecisionRow
    | TasteRow | TasteForgotten
)


# -- rows out (what lookups and rankings return) -----------------------------------------------


class StoredPhoto(TypedDict):
    """A ``photos`` row: one file as last read (``width``/``height`` as displayed)."""

    id: int
    path: str
    size: int
    mtime_ns: int
    sha256: str
    width: int | None
    height: int | None
    date_taken: str | None
    make: str | None
    camera_model: str | None
    lens: str | None
    focal_length: float | None
    f_number: float | None
    exposure_time: float | None
    iso: int | None
    orientation: int | None
    format: str | None
    first_seen: str
    last_seen: str


class StoredScore(TypedDict):
    """A ``scores`` row (also the shape of a ``latest_scores`` row)."""

    id: int
    sha256: str
    model: str  #: the scoring model
    checkpoint_id: str
    preprocess: str
    score: float
    outputs: str  #: JSON list of floats
    n_tokens: int | None
    input_width: int | None
    input_height: int | None
    token_path: str | None
    kept_cells: str  #: JSON [[row, col], ...]
    cell_size: int | None
    embedding: bytes | None
    seconds: float | None
    precision: str  #: fp32, bf16, fp16
    scored_at: str
    head_input: bytes | None  #: float16 input of the head; None for scores from before it was kept


class StoredFailure(TypedDict):
    """A ``failures`` row."""

    id: int
    path: str
    sha256: str | None
    reason: str
    kind: str | None
    size: int | None
    mtime_ns: int | None
    options: str | None
    failed_at: str


class StoredDecision(TypedDict):
    """A ``decisions`` row."""

    path: str
    sha256: str | None
    rating: int | None
    label: str | None
    source: str
    decided_at: str


class StoredTaste(TypedDict):
    """A ``tastes`` row: a learned taste under its name."""

    name: str
    data: bytes  #: :meth:`charmcli.taste.TasteModel.to_bytes`
    ratings: int
    method: str
    learned_at: str


class StoredCheckpoint(TypedDict):
    """A ``checkpoints`` row: what a checkpoint file hashed to, so a cached run needs no hash."""

    source: str  #: ``file:/abs/path`` or ``hub:NAME``
    file: str
    size: int
    mtime_ns: int
    checkpoint_id: str
    model: str  #: the scoring model
    seen_at: str


class ModelStats(TypedDict):
    """One scoring model's line in :class:`Stats`."""

    model: str
    contents: int  #: distinct contents scored
    checkpoints: int
    preprocess_policies: int
    photos: int  #: photos (paths) whose content it scored
    mean_score: float
    min_score: float
    max_score: float
    last_scored: str


class ListedFailure(TypedDict):
    """A failure as ``charm stats`` lists it."""

    path: str
    reason: str
    kind: str | None
    size: int | None
    mtime_ns: int | None
    failed_at: str


class Stats(TypedDict):
    """What the database holds (``charm stats``, ``--json`` as is)."""

    db: str
    schema_version: int
    photos: int
    unique_content: int  #: distinct contents among the photos
    scores: int
    models: list[ModelStats]
    failures: list[ListedFailure]


#: The typed row each table's reads return (tests/store checks each against the schema).
TABLE_ROWS: dict[str, type] = {"photos": StoredPhoto, "scores": StoredScore, "failures": StoredFailure,
                               "decisions": StoredDecision, "tastes": StoredTaste,
                               "checkpoints": StoredCheckpoint}  # fmt: skip


class RankedPhoto(StoredPhoto):
    """A photo with its latest score for one scoring model (``Store.iter_ranked``)."""

    score: float
    model: str  #: the scoring model
    checkpoint_id: str
    preprocess: str
    precision: str
    scored_at: str
    embedding: bytes | None  #: float16 CLS vector; None unless asked for
    measures: dict[str, Any] | None  #: the content's latest technical measures, or None


@dataclass
class TopFilter:
    """Which scored photos a ranking returns; ``None`` means "no constraint"."""

    model: str  #: the scoring model
    precision: str = "fp32"  #: scores of this precision only: rankings never mix precisions
    min_score: float | None = None
    since: str | None = None  #: ISO date prefix, inclusive
    until: str | None = None  #: ISO date prefix, inclusive (``2023`` = through 2023-12-31)
    camera: str | None = None  #: substring of "make camera_model", case-insensitive
    lens: str | None = None
    folder: str | None = None  #: substring of the parent folder path, case-insensitive
    paths: Sequence[str] = ()  #: absolute files or folders the photo must be (under)


_DATE_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2}([T ]\d{2}(:\d{2}(:\d{2})?)?)?)?)?$")


def check_date(text: str) -> str:
    """Normalise a ``--since/--until`` value (``2023``, ``2023-05``, ``2023-05-31[T12:00]``)."""
    value = text.strip().replace(" ", "T")
    if _DATE_RE.match(value):
        # Every part must exist on a calendar: "2010-13" is no month, not January 2011.
        full = value + "-01-01T00:00:00"[len(value) - 4 :] if len(value) < 19 else value
        try:
            datetime.fromisoformat(full)
            return value
        except ValueError:
            pass
    raise ValueError(f"invalid date {text!r}; use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM")
