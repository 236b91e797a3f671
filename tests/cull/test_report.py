"""The contact sheet: content, escaping, thumbnails, and a real browser rendering it offline.

The browser checks use Debian's headless Chromium (apt-get install chromium) and skip with a reason
when it is missing. Chromium loads the page from file:// with networking features switched off.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from charmcli.cull.groups import PhotoRecord, find_groups
from charmcli.cull.report import (
    CSP,
    EAGER_THUMBS,
    camera_name,
    competition_ranks,
    entries_from,
    make_thumbnail,
    render_html,
    write_report,
)

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian/Ubuntu: apt-get install chromium)"
)

NASTY = '<b>&"evil" \'name\'.tiff'


class Tags(HTMLParser):
    """Collects start tags with attributes and all text, to inspect a page like a browser would."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Tags:
    t = Tags()
    t.feed(page)
    return t


@pytest.fixture
def library(tmp_path, photos_dir):
    """A few real photos with awkward names, a burst of three, and one undecodable file."""
    lib = tmp_path / "lib"
    lib.mkdir()
    sources = {
        "DSCN0010.jpg": "DSCN0010.jpg",
        "FujiFilm DS-7 (1).jpg": "FujiFilm DS-7 (1).jpg",
        "landscape_6.jpg": "exif_orientation/landscape_6.jpg",
        NASTY: "BSG1.tiff",
        "chelsea.png": "chelsea_alpha_vignette.png",
        "not_an_image.jpg": "bad/not_an_image.jpg",
    }
    paths = []
    for name, src in sources.items():
        shutil.copy2(photos_dir / src, lib / name)
        paths.append(lib / name)
    odd = os.fsdecode(bytes(lib) + b"/caf\xe9 line\nbreak.jpg")  # not UTF-8, and a newline
    shutil.copy2(photos_dir / "DSCN0010.jpg", odd)
    paths.append(Path(odd))
    rng = np.random.default_rng(5)
    scene = rng.standard_normal(32)
    records = []
    for i, p in enumerate(paths):
        emb = scene + 0.01 * rng.standard_normal(32) if i < 3 else rng.standard_normal(32)
        records.append(PhotoRecord(i, p, 1000.0 + i * 0.5, emb, round(0.2 + 0.1 * i, 2)))
    groups = find_groups(records)
    assert groups[0].size == 3  # the premise: photos 0..2 are one burst
    meta = {0: {"date_taken": "2024-05-01T12:00:00.25", "make": "NIKON", "camera_model": "NIKON COOLPIX P7000"}}
    return records, groups, entries_from(records, groups=groups, meta=meta, stars={1: 4, 6: -1})


def test_helpers():
    assert competition_ranks([0.5, 0.9, 0.5, 0.1]) == [2, 1, 2, 4]
    assert camera_name("Canon", "Canon EOS R5") == "Canon EOS R5"
    assert camera_name("NIKON CORPORATION", "NIKON D850") == "NIKON D850"
    assert camera_name("FUJIFILM", "X-T4") == "FUJIFILM X-T4"
    assert camera_name(None, "") is None


def test_entries_from_records(library):
    records, groups, entries = library
    by_id = {e.id: e for e in entries}
    best = max(records, key=lambda r: r.score)
    assert by_id[best.id].rank == 1 and by_id[best.id].percentile > 90
    assert [by_id[r.id].rank for r in sorted(records, key=lambda r: -r.score)] == list(range(1, len(records) + 1))
    burst_best = groups[0].best.id
    assert by_id[burst_best].best and by_id[burst_best].group_size == 3
    assert sum(e.best for e in entries) == 1  # singletons are not "best of group"
    assert by_id[0].camera == "NIKON COOLPIX P7000" and by_id[0].date.startswith("2024-05-01")
    calibrated = entries_from(records, percentiles={r.id: 42.0 for r in records})
    assert {e.percentile for e in calibrated} == {42.0}


