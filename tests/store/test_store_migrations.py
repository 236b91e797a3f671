"""The migrations: named steps, run in order, each once, stamped in ``user_version``; an old file
upgrades to exactly the schema a new file gets; a step that fails leaves the file as it was.

The old files are made by the first ``n`` steps themselves (``old_schema.database_at``), and, for
schema 1, by the hand-written DDL an earlier charm used (``old_schema.HAND_WRITTEN_V1``),
which pins the first step independently of the code.
"""

from __future__ import annotations

import inspect
import re
import sqlite3
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
from old_schema import before, database_at, hand_written_v1

import charmcli.store.migrations as migrations
from charmcli.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    Store,
    StoreError,
)
from charmcli.store.rows import TABLE_ROWS


def test_every_step_of_the_module_is_listed_once_by_its_name_in_number_order():
    steps = sorted(name for name, fn in inspect.getmembers(migrations, inspect.isfunction)
                   if re.fullmatch(r"m\d{3}_\w+", name))  # fmt: skip
    assert [m.name for m in MIGRATIONS] == steps, "a step written but not listed, or listed out of order"
    for number, step in enumerate(MIGRATIONS, 1):
        assert step.name.startswith(f"m{number:03d}_") and step.apply is getattr(migrations, step.name)
    assert SCHEMA_VERSION == len(MIGRATIONS) == len(steps)


def _schema(conn: sqlite3.Connection) -> dict[str, Any]:
    """Everything that makes a schema: each table's and view's columns (type, NOT NULL, default,
    key), each index (unique or not, its columns), and the statement that made each object."""
    schema: dict[str, Any] = {}
    for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name"):
        entry: dict[str, Any] = {"kind": kind, "sql": sql}
        if kind in ("table", "view"):
            entry["columns"] = conn.execute(f"PRAGMA table_xinfo({name})").fetchall()
            entry["indexes"] = sorted(
                (index, unique, tuple(c[2] for c in conn.execute(f"PRAGMA index_info({index})")))
                for _seq, index, unique, *_rest in conn.execute(f"PRAGMA index_list({name})")
            )
        schema[name] = entry
    return schema


def _of(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        return _schema(conn)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def new_schema(tmp_path_factory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("new") / "charm.db"
    Store(path).close()
    return _of(path)


class _Recorder:
    """Wraps each step to note its name and the file's ``user_version`` when it runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def wrap(self, step: Migration) -> Migration:
        def apply(db) -> None:
            self.calls.append((step.name, db.execute("PRAGMA user_version").fetchone()[0]))
            step.apply(db)

        return Migration(step.name, apply)


@pytest.mark.parametrize("version", range(SCHEMA_VERSION + 1))
def test_a_file_at_each_version_gets_the_missing_steps_once_in_order_and_the_new_schema(
    version, tmp_path, new_schema, monkeypatch
):
    path = tmp_path / "old.db"
    database_at(path, version).close()
    recorder = _Recorder()
    monkeypatch.setattr(migrations, "MIGRATIONS", tuple(map(recorder.wrap, MIGRATIONS)))
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
    # step i runs on a file at version i, and nothing runs twice
    assert recorder.calls == [(m.name, i) for i, m in enumerate(MIGRATIONS) if i >= version]
    Store(path).close()  # opening an up-to-date file runs nothing
    assert len(recorder.calls) == SCHEMA_VERSION - version
    assert _of(path) == new_schema


def _loose(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema up to how a constraint is spelt: a hand-written ``UNIQUE`` column or table
    constraint is an automatic index where sqlite-utils makes a named unique index (so unique
    indexes are compared by their columns alone), and a hand-written text primary key says
    ``NOT NULL`` where sqlite-utils does not."""
    loose = {}
    for name, entry in schema.items():
        if entry["kind"] == "index":
            continue
        columns = [(*c[:3], c[3] and not c[5], *c[4:]) for c in entry.get("columns", [])]
        indexes = sorted(("" if unique else index, unique, columns) for index, unique, columns in entry.get("indexes", []))
        loose[name] = (entry["kind"], columns, indexes)
    return loose


def test_a_hand_written_schema_1_file_upgrades_to_the_new_schema(tmp_path, new_schema):
    path = tmp_path / "v1.db"
    hand_written_v1(path)
    made = tmp_path / "made.db"
    database_at(made, 1).close()
    assert _loose(_of(path)) == _loose(_of(made)), "the first step makes what the hand-written schema 1 was"
    Store(path).close()
    assert _loose(_of(path)) == _loose(new_schema)


def test_a_step_that_fails_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    version = SCHEMA_VERSION - 2
    database_at(path, version).close()
    before = _of(path)

    def broken(db) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    steps = (*MIGRATIONS[:-1], Migration(MIGRATIONS[-1].name, broken))
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    with pytest.raises(StoreError, match=r"^cannot use database .*old\.db: disk I/O error$"):
        Store(path)
    assert _of(path) == before  # the step before the broken one is rolled back with it
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    conn.close()


SQL_TYPES = {int: "INTEGER", str: "TEXT", float: "REAL", bytes: "BLOB"}


@pytest.mark.parametrize(("table", "row_type"), TABLE_ROWS.items())
def test_each_column_has_the_type_and_nullability_its_typed_row_declares(table, row_type, tmp_path):
    """``X | None`` in the row type ⇔ the column may be NULL; the key is never NULL."""
    with Store(tmp_path / "charm.db") as store:
        columns = {c[1]: c for c in store.conn.execute(f"PRAGMA table_info({table})")}
    hints = get_type_hints(row_type)
    assert set(hints) == set(columns)
    for name, hint in hints.items():
        _cid, _name, sql_type, not_null, _default, pk = columns[name]
        kinds = [k for k in get_args(hint) or (hint,) if k is not type(None)]
        assert len(kinds) == 1 and sql_type == SQL_TYPES[kinds[0]], name
        nullable = type(None) in get_args(hint)
        assert (not nullable) == bool(not_null or pk), name


def test_every_index_covers_columns_its_table_has(tmp_path):
    """SQLite takes a double-quoted name it does not know as a string: an index "on" a misspelt
    column is created without error and indexes a constant."""
    with Store(tmp_path / "charm.db") as store:
        for table in store.db.table_names():
            columns = {c.name for c in store.db[table].columns}
            for index in store.db[table].indexes:
                named = [row[2] for row in store.conn.execute(f"PRAGMA index_info({index.name})")]
                assert named and set(named) <= columns, (table, index.name, named)


def test_rebuilding_scores_keeps_each_column_and_index_as_it_was_and_widens_the_key(tmp_path):
    """m007 makes ``scores`` anew: every column keeps its type, NOT NULL and default, every index its
    name and columns; only ``precision`` is added, to the table and to the unique key."""
    path = tmp_path / "old.db"
    conn = database_at(path, before("m007_score_precision"))
    columns_before = {c[1]: c[2:] for c in conn.execute("PRAGMA table_xinfo(scores)")}
    indexes_before = _schema(conn)["scores"]["indexes"]
    conn.close()
    Store(path).close()
    after = _of(path)["scores"]
    columns_after = {c[1]: c[2:] for c in after["columns"]}
    assert columns_after.pop("precision") == ("TEXT", 1, "'fp32'", 0, 0)  # every earlier score was fp32
    assert columns_after == columns_before
    widened = [(name, unique, (*cols, "precision") if unique else cols) for name, unique, cols in indexes_before]
    assert after["indexes"] == sorted(widened)
