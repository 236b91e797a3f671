"""``charm learn`` and the taste it stores, through the CLI on real files and real sidecars."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from old_schema import before, database_at
from taste_library import N_PHOTOS

from charmcli.cull.xmp import read_sidecar, update_sidecar
from charmcli.review.desk import Desk
from charmcli.store import SCHEMA_VERSION, Store
from charmcli.taste.fit import MIN_RATINGS


def _photos(library: Path) -> list[Path]:
    return sorted(library.glob("*.jpg"))


def _stars(i: int) -> int:
    """A photographer who likes the brighter photos (later numbers are brighter), rejects the darkest."""
    return -1 if i < 3 else 1 + i * 5 // N_PHOTOS


def _rate(photos: list[Path], indices) -> None:
    for i in indices:
        update_sidecar(photos[i], rating=_stars(i))


def _learn(cli, *args):
    result = cli("learn", *args, "--json")
    return result, (json.loads(result.stdout) if result.exit_code == 0 else None)


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and result.stdout == "", result.stderr + result.stdout
    return lines[0]


def test_learn_reports_and_stores_a_taste(cli, library, db) -> None:
    _rate(_photos(library), range(N_PHOTOS))
    result = cli("learn", library)
    assert result.exit_code == 0, result.stderr
    assert f"from {N_PHOTOS} ratings" in result.stdout and "Verdict:" in result.stdout
    assert "your taste" in result.stdout and "generic score (aadb)" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    _result, report = _learn(cli, library)
    assert report["ratings"] == N_PHOTOS and report["counts"]["-1"] == 3
    assert set(report["methods"]) == {"ridge", "rank"} and report["method"] in report["methods"]
    assert -1 <= report["taste"]["spearman"] <= 1 and 0 <= report["generic"]["pairwise"] <= 1
    assert report["bytes"] < 8 * 1024  # a few kilobytes in the user's database
    with Store(db) as store:
        row = store.taste("mine")
    assert row["ratings"] == N_PHOTOS and row["method"] == report["method"] and len(row["data"]) == report["bytes"]


def test_charm_rate_guesses_are_ignored_until_the_user_changes_them(cli, library) -> None:
    photos = _photos(library)
    assert cli("rate", library).exit_code == 0
    assert all(read_sidecar(p.with_name(p.name + ".xmp"))["rating"] for p in photos)
    line = _one_line(cli("learn", library))
    assert "0 rating(s) found" in line and f"at least {MIN_RATINGS} more" in line
    changed = 0
    for i, p in enumerate(photos):  # the user corrects charm's guess on most photos
        guess = int(read_sidecar(p.with_name(p.name + ".xmp"))["rating"])
        wanted = _stars(i) if _stars(i) != guess else None
        if wanted is not None and changed < 25:
            update_sidecar(p, rating=wanted)
            changed += 1
    assert changed == 25
    result, report = _learn(cli, library)
    assert result.exit_code == 0, result.stderr
    assert report["ratings"] == 25  # the untouched guesses still do not count


def test_a_sidecar_edited_after_learning_is_picked_up(cli, library) -> None:
    photos = _photos(library)
    _rate(photos, range(MIN_RATINGS))
    _result, first = _learn(cli, library)
    assert first["ratings"] == MIN_RATINGS
    update_sidecar(photos[MIN_RATINGS], rating=5)  # a new rating
    update_sidecar(photos[5], rating=-1)  # a changed one
    _result, second = _learn(cli, library)
    assert second["ratings"] == MIN_RATINGS + 1
    assert second["counts"]["-1"] == first["counts"]["-1"] + 1
    assert second["counts"]["5"] == first["counts"].get("5", 0) + 1


def test_the_desks_decisions_count_even_without_their_sidecars(cli, library, db) -> None:
    photos = _photos(library)
    with Store(db) as store:
        desk = Desk(store, "aadb", [library])
        by_path = {e["path"]: e["id"] for e in desk.photos()}
        for i in range(MIN_RATINGS):
            desk.set_rating(by_path[str(photos[i])], _stars(i))
    _result, report = _learn(cli, library)
    assert report["ratings"] == MIN_RATINGS
    for side in library.glob("*.xmp"):
        side.unlink()
    _result, report = _learn(cli, library)
    assert report["ratings"] == MIN_RATINGS  # what was chosen at the desk is the user's judgement


def test_too_few_or_all_alike_is_one_line(cli, library) -> None:
    photos = _photos(library)
    _rate(photos, range(MIN_RATINGS - 1))
    result = cli("learn", library)
    assert result.exit_code == 2
    assert f"{MIN_RATINGS - 1} rating(s) found; rate at least 1 more" in _one_line(result)
    for p in photos[:MIN_RATINGS]:
        update_sidecar(p, rating=3)
    result = cli("learn", library)
    assert result.exit_code == 2 and "all 20 ratings are the same" in _one_line(result)


def test_taste_before_learn_and_after_forget_is_one_line(cli, library) -> None:
    for args in (("top", "--taste"), ("rate", library, "--taste"), ("top", "--taste", "--name", "other")):
        result = cli(*args)
        assert result.exit_code == 2 and "no taste named" in _one_line(result), args
    _rate(_photos(library), range(N_PHOTOS))
    assert cli("learn", library).exit_code == 0
    assert cli("top", "--taste").exit_code == 0
    result = cli("learn", "--forget", "mine")
    assert result.exit_code == 0
    result = cli("learn", "--forget", "mine")
    assert result.exit_code == 1 and "no taste named 'mine'" in _one_line(result)
    result = cli("top", "--taste")
    assert result.exit_code == 2 and "no taste named 'mine'" in _one_line(result)


def test_taste_out_top_show_and_rate(cli, library) -> None:
    photos = _photos(library)
    _rate(photos, range(N_PHOTOS))
    assert cli("learn", library).exit_code == 0
    rows = json.loads(cli("top", N_PHOTOS, library, "--taste", "--json").stdout)
    tastes = [r["taste"] for r in rows]
    assert len(rows) == N_PHOTOS and all(t is not None for t in tastes)
    assert tastes == sorted(tastes, reverse=True) and [r["rank"] for r in rows] == list(range(1, N_PHOTOS + 1))
    assert "taste" not in json.loads(cli("top", 3, library, "--json").stdout)[0]
    table = cli("top", 5, library, "--taste").stdout
    assert "taste mine" in table and f"{tastes[0]:.1f}" in table
    shown = cli("show", rows[0]["path"], "--json")
    assert json.loads(shown.stdout)["tastes"][0]["taste"] == pytest.approx(tastes[0])
    assert "taste mine" in cli("show", rows[0]["path"]).stdout
    rated = json.loads(cli("rate", library, "--taste", "--json").stdout)
    by_path = {p["path"]: p for p in rated["photos"]}
    assert by_path[rows[0]["path"]]["stars"] == 5 and by_path[rows[-1]["path"]]["stars"] == 1
    # what `rate --taste` wrote is charm's guess: a new learn finds no rating of the user's
    result = cli("learn", library)
    assert result.exit_code == 2 and "0 rating(s) found" in _one_line(result)


def test_best_of_burst_can_follow_the_taste(cli, library) -> None:
    _rate(_photos(library), range(N_PHOTOS))
    assert cli("learn", library).exit_code == 0
    loose = ("--best-of-group", "--gap", "1e9", "--similarity", "0")  # one burst: every photo
    by_score = json.loads(cli("top", 5, library, *loose, "--json").stdout)
    by_taste = json.loads(cli("top", 5, library, *loose, "--taste", "--json").stdout)
    everything = json.loads(cli("top", N_PHOTOS, library, "--taste", "--json").stdout)
    assert len(by_score) == len(by_taste) == 1
    assert by_taste[0]["path"] == everything[0]["path"]  # the burst's pick is the taste's favourite
    assert by_score[0]["path"] == max(everything, key=lambda r: r["score"])["path"]


def test_an_old_database_migrates_and_rescoring_adds_the_features(cli, library, db, model_args, tmp_path) -> None:
    """A database from before tastes: its scores lack the patch mean until `charm score` runs again."""
    old = tmp_path / "old.db"
    # the rows as this charm wrote them, less what the old schema lacks
    database_at(old, before("m006_taste"), rows_from=db).close()
    for extra in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        extra.unlink(missing_ok=True)
    shutil.copyfile(old, db)
    with Store(db) as store:
        assert store.version == SCHEMA_VERSION and store.tastes() == []
        assert len(store.all("SELECT * FROM scores WHERE head_input IS NULL")) == N_PHOTOS
    _rate(_photos(library), range(N_PHOTOS))
    line = _one_line(cli("learn", library))
    assert "scored before charm kept what a taste needs" in line and "charm score" in line
    # the old scores are fp32: rescoring them in that precision fills in what they lack (an
    # `auto` run on a bf16 CPU would add bf16 scores beside them instead)
    result = cli("score", library, *model_args, "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.stderr
    statuses = [json.loads(line)["status"] for line in result.stdout.splitlines()]
    assert statuses == ["scored"] * N_PHOTOS
    assert cli("score", library, *model_args, "--precision", "fp32", "--quiet").exit_code == 0  # now cached
    _result, report = _learn(cli, library)
    assert report is not None, _result.stderr + _result.stdout
    assert report["ratings"] == N_PHOTOS
