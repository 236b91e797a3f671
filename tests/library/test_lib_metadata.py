"""metadata.py: EXIF fields from real camera files; malformed EXIF never hangs or raises."""

from __future__ import annotations

import io
import struct
import time
from datetime import datetime
from pathlib import Path

import exifread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from charmcli.library import metadata
from charmcli.library.metadata import PhotoMeta, read_metadata

CAMERA_FILES = [
    "DSCN0010.jpg",
    "jolla.jpg",
    "Kodak PIXPRO S-1.jpg",
    "Nikon Coolpix P7000.webp",
    "iphone_13_pro_max.HEIC",
]


def _manifest_orientation(row: dict[str, str]) -> int | None:
    """MANIFEST's EXIF tag; for the HEIC the note in brackets holds the value stored in the file."""
    text = row["exif_orientation"]
    if "orientation" in text:  # "1 (pillow-heif already applied HEIF/EXIF orientation 6)"
        return int(text.rstrip(")").split()[-1])
    return int(text) if text else None


@pytest.mark.parametrize("name", CAMERA_FILES)
def test_camera_files(shared_photos: Path, manifest: dict, name: str) -> None:
    meta = read_metadata((shared_photos / name).read_bytes())
    assert meta.make and meta.model
    assert meta.make == meta.make.strip() and "\x00" not in meta.model
    assert meta.date_taken and datetime.fromisoformat(meta.date_taken).year > 1990
    assert meta.focal_length and meta.focal_length > 0
    assert meta.f_number and 0.7 < meta.f_number < 64
    assert meta.exposure_time and 0 < meta.exposure_time < 60
    assert isinstance(meta.iso, int) and meta.iso > 0
    assert meta.orientation == _manifest_orientation(manifest[name])
    assert set(meta.to_dict()) == {f for f in PhotoMeta.__dataclass_fields__}


def test_iphone_date_has_subseconds_and_offset(shared_photos: Path) -> None:
    meta = read_metadata((shared_photos / "iphone_13_pro_max.HEIC").read_bytes())
    moment = datetime.fromisoformat(meta.date_taken)
    assert moment.microsecond > 0 and moment.utcoffset() is not None
    assert meta.lens  # iPhones record LensModel


def test_orientation_samples(shared_photos: Path) -> None:
    for n in range(1, 9):
        assert (
            read_metadata((shared_photos / f"exif_orientation/landscape_{n}.jpg").read_bytes()).orientation
            == n
        )


def test_bad_files_never_raise_or_hang(shared_photos: Path) -> None:
    for path in sorted((shared_photos / "bad").iterdir()):
        start = time.monotonic()
        meta = read_metadata(path.read_bytes())
        assert isinstance(meta, PhotoMeta)
        assert time.monotonic() - start < 2.0, path.name
    # The damage in corrupted.jpg is in the maker notes: the main fields still read.
    corrupted = read_metadata((shared_photos / "bad" / "corrupted.jpg").read_bytes())
    assert corrupted.make and corrupted.date_taken


def _jpeg_with_exif(ifd0: dict[int, object], exif_ifd: dict[int, object]) -> bytes:
    exif = Image.Exif()
    exif.update(ifd0)
    sub = exif.get_ifd(0x8769)
    sub.update(exif_ifd)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def test_date_fields_and_fallbacks() -> None:
    data = _jpeg_with_exif(
        {0x010F: "Maker\x00", 0x0110: "  Model  ", 0x0132: "2020:01:02 03:04:05"},
        {0x9003: "2021:06:01 10:20:30", 0x9291: "05", 0x9011: "+02:00", 0xA434: "Lens 50mm"},
    )
    meta = read_metadata(data)
    assert meta.date_taken == "2021-06-01T10:20:30.050+02:00"
    assert (meta.make, meta.model, meta.lens) == ("Maker", "Model", "Lens 50mm")
    # A placeholder DateTimeOriginal falls back to the next field.
    data = _jpeg_with_exif({0x0132: "2020:01:02 03:04:05"}, {0x9003: "0000:00:00 00:00:00"})
    assert read_metadata(data).date_taken == "2020-01-02T03:04:05"


def test_no_exif_gives_empty_fields() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    for data in (b"", b"not an image", buf.getvalue()):
        assert read_metadata(data).is_empty()


def test_ifd_loop_terminates() -> None:
    """A TIFF whose IFD points at itself as the next IFD: a classic parser trap."""
    entry = struct.pack("<HHII", 0x0112, 3, 1, 6)  # Orientation = 6
    data = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 8)
    start = time.monotonic()
    meta = read_metadata(data)
    assert time.monotonic() - start < 5
    assert meta.orientation in (6, None)


@pytest.mark.parametrize("swallow", [False, True])
def test_budget_stops_a_looping_parser(monkeypatch, swallow: bool) -> None:
    """Even a parser that loops forever and catches Exception is stopped by the read budget."""

    def looping(fh, **kwargs):
        while True:
            try:
                fh.seek(0)
                fh.read(16)
            except Exception:
                if not swallow:
                    raise

    monkeypatch.setattr(exifread, "process_file", looping)
    monkeypatch.setattr(metadata, "READ_SECONDS_BUDGET", 0.5)
    start = time.monotonic()
    assert read_metadata(b"\xff\xd8\xff\xe1" + b"\x00" * 100).is_empty()
    assert time.monotonic() - start < 10


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=4))
def test_damaged_exif_never_raises(prefix: bytes, pos: int, patch: bytes) -> None:
    blob = bytearray(
        _jpeg_with_exif({0x010F: "Make", 0x0112: 3}, {0x9003: "2021:06:01 10:20:30", 0x829A: (1, 250)})
    )
    pos = min(pos, len(blob) - len(patch))
    blob[pos : pos + len(patch)] = patch
    assert isinstance(read_metadata(prefix + bytes(blob)), PhotoMeta)
