"""``charm top/compare/show/models/stats/forget`` on a scored library, and two concurrent runs."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from charmcli.cli import app
from charmcli.model.registry import MODELS
from charmcli.store import Store

SMALL = ["--max-side", "256"]
TOP_KEYS = {
    "rank", "score", "percentile", "path", "model", "date_taken", "camera", "make", "camera_model", "lens",
    "width", "height", "sha256", "checkpoint_id", "preprocess", "precision", "rating", "label", "flags",
}  # fmt: skip


@pytest.fixture
def scored(cli, library, model_args) -> dict[str, float]:
    result = cli("score", library, *model_args, *SMALL, "--json")
    assert result.exit_code == 0, result.stderr
    return {Path(e["path"]).name: e["score"] for e in map(json.loads, result.stdout.splitlines())}


def top_json(cli, *args) -> list[dict]:
    result = cli("top", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def names(rows: list[dict]) -> list[str]:
    return [Path(r["path"]).name for r in rows]


def test_top_ranks_best_first_with_the_contract_shape(cli, scored):
    rows = top_json(cli, "5")
    assert len(rows) == 5 and [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(set(r) == TOP_KEYS | {"measures"} for r in rows)  # CSV has no room for the measures
    expected = sorted(scored, key=lambda n: (-scored[n]))[:5]
    assert names(rows) == expected
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    table = cli("top", "3")
    assert table.exit_code == 0 and "score" in table.stdout and "camera" in table.stdout


def test_top_filters(cli, scored, library):
    assert set(names(top_json(cli, "50", "--camera", "canon"))) == {"a.jpg", "c.jpg"}
    assert names(top_json(cli, "50", "--lens", "rf 50")) == ["a.jpg"]
    assert set(names(top_json(cli, "50", "--since", "2023-06", "--until", "2024"))) == {"b.jpg", "c.jpg"}
    assert names(top_json(cli, "50", "--since", "2023-05-01", "--until", "2023-05-01")) == ["a.jpg"]
    assert set(names(top_json(cli, "50", "--until", "2010"))) == {"DSCN0010.jpg", "FujiFilm DS-7 (1).jpg"}
    assert set(names(top_json(cli, "50", "--folder", "2024"))) == {"c.jpg", "d.jpg"}
    assert set(names(top_json(cli, "50", library / "2023", library / "misc" / "e.jpg"))) == {"a.jpg", "b.jpg", "e.jpg"}
    threshold = sorted(scored.values())[-3]
    assert len(top_json(cli, "50", "--min-score", threshold)) == 3
    assert top_json(cli, "50", "--model", "para") == []


def test_top_csv_and_bad_options(cli, scored):
    result = cli("top", "2", "--csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 2 and set(rows[0]) == TOP_KEYS and rows[0]["rank"] == "1"
    for args in (["--since", "last week"], ["--json", "--csv"], ["--link", "--symlink", "--export", "x"], ["--link"]):
        bad = cli("top", "3", *args)
        assert bad.exit_code == 2 and bad.stderr.strip().count("\n") == 0, args
    assert cli("top", "3", "/no/such/folder").exit_code == 2


def test_top_skips_vanished_files(cli, scored, library):
    best = top_json(cli, "1")[0]
    os.unlink(best["path"])
    result = cli("top", "1", "--json")
    assert json.loads(result.stdout)[0]["path"] != best["path"]
    assert "no longer exist" in result.stderr


def test_empty_database(cli):
    result = cli("top", "5", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert "charm score" in result.stderr


def test_export_copies_never_overwrites_and_writes_manifests(cli, scored, tmp_path):
    dest = tmp_path / "picks"
    dest.mkdir()
    first = top_json(cli, "3")
    squatter = dest / f"0001_{Path(first[0]['path']).name}"
    squatter.write_bytes(b"mine")
    assert cli("top", "3", "--export", dest).exit_code == 0
    assert squatter.read_bytes() == b"mine"  # never overwritten: the export took "-2"
    files = sorted(p.name for p in dest.iterdir())
    assert len([f for f in files if not f.startswith("manifest")]) == 1 + 3 and "manifest.csv" in files
    manifest = list(csv.DictReader(io.StringIO((dest / "manifest.csv").read_text(encoding="utf-8"))))
    assert [int(r["rank"]) for r in manifest] == [1, 2, 3]
    assert [r["source"] for r in manifest] == [r["path"] for r in first]
    assert manifest[0]["exported"] == squatter.name.replace(".jpg", "-2.jpg")
    assert {"model", "date_taken", "camera", "sha256"} <= set(manifest[0])
    copied = dest / manifest[1]["exported"]
    assert copied.read_bytes() == Path(first[1]["path"]).read_bytes()
    assert copied.stat().st_mtime_ns == Path(first[1]["path"]).stat().st_mtime_ns  # timestamps kept


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.lstat().st_ino, p.lstat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize("mode", ["--copy", "--link", "--symlink"])
def test_exporting_the_same_picks_again_is_idempotent(cli, scored, tmp_path, mode):
    """Same selection, same folder: the files there are kept as they are, manifest.csv is
    replaced (never manifest-2.csv), nothing is doubled; a larger selection only adds."""
    dest = tmp_path / "picks"
    squatter = dest / f"0001_{Path(top_json(cli, '1')[0]['path']).name}"  # a user's own file
    dest.mkdir()
    squatter.write_bytes(b"mine")
    assert cli("top", "3", "--export", dest, mode).exit_code == 0
    before = {k: v for k, v in _listing(dest).items() if k != "manifest.csv"}
    again = cli("top", "3", "--export", dest, mode)
    assert again.exit_code == 0, again.stderr
    assert "3 already there" in again.stderr
    after = _listing(dest)
    assert sorted(after) == sorted([*before, "manifest.csv"])  # no -2 copies, no manifest-2.csv
    assert {k: v for k, v in after.items() if k != "manifest.csv"} == before  # not even re-written
    assert squatter.read_bytes() == b"mine"
    more = cli("top", "5", "--export", dest, mode)
    assert more.exit_code == 0 and "3 already there" in more.stderr
    rows = list(csv.DictReader(io.StringIO((dest / "manifest.csv").read_text(encoding="utf-8"))))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    assert len([n for n in os.listdir(dest) if not n.startswith("manifest")]) == 1 + 5


def test_a_manifest_charm_did_not_write_is_left_alone(cli, scored, tmp_path):
    dest = tmp_path / "picks"
    dest.mkdir()
    (dest / "manifest.csv").write_text("title,notes\nmy own,list\n", encoding="utf-8")
    assert cli("top", "2", "--export", dest).exit_code == 0
    assert (dest / "manifest.csv").read_text(encoding="utf-8") == "title,notes\nmy own,list\n"
    assert (dest / "manifest-2.csv").read_text(encoding="utf-8").startswith("rank,score,source")
    assert cli("top", "2", "--export", dest).exit_code == 0
    assert sorted(n for n in os.listdir(dest) if n.startswith("manifest")) == ["manifest-2.csv", "manifest.csv"]


def test_export_symlink_and_link(cli, scored, tmp_path):
    assert cli("top", "2", "--export", tmp_path / "s", "--symlink").exit_code == 0
    links = [p for p in (tmp_path / "s").iterdir() if p.suffix == ".jpg"]
    assert len(links) == 2 and all(p.is_symlink() for p in links)
    assert cli("top", "2", "--export", tmp_path / "h", "--link").exit_code == 0
    hard = [p for p in (tmp_path / "h").iterdir() if p.suffix == ".jpg"]
    assert len(hard) == 2 and all(p.stat().st_nlink == 2 for p in hard)


def test_compare_uses_the_cache_and_scores_new_files(cli, scored, library, model_args, tmp_path):
    from cli_helpers import make_photo

    fresh = make_photo(tmp_path / "new.jpg", seed=42)
    result = cli("compare", library / "2023" / "a.jpg", library / "2023" / "b.jpg", fresh, *model_args, *SMALL, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"model", "checkpoint_id", "images", "winner", "margin"}
    status = {Path(i["path"]).name: i["status"] for i in data["images"]}
    assert status == {"a.jpg": "cached", "b.jpg": "cached", "new.jpg": "scored"}
    ranked = sorted(data["images"], key=lambda i: i["rank"])
    assert data["winner"] == ranked[0]["path"]
    assert data["margin"] == pytest.approx(ranked[0]["score"] - ranked[1]["score"])
    table = cli("compare", library / "2023" / "a.jpg", fresh, *model_args, *SMALL)
    assert table.exit_code == 0 and "Winner:" in table.stdout
    with Store(os.environ["CHARM_DB"]) as store:  # compare stored what it scored
        assert store.photo_by_path(str(fresh)) is not None


def test_compare_usage_errors(cli, library, model_args, tmp_path):
    assert cli("compare", library / "2023" / "a.jpg", *model_args).exit_code == 2
    assert cli("compare", library / "2023", library / "2024", *model_args).exit_code == 2
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    result = cli("compare", library / "2023" / "a.jpg", bad, *model_args, *SMALL, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["images"][1]["status"] == "error"


def test_show_reports_scores_exif_and_kept_cells(cli, library, model_args, tmp_path):
    photo = library / "real" / "DSCN0010.jpg"
    cli("score", photo, *model_args)  # default 1024 cap: 640x480 takes the multi-scale path
    result = cli("show", photo, "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["path"] == str(photo) and info["known"]
    assert info["photo"]["make"] == "NIKON" and info["photo"]["width"] == 640
    (s,) = info["scores"]
    assert s["model"] == "aadb" and s["token_path"] == "multiscale" and s["input_size"] == [640, 480]
    assert len(s["kept_cells"]) > 0 and all(len(c) == 2 for c in s["kept_cells"])
    human = cli("show", photo, "--explain", tmp_path / "cells.png")
    assert human.exit_code == 0 and "█" in human.stdout and "NIKON" in human.stdout
    from PIL import Image

    assert Image.open(tmp_path / "cells.png").size == (640, 480)


def test_show_finds_a_copy_by_content_and_says_when_unknown(cli, scored, library, tmp_path):
    copy = tmp_path / "copy.jpg"
    copy.write_bytes((library / "2023" / "a.jpg").read_bytes())
    info = json.loads(cli("show", copy, "--json").stdout)
    assert info["known"] and info["scores"][0]["score"] == scored["a.jpg"]
    from cli_helpers import make_photo

    unknown = cli("show", make_photo(tmp_path / "u.jpg", seed=77), "--json")
    assert unknown.exit_code == 1 and json.loads(unknown.stdout)["scores"] == []
    assert cli("show", tmp_path / "missing.jpg").exit_code == 2


def test_models_lists_and_download_offline_fails_in_one_line(cli):
    rows = json.loads(cli("models", "--json").stdout)
    assert sorted(r["name"] for r in rows) == sorted(MODELS)  # every model the registry knows
    assert all(r["cached"] is False for r in rows)  # private, empty hub cache
    assert "aadb (default)" in cli("models").stdout
    for name, spec in MODELS.items():
        result = cli("models", "download", name)
        assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0, (name, result.stderr)
        assert spec.filename in result.stderr, name
    assert "charm models download" not in result.stderr  # never "run the command you just ran"
    assert cli("models", "download", "nope").exit_code == 2


def test_stats_and_forget(cli, scored, library):
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["photos"] == 8 and stats["models"][0]["model"] == "aadb" and stats["failures"] == []
    assert "8 photos" in cli("stats").stdout
    gone = library / "2024" / "d.jpg"
    gone.unlink()
    dry = json.loads(cli("forget", "--dry-run", "--json").stdout)
    assert dry == {"dry_run": True, "photos": [str(gone)], "failures": []}
    assert json.loads(cli("stats", "--json").stdout)["photos"] == 8
    assert json.loads(cli("forget", library / "2023", "--json").stdout)["photos"] == []  # elsewhere
    assert "Forgot 1 photo" in cli("forget").stderr
    assert json.loads(cli("stats", "--json").stdout)["photos"] == 7


def test_unusable_database_is_one_line(cli, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 50)
    result = cli("stats", "--db", bad)
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0


def every_command(command=None, path: tuple[str, ...] = ()):
    """(argv prefix, click command) for the app and every command and subcommand Typer built from it."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from every_command(sub, (*path, name))


