"""EAT through the CLI, and several models in one pass (one decode per file)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import charmcli.work as work_mod
from charmcli.model.eat.preprocess import EatPreprocess
from charmcli.model.registry import HUB_REPO, MODELS

from shared_paths import CONFORMANCE, EAT_CONFORMANCE, PHOTOS, eat_fixture

TOL = 1e-4
AVA_FILE = MODELS["eat-ava"].filename
TAD_FILE = MODELS["eat-tad66k"].filename


def events(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
def eat_models_dir(tmp_path, monkeypatch) -> Path:
    """The authors' file names in a private models folder, pointing at the small fixtures."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / AVA_FILE).symlink_to(eat_fixture("ava")[0])
    (folder / TAD_FILE).symlink_to(eat_fixture("tad66k")[0])
    monkeypatch.setenv("CHARM_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def hub_with_small_charm(monkeypatch, tmp_path) -> None:
    """An offline hub cache holding the small official-format aadb/para checkpoints."""
    ckpts = CONFORMANCE / "checkpoints"
    if not (ckpts / "aadb_charm.pth").is_file():
        pytest.skip("shared conformance checkpoints are absent")
    root = tmp_path / "hf"
    repo = root / "hub" / ("models--" + HUB_REPO.replace("/", "--"))
    rev = "0" * 40
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    for name in ("aadb_charm.pth", "para_charm.pth"):
        (snap / name).symlink_to(ckpts / name)
    (snap / "dino_small_pos.pt").symlink_to(CONFORMANCE / "dino_small_pos.pt")
    monkeypatch.setenv("HF_HOME", str(root))


@pytest.fixture
def small_library(tmp_path) -> Path:
    """Four real photos (alpha, greyscale, EXIF orientation, small) copied into a tmp folder."""
    root = tmp_path / "lib"
    root.mkdir()
    for name in ("chelsea_alpha_vignette.png", "exif_orientation/landscape_6.jpg", "FujiFilm DS-7 (1).jpg",
                 "openprinting_4x6-landscape-photo-sgray.png"):  # fmt: skip
        shutil.copy2(PHOTOS / name, root / Path(name).name)
    return root


@pytest.mark.parametrize("variant", ["ava", "tad66k"])
def test_score_exact_reproduces_the_official_outputs(cli, variant):
    """`charm score --model eat-… --checkpoint … --arch-config … --exact` on the fixture photos."""
    ckpt, config = eat_fixture(variant)
    summary = json.loads((EAT_CONFORMANCE / "summary.json").read_text())
    ref = next(v for v in summary["variants"] if v["name"] == f"eat_mini_{variant}")
    files = [PHOTOS / im["file"] for im in ref["images"]]
    result = cli("score", *files, "--model", f"eat-{variant}", "--checkpoint", ckpt, "--arch-config", config,
                 "--exact", "--device", "cpu", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    got = {e["path"]: e for e in events(result)}
    factor = 10.0 if variant == "tad66k" else 1.0
    for path, im in zip(files, ref["images"], strict=True):
        e = got[str(path)]
        assert e["model"] == f"eat-{variant}" and e["status"] == "scored"
        assert abs(e["score"] - factor * im["score"]) <= factor * TOL, im["file"]
    # a second run is served from the cache, with the same numbers
    again = cli("score", *files, "--model", f"eat-{variant}", "--checkpoint", ckpt, "--arch-config", config,
                "--exact", "--device", "cpu", "--json")  # fmt: skip
    assert {e["path"]: (e["status"], e["score"]) for e in events(again)} == {
        p: ("cached", e["score"]) for p, e in got.items()
    }


def test_the_raw_outputs_are_stored_for_show(cli, tmp_path, small_library):
    ckpt, config = eat_fixture("ava")
    photo = small_library / "chelsea_alpha_vignette.png"
    assert cli("score", photo, "-m", "eat-ava", "--checkpoint", ckpt, "--arch-config", config, "--exact",
               "--device", "cpu", "-q").exit_code == 0  # fmt: skip
    shown = cli("show", photo, "--json")
    assert shown.exit_code == 0, shown.stderr
    (row,) = json.loads(shown.stdout)["scores"]
    ref = json.loads((EAT_CONFORMANCE / "summary.json").read_text())["variants"][0]["images"][1]
    assert ref["file"] == "chelsea_alpha_vignette.png"
    assert max(abs(a - b) for a, b in zip(row["outputs"], ref["logits"], strict=True)) <= TOL
    assert row["model"] == "eat-ava" and row["n_tokens"] is None and row["input_size"] == [224, 224]
    text = cli("show", photo, env={"COLUMNS": "200"})
    assert text.exit_code == 0 and "eat-ava" in text.stdout and "None" not in text.stdout
    explain = cli("show", photo, "--explain", tmp_path / "cells.png")
    assert explain.exit_code == 1 and "no score with kept cells" in explain.stderr
    assert not (tmp_path / "cells.png").exists()


def test_usage_errors_answer_before_any_model_loads(cli, tmp_path, small_library):
    ckpt, config = eat_fixture("ava")
    cases = [
        (["-m", "eat-avaa"], "unknown model"),
        (["-m", "aadb", "--arch-config", config], "--arch-config is for EAT"),
        (["-m", "eat-ava", "--arch-config", tmp_path / "none.yaml"], "no such file"),
        (["-m", "eat-ava", "-m", "eat-tad66k", "--checkpoint", ckpt], "both need one"),
        (["-m", "aadb", "-m", "para", "--checkpoint", ckpt], "none was named"),
        (["-m", "aadb", "-m", "eat-ava", "--checkpoint", ckpt, "--pos-embed", ckpt], "--pos-embed goes with"),
    ]
    for args, needle in cases:
        result = cli("score", small_library, *args, "--device", "cpu")
        assert result.exit_code == 2, (args, result.stderr)
        assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_missing_eat_weights_is_one_line_with_the_source(cli, tmp_path, monkeypatch, small_library):
    monkeypatch.setenv("CHARM_MODELS_DIR", str(tmp_path / "empty"))
    result = cli("score", small_library, "-m", "eat-tad66k", "--device", "cpu")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "drive.google.com" in line and TAD_FILE in line


def test_models_lists_both_families(cli, eat_models_dir):
    rows = {r["name"]: r for r in json.loads(cli("models", "--json").stdout)}
    assert rows["eat-ava"]["family"] == rows["eat-tad66k"]["family"] == "eat"
    assert rows["aadb"]["family"] == "charm"
    assert rows["eat-ava"]["cached"] is True and rows["eat-ava"]["file"] == AVA_FILE
    # one training set, one scale, whichever family learned it
    assert rows["eat-tad66k"]["scale"] == rows["tad66k"]["scale"] and rows["eat-ava"]["scale"] == rows["ava"]["scale"]


def _count_decodes(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = work_mod.decode_image

    def counting(data, *args, **kwargs):
        seen.append(kwargs.get("name", "?"))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(work_mod, "decode_image", counting)
    return seen


def _count_eat_prepares(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = EatPreprocess.__call__

    def counting(self, image):
        seen.append(self.resample)
        return real(self, image)

    monkeypatch.setattr(EatPreprocess, "__call__", counting)
    return seen


def test_many_models_decode_each_file_once_and_score_like_single_runs(
    cli, tmp_path, monkeypatch, eat_models_dir, hub_with_small_charm, small_library
):
    _, config = eat_fixture("ava")
    models = ["aadb", "eat-ava", "eat-tad66k"]
    decodes = _count_decodes(monkeypatch)
    prepares = _count_eat_prepares(monkeypatch)
    args = ["--arch-config", config, "--device", "cpu", "--json"]
    multi = cli("score", small_library, *[a for m in models for a in ("-m", m)], *args,
                "--db", tmp_path / "multi.db")  # fmt: skip
    assert multi.exit_code == 0, multi.stderr
    files = sorted(str(p) for p in small_library.iterdir())
    assert sorted(decodes) == files  # each file decoded exactly once for three models
    assert sorted(prepares) == sorted(["bicubic", "bilinear"] * len(files))  # once per distinct preprocessing
    together = {e["path"]: e["scores"] for e in events(multi)}
    assert sorted(together) == files and all(set(s) == set(models) for s in together.values())
    for model in models:
        decodes.clear()
        alone = cli("score", small_library, "-m", model, *([] if model == "aadb" else args[:2]), *args[2:],
                    "--db", tmp_path / f"{model}.db")  # fmt: skip
        assert alone.exit_code == 0, alone.stderr
        assert len(decodes) == len(files)
        for e in events(alone):
            assert e["score"] == pytest.approx(together[e["path"]][model], abs=1e-6), (model, e["path"])


def test_a_partly_cached_multi_model_run_scores_only_what_is_missing(
    cli, tmp_path, monkeypatch, eat_models_dir, hub_with_small_charm, small_library
):
    _, config = eat_fixture("ava")
    first = cli("score", small_library, "-m", "eat-ava", "--arch-config", config, "--device", "cpu", "-q")
    assert first.exit_code == 0, first.stderr
    prepares = _count_eat_prepares(monkeypatch)
    both = cli("score", small_library, "-m", "eat-ava", "-m", "eat-tad66k", "--arch-config", config,
               "--device", "cpu", "--json")  # fmt: skip
    assert both.exit_code == 0, both.stderr
    assert set(prepares) == {"bilinear"}  # eat-ava came from the cache
    assert all(e["status"] == "scored" and set(e["scores"]) == {"eat-ava", "eat-tad66k"} for e in events(both))
    third = cli("score", small_library, "-m", "eat-ava", "-m", "eat-tad66k", "--arch-config", config,
                "--device", "cpu", "--json")  # fmt: skip
    assert {e["status"] for e in events(third)} == {"cached"}


def test_a_cached_multi_model_run_keeps_each_models_score(cli, tmp_path, hub_with_small_charm, small_library):
    """Two models of one family and preprocessing: a second run, all cached without opening a file,
    gives each model back its own score and the first run's line whole."""
    run = ["score", small_library, "-m", "aadb", "-m", "para", "--device", "cpu", "--json"]
    first = cli(*run)
    assert first.exit_code == 0, first.stderr
    scored = events(first)
    assert all(e["status"] == "scored" and set(e["scores"]) == {"aadb", "para"} for e in scored)
    assert all(e["scores"]["aadb"] != e["scores"]["para"] for e in scored)  # two models, told apart
    again = cli(*run)
    assert again.exit_code == 0, again.stderr
    cached = events(again)
    assert [e["status"] for e in cached] == ["cached"] * len(scored)
    for before, after in zip(scored, cached, strict=True):
        assert {**after, "status": "scored"} == before, before["path"]


def test_equal_preprocessing_is_prepared_once(cli, tmp_path, monkeypatch, eat_models_dir, small_library):
    """Two models with the same preprocessing share one prepared input per file."""
    monkeypatch.setitem(MODELS, "eat-tad66k", replace(MODELS["eat-tad66k"], resample="bicubic"))
    _, config = eat_fixture("ava")
    prepares = _count_eat_prepares(monkeypatch)
    result = cli("score", small_library, "-m", "eat-ava", "-m", "eat-tad66k", "--arch-config", config,
                 "--device", "cpu", "-q")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert len(prepares) == len(list(small_library.iterdir()))


def test_compare_show_top_and_the_cull_commands_handle_both_families(
    cli, tmp_path, eat_models_dir, hub_with_small_charm, small_library
):
    _, config = eat_fixture("ava")
    files = sorted(small_library.iterdir())
    cmp = cli("compare", *files, "-m", "eat-ava", "-m", "aadb", "--arch-config", config, "--device", "cpu", "--json")
    assert cmp.exit_code == 0, cmp.stderr
    data = json.loads(cmp.stdout)
    assert data["models"] == ["eat-ava", "aadb"] and data["model"] == "eat-ava"
    by_rank = sorted(data["images"], key=lambda i: i["rank"])
    eat_scores = [i["scores"]["eat-ava"] for i in by_rank]
    assert eat_scores == sorted(eat_scores, reverse=True)  # ranked by the first model
    assert all(set(i["scores"]) == {"eat-ava", "aadb"} for i in data["images"])

    table = cli("compare", *files, "-m", "eat-ava", "-m", "aadb", "--arch-config", config, "--device", "cpu",
                env={"COLUMNS": "200"})  # fmt: skip
    assert "eat-ava" in table.stdout and "aadb" in table.stdout and "Winner" in table.stdout

    shown = json.loads(cli("show", files[0], "--json").stdout)
    assert {s["model"] for s in shown["scores"]} == {"eat-ava", "aadb"}

    for model in ("eat-ava", "aadb"):
        rows = json.loads(cli("top", "10", "--model", model, "--json").stdout)
        ranked = [r["score"] for r in rows]
        assert len(ranked) == len(files) and ranked == sorted(ranked, reverse=True)
        want = {i["path"]: i["scores"][model] for i in data["images"]}
        assert all(r["model"] == model and r["score"] == pytest.approx(want[r["path"]]) for r in rows)

    want = {i["path"]: i["scores"]["eat-ava"] for i in data["images"]}
    groups = cli("groups", "--model", "eat-ava", "--all", "--json")
    assert groups.exit_code == 0, groups.stderr
    members = [m for g in json.loads(groups.stdout) for m in g["members"]]
    assert {m["path"]: m["score"] for m in members} == pytest.approx(want)
    rate = cli("rate", "--model", "eat-ava", "--dry-run", "--json")
    assert rate.exit_code == 0, rate.stderr
    rated = json.loads(rate.stdout)
    assert rated["model"] == "eat-ava" and len(rated["photos"]) == len(files)
    report = cli("report", "--model", "eat-ava", "--out", tmp_path / "report")
    assert report.exit_code == 0, report.stderr
    assert (tmp_path / "report" / "index.html").is_file()
