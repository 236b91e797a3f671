"""Typed rows → SQL: the only place a write statement is written.

Each write is a prepared ``INSERT … ON CONFLICT DO UPDATE`` (or a plain UPDATE/DELETE), so many
can be committed in one short transaction; ``photos.first_seen`` must survive an upsert, which
sqlite-utils' ``upsert`` (it sets every column it is given) would not allow.

One plain function per row type, found in :data:`WRITERS` by the row's type. Each names its
columns beside the values it binds to them (a dict), so a column and its value cannot drift
apart, and builds its statement when called: a few microseconds of string joining per row, and
sqlite3 still prepares each distinct text once (its statement cache is keyed by the text).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from charmcli.store.rows import (
    META_COLUMNS,
    DecisionRow,
    FailureCleared,
    FailureRow,
    MeasuresRow,
    PhotoDropped,
    PhotoRow,
    PhotoSeen,
    ScoreRow,
    TasteForgotten,
    TasteRow,
)

Statement = tuple[str, Sequence[Any]]

#: What makes two scores the same score: a rescore of the same identity replaces it, a score
#: in another precision (bf16 beside fp32) is another score and never replaces or answers for it.
SCORE_KEY = ("sha256", "model", "checkpoint_id", "preprocess", "precision")


def _upsert(table: str, values: Mapping[str, Any], key: Sequence[str], keep: Sequence[str] = ()) -> Statement:
    """``INSERT`` of ``values`` (column → value) ``ON CONFLICT(key) DO UPDATE`` of every column but
    the key and ``keep`` (kept as first written)."""
    columns = list(values)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key and c not in keep)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT({', '.join(key)}) DO UPDATE SET {updates}"
    )
    return sql, list(values.values())


def _photo(row: PhotoRow, when: str) -> Statement:
    values = {"path": row.path, "size": row.size, "mtime_ns": row.mtime_ns, "sha256": row.sha256,
              "width": row.width, "height": row.height, **{c: row.meta.get(c) for c in META_COLUMNS},
              "format": row.format, "first_seen": when, "last_seen": when}  # fmt: skip
    return _upsert("photos", values, key=("path",), keep=("first_seen",))


def _photo_seen(row: PhotoSeen, when: str) -> Statement:
    return "UPDATE photos SET last_seen = ? WHERE path = ?", (when, row.path)


def _score(row: ScoreRow, when: str) -> Statement:
    width, height = row.input_size or (None, None)
    values = {
        "sha256": row.sha256,
        "model": row.model,
        "checkpoint_id": row.checkpoint_id,
        "preprocess": row.preprocess,
        "precision": row.precision,
        "score": float(row.score),
        "outputs": json.dumps([float(v) for v in row.outputs]),
        "n_tokens": row.n_tokens,
        "input_width": width,
        "input_height": height,
        "token_path": row.token_path,
        "kept_cells": json.dumps([[int(r), int(c)] for r, c in row.kept_cells]),
        "cell_size": row.cell_size,
        "embedding": row.embedding,
        "seconds": row.seconds,
        "head_input": row.head_input,
        "scored_at": when,
    }
    return _upsert("scores", values, key=SCORE_KEY)


def _measures(row: MeasuresRow, when: str) -> Statement:
    values = {"sha256": row.sha256, "version": row.version, "measures": json.dumps(row.values, sort_keys=True),
              "measured_at": when}  # fmt: skip
    return _upsert("measures", values, key=("sha256", "version"))


def _failure(row: FailureRow, when: str) -> Statement:
    values = {"path": row.path, "sha256": row.sha256, "reason": row.reason, "kind": row.kind, "size": row.size,
              "mtime_ns": row.mtime_ns, "options": row.options, "failed_at": when}  # fmt: skip
    return _upsert("failures", values, key=("path",))


def _failure_cleared(row: FailureCleared, when: str) -> Statement:
    return "DELETE FROM failures WHERE path = ?", (row.path,)


def _photo_dropped(row: PhotoDropped, when: str) -> Statement:
    return "DELETE FROM photos WHERE path = ?", (row.path,)


def _decision(row: DecisionRow, when: str) -> Statement:
    values = {"path": row.path, "sha256": row.sha256, "rating": row.rating, "label": row.label,
              "source": row.source, "decided_at": when}  # fmt: skip
    return _upsert("decisions", values, key=("path",))


def _taste(row: TasteRow, when: str) -> Statement:
    values = {"name": row.name, "data": row.data, "ratings": row.ratings, "method": row.method, "learned_at": when}
    return _upsert("tastes", values, key=("name",))


def _taste_forgotten(row: TasteForgotten, when: str) -> Statement:
    return "DELETE FROM tastes WHERE name = ?", (row.name,)


#: Row type → the function that writes it: one entry per :data:`~charmcli.store.rows.WriteRow`.
WRITERS: dict[type, Callable[[Any, str], Statement]] = {
    PhotoRow: _photo,
    PhotoSeen: _photo_seen,
    ScoreRow: _score,
    MeasuresRow: _measures,
    FailureRow: _failure,
    FailureCleared: _failure_cleared,
    PhotoDropped: _photo_dropped,
    DecisionRow: _decision,
    TasteRow: _taste,
    TasteForgotten: _taste_forgotten,
}


def statement(row: object, when: str) -> Statement:
    """The SQL that writes ``row`` at time ``when`` (ISO UTC)."""
    write = WRITERS.get(type(row))
    if write is None:
        raise TypeError(f"the store does not write {type(row).__name__} objects")
    return write(row, when)
