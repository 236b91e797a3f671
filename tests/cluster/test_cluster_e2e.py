"""``charm cluster score`` end to end on a local Ray (2 CPUs): real photos, bad files, a killed job.

One compact scenario, because each Ray start costs tens of seconds on a shared 2-core machine:

1. ``charm score`` scores the folder: the reference scores and error messages;
2. ``charm cluster score`` runs until a test hook makes every writer after the third part file
   block with its temp file half-written; the whole job (driver + local Ray) is then SIGKILLed;
3. a re-run completes the job: one row per image, scores equal ``charm score``'s (≤ 1e-5), bad
   files are error rows with the same messages, nothing is written twice;
4. a third run finds nothing to do and adds nothing (without starting Ray);
5. ``charm cluster import`` + ``charm top --json`` list the photos with those scores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shared_paths import PHOTOS, conformance_model_args

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

GOOD = ["DSCN0010.jpg", "FujiFilm DS-7 (1).jpg", "Nikon Coolpix P7000.webp", "exif_orientation/landscape_6.jpg"]
BAD = ["empty.jpg", "truncated_half.jpg", "not_an_image.jpg", "zero_width.gif"]  # charm score fails each
HANG_AFTER = 3


def _cluster(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    code = "import sys; from charmcli.cli import main; sys.argv = ['charm', *sys.argv[1:]]; main()"
    return subprocess.Popen([sys.executable, "-c", code, "cluster", "score", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)  # fmt: skip


def _rows(out: Path) -> list[dict]:
    rows = []
    for part in sorted(out.glob("part-*.parquet")):
        rows += pq.read_table(part).to_pylist()
    return rows


def test_cluster_score_resume_after_kill_and_import(cli, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in GOOD:
        shutil.copy(PHOTOS / name, lib / Path(name).name)
    for name in BAD:
        shutil.copy(PHOTOS / "bad" / name, lib / name)
    model = conformance_model_args("--precision", "fp32")  # one number format: the paths must agree to 1e-5
    total = len(GOOD) + len(BAD)

    ref = cli("score", lib, *model, "--db", tmp_path / "ref.db", "--json")
    events = {e["path"]: e for e in map(json.loads, ref.stdout.splitlines())}
    assert len(events) == total and sum(e["status"] == "scored" for e in events.values()) == len(GOOD)

    out = tmp_path / "out"
    args = [str(lib), "--output", str(out), *model, "--num-cpus", "2", "--rows-per-file", "1"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "CHARM_CLUSTER_TEST_HANG_AFTER_PARTS": str(HANG_AFTER)}
    killed = _cluster(args, env, start_new_session=True)
    try:
        deadline = time.monotonic() + 900  # a guard against a hang, not a timing assumption
        while time.monotonic() < deadline and killed.poll() is None:
            parts = list(out.glob("part-*.parquet"))
            half = [p for p in out.glob(".tmp-*") if "hook-ticket" not in p.name]
            if len(parts) == HANG_AFTER and half:
                break
            time.sleep(0.2)
        assert killed.poll() is None, killed.communicate()
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # the driver and the local Ray it started
        killed.communicate()
    after_kill = _rows(out)
    assert len(after_kill) == HANG_AFTER == len({r["path"] for r in after_kill})
    assert [p for p in out.glob(".tmp-*") if "hook-ticket" not in p.name]  # a half-written file is left

    env.pop("CHARM_CLUSTER_TEST_HANG_AFTER_PARTS")
    resumed = _cluster(args, env)
    _stdout, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 1, stderr  # 1: some files failed (4 bad files, at most 3 rows before the kill)
    before_kill = {r["path"] for r in after_kill}
    assert f"{total - HANG_AFTER} to score, {HANG_AFTER} already" in stderr
    rows = _rows(out)
    assert sorted(r["path"] for r in rows) == sorted(events)  # exactly one row per image
    assert not list(out.glob(".tmp-*"))
    for row in rows:
        ref_event = events[row["path"]]
        if ref_event["status"] == "scored":
            assert row["status"] == "ok" and row["error"] is None
            assert abs(row["score"] - ref_event["score"]) <= 1e-5
            assert (row["sha256"], row["width"], row["height"]) == (
                ref_event["sha256"], ref_event["width"], ref_event["height"])  # fmt: skip
            assert row["embedding"] and len(row["outputs"]) == 1 and row["n_tokens"] > 1
        else:
            assert row["status"] == "error" and row["score"] is None
            assert row["error"] == ref_event["error"]  # charm's own one-line message
            if row["path"] not in before_kill:  # which rows Ray wrote before the kill is its choice
                assert f"error {row['path']}: {row['error']}" in stderr

    files_before = sorted(p.name for p in out.glob("part-*.parquet"))
    again = cli("cluster", "score", *args, "--json")
    assert again.exit_code == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["scored"], summary["failed"], summary["already"], summary["already_failed"]) == (
        0, 0, total, len(BAD))  # fmt: skip
    assert "--retry-failed retries them" in again.stderr
    assert sorted(p.name for p in out.glob("part-*.parquet")) == files_before

    db = tmp_path / "cluster.db"
    imported = cli("cluster", "import", out, "--db", db, "--json")
    assert json.loads(imported.stdout)["scores"] == len(GOOD), imported.stderr
    top = cli("top", "10", "--db", db, "--json")
    listed = json.loads(top.stdout)
    expected = sorted((e for e in events.values() if e["status"] == "scored"), key=lambda e: -e["score"])
    assert [r["path"] for r in listed] == [e["path"] for e in expected]
    assert [r["score"] for r in listed] == pytest.approx([e["score"] for e in expected], abs=1e-5)
