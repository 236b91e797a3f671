"""A score's precision is part of its identity: stored apart, looked up apart, ranked apart."""

from __future__ import annotations

from pathlib import Path

from old_schema import before, database_at

from charmcli.selection import Query, select
from charmcli.store import SCHEMA_VERSION, PhotoRow, ScoreRow, Store


def _score(sha: str, value: float, precision: str) -> ScoreRow:
    return ScoreRow(sha, "aadb", "c1", "max1024", value, [value], precision=precision)


def test_bf16_and_fp32_scores_of_one_content_are_kept_and_looked_up_apart(tmp_path):
    with Store(tmp_path / "charm.db") as store:
        store.write([_score("s1", 0.5, "fp32"), _score("s1", 0.51, "bf16")])
        assert store.score_for("s1", "aadb", "c1", "max1024", "fp32")["score"] == 0.5
        assert store.score_for("s1", "aadb", "c1", "max1024", "bf16")["score"] == 0.51
        assert store.score_for("s1", "aadb", "c1", "max1024", "fp16") is None
        store.write([_score("s1", 0.52, "bf16")])  # the same identity again: replaced, not added
        assert len(store.scores_for_sha("s1")) == 2


def test_a_ranking_reads_one_precision_and_names_the_others(tmp_path):
    paths = []
    with Store(tmp_path / "charm.db") as store:
        for i, sha in enumerate(("a", "b", "c")):
            path = tmp_path / f"{sha}.jpg"
            path.write_bytes(b"x")
            paths.append(str(path))
            store.write([PhotoRow(str(path), 1, 1, sha)])
            store.write([_score(sha, 0.1 * (i + 1), "bf16")])
        store.write([_score("a", 0.9, "fp32")])  # a is best in fp32, worst in bf16
        sel = select(store, Query(model="aadb"))  # most photos are bf16: bf16 ranks
        assert sel.precision == "bf16" and sel.other_precisions == [("fp32", 1)]
        assert [r["sha256"] for r in sel.rows] == ["c", "b", "a"]
        assert {r["precision"] for r in sel.rows} == {"bf16"}
        fp32 = select(store, Query(model="aadb", precision="fp32"))
        assert [(r["sha256"], r["score"]) for r in fp32.rows] == [("a", 0.9)]
        assert fp32.rows[0]["percentile"] == 50.0  # among fp32 scores only: the bf16 ones are not mixed in


def test_an_older_database_gains_the_precision_and_its_scores_are_fp32(tmp_path):
    path = tmp_path / "old.db"
    conn = database_at(path, before("m007_score_precision"))
    conn.execute("INSERT INTO scores (sha256, model, checkpoint_id, preprocess, score, outputs, scored_at) "
                 "VALUES ('s1', 'aadb', 'c1', 'max1024', 0.4, '[]', 't')")  # fmt: skip
    conn.close()
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
        assert store.score_for("s1", "aadb", "c1", "max1024", "fp32")["score"] == 0.4
        assert store.score_for("s1", "aadb", "c1", "max1024", "bf16") is None
        store.write([_score("s1", 0.41, "bf16")])  # the widened key takes a second precision
        assert sorted(r["precision"] for r in store.scores_for_sha("s1")) == ["bf16", "fp32"]
    assert Path(path).exists()
