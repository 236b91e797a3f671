"""``charm score`` end to end: JSON shape, incremental reruns, moves, edits, bad files, exit codes."""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
from cli_helpers import make_photo

import charmcli.pipeline as pipeline_mod
import charmcli.work as work_mod
from charmcli.library.scan import SUPPORTED_EXTENSIONS
from charmcli.pipeline import FileEvent
from charmcli.store import Store

SCORE_KEYS = {"path", "status", "score", "model", "error", "width", "height", "warnings", "sha256", "reused", "known_failure",
              "flags", "measures"}
SMALL = ["--max-side", "256"]  # fast: short token path on the 2-layer checkpoint


def lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def forbid(monkeypatch, *names: str) -> None:
    """Make the pipeline's file reading/decoding explode: proves a run never touched them."""

    def boom(*args, **kwargs):
        raise AssertionError("the file should not have been read or decoded")

    for name in names:
        monkeypatch.setattr(work_mod, name, boom)


def record_events(monkeypatch) -> list[list[FileEvent]]:
    """The events each ``charm score`` run rendered (copies), one list per run, in order."""
    runs: list[list[FileEvent]] = []
    real = pipeline_mod.Pipeline.run

    def recording(self, paths):
        runs.append(seen := [])
        for event in real(self, paths):
            seen.append(copy.deepcopy(event))
            yield event

    monkeypatch.setattr(pipeline_mod.Pipeline, "run", recording)
    return runs


def event_fields(*but: str) -> list[str]:
    """Every field of a :class:`FileEvent` except ``but``: a field added later is compared too."""
    names = [f.name for f in fields(FileEvent)]
    assert set(but) <= set(names)
    return [n for n in names if n not in but]


def test_first_run_scores_everything_and_json_has_the_contract_shape(cli, library, model_args):
    result = cli("score", library, *model_args, "--json")
    assert result.exit_code == 0, result.stderr
    events = lines(result)
    assert len(events) == 8
    for e in events:
        assert set(e) == SCORE_KEYS
        assert e["status"] == "scored" and e["model"] == "aadb" and e["error"] is None
        assert os.path.isabs(e["path"]) and isinstance(e["score"], float) and 0 <= e["score"] <= 1
    by_name = {Path(e["path"]).name: e for e in events}
    assert (by_name["landscape_6.jpg"]["width"], by_name["landscape_6.jpg"]["height"]) == (600, 450)  # upright
    assert (by_name["d.jpg"]["width"], by_name["d.jpg"]["height"]) == (64, 96)
    assert "8 scored, 0 cached, 0 failed" in result.stderr


def test_second_run_is_all_cached_without_reading_any_file(cli, library, model_args, monkeypatch):
    first = lines(cli("score", library, *model_args, *SMALL, "--json"))
    forbid(monkeypatch, "read_bytes", "decode_image")
    result = cli("score", library, *model_args, *SMALL, "--json")
    assert result.exit_code == 0, result.stderr
    second = lines(result)
    assert [e["status"] for e in second] == ["cached"] * 8
    assert [e["score"] for e in second] == [e["score"] for e in first]
    assert not any(e["reused"] for e in second)


def test_a_cached_event_carries_what_the_first_run_found(cli, library, model_args, monkeypatch):
    """A file found unchanged by path is not opened, yet its event (the JSON line, what a front end
    renders) says all that the scoring run said: size, content hash, every score, the measures."""
    runs = record_events(monkeypatch)
    for _ in range(2):
        assert cli("score", library, *model_args, *SMALL, "--quiet").exit_code == 0
    first, second = runs
    assert [e.status for e in first] == ["scored"] * 8 and [e.status for e in second] == ["cached"] * 8
    # the comparison compares something: no field of the scoring run is empty
    assert all(e.width and e.height and e.sha256 and e.scores and e.measures for e in first)
    same = event_fields("status")
    for scored, cached in zip(first, second, strict=True):
        assert {n: getattr(cached, n) for n in same} == {n: getattr(scored, n) for n in same}, scored.path


def test_cached_run_needs_no_model_load(cli, library, model_args, monkeypatch):
    cli("score", library, *model_args, *SMALL)

    def no_load(self):
        raise AssertionError("the model should not be loaded for a fully cached run")

    monkeypatch.setattr(pipeline_mod.ModelHandle, "_load", no_load)
    assert cli("score", library, *model_args, *SMALL).exit_code == 0


def test_fully_cached_rerun_without_checkpoint_needs_no_model(cli, library, model_args):
    """Scored with local files, then run again without --checkpoint (offline, no hub cache): nothing
    is to be scored, so the model is not needed and every score is the one stored."""
    first = lines(cli("score", library, *model_args, *SMALL, "--json"))
    result = cli("score", library, *SMALL, "--json")
    assert result.exit_code == 0, result.stderr
    again = lines(result)
    assert [e["status"] for e in again] == ["cached"] * len(first)
    assert [e["score"] for e in again] == [e["score"] for e in first]


