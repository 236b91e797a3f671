"""``charm rate``: XMP sidecars merged, read back by exiftool; dry runs and photos untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cull_shoot import ALL, STRICT

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool not installed (Debian/Ubuntu: apt-get install libimage-exiftool-perl)"
)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def rate(cli, *args) -> tuple[int, dict]:
    result = cli("rate", *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def exiftool(*paths: Path) -> dict[str, dict]:
    out = subprocess.run([EXIFTOOL, "-j", "-XMP:Rating", "-XMP:Label", "-XMP-dc:Subject", *map(str, paths)],
                         capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return {Path(d["SourceFile"]).name: d for d in json.loads(out.stdout)}


def test_dry_run_writes_nothing(cli, shoot):
    before = snapshot(shoot)
    code, data = rate(cli, shoot, "--dry-run", "--reject-below", "10")
    assert code == 0 and data["dry_run"] is True and snapshot(shoot) == before
    assert len(data["photos"]) == len(ALL) and {p["status"] for p in data["photos"]} == {"would create"}
    assert data["created"] == len(ALL) and not any(p["written"] for p in data["photos"])
    assert sum(p["stars"] == -1 for p in data["photos"]) == 1  # 100 (k + ½) / 14: only 3.6 is under 10
    human = cli("rate", shoot, "--dry-run")
    assert human.exit_code == 0 and "would create" in human.stdout and "nothing written" in human.stderr
    assert snapshot(shoot) == before


@needs_exiftool
def test_rate_writes_sidecars_that_exiftool_reads_and_never_touches_photos(cli, shoot):
    photos = {n: ((shoot / n).read_bytes(), (shoot / n).stat().st_mtime_ns) for n in ALL}
    code, data = rate(cli, shoot, *STRICT)
    assert code == 0 and data["sidecar"] == "ext" and data["created"] == len(ALL) and data["errors"] == 0
    assert {n: ((shoot / n).read_bytes(), (shoot / n).stat().st_mtime_ns) for n in ALL} == photos
    sidecars = sorted(shoot.glob("*.xmp"))
    assert [p.name for p in sidecars] == sorted(n + ".xmp" for n in ALL)
    read = exiftool(*sidecars)
    groups = json.loads(cli("groups", shoot, *STRICT, "--json").stdout)
    bests = {Path(g["best"]).name for g in groups}
    for p in data["photos"]:
        name = Path(p["path"]).name
        assert Path(p["sidecar"]).name == name + ".xmp"
        assert read[name + ".xmp"]["Rating"] == p["stars"]
        assert read[name + ".xmp"].get("Label") == ("Green" if name in bests else None)
    # stars follow the percentile within the selection: 10/30/70/90 cuts
    for p in data["photos"]:
        expected = 1 + sum(p["percentile"] >= c for c in (10, 30, 70, 90))
        assert p["stars"] == expected
    assert max(p["percentile"] for p in data["photos"]) > 90 and min(p["percentile"] for p in data["photos"]) < 10

    # idempotent: nothing to change, nothing rewritten (mtimes too)
    stamps = {p.name: p.stat().st_mtime_ns for p in sidecars}
    code, again = rate(cli, shoot, *STRICT)
    assert code == 0 and again["unchanged"] == len(ALL) and {p.name: p.stat().st_mtime_ns for p in sidecars} == stamps


@needs_exiftool
def test_rate_merges_into_existing_sidecars_and_clears_stale_best_labels(cli, shoot):
    # which frame is best depends on the (random-weight) scores: pick two that are not
    groups = json.loads(cli("groups", shoot, "--json").stdout)
    burst = next(g for g in groups if g["size"] > 2)
    loser = Path(next(m["path"] for m in burst["members"] if not m["best"]))
    other = Path(next(m["path"] for m in reversed(burst["members"]) if not m["best"] and m["path"] != str(loser)))
    (shoot / (loser.name + ".xmp")).write_text(
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmp:Rating="1" xmp:Label="Green">'
        "<dc:subject><rdf:Bag><rdf:li>holiday</rdf:li><rdf:li>beach</rdf:li></rdf:Bag></dc:subject>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end=\"w\"?>\n",
        encoding="utf-8",
    )
    (shoot / (other.name + ".xmp")).write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"><xmp:Label>Red</xmp:Label>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>\n",
        encoding="utf-8",
    )
    code, data = rate(cli, shoot)
    assert code == 0
    by_name = {Path(p["path"]).name: p for p in data["photos"]}
    assert by_name[loser.name]["status"] == "update" and by_name[loser.name]["old_rating"] == "1"
    assert by_name[loser.name]["old_label"] == "Green" and by_name[loser.name]["new_label"] is None
    read = exiftool(shoot / (loser.name + ".xmp"), shoot / (other.name + ".xmp"))
    merged = read[loser.name + ".xmp"]
    assert merged["Subject"] == ["holiday", "beach"] and "Label" not in merged  # stale pick mark removed
    assert merged["Rating"] == by_name[loser.name]["stars"]
    assert read[other.name + ".xmp"]["Label"] == "Red"  # the user's own label stays
    assert read[other.name + ".xmp"]["Rating"] == by_name[other.name]["stars"]


@needs_exiftool
def test_adobe_style_labels_off_and_reject(cli, shoot):
    code, data = rate(cli, shoot / "a0.jpg", shoot / "a1.jpg", shoot / "a2.jpg", shoot / "a3.jpg",
                      "--sidecar", "adobe", "--label-best", "none", "--stars", "20,40,60,80", "--reject-below", "25")  # fmt: skip
    assert code == 0 and data["label"] is None and data["sidecar"] == "adobe"
    read = exiftool(*sorted(shoot.glob("a?.xmp")))
    assert sorted(read) == ["a0.xmp", "a1.xmp", "a2.xmp", "a3.xmp"] and not list(shoot.glob("*.jpg.xmp"))
    # 4 photos: percentiles 12.5, 37.5, 62.5, 87.5 → rejected, 2, 4, 5 stars
    ranked = sorted(data["photos"], key=lambda p: p["score"])
    assert [p["percentile"] for p in ranked] == [12.5, 37.5, 62.5, 87.5]
    assert [read[Path(p["sidecar"]).name]["Rating"] for p in ranked] == [-1, 2, 4, 5]
    assert all("Label" not in d for d in read.values())


def test_bad_options_and_a_broken_sidecar(cli, shoot):
    for args in (["--stars", "10,30,70"], ["--stars", "90,70,30,10"], ["--stars", "a,b,c,d"],
                 ["--sidecar", "lightroom"], ["--reject-below", "120"]):  # fmt: skip
        result = cli("rate", shoot, *args)
        assert result.exit_code == 2, args
    (shoot / "b1.jpg.xmp").write_text("this is not XML", encoding="utf-8")
    result = cli("rate", shoot, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["errors"] == 1 and data["created"] == len(ALL) - 1
    assert (shoot / "b1.jpg.xmp").read_text(encoding="utf-8") == "this is not XML"
    assert "b1.jpg" in result.stderr and result.stderr.count("error") >= 1
    assert os.path.exists(shoot / "a0.jpg.xmp")