def test_page_escapes_everything_and_loads_nothing_remote(tmp_path, library):
    _records, _groups, entries = library
    for layout in ("top", "groups"):
        page = (tmp_path / layout / "index.html")
        write_report(page.parent, entries, layout=layout, title='Shoot <2024> & "friends"')
        html = page.read_text(encoding="utf-8")
        doc = parse(html)
        tag_names = {t for t, _ in doc.tags}
        assert "b" not in tag_names and "script" not in tag_names  # the names stayed text
        text = "".join(doc.text)
        assert NASTY in text and 'Shoot <2024> & "friends"' in text
        assert "caf\\xe9 line\\nbreak.jpg" in text  # undecodable byte and newline shown escaped
        assert not re.search(r"(?i)(https?:)?//[a-z0-9]", html.replace("file://", ""))  # no remote URLs
        metas = [a for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
        assert metas and metas[0]["content"] == CSP
        srcs = [a["src"] for t, a in doc.tags if t == "img"]
        assert len(srcs) == len(entries) - 1  # every decodable photo has a thumbnail
        assert all(re.fullmatch(r"thumbs/[0-9a-f]{20}\.jpg", s) for s in srcs)
        assert all((page.parent / s).is_file() for s in srcs)
        assert "no preview" in text  # the undecodable file got a placeholder
        links = [a["href"] for t, a in doc.tags if t == "a"]
        assert any(h.endswith("caf%E9%20line%0Abreak.jpg") for h in links)


def test_thumbnails_apply_exif_orientation(tmp_path, photos_dir):
    """All eight orientation samples show the same upright picture after thumbnailing."""
    thumbs = []
    for i in range(1, 9):
        t = make_thumbnail(photos_dir / "exif_orientation" / f"landscape_{i}.jpg", tmp_path, 160)
        assert t.error is None and (t.width, t.height) == (160, 120)
        with Image.open(tmp_path / t.src) as im:
            thumbs.append(np.asarray(im.convert("L"), dtype=np.float64))
    reference = thumbs[0]
    for other in thumbs[1:]:
        # the files differ a little (each shows its own digit, separate JPEG encodes), so compare
        # with the wrong same-shaped orientations: the upright one must be far closer than any
        right = np.abs(other - reference).mean()
        wrong = min(np.abs(f(other) - reference).mean() for f in (np.fliplr, np.flipud, lambda a: a[::-1, ::-1]))
        assert right < 0.6 * wrong


def test_layout_groups_highlights_best(tmp_path, library):
    _records, groups, entries = library
    html = render_html(entries, {e.id: make_thumbnail(e.path, tmp_path, 64) for e in entries}, layout="groups")
    doc = parse(html)
    best_cards = [a for t, a in doc.tags if t == "figure" and "best" in (a.get("class") or "").split()]
    assert len(best_cards) == 1
    assert float(best_cards[0]["data-score"]) == pytest.approx(groups[0].best.score)
    assert "Group 1" in "".join(doc.text)
    with pytest.raises(ValueError):
        render_html(entries, {}, layout="mosaic")  # type: ignore[arg-type]


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chrome-profile-{len(list(tmp_path.glob('chrome-profile-*')))}"
    profile.mkdir()
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args,
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, check=False)


@needs_chromium
def test_browser_renders_sheet_and_thumbnails_load(tmp_path, library):
    _records, _groups, entries = library
    assert len(entries) <= EAGER_THUMBS  # all thumbnails load eagerly, so the probe sees them all
    out = tmp_path / "sheet"
    page = write_report(out, entries, layout="top", title="Charm test sheet")

    dom = _chromium(["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    doc = parse(dom.stdout)
    text = "".join(doc.text)
    for e in entries:
        assert f"#{e.rank}" in text and f"{e.score:.3f}" in text
    assert NASTY in text and "FujiFilm DS-7 (1).jpg" in text
    assert "b" not in {t for t, _ in doc.tags}
    ranks = [int(a["data-rank"]) for t, a in doc.tags if t == "figure"]
    assert ranks == sorted(ranks) and ranks[0] == 1

    # Same page, same image policy, plus one inline script that reports what the images decoded to.
    probe = out / "probe.html"
    script = (
        "<script>addEventListener('load',()=>{const p=document.createElement('pre');p.id='probe';"
        "p.textContent=JSON.stringify([...document.images].map(i=>[i.getAttribute('src'),i.naturalWidth,"
        "i.naturalHeight]));document.body.appendChild(p);});</script>"
    )
    html = page.read_text(encoding="utf-8")
    html = html.replace(f'content="{CSP}"', f'content="{CSP}; script-src \'unsafe-inline\'"')
    probe.write_text(html.replace("</body>", script + "</body>"), encoding="utf-8")
    dumped = _chromium(["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()], tmp_path)
    m = re.search(r'<pre id="probe">(.*?)</pre>', dumped.stdout, re.S)
    assert m, dumped.stdout[-2000:]
    loaded = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(loaded) == len(entries) - 1
    for src, width, height in loaded:
        with Image.open(out / src) as im:
            assert (width, height) == im.size  # decoded by the browser at the file's real size

    shot = tmp_path / "shot.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1280,900", page.as_uri()], tmp_path)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 900)
        pixels = np.asarray(im.convert("RGB"))
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert colours > 5000  # photos rendered, not a blank or text-only page
