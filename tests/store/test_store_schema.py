"""The schema that sqlite-utils creates, and databases written by an earlier charm (same version)."""

from __future__ import annotations

import sqlite3

import pytest
from old_schema import hand_written_v1

from charmcli.store import FailureRow, PhotoRow, ScoreRow, Store


def _photo(path: str, sha: str = "ab" * 32) -> PhotoRow:
    return PhotoRow(path, 10, 1, sha, 4, 3, "JPEG", {"make": "Canon"})


def _score(sha: str = "ab" * 32, score: float = 0.5) -> ScoreRow:
    return ScoreRow(sha, "aadb", "c" * 64, "max1024", score, [score], 10, (4, 3), "short", [(0, 0)], 28)


@pytest.fixture(params=["sqlite-utils", "hand-written"])
def store(request, tmp_path):
    path = tmp_path / "charm.db"
    if request.param == "hand-written":
        hand_written_v1(path)
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
