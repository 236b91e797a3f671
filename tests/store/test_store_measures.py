"""Technical measures in the store: keyed by content and version, read back with rankings, and an
old database (schema 4, before the measures table) upgraded by the named migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from old_schema import before, database_at

from charmcli.store import MIGRATIONS, SCHEMA_VERSION, MeasuresRow, PhotoRow, ScoreRow, Store, TopFilter


def test_the_measures_migration_follows_the_earlier_steps():
    names = [m.name for m in MIGRATIONS]
    assert names.index("m005_measures") == 4  # appended after m004: old files upgrade in order


def test_measures_are_keyed_by_content_and_version(tmp_path):
    with Store(tmp_path / "charm.db") as store:
        store.write([(MeasuresRow("sa", "m1+none", {"focus_width": 2.5, "faces": None}), "2024-01-01")])
        store.write([(MeasuresRow("sa", "m1+haar1", {"focus_width": 2.4, "faces": 1}), "2024-02-01")])
        store.write([(MeasuresRow("sa", "m1+haar1", {"focus_width": 2.3, "faces": 2}), "2024-03-01")])  # upsert
        assert store.measures_for("sa", "m1+none") == {"focus_width": 2.5, "faces": None}
        assert store.measures_for("sa", "m1+haar1") == {"focus_width": 2.3, "faces": 2}
        assert store.measures_for("sa") == {"focus_width": 2.3, "faces": 2}  # the latest of any version
        assert store.measures_for("sb") is None and store.measures_for("sa", "m9") is None
        assert store.db["measures"].count == 2


def test_rankings_carry_the_latest_measures(tmp_path):
    with Store(tmp_path / "charm.db") as store:
        store.write([PhotoRow("/p/a.jpg", 1, 1, "sa"), PhotoRow("/p/b.jpg", 1, 1, "sb"),
                     ScoreRow("sa", "aadb", "c", "max1024", 0.9, [0.9]),
                     ScoreRow("sb", "aadb", "c", "max1024", 0.4, [0.4])])  # fmt: skip
        store.write([(MeasuresRow("sa", "old", {"focus_width": 9.0}), "2024-01-01"),
                     (MeasuresRow("sa", "new", {"focus_width": 0.5}), "2024-02-01")])  # fmt: skip
        rows = {r["path"]: r["measures"] for r in store.iter_ranked(TopFilter(model="aadb"))}
        assert rows == {"/p/a.jpg": {"focus_width": 0.5}, "/p/b.jpg": None}


def _schema_4(path: Path) -> None:
    conn = database_at(path, before("m005_measures"))
    conn.execute("INSERT INTO photos (path, size, mtime_ns, sha256, first_seen, last_seen) "
                 "VALUES ('/lib/a.jpg', 1, 2, 'sa', 't', 't')")  # fmt: skip
    conn.execute("INSERT INTO scores (sha256, model, checkpoint_id, preprocess, score, outputs, scored_at) "
                 "VALUES ('sa', 'aadb', 'c', 'max1024', 0.7, '[]', 't')")  # fmt: skip
    conn.close()


def test_a_database_from_before_measures_migrates_and_keeps_its_scores(tmp_path):
    path = tmp_path / "old.db"
    _schema_4(path)
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
        (row,) = store.iter_ranked(TopFilter(model="aadb"))
        assert (row["path"], row["score"], row["measures"]) == ("/lib/a.jpg", 0.7, None)  # not measured yet
        store.write([MeasuresRow("sa", "v", {"brightness": 0.5})])
        assert store.measures_for("sa", "v") == {"brightness": 0.5}


def test_a_measures_row_without_its_measures_or_its_time_is_refused(tmp_path):
    """A row whose key exists counts as measured, so one without values would never be measured again."""
    with Store(tmp_path / "charm.db") as store:
        for missing in ("measures", "measured_at"):
            values = {"sha256": "sa", "version": "v", "measures": "{}", "measured_at": "t", missing: None}
            with pytest.raises(sqlite3.IntegrityError, match=f"NOT NULL constraint failed: measures.{missing}"):
                store.conn.execute("INSERT INTO measures (sha256, version, measures, measured_at) "
                                   "VALUES (:sha256, :version, :measures, :measured_at)", values)  # fmt: skip
        assert store.measures_for("sa") is None
