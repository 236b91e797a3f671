"""metadata.py: EXIF fields from real camera files; malformed EXIF never hangs or raises."""

from __future__ import annotations

import io
import math
import struct
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import exifread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

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
    assert meta.make and meta.camera_model
    assert meta.make == meta.make.strip() and "\x00" not in meta.camera_model
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


class _ReadLog(list):
    """Every budgeted file object :func:`read_metadata` made, with what it read through it."""


@pytest.fixture
def read_log(monkeypatch) -> _ReadLog:
    """Record each parse's reads/seeks and bytes, and whether its budget stopped it.

    The time budget is switched off (infinite) so that only counts, which do not depend on the
    machine, decide; the time budget has its own test with a clock the test drives.
    """
    log = _ReadLog()

    class Recording(metadata._BudgetedBytes):
        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.size, self.calls, self.bytes, self.stopped = len(data), 0, 0, False
            log.append(self)

        def _spend(self, n: int = 0) -> None:
            self.calls += 1
            self.bytes += n
            try:
                super()._spend(n)
            except BaseException:
                self.stopped = True
                raise

    monkeypatch.setattr(metadata, "_BudgetedBytes", Recording)
    monkeypatch.setattr(metadata, "READ_SECONDS_BUDGET", math.inf)
    return log


#: What a real EXIF parse costs: the shared camera files need at most ~1,600 reads/seeks and a
#: few kB (corrupted.jpg's maker notes are the most). A parser sent into a loop by bad EXIF
#: spends up to the budget (100,000 calls) instead, so a tenth of it separates the two.
REAL_PARSE_CALLS = metadata.READ_CALL_BUDGET // 10


def test_bad_files_never_raise_and_stay_within_a_real_parse_cost(
    shared_photos: Path, read_log: _ReadLog, monkeypatch
) -> None:
    pixel_loads: list[str] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: pixel_loads.append(im.format) or real_load(im))
    for path in sorted((shared_photos / "bad").iterdir()):
        read_log.clear()
        meta = read_metadata(path.read_bytes())
        assert isinstance(meta, PhotoMeta)
        assert read_log, path.name  # the bytes went through the budgeted reader
        for fh in read_log:
            assert not fh.stopped, f"{path.name}: only the budget stopped the parser"
            assert fh.calls < REAL_PARSE_CALLS, (path.name, fh.calls)
            assert fh.bytes <= max(fh.size, 1 << 16), (path.name, fh.bytes)
    # Metadata never decodes pixels (the Pillow fallback for WebP/PNG only opens the file).
    assert pixel_loads == []
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
    assert (meta.make, meta.camera_model, meta.lens) == ("Maker", "Model", "Lens 50mm")
    # A placeholder DateTimeOriginal falls back to the next field.
    data = _jpeg_with_exif({0x0132: "2020:01:02 03:04:05"}, {0x9003: "0000:00:00 00:00:00"})
    assert read_metadata(data).date_taken == "2020-01-02T03:04:05"


def test_no_exif_gives_empty_fields() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    for data in (b"", b"not an image", buf.getvalue()):
        assert read_metadata(data).is_empty()


def test_ifd_loop_terminates(read_log: _ReadLog) -> None:
    """A TIFF whose IFD points at itself as the next IFD: a classic parser trap. The one entry
    is still read, and the loop is noticed at once (not by running into the budget)."""
    entry = struct.pack("<HHII", 0x0112, 3, 1, 6)  # Orientation = 6
    data = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 8)
    meta = read_metadata(data)
    assert meta.orientation == 6
    assert len(read_log) == 1 and not read_log[0].stopped and read_log[0].calls < 1_000


class _Looping:
    """exifread replaced by a parser that never ends: it re-reads the file until stopped.

    It gives up by itself after ``cap`` rounds, so a budget that fails to stop it fails the test
    (rather than hanging it). ``tick`` runs before each round (a fake clock advances there).
    """

    def __init__(self, *, chunk: int | None, swallow: bool, cap: int, tick=None) -> None:
        self.chunk, self.swallow, self.cap, self.tick = chunk, swallow, cap, tick
        self.rounds = 0
        self.stopped = False

    def __call__(self, fh, **kwargs):
        try:
            while self.rounds < self.cap:
                if self.tick:
                    self.tick()
                try:
                    fh.seek(0)
                    fh.read(-1 if self.chunk is None else self.chunk)
                except Exception:
                    if not self.swallow:
                        raise
                self.rounds += 1
        except BaseException:
            self.stopped = True
            raise
        return {}


@pytest.mark.parametrize("swallow", [False, True], ids=["raises", "catches-Exception"])
def test_call_budget_stops_a_looping_parser(monkeypatch, read_log: _ReadLog, swallow: bool) -> None:
    """Even a parser that loops forever and catches Exception is stopped, after exactly the budget."""
    parser = _Looping(chunk=16, swallow=swallow, cap=10_000)
    monkeypatch.setattr(exifread, "process_file", parser)
    monkeypatch.setattr(metadata, "READ_CALL_BUDGET", 1_000)
    assert read_metadata(b"\xff\xd8\xff\xe1" + b"\x00" * 100).is_empty()
    assert parser.stopped and read_log[0].stopped
    assert read_log[0].calls == 1_001  # seek + read per round: the 1,001st call is refused
    assert parser.rounds == 500


def test_byte_budget_stops_a_parser_rereading_a_big_file(monkeypatch, read_log: _ReadLog) -> None:
    """Few calls but endless bytes: stopped once it has read 16 times the file."""
    parser = _Looping(chunk=None, swallow=True, cap=1_000)
    monkeypatch.setattr(exifread, "process_file", parser)
    data = b"\xff\xd8\xff\xe1" + bytes(2 << 20)  # over 1 MiB, so the budget is 16 x its size
    assert read_metadata(data).is_empty()
    assert parser.stopped and read_log[0].stopped
    assert parser.rounds == 16 and read_log[0].bytes == 17 * len(data)


def test_time_budget_stops_a_slow_parser(monkeypatch, read_log: _ReadLog) -> None:
    """The time budget against a clock the test drives: each round of the parser takes 1 s."""
    now = [1000.0]
    monkeypatch.setattr(metadata, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(metadata, "READ_SECONDS_BUDGET", 3.0)

    def tick() -> None:
        now[0] += 1.0

    parser = _Looping(chunk=16, swallow=True, cap=100, tick=tick)
    monkeypatch.setattr(exifread, "process_file", parser)
    assert read_metadata(b"\xff\xd8\xff\xe1" + b"\x00" * 100).is_empty()
    assert parser.stopped and read_log[0].stopped
    assert 3.0 < now[0] - 1000.0 <= 4.0  # stopped in the first round past the budget
    assert read_log[0].calls < 10


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=4))
def test_damaged_exif_never_raises(prefix: bytes, pos: int, patch: bytes) -> None:
    blob = bytearray(
        _jpeg_with_exif({0x010F: "Make", 0x0112: 3}, {0x9003: "2021:06:01 10:20:30", 0x829A: (1, 250)})
    )
    pos = min(pos, len(blob) - len(patch))
    blob[pos : pos + len(patch)] = patch
    assert isinstance(read_metadata(prefix + bytes(blob)), PhotoMeta)
