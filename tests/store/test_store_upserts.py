"""Every upsert, column by column: a second write of the same key replaces every value it carries.

An ``INSERT … ON CONFLICT DO UPDATE SET`` that forgets a column still succeeds, and the row then
mixes the old file's EXIF (or an old score's outputs) with the new content. So each test writes
a row, writes the same key again with every other value changed, and checks both that every
column changed (read generically from the table, so a column added later is covered) and that
each holds the value written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from charmcli.store import (
    META_COLUMNS,
    DecisionRow,
    FailureRow,
    MeasuresRow,
    PhotoRow,
    ScoreRow,
    Store,
    TasteForgotten,
    TasteRow,
)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "charm.db") as s:
        yield s


def _columns(store: Store, table: str) -> list[str]:
    return [row[1] for row in store.conn.execute(f"PRAGMA table_info({table})")]


def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {c for c in before if before[c] != after[c]}


def _meta(**values: Any) -> dict[str, Any]:
    assert set(values) == set(META_COLUMNS), "a metadata column was added: give it values here"
    return values


META_A = _meta(date_taken="2021-06-01T10:20:30", make="Canon", camera_model="EOS R5", lens="RF 50mm F1.8",
               focal_length=50.0, f_number=1.8, exposure_time=0.01, iso=100, orientation=1)  # fmt: skip
META_B = _meta(date_taken="2023-01-02T03:04:05.500+01:00", make="NIKON", camera_model="D750", lens="AF-S 85mm",
               focal_length=85.0, f_number=2.8, exposure_time=0.004, iso=6400, orientation=6)  # fmt: skip


def test_photo_upsert_replaces_every_column_but_first_seen(store):
    key = "/p/a.jpg"
    a = PhotoRow(key, 100, 1_000, "sha-a", 600, 400, "JPEG", dict(META_A))
    b = PhotoRow(key, 200, 2_000, "sha-b", 4000, 3000, "HEIF", dict(META_B))
    store.write([(a, "2024-01-01T00:00:00")])
    before = store.photo_by_path(key)
    store.write([(b, "2024-02-01T00:00:00")])
    after = store.photo_by_path(key)
    assert set(after) == set(_columns(store, "photos"))
    assert _changed(before, after) == set(after) - {"id", "path", "first_seen"}
    expected = {"size": 200, "mtime_ns": 2_000, "sha256": "sha-b", "width": 4000, "height": 3000, "format": "HEIF",
                **META_B, "first_seen": "2024-01-01T00:00:00", "last_seen": "2024-02-01T00:00:00"}  # fmt: skip
    assert {c: after[c] for c in expected} == expected
    assert store.db["photos"].count == 1


def test_photo_upsert_clears_metadata_the_new_content_lacks(store):
    """A file rewritten without EXIF: its row must not keep the old camera, date or lens."""
    store.write([PhotoRow("/p/a.jpg", 100, 1, "sha-a", 60, 40, "JPEG", dict(META_A))])
    store.write([PhotoRow("/p/a.jpg", 90, 2, "sha-b", 60, 40, "PNG", {})])
    row = store.photo_by_path("/p/a.jpg")
    assert {c: row[c] for c in META_COLUMNS} == dict.fromkeys(META_COLUMNS)


def _score(sha: str, seed: int) -> ScoreRow:
    emb = np.arange(4, dtype=np.float16) + seed
    return ScoreRow(
        sha, "aadb", "ckpt", "max1024", score=0.1 * seed, outputs=[0.1 * seed, 0.2 * seed], n_tokens=20 + seed,
        input_size=(60 + seed, 40 + seed), token_path="short" if seed == 1 else "multiscale",
        kept_cells=[(seed, seed + 1)], cell_size=28 * seed, embedding=emb.tobytes(), seconds=0.01 * seed,
        head_input=(emb + 1).tobytes(),
    )  # fmt: skip


def test_score_upsert_replaces_every_column(store):
    key = ("sha", "aadb", "ckpt", "max1024")
    store.write([(_score("sha", 1), "2024-01-01T00:00:00")])
    before = store.score_for(*key)
    b = _score("sha", 2)
    store.write([(b, "2024-02-01T00:00:00")])
    after = store.score_for(*key)
    assert set(after) == set(_columns(store, "scores"))
    assert _changed(before, after) == set(after) - {"id", "sha256", "model", "checkpoint_id", "preprocess", "precision"}  # the key
    assert after["score"] == pytest.approx(b.score) and json.loads(after["outputs"]) == pytest.approx(
        b.outputs
    )
    assert (after["n_tokens"], after["input_width"], after["input_height"]) == (22, 62, 42)
    assert (after["token_path"], json.loads(after["kept_cells"]), after["cell_size"]) == (
        "multiscale",
        [[2, 3]],
        56,
    )
    assert after["embedding"] == b.embedding and after["seconds"] == pytest.approx(0.02)
    assert after["scored_at"] == "2024-02-01T00:00:00"
    assert store.db["scores"].count == 1


def test_failure_upsert_replaces_every_column(store):
    store.write(
        [(FailureRow("/p/x.jpg", "truncated", "decode", "s1", 10, 1, "o1"), "2024-01-01")]
    )
    before = store.failure_for("/p/x.jpg")
    store.write(
        [(FailureRow("/p/x.jpg", "too large", "too-large", "s2", 20, 2, "o2"), "2024-02-01")]
    )
    after = store.failure_for("/p/x.jpg")
    assert _changed(before, after) == set(after) - {"id", "path"}
    assert (after["reason"], after["kind"], after["sha256"], after["size"], after["mtime_ns"], after["options"]) == (
        "too large", "too-large", "s2", 20, 2, "o2",
    )  # fmt: skip
    assert store.db["failures"].count == 1


def test_decision_upsert_replaces_every_column(store):
    store.write([(DecisionRow("/p/a.jpg", "s1", 2, "Green", "rate"), "2024-01-01")])
    before = store.decisions_for()["/p/a.jpg"]
    store.write([(DecisionRow("/p/a.jpg", "s2", -1, "Red", "review"), "2024-02-01")])
    after = store.decisions_for()["/p/a.jpg"]
    assert set(after) == set(_columns(store, "decisions"))
    assert _changed(before, after) == set(after) - {"path"}
    assert after == {"path": "/p/a.jpg", "sha256": "s2", "rating": -1, "label": "Red", "source": "review",
                     "decided_at": "2024-02-01"}  # fmt: skip
    assert store.db["decisions"].count == 1


def test_measures_upsert_replaces_every_column(store):
    store.write([(MeasuresRow("s1", "m1", {"focus_width": 2.5, "faces": None}), "2024-01-01")])
    before = store.one("SELECT * FROM measures")
    store.write([(MeasuresRow("s1", "m1", {"focus_width": 1.5, "faces": 2}), "2024-02-01")])
    after = store.one("SELECT * FROM measures")
    assert set(after) == set(_columns(store, "measures"))
    assert _changed(before, after) == set(after) - {"sha256", "version"}
    assert store.measures_for("s1", "m1") == {"focus_width": 1.5, "faces": 2} and after["measured_at"] == "2024-02-01"
    assert store.db["measures"].count == 1


def test_taste_upsert_replaces_every_column_and_forgetting_drops_only_that_name(store):
    store.write([(TasteRow("mine", b"one", 20, "ridge"), "2024-01-01"), (TasteRow("other", b"x", 5, "ridge"), "t")])
    before = store.taste("mine")
    store.write([(TasteRow("mine", b"two", 30, "rank"), "2024-02-01")])
    after = store.taste("mine")
    assert set(after) == set(_columns(store, "tastes"))
    assert _changed(before, after) == set(after) - {"name"}
    assert after == {"name": "mine", "data": b"two", "ratings": 30, "method": "rank", "learned_at": "2024-02-01"}
    store.write([TasteForgotten("mine")])
    assert store.taste("mine") is None and store.taste("other") is not None


def test_checkpoint_memo_upsert_replaces_every_column(store, tmp_path):
    one, two = tmp_path / "one.pth", tmp_path / "two.pth"
    one.write_bytes(b"1")
    two.write_bytes(b"22")
    os.utime(one, ns=(1_000_000_000, 1_000_000_000))
    os.utime(two, ns=(2_000_000_000, 2_000_000_000))
    store.remember_checkpoint("hub:aadb", str(one), "id-one", "aadb")
    before = store.recall_checkpoint("hub:aadb")
    store.remember_checkpoint("hub:aadb", str(two), "id-two", "para")
    after = store.recall_checkpoint("hub:aadb")
    assert before is not None and after is not None and set(after) == set(_columns(store, "checkpoints"))
    assert _changed(before, after) >= set(after) - {"source", "seen_at"}  # two writes may share a millisecond
    assert (after["file"], after["size"], after["mtime_ns"], after["checkpoint_id"], after["model"]) == (
        str(two), 2, 2_000_000_000, "id-two", "para",
    )  # fmt: skip


def make_photo(path: Path, *, seed: int, date: str, make: str, model: str, lens: str) -> None:
    """A small JPEG with distinct pixels and camera EXIF."""
    image = Image.new("RGB", (64, 48), ((seed * 53) % 256, (seed * 29) % 256, (seed * 97) % 256))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    sub = exif.get_ifd(0x8769)
    sub[0x9003], sub[0xA434] = date, lens  # DateTimeOriginal, LensModel
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90, exif=exif)


def test_a_rescored_file_gets_its_new_exif_end_to_end(cli, db, tmp_path):
    """Through ``charm score``: a photo edited in place (new camera, date and lens in its EXIF)
    is read again and its row describes the new file, column by column."""
    from shared_paths import conformance_model_args

    args = conformance_model_args("--max-side", "256")
    photo = tmp_path / "lib" / "a.jpg"
    make_photo(photo, seed=1, date="2021:06:01 10:20:30", make="Canon", model="EOS R5", lens="RF 50mm")
    assert cli("score", photo, *args).exit_code == 0
    make_photo(photo, seed=2, date="2023:01:02 03:04:05", make="NIKON", model="D750", lens="AF-S 85mm")
    os.utime(photo, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))  # surely a new mtime
    assert cli("score", photo, *args).exit_code == 0
    with Store(db) as store:
        row = store.photo_by_path(str(photo))
    assert (row["make"], row["camera_model"], row["lens"], row["date_taken"]) == (
        "NIKON",
        "D750",
        "AF-S 85mm",
        "2023-01-02T03:04:05",
    )
    assert row["mtime_ns"] == 2_000_000_000_000_000_000 and row["size"] == photo.stat().st_size
