"""Databases as an earlier charm wrote them: the schema made by the first ``n`` migrations.

Built from :data:`~charmcli.store.MIGRATIONS` itself (a released step never changes), never by
setting ``user_version`` back on a current file: that would leave later tables and columns in
place and let a migration pass that fails on a real old file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import sqlite_utils

from charmcli.store import MIGRATIONS

# Schema 1 as charm 0.1 wrote it with hand-written DDL (table-level UNIQUE constraints instead
# of unique indexes): such files must keep working unchanged.
HAND_WRITTEN_V1 = """
CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            width INTEGER, height INTEGER,          -- as displayed (EXIF orientation applied)
            date_taken TEXT, make TEXT, model TEXT, lens TEXT,
            focal_length REAL, f_number REAL, exposure_time REAL, iso INTEGER, orientation INTEGER,
            format TEXT,
            first_seen TEXT NOT NULL, last_seen TEXT NOT NULL
        );
        CREATE INDEX photos_sha256 ON photos(sha256);
        CREATE INDEX photos_date_taken ON photos(date_taken);

        CREATE TABLE scores (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL,
            model TEXT NOT NULL,                    -- Charm training set: aadb, para, ...
            checkpoint_id TEXT NOT NULL,            -- sha256 of the checkpoint file
            preprocess TEXT NOT NULL,               -- decode policy tag: max1024, native, exact
            score REAL NOT NULL,
            outputs TEXT NOT NULL,                  -- JSON list of floats
            n_tokens INTEGER,
            input_width INTEGER, input_height INTEGER,
            token_path TEXT,                        -- short | multiscale
            kept_cells TEXT NOT NULL DEFAULT '[]',  -- JSON [[row, col], ...]
            cell_size INTEGER,
            embedding BLOB,                         -- float16 CLS vector
            seconds REAL,
            scored_at TEXT NOT NULL,
            UNIQUE (sha256, model, checkpoint_id, preprocess)
        );
        CREATE INDEX scores_model_score ON scores(model, score);

        CREATE TABLE failures (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            sha256 TEXT,
            reason TEXT NOT NULL,
            kind TEXT,
            size INTEGER, mtime_ns INTEGER,
            options TEXT,                           -- decode options that failed (retry if changed)
            failed_at TEXT NOT NULL
        );

        -- What a checkpoint file hashed to, so a fully cached run needs neither torch nor a hash.
        CREATE TABLE checkpoints (
            source TEXT NOT NULL PRIMARY KEY,       -- "file:/abs/path" or "hub:aadb"
            file TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            checkpoint_id TEXT NOT NULL, model TEXT NOT NULL,
            seen_at TEXT NOT NULL
        );
"""


def hand_written_v1(path: Path) -> None:
    """A schema-1 file as charm 0.1 wrote it (:data:`HAND_WRITTEN_V1`), empty."""
    conn = sqlite3.connect(path)
    for statement in HAND_WRITTEN_V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def before(name: str) -> int:
    """The schema version just before migration ``name`` runs."""
    return [m.name for m in MIGRATIONS].index(name)


def database_at(path: Path, version: int, *, rows_from: Path | None = None,
                tables: Sequence[str] = ("photos", "scores")) -> sqlite3.Connection:
    """A new file at ``path`` with schema ``version``; open (autocommit), for a test to add rows.

    ``rows_from``: copy the rows of ``tables`` from that (current) database, in the columns the
    old schema has, so a real run's rows can be made old.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    for step in MIGRATIONS[:version]:
        step.apply(db)
    conn.execute(f"PRAGMA user_version = {version}")
    if rows_from is not None:
        source = sqlite3.connect(rows_from)
        for table in tables:
            columns = ", ".join(c.name for c in db[table].columns)
            marks = ", ".join("?" * len(db[table].columns))
            rows = source.execute(f"SELECT {columns} FROM {table}").fetchall()
            conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        source.close()
    return conn
