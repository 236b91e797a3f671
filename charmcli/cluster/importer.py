"""Merge a cluster job's Parquet rows into the SQLite store, so ``top``/``groups``/``rate`` see them.

Rows cross the store's border as the store's own typed rows (:class:`PhotoRow`, :class:`ScoreRow`,
:class:`FailureRow`) through its ``write`` method, in transactions of a few
hundred rows: importing again upserts the same rows (nothing doubles), and an interrupted import
keeps what it committed. The effect is what ``charm score`` would have stored for the same files:
a later ``charm score`` of the same folder finds them cached (same path, size, mtime and options).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from charmcli.cluster.output import EXIF_FIELDS, OutputDir
from charmcli.store import (
    FailureCleared,
    FailureRow,
    PhotoDropped,
    PhotoRow,
    ScoreRow,
    Store,
    WriteRow,
    now_iso,
)

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
    meta = {c: row.get(name) for c, name in EXIF_FIELDS.items()}
    photo = PhotoRow(
        row["path"], row.get("size") or 0, row.get("mtime_ns") or 0, row["sha256"], row.get("width"),
        row.get("height"), row.get("format"), meta,
    )  # fmt: skip
    score = ScoreRow(
        sha256=row["sha256"],
        model=row["model"],
        checkpoint_id=row["checkpoint_id"],
        preprocess=row["preprocess"],
        score=row["score"],
        outputs=list(row.get("outputs") or []),
        n_tokens=row.get("n_tokens"),
        input_size=(row["input_width"], row["input_height"]) if row.get("input_width") else None,
        token_path=row.get("token_path"),
        kept_cells=[(int(r), int(c)) for r, c in row.get("kept_cells") or []],
        cell_size=row.get("cell_size"),
        embedding=row.get("embedding"),
        seconds=row.get("seconds"),
    )
    return [(photo, when), (score, when), (FailureCleared(row["path"]), when)]


def _failure_ops(store: Store, row: dict[str, Any]) -> list[tuple[WriteRow, str]]:
    when = row["written_at"].isoformat(timespec="seconds") if row.get("written_at") else now_iso()
    # the same key as ScoreOptions.failure_options: `charm score` then reports it without retrying
    options = f"{row.get('preprocess')};max_pixels={row.get('max_pixels')}"
    failure = FailureRow(
        row["path"], row.get("error") or "failed", row.get("error_kind"), row.get("sha256"), row.get("size"),
        row.get("mtime_ns"), options,
    )  # fmt: skip
    ops: list[tuple[WriteRow, str]] = [(failure, when)]
    old = store.photo_by_path(row["path"])
    if old is not None and (old["size"], old["mtime_ns"]) != (row.get("size"), row.get("mtime_ns")):
        ops.append((PhotoDropped(row["path"]), when))  # its row describes content that is gone
    return ops
