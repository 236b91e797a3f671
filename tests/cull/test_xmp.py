"""XMP sidecars: naming, merging into existing sidecars, idempotence, and an independent reader.

exiftool (Debian: libimage-exiftool-perl) is the independent reader: what it reads back is what
Lightroom/darktable/digiKam users will see. Tests needing it skip with a reason when it is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from charmcli.cull.ratings import Rating
from charmcli.cull.xmp import (
    RDF_NS,
    XMP_NS,
    XmpError,
    apply_ratings,
    ratings_items,
    read_sidecar,
    sidecar_path,
    update_sidecar,
)

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool not installed (Debian/Ubuntu: apt-get install libimage-exiftool-perl)"
)

DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/"
   exif:DateTimeOriginal="2024:05:01 12:00:00.250"
   xmp:Rating="1"
   xmpMM:DerivedFrom="{name}"
   darktable:import_timestamp="63851234567000000"
   darktable:xmp_version="5"
   darktable:history_end="2"
   darktable:auto_presets_applied="1">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>bird</rdf:li>
     <rdf:li>Zürich &amp; friends</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="0000000000000000cdcc4c3e"
      darktable:multi_name=""
      darktable:multi_priority="0"/>
     <rdf:li
      darktable:num="1"
      darktable:operation="colorin"
      darktable:enabled="1"
      darktable:modversion="7"
      darktable:params="gz48eJzjZhgFowABAAHlAAk="
      darktable:multi_name=""
      darktable:multi_priority="0"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

ADOBE_SIDECAR = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00        ">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <!-- written by hand for charm's tests -->
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
   crs:Version="15.0"
   crs:Exposure2012="+0.35"
   photoshop:DateCreated="2024-05-01T12:00:00.25">
   <xmp:Rating>2</xmp:Rating>
   <xmp:Label>Red</xmp:Label>
   <dc:title>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">Fischer &lt;am&gt; See</rdf:li>
    </rdf:Alt>
   </dc:title>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def exiftool(path: Path, *tags: str) -> dict:
    out = subprocess.run(
        [EXIFTOOL, "-j", "-n", "-struct", *(tags or ("-XMP:all",)), "-Warning", "-Error", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stderr
    (data,) = json.loads(out.stdout)
    data.pop("SourceFile")
    return data


@pytest.fixture
def photo(tmp_path, photos_dir) -> Path:
    """A real camera JPEG with an awkward name, copied so nothing in shared/ can change."""
    dst = tmp_path / "FujiFilm DS-7 (1).jpg"
    shutil.copy2(photos_dir / "FujiFilm DS-7 (1).jpg", dst)
    return dst


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_sidecar_names(tmp_path):
    assert sidecar_path(tmp_path / "IMG_1.CR2", "ext").name == "IMG_1.CR2.xmp"
    assert sidecar_path(tmp_path / "IMG_1.CR2", "adobe").name == "IMG_1.xmp"
    assert sidecar_path(tmp_path / "a.b.jpg", "adobe").name == "a.b.xmp"
    (tmp_path / "IMG_2.XMP").write_text("x")
    assert sidecar_path(tmp_path / "IMG_2.jpg", "adobe") == tmp_path / "IMG_2.XMP"  # reuse the existing one
    with pytest.raises(ValueError):
        sidecar_path(tmp_path / "a.jpg", "lightroom")  # type: ignore[arg-type]


@needs_exiftool
@pytest.mark.parametrize(("style", "expected"), [("ext", "FujiFilm DS-7 (1).jpg.xmp"), ("adobe", "FujiFilm DS-7 (1).xmp")])
def test_new_sidecar_is_read_by_exiftool(photo, style, expected):
    before = fingerprint(photo)
    change = update_sidecar(photo, rating=4, label="Green", style=style)
    assert change.written and not change.existed and change.sidecar.name == expected
    assert (change.old_rating, change.new_rating) == (None, "4")
    got = exiftool(change.sidecar, "-XMP:Rating", "-XMP:Label")
    assert got == {"Rating": 4, "Label": "Green"}
    assert fingerprint(photo) == before
    assert sorted(p.name for p in photo.parent.iterdir()) == sorted([photo.name, expected])  # no temp files


@needs_exiftool
def test_reject_is_minus_one(photo):
    change = update_sidecar(photo, rating=-1)
    assert exiftool(change.sidecar, "-XMP:Rating") == {"Rating": -1}


@needs_exiftool
def test_merge_into_darktable_sidecar_keeps_everything_else(photo):
    side = photo.with_name(photo.name + ".xmp")
    side.write_text(DARKTABLE_SIDECAR.format(name=photo.name), encoding="utf-8")
    before_all = exiftool(side)
    assert before_all["Rating"] == 1 and [h["Operation"] for h in before_all["History"]] == ["exposure", "colorin"]
    photo_before = fingerprint(photo)

    change = update_sidecar(photo, rating=5, label="Green", style="ext")
    assert (change.existed, change.old_rating, change.new_rating, change.old_label, change.new_label) == (
        True, "1", "5", None, "Green")

    after_all = exiftool(side)
    assert after_all.pop("Rating") == 5 and after_all.pop("Label") == "Green"
    before_all.pop("Rating")
    assert after_all == before_all  # every other field, as exiftool reads it
    text = side.read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    for prefix in ("darktable:history", "dc:subject", "xmpMM:DerivedFrom", "exif:DateTimeOriginal"):
        assert prefix in text  # the original prefixes survive (darktable matches on them)
    assert "ns0:" not in text and text.count("Rating=") == 1
    assert fingerprint(photo) == photo_before


@needs_exiftool
def test_merge_into_adobe_sidecar_updates_element_form_in_place(photo):
    side = photo.with_name(photo.stem + ".xmp")
    side.write_text(ADOBE_SIDECAR, encoding="utf-8")
    before_all = exiftool(side)
    assert before_all["Rating"] == 2 and before_all["Label"] == "Red"

    change = update_sidecar(photo, rating=3, style="adobe")  # label None: leave "Red" alone
    assert (change.old_rating, change.new_rating, change.new_label) == ("2", "3", "Red")
    after_all = exiftool(side)
    assert after_all.pop("Rating") == 3
    before_all.pop("Rating")
    assert after_all == before_all

    text = side.read_text(encoding="utf-8")
    assert text.startswith('<?xpacket begin="\ufeff"') and text.rstrip().endswith('<?xpacket end="w"?>')
    assert "<!-- written by hand for charm's tests -->" in text
    root = ET.fromstring(text[text.index("<x:xmpmeta"):text.rindex("<?xpacket")])
    desc = root.find(f"{{{RDF_NS}}}RDF/{{{RDF_NS}}}Description")
    assert desc is not None
    assert f"{{{XMP_NS}}}Rating" not in desc.attrib  # not duplicated as an attribute
    assert [e.text for e in desc.findall(f"{{{XMP_NS}}}Rating")] == ["3"]


def test_idempotent_and_dry_run(photo):
    dry = update_sidecar(photo, rating=2, dry_run=True)
    assert dry.changed and not dry.written and not dry.sidecar.exists()
    first = update_sidecar(photo, rating=2, label="Green")
    snapshot = fingerprint(first.sidecar)
    again = update_sidecar(photo, rating=2, label="Green")
    assert not again.changed and not again.written
    assert fingerprint(first.sidecar) == snapshot  # not rewritten: mtime unchanged too
    preview = update_sidecar(photo, rating=3, dry_run=True)
    assert (preview.old_rating, preview.new_rating, preview.changed, preview.written) == ("2", "3", True, False)
    assert fingerprint(first.sidecar) == snapshot
    assert read_sidecar(first.sidecar) == {"rating": "2", "label": "Green"}


def test_rating_stored_as_real_is_not_rewritten(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"not really a jpeg; never opened")
    side = tmp_path / "a.jpg.xmp"
    side.write_text(DARKTABLE_SIDECAR.format(name="a.jpg").replace('xmp:Rating="1"', 'xmp:Rating="4.0"'))
    snapshot = fingerprint(side)
    assert not update_sidecar(photo, rating=4).changed
    assert fingerprint(side) == snapshot


def test_sidecar_with_a_byte_order_mark_keeps_it(tmp_path):
    """Some Windows tools write UTF-8 sidecars with a BOM: the merge keeps it, once, and the rest."""
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"never opened")
    side = tmp_path / "a.jpg.xmp"
    side.write_bytes(b"\xef\xbb\xbf" + DARKTABLE_SIDECAR.format(name="a.jpg").encode("utf-8"))
    assert update_sidecar(photo, rating=4).written
    raw = side.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf<?xml") and raw.count(b"\xef\xbb\xbf") == 1
    assert read_sidecar(side)["rating"] == "4"
    text = raw[3:].decode("utf-8")
    assert "darktable:history" in text and "Z\u00fcrich &amp; friends" in text


def test_clear_label_only_removes_our_own_label(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    update_sidecar(photo, rating=3, label="Green")
    change = update_sidecar(photo, rating=3, clear_label="Green")
    assert (change.old_label, change.new_label) == ("Green", None)
    assert read_sidecar(change.sidecar)["label"] is None
    update_sidecar(photo, rating=3, label="Purple")
    assert not update_sidecar(photo, rating=3, clear_label="Green").changed
    assert read_sidecar(change.sidecar)["label"] == "Purple"


def test_no_empty_sidecar_when_nothing_to_write(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    change = update_sidecar(photo, rating=None)
    assert not change.changed and not change.sidecar.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF", "well-formed"),
        ("<root/>", "rdf:RDF"),
        ("just text", "root element"),
    ],
)
def test_broken_sidecar_is_left_alone(tmp_path, content, message):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    side = tmp_path / "a.jpg.xmp"
    side.write_text(content)
    snapshot = fingerprint(side)
    with pytest.raises(XmpError, match=message):
        update_sidecar(photo, rating=5)
    (result,) = apply_ratings([(photo, 5, None, None)])
    assert result.error and message in result.error and not result.written
    assert fingerprint(side) == snapshot


def test_utf16_sidecar_is_refused(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    (tmp_path / "a.jpg.xmp").write_bytes(ADOBE_SIDECAR.encode("utf-16"))
    with pytest.raises(XmpError, match="UTF-16"):
        update_sidecar(photo, rating=5)


def test_symlinked_sidecar_stays_a_link(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    real = tmp_path / "elsewhere.xmp"
    real.write_text(ADOBE_SIDECAR)
    os.symlink(real, tmp_path / "a.jpg.xmp")
    update_sidecar(photo, rating=5)
    assert (tmp_path / "a.jpg.xmp").is_symlink()
    assert read_sidecar(real)["rating"] == "5"


def test_adobe_style_shared_sidecar(tmp_path):
    raw, jpg = tmp_path / "IMG_7.CR2", tmp_path / "IMG_7.jpg"
    raw.write_bytes(b"raw")
    jpg.write_bytes(b"jpg")
    conflict = apply_ratings([(raw, 5, None, None), (jpg, 3, None, None)], style="adobe")
    assert len(conflict) == 2 and all(c.error and "share" in c.error for c in conflict)
    assert not (tmp_path / "IMG_7.xmp").exists()
    agree = apply_ratings([(raw, 4, None, None), (jpg, 4, None, None)], style="adobe")
    assert [c.written for c in agree] == [True, False] and not any(c.error for c in agree)
    assert read_sidecar(tmp_path / "IMG_7.xmp")["rating"] == "4"
    ext = apply_ratings([(raw, 5, None, None), (jpg, 3, None, None)], style="ext")
    assert all(c.written for c in ext)


@needs_exiftool
def test_apply_plans_to_copied_library(tmp_path, photos_dir):
    names = ["DSCN0010.jpg", "jolla.jpg", "Kodak PIXPRO S-1.jpg"]
    paths = {}
    for i, n in enumerate(names):
        paths[i] = tmp_path / n
        shutil.copy2(photos_dir / n, paths[i])
    before = {p: fingerprint(p) for p in paths.values()}
    plans = {0: Rating(5, 90.0, label="Green"), 1: Rating(-1, 5.0), 2: Rating(3, 50.0, clear_label="Green"),
             99: Rating(1, 1.0)}
    items = ratings_items(paths, plans)
    assert len(items) == 3  # id 99 has no path
    dry = apply_ratings(items, dry_run=True)
    assert [c.new_rating for c in dry] == ["5", "-1", "3"] and not any(c.written for c in dry)
    assert not list(tmp_path.glob("*.xmp"))
    done = apply_ratings(items)
    assert all(c.written for c in done)
    for c, want in zip(done, (5, -1, 3), strict=True):
        assert exiftool(c.sidecar, "-XMP:Rating")["Rating"] == want
    assert {p: fingerprint(p) for p in paths.values()} == before
    assert not any(c.changed for c in apply_ratings(items))


def test_existing_permissions_survive(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    side = tmp_path / "a.jpg.xmp"
    side.write_text(ADOBE_SIDECAR)
    side.chmod(0o640)
    update_sidecar(photo, rating=1)
    assert side.stat().st_mode & 0o777 == 0o640
    assert read_sidecar(side)["rating"] == "1"
