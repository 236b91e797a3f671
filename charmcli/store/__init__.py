"""The score database (SQLite): rows in, rows out, the SQL inside.

* :mod:`.db` — the connection, the write transaction, value escaping, applying migrations;
* :mod:`.migrations` — the schema as named steps (append one to change it);
* :mod:`.rows` — the typed rows callers write (:class:`PhotoRow`, :class:`ScoreRow`, …), the
  typed rows reads return (:class:`StoredPhoto`, :class:`RankedPhoto`, …) and the ranking filter;
* :mod:`.writes` — typed rows → SQL (the only place a write statement is written);
* :mod:`.tables` — :class:`Store` (lookups, rankings over the ``latest_scores`` view, counts) and
  :class:`BatchWriter`.

This package knows nothing of tensors, images or the CLI.
"""

from charmcli.store.db import BUSY_TIMEOUT_S, Database, StoreError, default_db_path, from_db, now_iso, to_db
from charmcli.store.migrations import MIGRATIONS, SCHEMA_VERSION, Migration
from charmcli.store.rows import (
    META_COLUMNS,
    DecisionRow,
    FailureCleared,
    FailureRow,
    ListedFailure,
    MeasuresRow,
    ModelStats,
    PhotoDropped,
    PhotoRow,
    PhotoSeen,
    RankedPhoto,
    ScoreRow,
    Stats,
    StoredCheckpoint,
    StoredDecision,
    StoredFailure,
    StoredPhoto,
    StoredScore,
    StoredTaste,
    TasteForgotten,
    TasteRow,
    TopFilter,
    WriteRow,
    check_date,
)
from charmcli.store.tables import BatchWriter, Store

__all__ = [
    "BUSY_TIMEOUT_S",
    "META_COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "BatchWriter",
    "Database",
    "DecisionRow",
    "FailureCleared",
    "FailureRow",
    "ListedFailure",
    "MeasuresRow",
    "Migration",
    "ModelStats",
    "PhotoDropped",
    "PhotoRow",
    "PhotoSeen",
    "RankedPhoto",
    "ScoreRow",
    "Stats",
    "Store",
    "StoreError",
    "StoredCheckpoint",
    "StoredDecision",
    "StoredFailure",
    "StoredPhoto",
    "StoredScore",
    "StoredTaste",
    "TasteForgotten",
    "TasteRow",
    "TopFilter",
    "WriteRow",
    "check_date",
    "default_db_path",
    "from_db",
    "now_iso",
    "to_db",
]
