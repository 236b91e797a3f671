"""Guarantee 2: every bad input gets one clear line, and the run goes on.

tests/cli/test_cli_score.py already runs the shared ``bad/`` folder through ``charm score``
(one line each, failures in ``charm stats``, no retry unless changed or ``--retry-failed``).
This adds, at the CLI level, what only the library tests covered: generated damage (zero bytes,
truncation at several points, text/HTML/noise under ``.jpg``), odd-but-valid images (16-bit,
CMYK, palette+alpha, animated GIF), unreadable files, files that vanish or change between the
walk and the read, symlink loops and links to folders, non-UTF-8 names, very long paths, and the
pixel limit (the message says how to raise it, and raising it works).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rel_helpers import error_lines, jsonl, make_photo

import charmcli.pipeline as pipeline_mod
import charmcli.work as work_mod
from charmcli.library.scan import display_path


def _build(root: Path, shared_photos: Path) -> dict[str, set[str]]:
    """Write the bad folder; returns the expected outcome per (display) file name."""
    root.mkdir()
    good = make_photo(root / "good.jpg", seed=1, size=(160, 120))
    make_photo(root / "sub" / "inner.jpg", seed=2)
    jpeg = good.read_bytes()
    png = root / "tmp.png"
    make_photo(png, seed=3, size=(160, 120), fmt="PNG")
    png_bytes = png.read_bytes()
    png.unlink()
    fails = {
        "zero.jpg": b"",
        "soi_only.jpg": jpeg[:2],
        "cut_100b.jpg": jpeg[:100],
        "cut_half.jpg": jpeg[: len(jpeg) // 2],
        "cut_90pct.jpg": jpeg[: len(jpeg) * 9 // 10],
        "cut_half.png": png_bytes[: len(png_bytes) // 2],
        "page.jpg": b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n",
        "notes.jpg": b"just some text, not a photo\nline two\n",
        "noise.jpg": random.Random(4).randbytes(20_000),
        "noise_header.jpg": jpeg[:600] + random.Random(5).randbytes(5_000),
    }
    for name, data in fails.items():
        (root / name).write_bytes(data)
    # Odd but valid: these must score.
    Image.fromarray(
        (np.arange(120 * 160, dtype=np.uint32).reshape(120, 160) * 3 % 65536).astype(np.uint16)
    ).save(root / "gray16.png")
    Image.new("CMYK", (120, 90), (10, 200, 30, 5)).save(root / "cmyk.jpg", "JPEG")
    pal = Image.new("P", (90, 60), 1)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(0, (0, 0, 45, 60))
    pal.save(root / "palette_alpha.png", transparency=0)
    frames = [Image.new("RGB", (40, 40), (i * 80, 0, 0)) for i in range(3)]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=50)
    # Links: a loop back to the top, a second link to a folder, a second name for a file.
    os.symlink(".", root / "loop")
    os.symlink("sub", root / "alias")
    os.symlink("good.jpg", root / "again.jpg")
    # Names that are not UTF-8, one good, one bad.
    raw = os.fsencode(root)
    make_photo(Path(os.fsdecode(raw + b"/caf\xe9.jpg")), seed=9)
    Path(os.fsdecode(raw + b"/vide\xff.jpg")).write_bytes(b"")
    # A very long path (~1,600 characters), one good photo and one bad one at the bottom.
    deep = root.joinpath(*["d" * 200] * 8)
    make_photo(deep / ("p" * 200 + ".jpg"), seed=10)
    (deep / ("q" * 200 + ".jpg")).write_bytes(b"GIF89a")
    # Unreadable (simulated: root reads anything), vanishing, changing.
    make_photo(root / "locked.jpg", seed=11)
    make_photo(root / "vanish.jpg", seed=12)
    make_photo(root / "change.jpg", seed=13)
    return {
        "fail": set(fails) | {"vide\\xff.jpg", "q" * 200 + ".jpg", "locked.jpg", "vanish.jpg"},
        # good.jpg is walked first as again.jpg (names sort as bytes), sub/ first as alias/
        "score": {"again.jpg", "inner.jpg", "gray16.png", "cmyk.jpg", "palette_alpha.png", "animated.gif"}
        | {"caf\\xe9.jpg", "p" * 200 + ".jpg", "change.jpg"},
        "scan": {"loop"},
    }


@pytest.fixture
def bad_lib(tmp_path, shared_photos, monkeypatch):
    root = tmp_path / "lib"
    expected = _build(root, shared_photos)
    locked = os.fsdecode(os.path.abspath(root / "locked.jpg"))
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):  # what chmod 000 does for a normal user
        if isinstance(path, str | bytes | os.PathLike) and os.path.abspath(os.fsdecode(path)) == locked:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)

    real_scan = pipeline_mod.scan
    new_content = make_photo(tmp_path / "changed.jpg", seed=14, size=(80, 60)).read_bytes()

    def racing_scan(paths, *args, **kwargs):
        """The walk sees vanish.jpg and change.jpg as they were; then they vanish / change."""
        items = real_scan(paths, *args, **kwargs)
        if racing_scan.done:  # only the first run races
            return items
        racing_scan.done = True
        for item in items:
            if item.path.name == "vanish.jpg":
                item.path.unlink()
            elif item.path.name == "change.jpg":
                item.path.write_bytes(new_content)
        return items

    racing_scan.done = False
    monkeypatch.setattr(pipeline_mod, "scan", racing_scan)
    return root, expected, hashlib.sha256(new_content).hexdigest()


def _name(path: str) -> str:
    return display_path(os.path.basename(path))


def test_every_bad_input_is_one_line_and_the_run_goes_on(cli, bad_lib, model_args, monkeypatch):
    root, expected, changed_sha = bad_lib
    result = cli("score", root, *model_args, "--json")
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    events = jsonl(result.stdout)
    by_name = {_name(e["path"]): e for e in events}
    assert len(by_name) == len(events), "a file came out twice"
    failed = {n for n, e in by_name.items() if e["status"] == "error"}
    scored = {n for n, e in by_name.items() if e["status"] == "scored"}
    assert failed == expected["fail"] | expected["scan"], json.dumps(by_name, indent=1)
    assert scored == expected["score"]
    # Each real file once: good.jpg is also again.jpg, sub/ is also alias/ (either name may win).
    real = [os.path.realpath(e["path"]) for e in events if e["status"] != "error"]
    assert len(real) == len(set(real))
    # One line per bad file, naming it, with a reason; nothing else on stderr but the summary.
    lines = error_lines(result.stderr)
    assert len(lines) == len(failed)
    for name in failed:
        assert sum(name in line for line in lines) == 1, name
        assert by_name[name]["error"] and "\n" not in by_name[name]["error"]
    assert len(result.stderr.strip().splitlines()) == len(failed) + 1
    # Reasons say what happened.
    assert "empty" in by_name["zero.jpg"]["error"]
    assert "truncated" in by_name["cut_half.jpg"]["error"]
    assert "Permission denied" in by_name["locked.jpg"]["error"]
    assert "No such file" in by_name["vanish.jpg"]["error"]
    assert "loop" in by_name["loop"]["error"]
    assert by_name["change.jpg"]["sha256"] == changed_sha  # the score is for the bytes actually read
    assert any("frame 1 of 3" in w for w in by_name["animated.gif"]["warnings"])

    # Failures are in the store and listed by `charm stats` (the loop is a walk problem, not a file).
    stats = json.loads(cli("stats", "--json").stdout)
    assert {_name(f["path"]) for f in stats["failures"]} == expected["fail"]
    human = cli("stats")
    assert human.exit_code == 0 and "Traceback" not in human.stderr and "failed" in human.stdout

    # Unchanged failures are not retried: not even read.
    reads: list[str] = []
    real_read = work_mod.read_bytes
    monkeypatch.setattr(
        work_mod, "read_bytes", lambda p: reads.append(_name(os.fsdecode(p))) or real_read(p)
    )
    again = cli("score", root, *model_args, "--json")
    assert again.exit_code == 1 and "Traceback" not in again.stderr
    second = {_name(e["path"]): e["status"] for e in jsonl(again.stdout)}
    assert {n for n, s in second.items() if s == "error"} == expected["fail"] - {"vanish.jpg"} | expected[
        "scan"
    ]
    assert reads == ["change.jpg"]  # its row has the walk's size/mtime, not the new file's: re-read once
    assert second["change.jpg"] == "cached"
    # --retry-failed reads every failed file again; a changed file is retried without it.
    reads.clear()
    cli("score", root, *model_args, "--retry-failed")
    assert sorted(reads) == sorted(expected["fail"] - {"vanish.jpg"})
    reads.clear()
    make_photo(root / "zero.jpg", seed=20)
    fixed = {_name(e["path"]): e for e in jsonl(cli("score", root, *model_args, "--json").stdout)}
    assert reads == ["zero.jpg"] and fixed["zero.jpg"]["status"] == "scored"
    stats = json.loads(cli("stats", "--json").stdout)
    assert "zero.jpg" not in {_name(f["path"]) for f in stats["failures"]}


def test_pixel_limit_says_how_to_raise_it_and_raising_it_works(cli, shared_photos, model_args, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    shutil.copyfile(shared_photos / "bad" / "giant-image.jpg", folder / "giant.jpg")  # 20000x14000, 1 MB
    make_photo(folder / "small.jpg", seed=1, size=(200, 100))
    first = cli("score", folder, *model_args, "--json", "--max-pixels", "10000")
    assert first.exit_code == 1 and "Traceback" not in first.stderr
    lines = error_lines(first.stderr)
    assert len(lines) == 2 and "--max-pixels 20000 " in lines[1] and "--max-pixels 280000000" in lines[0]
    default = cli("score", folder, *model_args, "--json")  # other options: retried, small one fits
    assert [e["status"] for e in jsonl(default.stdout)] == ["error", "scored"]
    assert "--max-pixels 280000000" in error_lines(default.stderr)[0]
    raised = cli("score", folder, *model_args, "--json", "--max-pixels", "280000000")
    assert raised.exit_code == 0, raised.stderr
    event = jsonl(raised.stdout)[0]
    assert event["status"] == "scored" and (event["width"], event["height"]) == (20000, 14000)


def test_non_utf8_names_survive_every_command(cli, model_args, tmp_path):
    """Undecodable bytes in names go through the store and out of every command unchanged."""
    raw = os.fsencode(tmp_path / "lib")
    os.makedirs(raw + b"/dossier-\xe9t\xe9")
    photo = os.fsdecode(raw + b"/dossier-\xe9t\xe9/caf\xe9 \xff.jpg")
    make_photo(Path(photo), seed=1)
    make_photo(tmp_path / "lib" / "plain.jpg", seed=2)
    scored = cli("score", tmp_path / "lib", *model_args, "--json")
    assert scored.exit_code == 0, scored.stderr
    assert photo in {e["path"] for e in jsonl(scored.stdout)}  # JSON \\udcXX escapes round-trip to the bytes
    again = cli("score", tmp_path / "lib", *model_args, "--json")
    assert [e["status"] for e in jsonl(again.stdout)] == ["cached"] * 2
    top = cli("top", "--json")
    assert photo in {r["path"] for r in json.loads(top.stdout)}
    csv_out = cli("top", "--csv")
    assert csv_out.exit_code == 0 and os.fsencode(photo) in csv_out.stdout_bytes
    # A console wide enough for the whole path, however long the temporary folder's name is.
    human = cli("top", env={"COLUMNS": str(len(photo) + 120)})
    assert human.exit_code == 0 and "caf\\xe9 \\xff.jpg" in human.stdout
    exported = cli("top", "--export", tmp_path / "out")
    assert exported.exit_code == 0, exported.stderr
    names = os.listdir(os.fsencode(tmp_path / "out"))
    assert {b"0001_caf\xe9 \xff.jpg", b"0002_caf\xe9 \xff.jpg"} & set(names)
    shown = cli("show", photo, "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["scores"]
    os.unlink(photo)
    gone = cli("forget", "--json")
    assert gone.exit_code == 0 and json.loads(gone.stdout)["photos"] == [photo]
    for result in (scored, top, csv_out, human, exported, shown, gone):
        assert "Traceback" not in result.stderr
