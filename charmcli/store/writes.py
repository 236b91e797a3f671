"""Typed rows → SQL: the only place a write statement is written.

Each write is a prepared ``INSERT … ON CONFLICT DO UPDATE`` (or a plain UPDATE/DELETE), so many
can be committed in one short transaction; ``photos.first_seen`` must survive an upsert, which
sqlite-utils' ``upsert`` (it sets every column it is given) would not allow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import singledispatch
from typing import Any

from charmcli.store.rows import (
    META_COLUMNS,
    PHOTO_COLUMNS,
    SCORE_COLUMNS,
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


def _upsert(table: str, columns: Sequence[str], key: Sequence[str], keep: Sequence[str] = ()) -> str:
    """``INSERT … ON CONFLICT(key) DO UPDATE`` of every column but the key and ``keep``."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key and c not in keep)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT({', '.join(key)}) DO UPDATE SET {updates}"
    )


_PHOTO_SQL = _upsert("photos", (*PHOTO_COLUMNS, "first_seen", "last_seen"), ("path",), keep=("first_seen",))
_SCORE_SQL = _upsert(
    "scores", (*SCORE_COLUMNS, "scored_at"), ("sha256", "model", "checkpoint_id", "preprocess", "precision")
)
_FAILURE_COLUMNS = ("path", "sha256", "reason", "kind", "size", "mtime_ns", "options", "failed_at")
_FAILURE_SQL = _upsert("failures", _FAILURE_COLUMNS, ("path",))
_MEASURES_SQL = _upsert("measures", ("sha256", "version", "measures", "measured_at"), ("sha256", "version"))
_TASTE_SQL = _upsert("tastes", ("name", "data", "ratings", "method", "learned_at"), ("name",))
_DECISION_SQL = _upsert("decisions", ("path", "sha256", "rating", "label", "source", "decided_at"), ("path",))


@singledispatch
def statement(row: object, when: str) -> Statement:
    """The SQL that writes ``row`` at time ``when`` (ISO UTC)."""
    raise TypeError(f"the store does not write {type(row).__name__} objects")


@statement.register
def _(row: PhotoRow, when: str) -> Statement:
    values = [row.path, row.size, row.mtime_ns, row.sha256, row.width, row.height]
    values += [row.meta.get(c) for c in META_COLUMNS] + [row.format, when, when]
    return _PHOTO_SQL, values


@statement.register
def _(row: PhotoSeen, when: str) -> Statement:
    return "UPDATE photos SET last_seen = ? WHERE path = ?", (when, row.path)


@statement.register
def _(row: ScoreRow, when: str) -> Statement:
    w, h = row.input_size or (None, None)
    values = [
        row.sha256,
        row.model,
        row.checkpoint_id,
        row.preprocess,
        float(row.score),
        json.dumps([float(v) for v in row.outputs]),
        row.n_tokens,
        w,
        h,
        row.token_path,
        json.dumps([[int(r), int(c)] for r, c in row.kept_cells]),
        row.cell_size,
        row.embedding,
        row.seconds,
        row.head_input,
        row.precision,
        when,
    ]
    return _SCORE_SQL, values


@statement.register
def _(row: MeasuresRow, when: str) -> Statement:
    return _MEASURES_SQL, (row.sha256, row.version, json.dumps(row.values, sort_keys=True), when)


@statement.register
def _(row: FailureRow, when: str) -> Statement:
    return _FAILURE_SQL, [row.path, row.sha256, row.reason, row.kind, row.size, row.mtime_ns, row.options, when]


@statement.register
def _(row: FailureCleared, when: str) -> Statement:
    return "DELETE FROM failures WHERE path = ?", (row.path,)


@statement.register
def _(row: PhotoDropped, when: str) -> Statement:
    return "DELETE FROM photos WHERE path = ?", (row.path,)


@statement.register
def _(row: DecisionRow, when: str) -> Statement:
    return _DECISION_SQL, (row.path, row.sha256, row.rating, row.label, row.source, when)


@statement.register
def _(row: TasteRow, when: str) -> Statement:
    return _TASTE_SQL, (row.name, row.data, row.ratings, row.method, when)


@statement.register
def _(row: TasteForgotten, when: str) -> Statement:
    return "DELETE FROM tastes WHERE name = ?", (row.name,)
