"""The schema that sqlite-utils creates, and databases written by an earlier charm (same version)."""

from __future__ import annotations

import sqlite3

import pytest

from charmcli.store import FailureRow, PhotoRow, ScoreRow, Store

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


def _photo(path: str, sha: str = "ab" * 32) -> PhotoRow:
    return PhotoRow(path, 10, 1, sha, 4, 3, "JPEG", {"make": "Canon"})


def _score(sha: str = "ab" * 32, score: float = 0.5) -> ScoreRow:
    return ScoreRow(sha, "aadb", "c" * 64, "max1024", score, [score], 10, (4, 3), "short", [(0, 0)], 28)


@pytest.fixture(params=["sqlite-utils", "hand-written"])
def store(request, tmp_path):
    path = tmp_path / "charm.db"
    if request.param == "hand-written":
        conn = sqlite3.connect(path)
        for statement in HAND_WRITTEN_V1.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
        conn.close()
    with Store(path) as s:
        yield s


def test_both_schemas_upsert_by_their_keys(store):
    store.write([(_photo("/p/a.jpg"), "t1"), (_score(score=0.5), "t1")])
    store.write([(_photo("/p/a.jpg"), "t2"), (_score(score=0.7), "t2")])
    store.write([(FailureRow("/p/bad.jpg", "corrupt"), "t1")] * 2)
    assert store.db["photos"].count == 1 and store.db["scores"].count == 1 and store.db["failures"].count == 1
    row = store.photo_by_path("/p/a.jpg")
    assert (row["first_seen"], row["last_seen"]) == ("t1", "t2")  # first_seen survives the upsert
    assert store.score_for("ab" * 32, "aadb", "c" * 64, "max1024")["score"] == 0.7
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as conn:  # the path stays unique
        conn.execute("INSERT INTO photos (path, size, mtime_ns, sha256, first_seen, last_seen) "
                     "VALUES ('/p/a.jpg', 1, 1, 'x', 't', 't')")  # fmt: skip


def test_checkpoint_memo_and_forget_on_both_schemas(store, tmp_path):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"weights")
    store.remember_checkpoint("file:" + str(ckpt), str(ckpt), "c" * 64, "aadb")
    store.remember_checkpoint("file:" + str(ckpt), str(ckpt), "d" * 64, "aadb")
    assert store.recall_checkpoint("file:" + str(ckpt))["checkpoint_id"] == "d" * 64
    assert store.db["checkpoints"].count == 1
    store.write([_photo(str(tmp_path / "gone.jpg")),
                 FailureRow(str(tmp_path / "gone2.jpg"), "corrupt")])  # fmt: skip
    photos, failures = store.stale_rows()
    assert photos == [str(tmp_path / "gone.jpg")] and failures == [str(tmp_path / "gone2.jpg")]
    store.forget(photos, failures)
    assert store.stale_rows() == ([], []) and store.stats()["scores"] == 0


def test_new_schema_has_the_keys_the_upserts_name(tmp_path):
    with Store(tmp_path / "charm.db") as s:
        unique = {tuple(i.columns) for t in ("photos", "scores", "failures") for i in s.db[t].indexes if i.unique}
        assert {("path",), ("sha256", "model", "checkpoint_id", "preprocess", "precision")} <= unique
        assert s.db["checkpoints"].pks == ["source"]
        assert s.db["scores"].columns_dict["embedding"] is bytes
