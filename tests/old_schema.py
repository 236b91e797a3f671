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