def test_rerun_without_checkpoint_still_needs_the_model_for_a_new_photo(cli, library, model_args):
    cli("score", library, *model_args, *SMALL)
    make_photo(library / "misc" / "new.jpg", seed=9)
    result = cli("score", library, *SMALL)
    assert result.exit_code == 2
    assert "aadb_charm.pth" in result.stderr and "not in the hub cache" in result.stderr


def test_moved_renamed_and_copied_files_reuse_scores_without_decoding(cli, library, model_args, monkeypatch):
    before = {Path(e["path"]).name: e["score"] for e in lines(cli("score", library, *model_args, *SMALL, "--json"))}
    (library / "2023" / "a.jpg").rename(library / "misc" / "renamed.jpg")
    shutil.copy2(library / "2023" / "b.jpg", library / "2024" / "copy-of-b.jpg")
    forbid(monkeypatch, "decode_image")
    events = {Path(e["path"]).name: e for e in lines(cli("score", library, *model_args, *SMALL, "--json"))}
    for name, source in (("renamed.jpg", "a.jpg"), ("copy-of-b.jpg", "b.jpg")):
        assert events[name]["status"] == "cached" and events[name]["reused"]
        assert events[name]["score"] == before[source]
    assert events["renamed.jpg"]["width"] == 96  # dimensions come along with the content
    with Store(os.environ["CHARM_DB"]) as store:
        assert store.db["scores"].count == 8  # no new scores: nothing ran the model
        assert store.photo_by_path(str(library / "misc" / "renamed.jpg"))["make"] == "Canon"


def test_edited_file_is_rescored(cli, library, model_args):
    before = {Path(e["path"]).name: e for e in lines(cli("score", library, *model_args, *SMALL, "--json"))}
    target = library / "2024" / "c.jpg"
    make_photo(target, seed=99)
    os.utime(target, ns=(1, 1_000_000_000))  # a different mtime, whatever the clock resolution
    events = {Path(e["path"]).name: e for e in lines(cli("score", library, *model_args, *SMALL, "--json"))}
    assert events["c.jpg"]["status"] == "scored"
    assert events["c.jpg"]["sha256"] != before["c.jpg"]["sha256"]
    assert [e["status"] for n, e in events.items() if n != "c.jpg"] == ["cached"] * 7


def test_an_edit_that_keeps_the_mtime_is_rescored(cli, library, model_args):
    """``cp -p``, ``rsync -t``, ``touch -r`` and restores from backup keep a file's mtime: its size tells."""
    before = {Path(e["path"]).name: e for e in lines(cli("score", library, *model_args, *SMALL, "--json"))}
    target = library / "2024" / "c.jpg"
    old = target.stat()
    make_photo(target, seed=99)
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert target.stat().st_mtime_ns == old.st_mtime_ns and target.stat().st_size != old.st_size
    events = {Path(e["path"]).name: e for e in lines(cli("score", library, *model_args, *SMALL, "--json"))}
    assert events["c.jpg"]["status"] == "scored"
    assert events["c.jpg"]["sha256"] != before["c.jpg"]["sha256"]
    assert [e["status"] for n, e in events.items() if n != "c.jpg"] == ["cached"] * 7


def test_rescore_and_preprocess_are_part_of_the_key(cli, library, model_args):
    cli("score", library / "misc", *model_args, *SMALL)
    assert lines(cli("score", library / "misc", *model_args, *SMALL, "--rescore", "--json"))[0]["status"] == "scored"
    assert lines(cli("score", library / "misc", *model_args, "--max-side", "0", "--json"))[0]["status"] == "scored"
    assert lines(cli("score", library / "misc", *model_args, "--exact", "--json"))[0]["status"] == "scored"
    with Store(os.environ["CHARM_DB"]) as store:
        rows = store.db.query("SELECT preprocess FROM scores ORDER BY preprocess")
        assert [r["preprocess"] for r in rows] == ["exact", "max256", "native"]


@pytest.fixture
def bad_folder(tmp_path, shared_photos) -> Path:
    folder = tmp_path / "bad"
    shutil.copytree(shared_photos / "bad", folder)
    for path in folder.iterdir():
        path.chmod(0o644)  # the shared copies are read-only; these must be editable
    return folder


