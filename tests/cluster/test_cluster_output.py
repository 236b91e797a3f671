"""Output folder, resume planning, input listing and import into the store: no Ray, no model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from charmcli.cluster.driver import ClusterJob, check_identity, job_config, plan
from charmcli.cluster.importer import import_dir
from charmcli.cluster.inputs import InputError, _list_url, list_inputs
from charmcli.cluster.output import SCHEMA, OutputDir, OutputError, dedupe
from charmcli.store import Store
from charmcli.work import ScoreOptions

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _ok(path: str, sha: str = "a" * 64, score: float = 0.5, when: datetime = T0, **extra) -> dict:
    return {
        "path": path, "status": "ok", "sha256": sha, "size": 10, "mtime_ns": 20, "model": "aadb",
        "checkpoint_id": "c" * 64, "preprocess": "max1024", "max_pixels": 100, "score": score,
        "outputs": [score], "n_tokens": 5, "width": 40, "height": 30, "input_width": 40, "input_height": 30,
        "token_path": "short", "kept_cells": [[0, 1]], "cell_size": 28, "embedding": b"\x00\x3c" * 4,
        "format": "JPEG", "camera_model": "X100", "make": "FUJIFILM", "date_taken": "2024-05-01T10:00:00",
        "written_at": when, **extra,
    }  # fmt: skip


def _err(path: str, when: datetime = T0, error: str = "corrupt JPEG") -> dict:
    return {"path": path, "status": "error", "error": error, "error_kind": "corrupt", "size": 3, "mtime_ns": 4,
            "preprocess": "max1024", "max_pixels": 100, "written_at": when}  # fmt: skip


def test_parts_are_atomic_idempotent_and_deduplicated(tmp_path):
    out = OutputDir.open(tmp_path / "out", create=True)
    first = out.write_part([_ok("/a.jpg"), _err("/b.jpg")])
    assert out.write_part([_err("/b.jpg"), _ok("/a.jpg")]) == first  # same paths: same file, rewritten
    later = T0 + timedelta(hours=1)
    out.write_part([_ok("/b.jpg", sha="b" * 64, score=0.7, when=later)])  # a retried error
    out.write_part([_err("/a.jpg", when=later)])  # never planned by a run, but a reader must cope
    assert len(out.parts()) == 3 and not out.temp_files()
    (tmp_path / "out" / ".tmp-half").write_bytes(b"PAR1 not finished")  # what a killed writer leaves
    (tmp_path / "out" / "part-broken.parquet").write_bytes(b"garbage")  # not ours, but must not stop a read
    (tmp_path / "out" / "notes.txt").write_text("ignored")

    table, warnings = out.read()
    rows = {r["path"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["/a.jpg", "/b.jpg"] and table.schema == SCHEMA
    assert rows["/a.jpg"]["status"] == "ok"  # an ok row beats a newer error row
    assert rows["/b.jpg"]["score"] == 0.7  # an ok row supersedes the old error (--retry-failed)
    assert len(warnings) == 1 and "part-broken.parquet" in warnings[0]
    assert out.done() == ({"/a.jpg", "/b.jpg"}, set())
    assert out.remove_temp_files() == 1 and not out.temp_files()


def test_dedupe_keeps_the_newest_of_equals():
    rows = [_err("/x", when=T0, error="old"), _err("/x", when=T0 + timedelta(1), error="new"), _err("/y")]
    table = dedupe(pa.Table.from_pylist(rows, schema=SCHEMA))
    assert sorted((r["path"], r["error"]) for r in table.to_pylist()) == [("/x", "new"), ("/y", "corrupt JPEG")]


def test_resume_reads_only_path_sha_and_status(tmp_path, monkeypatch):
    out = OutputDir.open(tmp_path, create=True)
    out.write_part([_ok("/a.jpg"), _err("/b.jpg")])
    seen = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: seen.append(k.get("columns")) or real(*a, **k))
    assert out.done() == ({"/a.jpg"}, {"/b.jpg"})
    assert seen == [["path", "sha256", "status", "written_at"]]


def test_output_folder_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        OutputDir.open(tmp_path / "file", create=True)
    with pytest.raises(OutputError, match="no such output folder"):
        OutputDir.open(tmp_path / "missing")


def _photos(root: Path, names: list[str]) -> list[str]:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return [str(root / n) for n in names]


def test_inputs_from_folders_manifests_and_urls(tmp_path):
    a, b, c = _photos(tmp_path / "lib", ["a.jpg", "sub/b.png", "sub/c.webp"])
    _photos(tmp_path / "lib", [".hidden/d.jpg", "notes.txt.bak"])
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "lib" / "dangling.jpg")
    listing = list_inputs([tmp_path / "lib", a])  # a second mention adds nothing
    assert listing.paths == [a, b, c]
    assert [p for p, _ in listing.problems] == [str(tmp_path / "lib" / "dangling.jpg")]

    manifest = tmp_path / "lib" / "list.txt"
    manifest.write_text(f"# chosen\nsub/b.png\n\n{a}\n{(tmp_path / 'lib' / 'sub' / 'c.webp').as_uri()}\n")
    assert list_inputs([manifest]).paths == [b, a, c]
    pq.write_table(pa.table({"path": [c, "a.jpg"]}), tmp_path / "lib" / "list.parquet")
    assert list_inputs([tmp_path / "lib" / "list.parquet"]).paths == [c, a]
    pq.write_table(pa.table({"file": [c]}), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="'path' column"):
        list_inputs([tmp_path / "bad.parquet"])
    with pytest.raises(InputError, match="no such file"):
        list_inputs([tmp_path / "nope"])

    assert list_inputs([(tmp_path / "lib").as_uri()]).paths == [a, b, c]  # file:// is a local path
    urls = _list_url((tmp_path / "lib").as_uri())  # the listing any pyarrow filesystem gets
    assert urls == sorted(Path(p).as_uri() for p in (a, b, c))


def test_plan_skips_done_paths_and_refuses_other_options(tmp_path):
    a, b, c = _photos(tmp_path / "lib", ["a.jpg", "b.jpg", "c.jpg"])
    options = ScoreOptions()
    out = OutputDir.open(tmp_path / "out", create=True)
    out.write_part([_ok(a), _err(b)])
    job = ClusterJob([str(tmp_path / "lib")], str(tmp_path / "out"), options)
    p = plan(job)
    assert (p.todo, p.done_ok, p.done_failed) == ([c], 1, 1)
    job.retry_failed = True
    assert plan(job).todo == [b, c]

    out.write_job({**job_config(options), "model_name": "aadb", "checkpoint_id": "c" * 64})
    check_identity(out, options, None)
    check_identity(out, options, ("aadb", "c" * 64))
    with pytest.raises(OutputError, match="another model or decode options"):
        check_identity(out, ScoreOptions(max_side=0), None)
    with pytest.raises(OutputError, match="another model"):
        check_identity(out, options, ("aadb", "d" * 64))


def test_import_merges_rows_like_charm_score_and_twice_changes_nothing(tmp_path):
    out = OutputDir.open(tmp_path / "out", create=True)
    out.write_part([_ok("/lib/a.jpg", sha="a" * 64, score=0.25), _err("/lib/b.jpg")])
    out.write_part([_ok("/lib/c.jpg", sha="c" * 64, score=0.75)])
    with Store(tmp_path / "charm.db") as store:
        for _ in range(2):
            summary = import_dir(out, store)
            assert (summary.scores, summary.failures, summary.files) == (2, 1, 2)
        photo = store.photo_by_path("/lib/a.jpg")
        assert (photo["sha256"], photo["size"], photo["mtime_ns"], photo["make"], photo["camera_model"]) == (
            "a" * 64, 10, 20, "FUJIFILM", "X100")  # fmt: skip
        score = store.score_for("a" * 64, "aadb", "c" * 64, "max1024")
        assert score["score"] == 0.25 and score["embedding"] == b"\x00\x3c" * 4
        failure = store.failure_for("/lib/b.jpg")
        assert failure["reason"] == "corrupt JPEG" and failure["options"] == ScoreOptions(max_pixels=100).failure_options
        stats = store.stats()
        assert (stats["photos"], stats["scores"], len(stats["failures"])) == (2, 2, 1)


def test_usage_errors_answer_before_torch_or_ray(cli, tmp_path):
    for args, words in (
        (["cluster", "score", str(tmp_path / "nope"), "-o", str(tmp_path / "o")], "no such file or folder"),
        (["cluster", "score", str(tmp_path), "-o", str(tmp_path / "o"), "--address", "bad address"], "--address"),
        (["cluster", "score", str(tmp_path), "-o", str(tmp_path / "o"), "--address", "auto", "--num-cpus", "2"],
         "--num-cpus"),
        (["cluster", "import", str(tmp_path / "nope")], "no such output folder"),
    ):  # fmt: skip
        result = cli(*args)
        assert result.exit_code == 2 and words in result.stderr, result.stderr
    code = (
        "import sys\nfrom charmcli.cli import app\nfrom typer.testing import CliRunner\n"
        f"r = CliRunner().invoke(app, ['cluster', 'score', {str(tmp_path / 'nope')!r}, '-o', 'x'])\n"
        "print(r.exit_code, sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["2", "[]"]


def _dedupe_rows(rows: list[dict], schema: pa.Schema = SCHEMA) -> list[tuple]:
    table = dedupe(pa.Table.from_pylist(rows, schema=schema))
    return [(r["path"], r["status"], r.get("error") or r.get("score")) for r in table.to_pylist()]


def test_dedupe_judges_each_row_against_the_best_so_far():
    """Whatever order the parts come in: ok beats error, then the newer row; a tie keeps the first."""
    later = T0 + timedelta(hours=1)
    assert _dedupe_rows([_ok("/a", score=0.1), _err("/a", when=later)]) == [("/a", "ok", 0.1)]
    assert _dedupe_rows([_ok("/a", score=0.9, when=later), _ok("/a", score=0.1)]) == [("/a", "ok", 0.9)]
    assert _dedupe_rows([_ok("/a", score=0.1), _ok("/a", score=0.9, when=later)]) == [("/a", "ok", 0.9)]
    assert _dedupe_rows([_ok("/a", score=0.3), _ok("/a", score=0.4), _err("/b"), _ok("/a", score=0.5)]) == [
        ("/a", "ok", 0.3), ("/b", "error", "corrupt JPEG")]  # fmt: skip
    no_stamps = pa.schema([f for f in SCHEMA if f.name != "written_at"])
    rows = [{k: v for k, v in r.items() if k != "written_at"} for r in (_err("/a"), _ok("/a", score=0.2), _err("/a"))]
    assert _dedupe_rows(rows, no_stamps) == [("/a", "ok", 0.2)]


def test_unreadable_parts_are_one_line_warnings_of_at_most_300_characters(tmp_path):
    out = OutputDir.open(tmp_path / ("deep-" * 24) / "out", create=True)
    assert out.read(["path", "score"])[0].column_names == ["path", "score"]  # nothing yet: the columns asked
    out.write_part([_ok("/a.jpg")])
    bad = Path(out.join("part-0-broken.parquet"))
    bad.write_bytes(b"not parquet at all, not even its magic bytes")
    table, warnings = out.read()
    assert table.column("path").to_pylist() == ["/a.jpg"]
    prefix = f"skipped unreadable {bad}: "
    assert 200 < len(prefix) < 270  # so the 300-character cut falls inside pyarrow's reason
    (warning,) = warnings
    assert len(warning) == 300 and warning.startswith(prefix)
    # pyarrow's words, whichever reader it used, on one line
    assert warning[len(prefix):].startswith(("Parquet magic bytes not found", "Could not open Parquet input source"))
    Path(out.join("_charm_job.json")).write_text("{not json")
    try:
        json.loads("{not json")
    except ValueError as exc:
        why = " ".join(str(exc).split())
    with pytest.raises(OutputError) as err:
        out.read_job()
    assert str(err.value) == f"{out.uri}/_charm_job.json is unreadable: {why}"


def test_urls_are_listed_once_each_in_input_order(monkeypatch):
    """An object-store folder given twice, or overlapping another, yields each photo once."""
    from charmcli.cluster import inputs

    listed = {"s3://b/a": ["s3://b/a/1.jpg", "s3://b/a/2.jpg"], "s3://b/a/2.jpg": ["s3://b/a/2.jpg"]}
    monkeypatch.setattr(inputs, "_list_url", lambda url: listed[url])
    got = list_inputs(["s3://b/a/2.jpg", "s3://b/a", "s3://b/a"])
    assert got.paths == ["s3://b/a/2.jpg", "s3://b/a/1.jpg"] and got.problems == []


def test_url_listing_skips_hidden_parts_and_other_files_and_says_why_it_cannot_list(tmp_path):
    lib = tmp_path / "lib"
    for name in ("X.jpg", "sub/c.jpg", ".hidden/a.jpg", "sub/.b.jpg", "notes.txt"):
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_bytes(b"x")
    assert _list_url(lib.as_uri()) == [(lib / "X.jpg").as_uri(), (lib / "sub" / "c.jpg").as_uri()]
    assert _list_url((lib / "X.jpg").as_uri()) == [(lib / "X.jpg").as_uri()]
    with pytest.raises(InputError) as err:
        _list_url((tmp_path / "nope").as_uri())
    assert str(err.value) == f"no such file or folder: {(tmp_path / 'nope').as_uri()}"
    with pytest.raises(InputError) as err:
        list_inputs(["nosuch://bucket/x"])
    assert str(err.value) == "cannot list nosuch://bucket/x: Unrecognized filesystem type in URI: nosuch://bucket/x"


def test_a_manifest_keeps_names_that_are_not_utf8(tmp_path):
    manifest = tmp_path / "list.txt"
    manifest.write_bytes(b"# a comment\ncaf\xe9.jpg\n\n  \xc3\xa9t\xc3\xa9.jpg  \n")
    got = list_inputs([manifest]).paths
    assert [os.fsencode(p) for p in got] == [os.fsencode(tmp_path) + b"/caf\xe9.jpg", os.fsencode(tmp_path) + "/été.jpg".encode()]
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(InputError) as err:
        list_inputs([broken])
    assert str(err.value).startswith(f"cannot read manifest {broken}: ") and "\n" not in str(err.value)


def test_a_url_whose_path_holds_a_scheme_separator_keeps_its_own_scheme(tmp_path):
    (tmp_path / "a:" / "b").mkdir(parents=True)
    (tmp_path / "a:" / "b" / "p.jpg").write_bytes(b"x")
    assert _list_url(f"file://{tmp_path}/a://b") == [f"file://{tmp_path}/a://b/p.jpg"]


def test_a_problem_met_twice_is_reported_once(tmp_path):
    (tmp_path / "lib").mkdir()
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "lib" / "dangling.jpg")
    got = list_inputs([tmp_path / "lib", tmp_path / "lib"])
    assert got.paths == [] and [p for p, _why in got.problems] == [str(tmp_path / "lib" / "dangling.jpg")]


def test_manifest_entries_urls_kept_local_paths_normalised_and_its_errors_exact(tmp_path):
    manifest = tmp_path / "m" / "list.txt"
    manifest.parent.mkdir()
    manifest.write_text("s3://bucket/x.jpg\nsub/../a.jpg\n/abs//b.jpg\nfile:///c%20d.jpg\n")
    assert list_inputs([manifest]).paths == ["s3://bucket/x.jpg", str(tmp_path / "m" / "a.jpg"), "/abs/b.jpg", "/c d.jpg"]
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    try:
        pq.read_table(broken)
    except Exception as exc:  # what pyarrow says, in one line
        why = " ".join(str(exc).split())
    with pytest.raises(InputError) as err:
        list_inputs([broken])
    assert str(err.value) == f"cannot read manifest {broken}: {why}"


def test_a_part_written_before_the_precision_column_reads_as_fp32(tmp_path):
    from charmcli.cluster.output import score_of

    out = OutputDir.open(tmp_path / "out", create=True)
    old = pa.table({"path": ["/old.jpg"], "status": ["ok"], "sha256": ["s"], "model": ["aadb"],
                    "checkpoint_id": ["c"], "preprocess": ["max1024"], "score": [0.5],
                    "written_at": pa.array([datetime.now(timezone.utc)], pa.timestamp("us", tz="UTC"))})  # fmt: skip
    pq.write_table(old, out.join("part-old.parquet"))
    table, warnings = out.read()
    assert warnings == [] and table.column("precision").to_pylist() == [None]
    assert score_of(table.to_pylist()[0]).precision == "fp32"
