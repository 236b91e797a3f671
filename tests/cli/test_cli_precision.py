"""``--precision`` through the CLI: a bf16 score stays near fp32 and is never served as it."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import make_photo

from charmcli.store import Store

SMALL = ["--max-side", "256"]
#: 0.5 % of aadb's 0..1 scale: the tolerance tests/model/test_reduced_precision.py states
TOL = 0.005


def _scores(result) -> dict[str, tuple[str, float]]:
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {Path(r["path"]).name: (r["status"], r["score"]) for r in rows}


def test_bf16_is_stored_apart_from_fp32_and_stays_within_tolerance(cli, tmp_path, model_args):
    folder = tmp_path / "photos"
    for i in range(3):
        make_photo(folder / f"p{i}.jpg", seed=i, size=(160 + 40 * i, 120))
    db = tmp_path / "charm.db"
    bf16 = cli("score", folder, *model_args, *SMALL, "--db", db, "--precision", "bf16", "--json")
    assert bf16.exit_code == 0, bf16.stderr
    assert ", bf16)" in bf16.stderr  # the summary names the precision
    fp32 = cli("score", folder, *model_args, *SMALL, "--db", db, "--precision", "fp32", "--json")
    assert fp32.exit_code == 0, fp32.stderr
    a, b = _scores(bf16), _scores(fp32)
    assert {s for s, _ in a.values()} == {s for s, _ in b.values()} == {"scored"}  # fp32 did not reuse bf16
    assert all(abs(a[n][1] - b[n][1]) <= TOL for n in a)
    assert any(a[n][1] != b[n][1] for n in a)  # bf16 really ran in bf16
    again = cli("score", folder, *model_args, *SMALL, "--db", db, "--precision", "bf16", "--json")
    assert {s for s, _ in _scores(again).values()} == {"cached"}
    assert {n: v for n, (_, v) in _scores(again).items()} == {n: v for n, (_, v) in a.items()}
    with Store(db) as store:
        rows = [r for sha in {store.photo_by_path(str(p))["sha256"] for p in folder.iterdir()}
                for r in store.scores_for_sha(sha)]  # fmt: skip
    assert sorted(r["precision"] for r in rows) == ["bf16"] * 3 + ["fp32"] * 3
    top = cli("top", "--db", db, "--json")
    ranked = json.loads(top.stdout)
    assert len({r["precision"] for r in ranked}) == 1  # never a mix
    assert "not mixed in" in top.stderr


def test_exact_means_fp32_and_refuses_bf16(cli, tmp_path, model_args):
    folder = tmp_path / "photos"
    make_photo(folder / "a.jpg", seed=1, size=(128, 96))
    db = tmp_path / "charm.db"
    refused = cli("score", folder, *model_args, "--db", db, "--exact", "--precision", "bf16")
    assert refused.exit_code == 2 and "--exact means" in refused.stderr
    assert refused.stderr.strip().count("\n") == 0
    ok = cli("score", folder, *model_args, "--db", db, "--exact", "--profile")
    assert ok.exit_code == 0, ok.stderr
    assert "precision aadb: fp32 (auto: --exact means fp32)" in ok.stderr
    with Store(db) as store:
        (row,) = store.scores_for_sha(store.photo_by_path(str(folder / "a.jpg"))["sha256"])
    assert row["precision"] == "fp32" and row["preprocess"] == "exact"


def test_auto_says_what_it_chose(cli, tmp_path, model_args):
    from charmcli.model.precision import resolve_for_run

    folder = tmp_path / "photos"
    make_photo(folder / "a.jpg", seed=2)
    result = cli("score", folder, *model_args, *SMALL, "--db", tmp_path / "c.db", "--profile")
    assert result.exit_code == 0, result.stderr
    chosen = resolve_for_run("auto", "cpu")  # this machine's answer, by the rule the unit tests pin
    assert f"precision aadb: {chosen.describe()}" in result.stderr
    shown = json.loads(cli("show", folder / "a.jpg", "--db", tmp_path / "c.db", "--json").stdout)
    assert [s["precision"] for s in shown["scores"]] == [chosen.precision]
