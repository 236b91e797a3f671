"""``charm report`` (page, thumbnails, stars from sidecars, a real browser) and ``show --explain``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from cull_shoot import ALL, STRICT
from PIL import Image

from shared_paths import PHOTOS

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def figures(page: str) -> list[str]:
    return re.findall(r"<figure [^>]*>", page)


def test_report_top_layout_page_and_thumbnails(cli, shoot, tmp_path):
    out = tmp_path / "sheet"
    result = cli("report", shoot, "-o", out, "--title", "Shoot <June>")
    assert result.exit_code == 0, result.stderr
    page = out / "index.html"
    assert result.stdout.strip() == page.as_uri()
    html = page.read_text(encoding="utf-8")
    assert len(figures(html)) == len(ALL) and len(list((out / "thumbs").glob("*.jpg"))) == len(ALL)
    assert "Shoot &lt;June&gt;" in html and "model aadb" in html and "<script" not in html
    for name in ALL:
        assert f"{name}</div>" in html
    ranks = [int(m) for m in re.findall(r'data-rank="(\d+)"', html)]
    assert ranks == sorted(ranks) and ranks[0] == 1
    top = json.loads(cli("top", "100", "--json").stdout)
    assert f"p{top[0]['percentile']:.0f}<" in html  # library percentile on the card
    groups = json.loads(cli("groups", shoot, "--json").stdout)
    assert html.count('class="card best"') == len(groups)
    with Image.open(next((out / "thumbs").glob("*.jpg"))) as im:
        assert im.format == "JPEG" and max(im.size) <= 320

    few = cli("report", shoot, "-o", tmp_path / "few", "--top", "3", "--json")
    data = json.loads(few.stdout)
    assert few.exit_code == 0 and data["photos"] == 3 and data["layout"] == "top"
    assert data["uri"] == (tmp_path / "few" / "index.html").as_uri()
    assert len(figures((tmp_path / "few" / "index.html").read_text(encoding="utf-8"))) == 3


def test_report_groups_layout_shows_stars_from_sidecars(cli, shoot, tmp_path):
    assert cli("rate", shoot, *STRICT).exit_code == 0
    out = tmp_path / "groups"
    result = cli("report", shoot, "-o", out, "--layout", "groups", *STRICT, "--top", "0", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["groups"] == 3
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count("<section") == 4  # three bursts, then the single photos
    assert html.count("Group ") == 3 and "Single photos" in html
    assert len(figures(html)) == len(ALL) and html.count('title="5 of 5 stars"') >= 1  # as written by rate
    # the N best groups, every frame of each
    two = cli("report", shoot, "-o", tmp_path / "two", "--layout", "groups", *STRICT, "--top", "2")
    assert two.exit_code == 0 and "best 2 of 7 groups" in (tmp_path / "two" / "index.html").read_text("utf-8")


def test_report_errors(cli, shoot, tmp_path):
    assert cli("report", shoot).exit_code == 2  # no --out
    (tmp_path / "file").write_text("x")
    assert cli("report", shoot, "-o", tmp_path / "file").exit_code == 2
    assert cli("report", shoot, "-o", tmp_path / "x", "--layout", "mosaic").exit_code == 2
    empty = cli("report", "-o", tmp_path / "y", "--model", "para")
    assert empty.exit_code == 1 and not (tmp_path / "y" / "index.html").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian/Ubuntu: apt-get install chromium)")
def test_report_renders_in_headless_chromium(cli, shoot, tmp_path):
    out = tmp_path / "sheet"
    assert cli("report", shoot, "-o", out, "--layout", "groups").exit_code == 0
    profile, shot = tmp_path / "chrome-profile", tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--screenshot={shot}",
           "--window-size=1024,768", (out / "index.html").as_uri()]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": str(tmp_path)})
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1024, 768)
        pixels = np.asarray(im.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2000  # thumbnails drawn, not a blank page
    best = np.all(np.abs(pixels.astype(int) - (0x2E, 0x8B, 0x57)) < 8, axis=-1)
    assert best.sum() > 500  # the green frame of a burst's best card


def test_show_explain_marks_the_kept_cells(cli, tmp_path, model_args):
    from charmcli.cull.explain import cell_boxes
    from charmcli.library.decode import load_image

    src = PHOTOS / "DSCN0010.jpg"
    if not src.is_file():
        pytest.skip(f"{PHOTOS} is absent (the shared test data sits beside the repository)")
    photo = shutil.copy2(src, tmp_path / "DSCN0010.jpg")
    full = [a for a in model_args if a not in ("--max-side", "256")]  # 640x480: the multi-scale path
    assert cli("score", photo, *full).exit_code == 0
    info = json.loads(cli("show", photo, "--json").stdout)["scores"][0]
    assert info["kept_cells"] and 0 < info["percentile"] < 100
    result = cli("show", photo, "--explain", tmp_path / "cells.png")
    assert result.exit_code == 0
    with Image.open(tmp_path / "cells.png") as im:
        drawn = np.asarray(im.convert("RGB")).astype(int)
    plain = np.asarray(load_image(photo, max_side=1600).image.convert("RGB")).astype(int)
    assert drawn.shape == plain.shape
    changed = np.any(drawn != plain, axis=-1)
    kept = np.zeros_like(changed)
    for x0, y0, x1, y1 in cell_boxes([tuple(c) for c in info["kept_cells"]], info["cell_size"],
                                     tuple(info["input_size"]), (plain.shape[1], plain.shape[0])):  # fmt: skip
        kept[y0:y1, x0:x1] = True
    assert not changed[~kept].any()  # nothing drawn outside the kept cells
    assert changed[kept].mean() > 0.9  # and the kept cells are tinted
    tint = (drawn - plain)[kept].mean(axis=0)
    assert tint[0] > 0 and tint[2] < 0  # amber: more red, less blue
