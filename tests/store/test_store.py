"""The score database on its own: schema, upserts, content-keyed reuse, queries, concurrency."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from charmcli.store import (
    SCHEMA_VERSION,
    BatchWriter,
    FailureCleared,
    FailureRow,
    PhotoRow,
    ScoreRow,
    Store,
    StoreError,
    TopFilter,
    check_date,
    default_db_path,
)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "charm.db") as s:
        yield s


def photo(path: str, sha: str, **meta) -> PhotoRow:
    return PhotoRow(path=path, size=10, mtime_ns=1, sha256=sha, width=60, height=40, format="JPEG", meta=meta)


def score(sha: str, value: float, model: str = "aadb", ckpt: str = "c1", pre: str = "max1024") -> ScoreRow:
    emb = np.arange(4, dtype=np.float16).tobytes()
    return ScoreRow(sha, model, ckpt, pre, value, [value], 21, (60, 40), "short", [(0, 1)], 28, emb, 0.01)


def test_new_database_is_versioned_and_in_wal_mode(tmp_path):
    with Store(tmp_path / "a" / "b.db") as s:
        assert s.version == SCHEMA_VERSION
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert {"photos", "scores", "failures", "checkpoints"} <= set(s.db.table_names())
    with Store(tmp_path / "a" / "b.db") as s:  # reopening does not migrate again
        assert s.version == SCHEMA_VERSION


def test_newer_schema_is_refused_with_one_line(tmp_path):
    db = tmp_path / "new.db"
    sqlite3.connect(db).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StoreError, match="newer charm"):
        Store(db)


def test_not_a_database_is_a_store_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        Store(bad)


def test_default_path_honours_charm_db(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARM_DB", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"
    monkeypatch.delenv("CHARM_DB")
    assert default_db_path().name == "charm.db" and default_db_path().parent.name == "charm"


def test_upserts_are_idempotent_and_keep_first_seen(store):
    store.write([(photo("/p/a.jpg", "s1"), "2024-01-01"), score("s1", 0.5)])
    store.write([(photo("/p/a.jpg", "s2"), "2024-02-01"), score("s1", 0.7)])
    rows = list(store.db["photos"].rows)
    assert len(rows) == 1 and rows[0]["sha256"] == "s2"
    assert rows[0]["first_seen"] == "2024-01-01" and rows[0]["last_seen"] == "2024-02-01"
    assert store.db["scores"].count == 1
    assert store.score_for("s1", "aadb", "c1", "max1024")["score"] == 0.7


def test_scores_are_keyed_by_content_model_checkpoint_and_preprocess(store):
    store.write([score("s1", 0.1), score("s1", 0.2, ckpt="c2")])
    store.write([score("s1", 0.3, pre="exact"), score("s1", 3.0, model="para")])
    assert store.db["scores"].count == 4
    assert store.score_for("s1", "aadb", "c2", "max1024")["score"] == 0.2
    assert store.score_for("s1", "aadb", "c1", "native") is None
    row = store.score_for("s1", "aadb", "c1", "max1024")
    assert np.frombuffer(row["embedding"], dtype=np.float16).tolist() == [0, 1, 2, 3]


def test_moved_file_finds_its_content(store):
    store.write([photo("/old/a.jpg", "s1", make="Nikon"), score("s1", 0.4)])
    assert store.photo_by_path("/new/a.jpg") is None
    assert store.photo_by_sha("s1")["make"] == "Nikon"
    store.write([photo("/new/a.jpg", "s1")])
    ranked = list(store.iter_ranked(TopFilter(model="aadb")))
    assert [r["path"] for r in ranked] == ["/new/a.jpg", "/old/a.jpg"]  # ties by path


def test_failures_replace_and_clear(store):
    store.write([FailureRow("/p/x.jpg", "empty file", "empty", size=0, mtime_ns=5)])
    store.write([FailureRow("/p/x.jpg", "truncated", "truncated", size=9, mtime_ns=6)])
    assert store.failure_for("/p/x.jpg")["reason"] == "truncated"
    assert store.db["failures"].count == 1
    store.write([FailureCleared("/p/x.jpg")])
    assert store.failure_for("/p/x.jpg") is None


def test_batch_writer_commits_in_small_batches(store):
    writer = BatchWriter(store, max_ops=3, max_seconds=3600)
    for i in range(7):
        writer.add(score(f"s{i}", i / 10))
    assert writer.commits == 2 and len(writer.pending) == 1
    assert store.db["scores"].count == 6  # committed rows are visible to others already
    writer.flush()
    assert store.db["scores"].count == 7


def test_top_filters(store):
    rows = [
        (photo("/lib/2023/a.jpg", "a", date_taken="2023-05-01T10:00:00", make="NIKON", camera_model="D750", lens="50mm f/1.8"), 0.9),
        (photo("/lib/2023/b.jpg", "b", date_taken="2023-12-31T23:59:59", make="Canon", camera_model="Canon EOS R5"), 0.8),
        (photo("/lib/2024/c.jpg", "c", date_taken="2024-01-01T00:00:00", make="Canon", camera_model="EOS 5D"), 0.7),
        (photo("/lib/misc/d.jpg", "d"), 0.6),
        (photo("/lib/20230/e.jpg", "e"), 0.5),
    ]
    store.write([op for p, v in rows for op in (p, score(p.sha256, v))])
    names = lambda **kw: [Path(r["path"]).name for r in store.iter_ranked(TopFilter(**{"model": "aadb", **kw}))]  # noqa: E731
    assert names() == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert names(min_score=0.75) == ["a.jpg", "b.jpg"]
    assert names(since="2023-06") == ["b.jpg", "c.jpg"]
    assert names(until="2023") == ["a.jpg", "b.jpg"]
    assert names(since="2023-05-01", until="2023-05-01") == ["a.jpg"]
    assert names(camera="canon") == ["b.jpg", "c.jpg"]
    assert names(camera="nikon d750") == ["a.jpg"]
    assert names(lens="50MM") == ["a.jpg"]
    assert names(folder="2023") == ["a.jpg", "b.jpg", "e.jpg"]
    assert names(paths=["/lib/2023"]) == ["a.jpg", "b.jpg"]  # not /lib/20230
    assert names(paths=["/lib/misc/d.jpg", "/lib/2024/"]) == ["c.jpg", "d.jpg"]
    assert names(model="para") == []


def test_top_uses_the_latest_score_per_content(store):
    store.write([photo("/a.jpg", "a")])
    store.write([(score("a", 0.9, ckpt="old"), "2024-01-01")])
    store.write([(score("a", 0.1, ckpt="new"), "2024-06-01")])
    (row,) = store.iter_ranked(TopFilter(model="aadb"))
    assert row["score"] == 0.1 and row["checkpoint_id"] == "new"


@pytest.mark.parametrize("bad", ["yesterday", "2023-5", "23-05-01", "2023/05/01"])
def test_bad_dates_are_refused(bad):
    with pytest.raises(ValueError, match="invalid date"):
        check_date(bad)


def test_check_date_accepts_prefixes():
    assert check_date("2023") == "2023"
    assert check_date("2023-05-31 12:00") == "2023-05-31T12:00"


def test_stats_and_forget(store, tmp_path):
    real = tmp_path / "real.jpg"
    real.write_bytes(b"x")
    store.write(
        [
            photo(str(real), "r"),
            photo("/gone/a.jpg", "g"),
            score("r", 0.5),
            score("g", 0.7),
            FailureRow("/gone/bad.jpg", "empty file", "empty"),
        ]
    )
    stats = store.stats()
    assert stats["photos"] == 2 and stats["scores"] == 2 and len(stats["failures"]) == 1
    (aadb,) = stats["models"]
    assert aadb["model"] == "aadb" and aadb["photos"] == 2 and aadb["max_score"] == 0.7
    photos, failures = store.stale_rows()
    assert photos == ["/gone/a.jpg"] and failures == ["/gone/bad.jpg"]
    assert store.stale_rows(under=[str(tmp_path)]) == ([], [])
    store.forget(photos, failures)
    assert store.stats()["photos"] == 1 and store.stats()["failures"] == []
    assert store.db["scores"].count == 2  # content-keyed scores survive for reuse


def test_checkpoint_memo_is_invalidated_by_a_changed_file(store, tmp_path):
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"weights")
    store.remember_checkpoint("file:" + str(ckpt), str(ckpt), "abc", "aadb")
    assert store.recall_checkpoint("file:" + str(ckpt))["checkpoint_id"] == "abc"
    ckpt.write_bytes(b"other weights")
    assert store.recall_checkpoint("file:" + str(ckpt)) is None
    assert store.recall_checkpoint("hub:para") is None


WRITER = textwrap.dedent(
    """
    import sys
    from charmcli.store import BatchWriter, PhotoRow, ScoreRow, Store
    db, tag = sys.argv[1], sys.argv[2]
    with Store(db) as store:
        writer = BatchWriter(store, max_ops=4, max_seconds=0.05)
        for i in range(300):
            sha = f"s{i}"
            writer.add(
                PhotoRow(f"/p/{i}.jpg", 1, 1, sha),
                PhotoRow(f"/{tag}/{i}.jpg", 1, 1, sha),
                ScoreRow(sha, "aadb", "c", "max1024", 0.5, [0.5]),
            )
        writer.flush()
    """
)


def test_two_concurrent_writers_lose_nothing_and_duplicate_nothing(tmp_path):
    db = tmp_path / "shared.db"
    Store(db).close()  # both start from a migrated file; the race is in the writes
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), tag], env=env, stderr=subprocess.PIPE)
        for tag in ("one", "two")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    with Store(db) as store:
        assert store.db["photos"].count == 900
        assert store.db["scores"].count == 300


def test_two_first_opens_migrate_once(tmp_path):
    db = tmp_path / "race.db"
    script = "import sys; from charmcli.store import Store; Store(sys.argv[1]).close()"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(db)], env=env, stderr=subprocess.PIPE) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    with Store(db) as store:
        assert store.version == SCHEMA_VERSION