def test_bad_files_one_line_each_run_continues_exit_1_and_stats_lists_them(cli, bad_folder, model_args, monkeypatch):
    result = cli("score", bad_folder, *model_args, *SMALL, "--json")
    assert result.exit_code == 1
    events = lines(result)
    # Every file with a photo extension gets one event (.jxl too: scored with the JPEG XL plugin).
    assert len(events) == sum(p.suffix.lower() in SUPPORTED_EXTENSIONS for p in bad_folder.iterdir())
    failed = [e for e in events if e["status"] == "error"]
    scored = [e for e in events if e["status"] == "scored"]
    assert len(failed) >= 8 and len(scored) >= 3  # corrupted EXIF, animated GIF, PNG-named-.jpg decode
    assert {"empty.jpg", "not_an_image.jpg", "giant-image.jpg", "decompression_bomb.gif"} <= {
        Path(e["path"]).name for e in failed
    }
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error ")]
    assert len(error_lines) == len(failed)
    assert "Traceback" not in result.stderr and all(e["error"] and "\n" not in e["error"] for e in failed)
    stats = json.loads(cli("stats", "--json").stdout)
    assert sorted(f["path"] for f in stats["failures"]) == sorted(e["path"] for e in failed)
    # Unchanged failures are not retried (the files are not even read) ...
    with monkeypatch.context() as m:
        forbid(m, "read_bytes")
        again = cli("score", bad_folder, *model_args, *SMALL, "--json")
    # Known failures: one summary line pointing to `charm stats`, no line per file, exit 0.
    assert again.exit_code == 0, again.stderr
    known = [e for e in lines(again) if e["status"] == "error"]
    assert {e["path"] for e in known} == {e["path"] for e in failed} and all(e["known_failure"] for e in known)
    assert not [line for line in again.stderr.splitlines() if line.startswith("error ")]
    summary = [line for line in again.stderr.splitlines() if "charm stats" in line]
    assert len(summary) == 1 and f"{len(failed)} file(s) failed before and did not change" in summary[0]
    assert "--retry-failed" in summary[0]
    # ... until asked, or until the file changes.
    assert cli("score", bad_folder, *model_args, *SMALL, "--retry-failed").exit_code == 1
    make_photo(bad_folder / "empty.jpg", seed=7)
    fixed = {Path(e["path"]).name: e for e in lines(cli("score", bad_folder, *model_args, *SMALL, "--json"))}
    assert fixed["empty.jpg"]["status"] == "scored"
    stats = json.loads(cli("stats", "--json").stdout)
    assert "empty.jpg" not in {Path(f["path"]).name for f in stats["failures"]}


def test_a_known_failure_carries_the_first_runs_reason_and_hash(cli, bad_folder, model_args, monkeypatch):
    """An unchanged bad file is not read again; its event repeats the recorded reason and content hash."""
    runs = record_events(monkeypatch)
    assert cli("score", bad_folder, *model_args, *SMALL, "--quiet").exit_code == 1
    assert cli("score", bad_folder, *model_args, *SMALL, "--quiet").exit_code == 0
    first, second = ({e.path: e for e in run if e.status == "error"} for run in runs)
    assert list(second) == list(first) and all(e.known_failure for e in second.values())
    assert any(e.sha256 for e in first.values()) and all(e.error for e in first.values())
    same = event_fields("known_failure")
    for path, failed in first.items():
        assert {n: getattr(second[path], n) for n in same} == {n: getattr(failed, n) for n in same}, path


def test_missing_path_is_a_one_line_usage_error(cli, tmp_path, model_args):
    result = cli("score", tmp_path / "nope", *model_args)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "no such file or folder" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pos-embed", "x.pt"], "--pos-embed needs --checkpoint"),
        (["--checkpoint", "missing.pth"], "no such file"),
        (["--device", "gpu"], "invalid --device"),
    ],
)
def test_bad_options_exit_2(cli, library, args, message):
    result = cli("score", library, *args)
    assert result.exit_code == 2 and message in result.stderr


def test_offline_hub_model_gives_one_clear_line(cli, library, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    result = cli("score", library, "--model", "aadb")
    assert result.exit_code != 0
    text = result.stderr.strip()
    assert text.count("\n") == 0 and "Traceback" not in text
    assert "offline" in text and "charm models download aadb" in text


def test_wrong_model_for_checkpoint_is_one_line(cli, library, model_args):
    result = cli("score", library, *model_args, "--model", "para")
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "aadb" in result.stderr


def test_interrupt_keeps_what_was_done_and_exits_130(cli, library, model_args, monkeypatch):
    real = pipeline_mod.Pipeline._score
    calls = {"n": 0}

    def interrupting(self, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, batch)

    with monkeypatch.context() as m:
        m.setattr(pipeline_mod.Pipeline, "_score", interrupting)
        result = cli("score", library, *model_args, *SMALL, "--json", "--workers", "1")
    assert result.exit_code == 130 and "Interrupted" in result.stderr
    done = lines(result)
    assert len(done) == 3
    with Store(os.environ["CHARM_DB"]) as store:
        assert store.db["scores"].count == 3
    rerun = lines(cli("score", library, *model_args, *SMALL, "--json"))
    assert [e["status"] for e in rerun].count("cached") == 3


def test_quiet_and_profile(cli, library, model_args):
    quiet = cli("score", library / "2023", *model_args, *SMALL, "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == ""
    prof = cli("score", library / "2024", *model_args, *SMALL, "--profile")
    for stage in ("scan", "read", "decode", "network", "store"):
        assert stage in prof.stderr


def test_single_files_and_folders_together(cli, library, model_args):
    result = cli("score", library / "misc" / "e.jpg", library / "2023", *model_args, *SMALL, "--json")
    assert [Path(e["path"]).name for e in lines(result)] == ["e.jpg", "a.jpg", "b.jpg"]
