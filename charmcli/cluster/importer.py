"""Merge a cluster job's Parquet rows into the SQLite store, so ``top``/``groups``/``rate`` see them.

Rows cross the store's border as the store's own typed rows (read back from the columns by
:mod:`charmcli.cluster.output`; a failure keyed by :func:`charmcli.work.failure_row`, as
``charm score`` keys it) through its ``write`` method, in transactions of a few
hundred rows: importing again upserts the same rows (nothing doubles), and an interrupted import
keeps what it committed. The effect is what ``charm score`` would have stored for the same files:
a later ``charm score`` of the same folder finds them cached (same path, size, mtime and options).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from charmcli.cluster.output import OutputDir, photo_of, score_of
from charmcli.store import FailureCleared, PhotoDropped, Store, WriteRow, now_iso
from charmcli.work import Failure, failure_row

CHUNK_ROWS = 200


@dataclass
class ImportSummary:
    scores: int = 0
    failures: int = 0
    files: int = 0  #: part files read
    warnings: tuple[str, ...] = ()


def import_dir(out: OutputDir, store: Store) -> ImportSummary:
    """Import every (deduplicated) row of ``out`` into ``store``."""
    table, warnings = out.read()
    summary = ImportSummary(files=len(out.parts()), warnings=tuple(warnings))
    ops: list[WriteRow | tuple[WriteRow, str]] = []
    for row in _rows(table):
        if row["status"] == "ok" and row.get("score") is not None:
            ops.extend(_score_ops(store, row))
            summary.scores += 1
        else:
            ops.extend(_failure_ops(store, row))
            summary.failures += 1
        if len(ops) >= CHUNK_ROWS * 3:
            store.write(ops)
            ops = []
    if ops:
        store.write(ops)
    return summary


def _rows(table: Any) -> Iterator[dict[str, Any]]:
    for batch in table.to_batches(max_chunksize=1000):
        yield from batch.to_pylist()


def _score_ops(store: Store, row: dict[str, Any]) -> list[tuple[WriteRow, str]]:
    when = row["written_at"].isoformat(timespec="seconds") if row.get("written_at") else now_iso()
    return [(photo_of(row), when), (score_of(row), when), (FailureCleared(row["path"]), when)]


def _failure_ops(store: Store, row: dict[str, Any]) -> list[tuple[WriteRow, str]]:
    when = row["written_at"].isoformat(timespec="seconds") if row.get("written_at") else now_iso()
    # keyed as `charm score` keys it: a later run then reports it without retrying
    failure = Failure(row.get("error") or "failed", row.get("error_kind"), row.get("sha256"))
    stored = failure_row(row["path"], failure, row.get("size"), row.get("mtime_ns"), row.get("preprocess"),
                         row.get("max_pixels"))  # fmt: skip
    ops: list[tuple[WriteRow, str]] = [(stored, when)]
    old = store.photo_by_path(row["path"])
    if old is not None and (old["size"], old["mtime_ns"]) != (row.get("size"), row.get("mtime_ns")):
        ops.append((PhotoDropped(row["path"]), when))  # its row describes content that is gone
    return ops
