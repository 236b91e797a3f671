"""The store's typed API: rows in (one statement per row type), rows out (typed as the schema is),
the ``latest_scores`` view, and an
old database (schema 2, as the earlier charm wrote it) upgraded by the named migrations."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import get_args

import pytest
from old_schema import database_at

from charmcli.store import (
    SCHEMA_VERSION,
    BatchWriter,
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
    Store,
    TasteForgotten,
    TasteRow,
    TopFilter,
    WriteRow,
)
from charmcli.store.rows import TABLE_ROWS
from charmcli.store.writes import WRITERS, statement


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "charm.db") as s:
        yield s


def _score(sha: str, value: float, model: str = "aadb", ckpt: str = "c1", pre: str = "max1024") -> ScoreRow:
    return ScoreRow(sha, model, ckpt, pre, value, [value])


SAMPLES: dict[type, object] = {
    PhotoRow: PhotoRow("/p/a.jpg", 10, 1, "sha-a", 6, 4, "JPEG", {"make": "Canon", "camera_model": "EOS R5"}),
    ScoreRow: _score("sha-a", 0.5),
    MeasuresRow: MeasuresRow("sha-a", "m1+none", {"focus_width": 0.7, "faces": None}),
    FailureRow: FailureRow("/p/bad.jpg", "truncated", "decode"),
    PhotoSeen: PhotoSeen("/p/a.jpg"),
    FailureCleared: FailureCleared("/p/bad.jpg"),
    PhotoDropped: PhotoDropped("/p/a.jpg"),
    DecisionRow: DecisionRow("/p/a.jpg", "sha-a", 4, "Green", "review"),
    TasteRow: TasteRow("mine", b"npz", 20, "ridge"),
    TasteForgotten: TasteForgotten("mine"),
}


def test_every_write_row_type_has_its_statement_and_nothing_else_is_written(store):
    kinds = set(get_args(WriteRow))
    assert kinds == set(SAMPLES), "a write row was added: give it a sample here"
    assert kinds == set(WRITERS)
    for row in SAMPLES.values():
        sql, _params = statement(row, "2024-01-01T00:00:00")
        assert sql.split()[0] in {"INSERT", "UPDATE", "DELETE"}
    with pytest.raises(TypeError, match="does not write str"):  # SQL no longer crosses the border
        store.write([("DELETE FROM photos", ())])  # type: ignore[list-item]
    assert store.photo_by_path("/p/a.jpg") is None


def _schema_columns(store: Store, table: str) -> list[str]:
    return [row[1] for row in store.conn.execute(f"PRAGMA table_info({table})")]


def _unique_keys(store: Store, table: str) -> set[tuple[str, ...]]:
    keys = {tuple(i.columns) for i in store.db[table].indexes if i.unique}
    return keys | {tuple(store.db[table].pks)}


@pytest.mark.parametrize("kind", SAMPLES, ids=lambda kind: kind.__name__)
def test_each_statement_writes_the_columns_of_its_table_by_the_names_the_schema_gives_them(store, kind):
    """An upsert inserts every column of its table but a generated ``id``, conflicts on a key the
    table holds unique, and updates the rest (``photos`` keeps ``first_seen``); an UPDATE or DELETE
    names its table and columns. Names as the schema spells them (SQLite would also take another
    case, so only this check notices a name written differently from the schema's)."""
    sql, params = statement(SAMPLES[kind], "2024-01-01T00:00:00")
    tables = set(store.db.table_names())
    if upsert := re.fullmatch(r"INSERT INTO (\w+) \(([\w, ]+)\) VALUES \(([?, ]+)\) "
                              r"ON CONFLICT\(([\w, ]+)\) DO UPDATE SET (.+)", sql):  # fmt: skip
        table, columns, marks, key, updates = upsert.groups()
        assert table in tables
        written, key_columns = columns.split(", "), tuple(key.split(", "))
        schema = [c for c in _schema_columns(store, table) if c != "id"]
        assert sorted(written) == sorted(schema) and len(params) == len(written) == len(marks.split(", "))
        assert key_columns in _unique_keys(store, table)
        kept = {"first_seen"} if table == "photos" else set()
        assert updates.split(", ") == [f"{c} = excluded.{c}" for c in written if c not in key_columns + tuple(kept)]
    else:
        target = re.fullmatch(r"(?:UPDATE (\w+) SET|DELETE FROM (\w+)) (.*)", sql)
        assert target is not None, sql
        table = target.group(1) or target.group(2)
        assert table in tables
        named = re.findall(r"(\w+) = \?", target.group(3))
        assert named and set(named) <= set(_schema_columns(store, table)) and len(params) == len(named)


def test_typed_rows_round_trip_through_the_store(store):
    store.write([(SAMPLES[PhotoRow], "t1"), SAMPLES[ScoreRow], SAMPLES[FailureRow], SAMPLES[DecisionRow]])
    photo = store.photo_by_path("/p/a.jpg")
    assert (photo["make"], photo["camera_model"], photo["first_seen"], photo["last_seen"]) == ("Canon", "EOS R5", "t1", "t1")
    assert store.score_for("sha-a", "aadb", "c1", "max1024")["score"] == 0.5
    assert store.failure_for("/p/bad.jpg")["reason"] == "truncated"
    assert store.decisions_for(["/p/a.jpg"])["/p/a.jpg"]["label"] == "Green"
    store.write([PhotoSeen("/p/a.jpg")], when="t2")
    assert store.photo_by_path("/p/a.jpg")["last_seen"] == "t2"
    store.write([FailureCleared("/p/bad.jpg"), PhotoDropped("/p/a.jpg")])
    assert store.failure_for("/p/bad.jpg") is None and store.photo_by_path("/p/a.jpg") is None
    assert store.score_for("sha-a", "aadb", "c1", "max1024") is not None  # scores are kept by content


def test_batch_writer_stamps_rows_when_added_not_when_committed(store, monkeypatch):
    import charmcli.store.tables as tables

    stamps = iter(["2024-01-01T00:00:00.000+00:00", "2024-01-02T00:00:00.000+00:00"])
    monkeypatch.setattr(tables, "now_iso", lambda: next(stamps))
    writer = BatchWriter(store, max_ops=100, max_seconds=1e9)
    writer.add(_score("s", 0.1, ckpt="old"))
    writer.add(_score("s", 0.9, ckpt="new"))
    assert writer.commits == 0
    writer.flush()
    got = {r["checkpoint_id"]: r["scored_at"] for r in store.scores_for_sha("s")}
    assert got == {"old": "2024-01-01T00:00:00.000+00:00", "new": "2024-01-02T00:00:00.000+00:00"}


def test_latest_scores_view_holds_each_contents_newest_score_per_model(store):
    rng = random.Random(7)
    rows = []
    for _ in range(300):
        sha, model = f"s{rng.randrange(20)}", rng.choice(["aadb", "para"])
        ckpt, pre, when = f"c{rng.randrange(4)}", rng.choice(["max1024", "exact"]), f"2024-01-{rng.randrange(1, 9):02d}"
        rows.append((_score(sha, rng.random(), model, ckpt, pre), when))
    store.write(rows)
    every = store.all("SELECT * FROM scores")
    want = {}
    for r in sorted(every, key=lambda r: (r["scored_at"], r["id"])):  # the newest, then the later row, wins
        want[r["sha256"], r["model"]] = r["id"]
    got = {(r["sha256"], r["model"]): r["id"] for r in store.all("SELECT * FROM latest_scores")}
    assert got == want
    store.write([PhotoRow(f"/p/{sha}.jpg", 1, 1, sha) for sha, _ in {k for k in want}])
    ranked = {r["sha256"]: r["score"] for r in store.iter_ranked(TopFilter(model="para"))}
    by_id = {r["id"]: r["score"] for r in every}
    assert ranked == {sha: by_id[i] for (sha, model), i in want.items() if model == "para"}
    assert sorted(store.model_scores("para")) == sorted(ranked.values())


def _old_database(path: Path) -> None:
    """Schema 2 exactly as the charm before the view and the column rename wrote it."""
    conn = database_at(path, 2)
    photo = ("INSERT INTO photos (path, size, mtime_ns, sha256, make, model, lens, date_taken, first_seen, last_seen) "
             "VALUES (?, 1, 2, ?, ?, ?, NULL, ?, 't', 't')")  # fmt: skip
    conn.execute(photo, ("/lib/a.jpg", "sa", "Canon", "Canon EOS R5", "2023-05-01T10:00:00"))
    conn.execute(photo, ("/lib/b.jpg", "sb", "NIKON", "D750", "2023-06-01T10:00:00"))
    score = ("INSERT INTO scores (sha256, model, checkpoint_id, preprocess, score, outputs, scored_at) "
             "VALUES (?, ?, ?, 'max1024', ?, '[]', ?)")  # fmt: skip
    conn.execute(score, ("sa", "aadb", "old", 0.9, "2024-01-01"))
    conn.execute(score, ("sa", "aadb", "new", 0.2, "2024-02-01"))  # the latest: ranks a below b
    conn.execute(score, ("sb", "aadb", "old", 0.5, "2024-01-01"))
    conn.execute("INSERT INTO decisions (path, rating, source, decided_at) VALUES ('/lib/b.jpg', 5, 'rate', 't')")
    conn.close()


def test_an_old_database_gains_the_view_and_camera_model_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    _old_database(path)
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION >= 4
        assert store.photo_by_path("/lib/a.jpg")["camera_model"] == "Canon EOS R5"
        assert "model" not in store.photo_by_path("/lib/a.jpg")  # one name, one meaning
        ranked = list(store.iter_ranked(TopFilter(model="aadb")))
        assert [(r["path"], r["score"], r["model"], r["checkpoint_id"]) for r in ranked] == [
            ("/lib/b.jpg", 0.5, "aadb", "old"), ("/lib/a.jpg", 0.2, "aadb", "new")]  # fmt: skip
        assert [r["path"] for r in store.iter_ranked(TopFilter(model="aadb", camera="eos r5"))] == ["/lib/a.jpg"]
        assert store.decisions_for()["/lib/b.jpg"]["rating"] == 5
        store.write([PhotoRow("/lib/c.jpg", 1, 1, "sc", meta={"camera_model": "X100"})])
        assert store.photo_by_path("/lib/c.jpg")["camera_model"] == "X100"
    with Store(path) as store:  # reopening does not migrate again
        assert store.version == SCHEMA_VERSION


def test_the_typed_rows_out_name_exactly_the_columns_the_schema_has(store, tmp_path):
    """A migration that adds a column must add it to the row type too (and the reverse)."""
    from charmcli.selection import Query, SelectedPhoto, select

    def columns(table: str) -> set[str]:
        return {row[1] for row in store.conn.execute(f"PRAGMA table_info({table})")}

    for table, row_type in TABLE_ROWS.items():
        assert set(row_type.__annotations__) == columns(table), table
    assert columns("latest_scores") == columns("scores")
    real = tmp_path / "a.jpg"
    real.write_bytes(b"x")
    store.write([PhotoRow(str(real), 1, 1, "sa"), _score("sa", 0.5)])
    for embeddings in (False, True):
        [ranked] = store.iter_ranked(TopFilter(model="aadb"), embeddings=embeddings)
        assert set(ranked) == set(RankedPhoto.__annotations__)
    [selected] = select(store, Query(model="aadb")).rows
    assert set(selected) == set(SelectedPhoto.__annotations__)
    store.write([FailureRow("/p/bad.jpg", "truncated", "decode")])
    stats = store.stats()
    assert set(stats) == set(Stats.__annotations__)
    [model] = stats["models"]
    assert set(model) == set(ModelStats.__annotations__)
    [failure] = stats["failures"]
    assert set(failure) == set(ListedFailure.__annotations__) <= columns("failures")
