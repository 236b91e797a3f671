"""The first hour with charm (issue 11): what a new user met, each fixed and held by a test.

Every test here runs through Typer's CliRunner on real files in tmp folders, and every check of
rendered output pins the width (``COLUMNS``), so none depends on the terminal it runs in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import make_photo
from PIL import Image
from rich.cells import cell_len

from charmcli import work

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--max-side", "256"]
NARROW, WIDE = {"COLUMNS": "80"}, {"COLUMNS": "250"}


def _json(result) -> object:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _events(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def _width_ok(text: str, width: int) -> bool:
    return all(cell_len(line) <= width for line in text.splitlines())


# -- item 3: tables designed for 80 columns, using more when there is more ---------------------


@pytest.fixture
def deep_library(tmp_path, shared_photos) -> Path:
    """Photos with long names two folders deep under a long path (what wrapped mid-word)."""
    root = tmp_path / "Pictures" / "2024 Summer holidays in the mountains (family)"
    make_photo(root / "day one" / "IMG_20240601_101500_lake_sunrise.jpg", seed=1, date="2024:06:01 10:15:00",
               make="Canon", model="Canon EOS R5")  # fmt: skip
    make_photo(root / "day two" / "IMG_20240602_183000_ridge_at_dusk.jpg", seed=2, date="2024:06:02 18:30:00",
               make="NIKON CORPORATION", model="NIKON Z 6_2")  # fmt: skip
    shutil.copy2(shared_photos / "DSCN0010.jpg", root / "day two" / "DSCN0010.jpg")
    return root


def test_top_show_stats_fit_80_columns_and_use_a_wide_terminal(cli, deep_library, model_args):
    scored = _events(cli("score", deep_library, *model_args, *SMALL, "--json"))
    assert [e["status"] for e in scored] == ["scored"] * 3
    rows = _json(cli("top", "10", "--json"))
    narrow = cli("top", "10", env=NARROW)
    assert narrow.exit_code == 0 and _width_ok(narrow.stdout, 80), narrow.stdout
    for r in rows:  # every name whole, every score unabridged
        assert Path(r["path"]).name in narrow.stdout and f"{r['score']:.4f}" in narrow.stdout
    assert "…" not in "".join(line for line in narrow.stdout.splitlines()[1:])  # rows shortened by folder only
    wide = cli("top", "10", env=WIDE)
    assert wide.exit_code == 0 and "camera" in wide.stdout and "Canon EOS R5" in wide.stdout
    for r in rows:  # relative to the folder they share, named in the title
        assert os.path.relpath(r["path"], deep_library) in wide.stdout
    assert str(deep_library) in wide.stdout.splitlines()[0]

    photo = deep_library / "day one" / "IMG_20240601_101500_lake_sunrise.jpg"
    show = cli("show", photo, env=NARROW)
    assert show.exit_code == 0 and _width_ok(show.stdout, 80), show.stdout
    info = _json(cli("show", photo, "--json"))
    s = info["scores"][0]
    for piece in (f"{s['score']:.4f}", s["checkpoint_id"][:12], s["preprocess"], f"{s['n_tokens']} tokens",
                  f"{s['input_size'][0]}x{s['input_size'][1]}", s["scored_at"][:19].replace("T", " ")):  # fmt: skip
        assert piece in show.stdout  # nothing truncated to "check…", "1024x7…"
    assert "IMG_20240601_101500_lake_sunrise.jpg" in show.stdout

    stats = cli("stats", env=NARROW)
    assert stats.exit_code == 0 and _width_ok(stats.stdout, 80), stats.stdout


def test_long_failure_paths_keep_their_names_at_80_columns(cli, deep_library, model_args):
    bad = deep_library / "day two" / "image00971_from_the_card_reader_that_broke.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert cli("score", deep_library, *model_args, *SMALL).exit_code == 1
    stats = cli("stats", env=NARROW)
    assert _width_ok(stats.stdout, 80), stats.stdout
    assert bad.name in stats.stdout  # never "image00971.j" / "pg"


# -- item 2: usage errors answer before torch is imported --------------------------------------


def _run_cli(*args: str, cwd: Path) -> tuple[int, bool, str]:
    """Run ``charm ARGS`` in a fresh interpreter; (exit code, was torch imported, stderr)."""
    code = (
        "import sys\n"
        "from charmcli.cli import main\n"
        "sys.argv = ['charm', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\nelse:\n    code = 0\n"
        "sys.stdout.write(f'\\n{code} {\"torch\" in sys.modules}\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHARM_DB": str(cwd / "charm.db")}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)  # fmt: skip
    exit_code, imported = proc.stdout.strip().splitlines()[-1].split()
    return int(exit_code), imported == "True", proc.stderr


NO_GPU = not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "aadb2"], "unknown model 'aadb2'"),
        (["--checkpoint", "notes.txt"], "not a PyTorch (.pth) or safetensors file"),
        (["--checkpoint", "notes.txt", "--pos-embed", "notes.txt"], "not a PyTorch"),
        (["--device", "gpu"], "invalid --device"),
        pytest.param(["--device", "cuda"], "no CUDA device", marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is here")),
    ],
)
def test_usage_errors_come_before_torch(tmp_path, args, message):
    (tmp_path / "lib").mkdir()
    make_photo(tmp_path / "lib" / "a.jpg", seed=1)
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    code, torch_imported, stderr = _run_cli("score", "lib", *args, cwd=tmp_path)
    assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr
    assert not torch_imported


def test_top_and_cull_usage_errors_come_before_torch(tmp_path):
    for args in (["top", "--model", "foo"], ["top", "--since", "2010-13"], ["groups", "--model", "foo"],
                 ["compare", "a.jpg"]):  # fmt: skip
        code, torch_imported, stderr = _run_cli(*args, cwd=tmp_path)
        assert code == 2 and not torch_imported, (args, stderr)


# -- item 5: nothing skipped in silence; MPO is a photo ----------------------------------------


def test_unscorable_pictures_are_named_and_counted_and_mpo_is_scored(cli, tmp_path, shared_photos, model_args):
    lib = tmp_path / "lib"
    make_photo(lib / "a.jpg", seed=1)
    (lib / "layers.psd").write_bytes(b"8BPS" + bytes(40))
    (lib / "notes.txt").write_text("not a photo")  # not photo-like: no noise about it
    shutil.copy2(shared_photos / "bad" / "chelsea.jxl", lib / "chelsea.jxl")
    left, right = Image.new("RGB", (90, 60), (200, 40, 40)), Image.new("RGB", (90, 60), (40, 40, 200))
    left.save(lib / "stereo.mpo", "MPO", save_all=True, append_images=[right])
    result = cli("score", lib, *model_args, *SMALL, "--json")
    events = {Path(e["path"]).name: e for e in _events(result)}
    assert set(events) == {"a.jpg", "layers.psd", "chelsea.jxl", "stereo.mpo"}
    assert events["layers.psd"]["status"] == "skipped" and "Photoshop" in events["layers.psd"]["error"]
    assert events["stereo.mpo"]["status"] == "scored" and (events["stereo.mpo"]["width"], events["stereo.mpo"]["height"]) == (90, 60)
    from charmcli.library.decode import HAVE_JXL

    assert events["chelsea.jxl"]["status"] == ("scored" if HAVE_JXL else "error")
    assert result.exit_code == (0 if HAVE_JXL else 1)
    assert "skipped" in result.stderr and "layers.psd" in result.stderr
    assert ", 1 skipped" in result.stderr.splitlines()[-1]


def test_an_empty_selection_says_no_photos_were_found(cli, tmp_path, model_args):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("nothing here")
    result = cli("score", tmp_path / "empty", *model_args)
    assert result.exit_code == 0 and "No photos found" in result.stderr
    assert "0 scored, 0 cached, 0 failed" not in result.stderr


# -- item 6: bad arguments are refused ----------------------------------------------------------


def test_bad_arguments_are_refused(cli, library, model_args):
    assert cli("score", library, *model_args, *SMALL, "--quiet").exit_code == 0
    foo = cli("top", "--model", "foo")
    assert foo.exit_code == 2 and "unknown model 'foo'" in foo.stderr and "aadb" in foo.stderr
    assert foo.stdout == ""
    for value in ("2010-13", "2023-02-30", "2023-05-01T25:00"):
        result = cli("top", "--since", value)
        assert result.exit_code == 2 and "invalid date" in result.stderr, value
    assert cli("top", "--since", "2023-02-28", "--json").exit_code == 0
    assert cli("groups", "--model", "foo").exit_code == 2


def test_groups_on_an_empty_database_says_so(cli):
    result = cli("groups", env=NARROW)
    assert result.exit_code == 0 and "No scores yet" in result.stderr
    assert "None" not in result.stdout + result.stderr
    assert _json(cli("groups", "--json")) == []


# -- item 7: a long photo at native resolution is announced ------------------------------------


def test_a_long_native_resolution_photo_is_announced_before_its_work(cli, tmp_path, model_args, monkeypatch):
    lib = tmp_path / "lib"
    make_photo(lib / "big.jpg", seed=1, size=(400, 300))
    make_photo(lib / "small.jpg", seed=2, size=(80, 60))
    monkeypatch.setattr(work, "LONG_NATIVE_PIXELS", 100_000)  # 400x300 counts as "long" here
    result = cli("score", lib, *model_args, "--max-side", "0")
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "native resolution" in line]
    assert len(notes) == 1 and "big.jpg" in notes[0] and "400x300" in notes[0]
    assert result.stderr.index(notes[0]) < result.stderr.index("scored,")  # before the summary
    capped = cli("score", lib, *model_args, "--max-side", "1024", "--rescore")
    assert "native resolution" not in capped.stderr  # a capped photo is never slow


# -- item 10: show --explain scores a photo it does not know yet --------------------------------


def test_show_explain_scores_an_unscored_photo_then_draws(cli, tmp_path, model_args):
    photo = make_photo(tmp_path / "new.jpg", seed=3, size=(300, 200))
    png = tmp_path / "cells.png"
    result = cli("show", photo, "--explain", png, *model_args, "--max-side", "0", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["known"] and info["scores"][0]["input_size"] == [300, 200]
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (300, 200)
    again = cli("show", photo, "--explain", png, "--model", "aadb", *model_args, "--max-side", "0", "--json")
    assert again.exit_code == 0 and len(json.loads(again.stdout)["scores"]) == 1  # the stored score is reused
    assert cli("show", photo, "--explain", png, "--model", "nope").exit_code == 2


# -- item 12: a 5000x2 strip is scored under the default settings ------------------------------


def test_a_thin_strip_keeps_a_pixel_per_side(cli, tmp_path, model_args):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (5000, 2), (120, 80, 40)).save(strip)
    events = _events(cli("score", strip, *model_args, "--json"))
    assert events[0]["status"] == "scored", events[0]["error"]


def test_one_long_side_rule_for_decode_and_scorer():
    from charmcli.library.resize import long_side_size

    assert long_side_size(5000, 2, 1024) == (1024, 1)
    assert long_side_size(2, 5000, 1024) == (1, 1024)
    assert long_side_size(4000, 3000, 1024) == (1024, 768)
    assert long_side_size(1000, 700, 1024) == (1000, 700) and long_side_size(5000, 2, 0) == (5000, 2)


# -- item 13 and the README --------------------------------------------------------------------


def test_readme_keeps_the_two_commands_and_the_cpu_torch_note():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert 'pip install -e ".[all]" && charm score ~/Photos' in text
    assert 'pip install -e ".[test]" && pytest' in text
    assert "pip install torch torchvision --index-url" in text and "/whl/cpu" in text
    for page in ("docs/resolution.md", "docs/how-charm-runs-charm.md", "docs/guarantees.md", "docs/speed.md",
                 "docs/culling.md"):  # fmt: skip
        assert page in text and (REPO / page).is_file()
    assert len(text.encode()) < 12_000
