"""Where the model comes from, at the command line: the authors' files, env vars, no network."""

from __future__ import annotations

import json

import pytest

from charmcli.model import registry as reg

from shared_paths import CONFORMANCE

AUTHORS = CONFORMANCE / "authors"
POS = CONFORMANCE / "dino_small_pos.pt"


@pytest.fixture
def authors_file():
    path = AUTHORS / "checkpoints" / "tad66k_charm.pth"
    if not path.is_file():
        pytest.skip(f"{AUTHORS} is absent (the shared test data sits beside the repository)")
    return path


@pytest.fixture
def unreachable_hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(reg, "_REACHABLE", {})


def _one_line(result) -> str:
    text = result.stderr.strip()
    assert result.exit_code == 2, text
    assert text.count("\n") == 0 and "Traceback" not in text and text.startswith("charm: error:"), text
    return text


def test_authors_checkpoint_scores_with_its_relu_head(cli, library, authors_file):
    result = cli("score", library / "real", "--checkpoint", authors_file, "--pos-embed", POS, "--device", "cpu",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(r["status"] == "scored" and r["model"] == "tad66k" for r in rows)
    summary = json.loads((AUTHORS / "summary.json").read_text())
    lo, hi = (summary["checkpoints"]["tad66k"][k] for k in ("score_min", "score_max"))
    # raw ReLU outputs on the 1..10 scale (x10 would put them at 20..30)
    assert all(1 < r["score"] < 10 for r in rows), (lo, hi, [r["score"] for r in rows])
    shown = json.loads(cli("show", library / "real" / "DSCN0010.jpg", "--json").stdout)["scores"][0]
    assert shown["score"] == pytest.approx(next(r["score"] for r in rows if r["path"].endswith("DSCN0010.jpg")))
    assert shown["head"] == "1 output, ReLU -> raw output (no factor)"


def test_env_vars_set_the_local_files_once(cli, library, authors_file, monkeypatch):
    monkeypatch.setenv("CHARM_CHECKPOINT", str(authors_file))
    monkeypatch.setenv("CHARM_POS_EMBED", str(POS))
    result = cli("score", library / "real", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.stderr
    assert {json.loads(line)["model"] for line in result.stdout.splitlines()} == {"tad66k"}
    monkeypatch.setenv("CHARM_CHECKPOINT", str(library / "nope.pth"))
    assert "nope.pth" in _one_line(cli("score", library / "real", "--device", "cpu"))


def test_unreachable_hub_answers_with_one_line(cli, library, unreachable_hub):
    text = _one_line(cli("score", library, "--device", "cpu"))
    assert "aadb_charm.pth" in text and "unreachable" in text and "charm models download aadb" in text
    text = _one_line(cli("models", "download", "koniq10k"))
    assert "koniq10k_charm.pth" in text and "charm models download" not in text


def test_checkpoint_alone_names_the_position_table(cli, library, authors_file, unreachable_hub):
    text = _one_line(cli("score", library, "--checkpoint", authors_file, "--device", "cpu"))
    assert "dino_small_pos.pt" in text and "--pos-embed" in text and "CHARM_POS_EMBED" in text