def test_help_and_version(cli):
    assert cli("--version").stdout.startswith("charm ")
    commands = list(every_command())
    assert {p for p, _c in commands} >= {("score",), ("top",), ("models", "download"), ("cluster", "score")}
    for path, _command in commands:
        if path:  # each group's help names its commands
            assert path[-1] in cli(*path[:-1], "--help").stdout


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_every_command_help_fits_80_columns_in_any_terminal(columns):
    """Every command's help: exit 0, every option it takes named, no line over 80 (40 and 200 too)."""
    for path, command in every_command():
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
        assert result.exit_code == 0, (path, result.output)
        lines = result.stdout.splitlines()
        assert lines and max(map(len, lines)) <= 80, (path, max(lines, key=len))
        for param in command.params:
            if not getattr(param, "hidden", False):
                options = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("-")]
                assert all(o in result.stdout for o in options), (path, options)


@pytest.mark.slow
def test_two_concurrent_score_runs_on_one_database(library, model_args, db, tmp_path):
    """Two processes, overlapping folders, one database: both finish, nothing lost or doubled."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "CHARM_DB": str(db)}
    code = "from charmcli.cli import main; main()"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, "score", str(library), *model_args, *SMALL, "--json", "--workers", "1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err.decode()
    for out, _ in outputs:
        assert len(out.decode().splitlines()) == 8
    with Store(db) as store:
        assert store.db["photos"].count == 8
        assert store.db["scores"].count == 8
