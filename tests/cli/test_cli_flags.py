"""Technical flags through the CLI, on real photos and degraded copies of them.

``charm score`` measures each photo in the same pass as its score; ``score``/``top --json`` carry
``flags`` and ``measures``; ``top --hide-flagged``/``--hide`` leave flagged photos out; ``show``
says why; ``rate`` caps a flagged photo at one star; the contact sheet marks flags; a burst's
best frame is never a soft or eyes-closed one while a clean frame exists; a re-run computes
nothing; a database from before the measures migrates.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from pathlib import Path

import pytest
from flag_degrade import FACES, close_eyes, defocus, exposure, motion_blur
from old_schema import before, database_at
from PIL import Image, ImageEnhance

from charmcli.library import faces
from charmcli.store import SCHEMA_VERSION

#: file → the flag its degradation must raise (None: a clean original)
EXPECTED = {
    "clean/DSCN0010.jpg": None,
    "clean/jolla.jpg": None,
    "bad/soft.jpg": "soft",
    "bad/bright.jpg": "overexposed",
    "bad/dark.jpg": "underexposed",
    "bad/shaken.jpg": "motion-blur",
}


@pytest.fixture
def flag_library(tmp_path, shared_photos) -> Path:
    root = tmp_path / "lib"
    (root / "clean").mkdir(parents=True)
    (root / "bad").mkdir()
    for name in ("DSCN0010.jpg", "jolla.jpg"):
        (root / "clean" / name).write_bytes((shared_photos / name).read_bytes())
    photo = Image.open(shared_photos / "DSCN0010.jpg").convert("RGB")  # 640 x 480: scored as is
    defocus(photo, 4).save(root / "bad" / "soft.jpg", quality=95)
    exposure(photo, 3).save(root / "bad" / "bright.jpg", quality=95)
    exposure(photo, -3).save(root / "bad" / "dark.jpg", quality=95)
    motion_blur(photo, 15, 30).save(root / "bad" / "shaken.jpg", quality=95)
    return root


def _score(cli, folder, model_args) -> dict[str, dict]:
    result = cli("score", folder, *model_args, "--json")
    assert result.exit_code == 0, result.stderr
    return {e["path"]: e for e in map(json.loads, result.stdout.splitlines())}


def _top(cli, *args) -> list[dict]:
    result = cli("top", "50", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _rel(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()


def test_score_and_top_json_carry_flags_and_measures(cli, flag_library, model_args):
    events = _score(cli, flag_library, model_args)
    for path, event in events.items():
        want = EXPECTED[_rel(flag_library, path)]
        assert event["status"] == "scored"
        assert set(event["measures"]) >= {"focus_width", "motion_ratio", "highlights", "brightness", "faces"}
        if want is None:
            assert event["flags"] == [], path
        else:
            assert want in event["flags"], (path, event["flags"])
    rows = _top(cli)
    assert {_rel(flag_library, r["path"]): r["flags"] for r in rows} == {
        _rel(flag_library, p): e["flags"] for p, e in events.items()
    }
    assert all(r["measures"] == events[r["path"]]["measures"] for r in rows)


def test_top_hides_flagged_photos(cli, flag_library, model_args):
    _score(cli, flag_library, model_args)
    clean = {p for p, flag in EXPECTED.items() if flag is None}
    assert {_rel(flag_library, r["path"]) for r in _top(cli, "--hide-flagged")} == clean
    hidden = {_rel(flag_library, r["path"]) for r in _top(cli, "--hide", "soft,overexposed")}
    assert "bad/soft.jpg" not in hidden and "bad/bright.jpg" not in hidden and "bad/dark.jpg" in hidden
    # a threshold moved far enough lets the soft copy through again
    lenient = {_rel(flag_library, r["path"]) for r in _top(cli, "--hide", "soft", "--flag-limits", "soft_width=19")}
    assert "bad/soft.jpg" in lenient
    rows = list(csv.DictReader(io.StringIO(cli("top", "50", "--csv").stdout)))
    assert {_rel(flag_library, r["path"]): r["flags"] for r in rows}["bad/bright.jpg"] == "overexposed"
    for bad in (["--hide", "blurry"], ["--flag-limits", "sharpness=2"], ["--flag-limits", "soft_width=x"]):
        result = cli("top", "5", *bad)
        assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0, bad


def test_show_says_why(cli, flag_library, model_args):
    _score(cli, flag_library, model_args)
    out = cli("show", flag_library / "bad" / "soft.jpg").stdout
    assert "soft: sharpest region blurred" in out and "measures" in out
    data = json.loads(cli("show", flag_library / "bad" / "bright.jpg", "--json").stdout)
    assert "overexposed" in data["flags"] and data["flag_reasons"][0].startswith("overexposed: ")
    assert data["measures"]["highlights"] > 0.1
    assert "flags none" in cli("show", flag_library / "clean" / "DSCN0010.jpg").stdout


def test_a_rerun_computes_nothing(cli, flag_library, model_args, monkeypatch, _private_db):
    _score(cli, flag_library, model_args)
    before = sqlite3.connect(_private_db).execute("SELECT sha256, measured_at FROM measures").fetchall()
    import charmcli.work as work

    def boom(*_args, **_kwargs):
        raise AssertionError("a cached re-run decoded or measured a photo")

    monkeypatch.setattr(work, "measure_photo", boom)
    monkeypatch.setattr(work, "decode_image", boom)
    again = _score(cli, flag_library, model_args)
    assert {e["status"] for e in again.values()} == {"cached"}
    assert all(e["measures"] is not None for e in again.values())
    after = sqlite3.connect(_private_db).execute("SELECT sha256, measured_at FROM measures").fetchall()
    assert sorted(after) == sorted(before) and len(before) == len(EXPECTED)


def test_an_old_database_migrates_and_its_photos_get_measures(cli, flag_library, model_args, _private_db):
    """A database at schema 4 (scores, no measures table), as charm wrote it before flags."""
    fp32 = [*model_args, "--precision", "fp32"]  # what every score before the precision column was
    _score(cli, flag_library, fp32)
    old = _private_db.with_name("old.db")
    tables = ("photos", "scores", "checkpoints")
    database_at(old, before("m005_measures"), rows_from=_private_db, tables=tables).close()
    for extra in (Path(f"{_private_db}-wal"), Path(f"{_private_db}-shm")):
        extra.unlink(missing_ok=True)
    old.replace(_private_db)
    rows = _top(cli)  # opening it migrates; nothing is measured yet
    assert len(rows) == len(EXPECTED) and all(r["measures"] is None and r["flags"] == [] for r in rows)
    conn = sqlite3.connect(_private_db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    # its scores lack what a taste needs, so they are scored again, and measured in the same pass
    events = _score(cli, flag_library, fp32)
    assert {e["status"] for e in events.values()} == {"scored"}
    assert events[str(flag_library / "bad" / "soft.jpg")]["flags"] == ["soft"]
    assert len(sqlite3.connect(_private_db).execute("SELECT id FROM scores").fetchall()) == len(EXPECTED)  # replaced
    assert "soft" in [f for r in _top(cli) for f in r["flags"]]


def test_scored_photos_without_measures_are_measured_without_rescoring(cli, flag_library, model_args, _private_db):
    """Scores kept, measures missing (measured by nothing yet): the next run decodes for the measures alone."""
    _score(cli, flag_library, model_args)
    conn = sqlite3.connect(_private_db)
    scored = sorted(conn.execute("SELECT sha256, scored_at FROM scores").fetchall())
    conn.execute("DELETE FROM measures")
    conn.commit()
    conn.close()
    assert all(r["measures"] is None and r["flags"] == [] for r in _top(cli))
    events = _score(cli, flag_library, model_args)
    assert {e["status"] for e in events.values()} == {"cached"}
    assert events[str(flag_library / "bad" / "soft.jpg")]["flags"] == ["soft"]
    conn = sqlite3.connect(_private_db)
    assert sorted(conn.execute("SELECT sha256, scored_at FROM scores").fetchall()) == scored  # not rescored
    assert len(conn.execute("SELECT sha256 FROM measures").fetchall()) == len(EXPECTED)
    conn.close()


def test_rate_caps_flagged_photos_and_can_reject_them(cli, flag_library, model_args):
    _score(cli, flag_library, model_args)
    result = cli("rate", flag_library, "--dry-run", "--json", "--stars", "1,2,3,4")  # nearly everyone 5 stars
    photos = {_rel(flag_library, p["path"]): p for p in json.loads(result.stdout)["photos"]}
    for name, flag in EXPECTED.items():
        if flag is None:
            assert photos[name]["stars"] >= 2, name
        else:
            assert photos[name]["stars"] == 1 and flag in photos[name]["flags"], name
    rejected = json.loads(cli("rate", flag_library, "--json", "--reject-flagged").stdout)["photos"]
    for p in rejected:
        flagged = EXPECTED[_rel(flag_library, p["path"])] is not None
        assert (p["stars"] == -1) == flagged
    sidecar = flag_library / "bad" / "soft.jpg.xmp"
    assert 'xmp:Rating="-1"' in sidecar.read_text() or "<xmp:Rating>-1</xmp:Rating>" in sidecar.read_text()
    assert (flag_library / "bad" / "soft.jpg").read_bytes()[:2] == b"\xff\xd8"  # the photo itself untouched


def test_the_contact_sheet_marks_flags(cli, flag_library, model_args, tmp_path):
    _score(cli, flag_library, model_args)
    assert cli("report", flag_library, "-o", tmp_path / "sheet").exit_code == 0
    html = (tmp_path / "sheet" / "index.html").read_text()
    assert 'data-flag="soft"' in html and 'data-flag="overexposed"' in html
    assert html.count('class="flag"') == sum(len(r["flags"]) for r in _top(cli))
    assert cli("report", flag_library, "-o", tmp_path / "clean", "--hide-flagged").exit_code == 0
    assert 'class="flag"' not in (tmp_path / "clean" / "index.html").read_text()


def _burst(cli, folder, model_args, flagged: str) -> tuple[list[dict], str]:
    """Score a burst; drop the clean frames that outscore every ``flagged`` frame, so that the
    best-scored frame of what is left is a flagged one (the model's scores are what they are).
    Returns the remaining frames (top --json) and the best clean frame's path."""
    events = _score(cli, folder, model_args)
    worst_best = max(e["score"] for e in events.values() if flagged in e["flags"])
    clean = [e for e in events.values() if not e["flags"]]
    for e in clean:
        if e["score"] >= worst_best:
            os.unlink(e["path"])
    kept = [e for e in clean if e["score"] < worst_best]
    assert kept, "every clean frame outscored the flagged ones: make more frames"
    rows = _top(cli)
    assert flagged in rows[0]["flags"]  # the best-scored frame of the burst is the flagged one
    return rows, max(kept, key=lambda e: e["score"])["path"]


def _same_moment(paths: list[Path]) -> None:
    for i, p in enumerate(sorted(paths)):
        os.utime(p, (1_600_000_000 + i * 0.2, 1_600_000_000 + i * 0.2))  # 5 fps, by file time


def test_a_burst_whose_best_scored_frame_is_soft_picks_a_sharp_one(cli, shared_photos, tmp_path, model_args):
    folder = tmp_path / "burst"
    folder.mkdir()
    photo = Image.open(shared_photos / "DSCN0010.jpg").convert("RGB")
    frames = {
        "f1.jpg": ImageEnhance.Brightness(photo).enhance(0.97),
        "f2.jpg": ImageEnhance.Brightness(photo).enhance(1.03),
        "f3.jpg": ImageEnhance.Contrast(photo).enhance(1.05),
        "f4.jpg": defocus(photo, 2.5),
        "f5.jpg": defocus(photo, 3.5),
        "f6.jpg": defocus(photo, 5),
    }
    for name, im in frames.items():
        im.save(folder / name, quality=95)
    _same_moment(list(folder.iterdir()))
    rows, best_clean = _burst(cli, folder, model_args, "soft")
    [group] = json.loads(cli("groups", folder, "--json").stdout)
    assert group["size"] == len(rows) and group["best"] == best_clean
    assert {m["path"]: m["flags"] for m in group["members"]} == {r["path"]: r["flags"] for r in rows}
    assert [r["path"] for r in _top(cli, "--best-of-group")] == [best_clean]
    # with the soft limit moved out of reach, the score decides again
    relaxed = _top(cli, "--best-of-group", "--flag-limits", "soft_width=19")
    assert [r["path"] for r in relaxed] == [rows[0]["path"]]
    [group] = json.loads(cli("groups", folder, "--json", "--flag-limits", "soft_width=19").stdout)
    assert group["best"] == rows[0]["path"]


@pytest.mark.skipif(not faces.HAVE_FACES, reason="the faces extra (opencv) is not installed")
def test_a_burst_whose_best_scored_frame_has_closed_eyes_picks_an_open_one(cli, tmp_path, model_args):
    folder = tmp_path / "portrait"
    folder.mkdir()
    face = Image.open(FACES / "astronaut_face.jpg").convert("RGB")
    shut = close_eyes(face, [(81, 82, 20, 9), (126, 83, 20, 9)])
    frames = {
        "o1.jpg": ImageEnhance.Brightness(face).enhance(0.97),
        "o2.jpg": ImageEnhance.Brightness(face).enhance(1.03),
        "o3.jpg": face,
        "c1.jpg": shut,
        "c2.jpg": ImageEnhance.Brightness(shut).enhance(0.98),
        "c3.jpg": ImageEnhance.Brightness(shut).enhance(1.02),
    }
    for name, im in frames.items():
        im.save(folder / name, quality=95)
    _same_moment(list(folder.iterdir()))
    rows, best_open = _burst(cli, folder, model_args, "eyes-closed")
    assert rows[0]["measures"]["faces"] == 1 and rows[0]["measures"]["eyes_closed"] == 1
    [group] = json.loads(cli("groups", folder, "--json").stdout)
    assert group["best"] == best_open
    assert "eyes closed: 1 of 1 face" in cli("show", rows[0]["path"]).stdout


def test_without_the_faces_extra_eyes_are_not_measured(cli, flag_library, model_args, monkeypatch):
    monkeypatch.setattr(faces, "HAVE_FACES", False)
    events = _score(cli, flag_library, model_args)
    assert all(e["measures"]["faces"] is None for e in events.values())
    assert events[str(flag_library / "bad" / "soft.jpg")]["flags"] == ["soft"]  # the other flags still work
    assert "eyes not measured" in cli("show", flag_library / "clean" / "jolla.jpg").stdout
