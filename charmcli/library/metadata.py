"""Camera metadata (date, camera, lens, exposure) from a file's bytes, via exifread.

exifread is pure Python and understands JPEG, TIFF, HEIC, WebP, PNG and TIFF-based RAW. Malformed
EXIF is common (and has sent parsers into endless IFD loops), so every read goes through a
budgeted file object: past a byte/call/time budget it raises an exception that exifread cannot
swallow, and the photo simply gets empty metadata. Nothing here raises for bad input.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

import exifread

# exifread logs "File format not recognized." etc. at WARNING for every non-EXIF file; that is
# noise for a photo tool. Only quieten it if the application has not configured it itself.
_exif_logger = logging.getLogger("exifread")
if _exif_logger.level == logging.NOTSET:
    _exif_logger.setLevel(logging.ERROR)

#: Limits per file. Real EXIF parsing needs a few hundred reads and well under 0.1 s.
READ_CALL_BUDGET = 100_000
READ_SECONDS_BUDGET = 3.0


@dataclass
class PhotoMeta:
    """What the report and the export manifest show about a photo; ``None`` = not recorded."""

    date_taken: str | None = None  #: ISO 8601, e.g. "2022-02-16T12:55:41.762+01:00"
    make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    focal_length: float | None = None  #: millimetres
    f_number: float | None = None
    exposure_time: float | None = None  #: seconds
    iso: int | None = None
    orientation: int | None = None  #: EXIF 0x0112

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def is_empty(self) -> bool:
        return all(value is None for value in asdict(self).values())


class _BudgetExceeded(BaseException):
    """BaseException on purpose: exifread's non-strict mode catches ``Exception`` and goes on."""


class _BudgetedBytes(io.BytesIO):
    """A BytesIO that gives up after too many reads/seeks or too much time."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._calls = 0
        self._bytes_left = 16 * max(len(data), 1 << 20)
        self._deadline = time.monotonic() + READ_SECONDS_BUDGET

    def _spend(self, n: int = 0) -> None:
        self._calls += 1
        self._bytes_left -= n
        if self._calls > READ_CALL_BUDGET or self._bytes_left < 0 or time.monotonic() > self._deadline:
            raise _BudgetExceeded

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self._spend(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        self._spend()
        return super().seek(offset, whence)


def _exif_tags(data: bytes) -> dict[str, Any]:
    try:
        return exifread.process_file(
            _BudgetedBytes(data), details=False, strict=False, extract_thumbnail=False
        )
    except (Exception, _BudgetExceeded):
        return {}


def _pillow_exif_block(data: bytes) -> bytes | None:
    """The raw EXIF (TIFF) block Pillow finds at open, without decoding pixels.

    A fallback for containers exifread misses (WebP, PNG eXIf chunks); an eXIf after IDAT is
    deliberately not chased because Pillow would decode the whole image for it.
    """
    try:
        from PIL import Image

        from charmcli.library import decode  # noqa: F401 - registers HEIF and quiets Pillow's warnings

        with Image.open(io.BytesIO(data)) as im:
            block = im.info.get("exif")
    except Exception:
        return None
    return _strip_exif_header(block) if isinstance(block, bytes | bytearray) else None


def _strip_exif_header(block: bytes) -> bytes | None:
    if len(block) < 8:
        return None
    block = bytes(block)
    return block[6:] if block.startswith(b"Exif\x00\x00") else block


def read_metadata(data: bytes, *, exif_block: bytes | None = None) -> PhotoMeta:
    """Parse the EXIF in a file's bytes; malformed or absent EXIF gives empty fields, never errors.

    ``exif_block``: the EXIF block the decoder already found (``DecodedImage.exif_block``), so a
    WebP or PNG is not opened a second time to look for it.
    """
    tags = _exif_tags(data)
    if not tags and data.startswith((b"RIFF", b"\x89PNG")):
        block = _strip_exif_header(exif_block) if exif_block is not None else _pillow_exif_block(data)
        if block is not None and block[:4] in (b"II*\x00", b"MM\x00*"):
            tags = _exif_tags(block)  # exifread reads a bare EXIF block as a TIFF file
    return _from_tags(tags)


def _from_tags(tags: dict[str, Any]) -> PhotoMeta:
    meta = PhotoMeta()
    meta.date_taken = (
        _date(tags, "EXIF DateTimeOriginal", "EXIF SubSecTimeOriginal", "EXIF OffsetTimeOriginal")
        or _date(tags, "EXIF DateTimeDigitized", "EXIF SubSecTimeDigitized", "EXIF OffsetTimeDigitized")
        or _date(tags, "Image DateTime", "EXIF SubSecTime", "EXIF OffsetTime")
    )
    meta.make = _text(tags, "Image Make")
    meta.camera_model = _text(tags, "Image Model")
    meta.lens = _text(tags, "EXIF LensModel")
    if meta.lens is None:
        meta.lens = _text(tags, "EXIF LensMake")
    meta.focal_length = _number(tags, "EXIF FocalLength")
    meta.f_number = _number(tags, "EXIF FNumber")
    meta.exposure_time = _number(tags, "EXIF ExposureTime")
    iso = _number(tags, "EXIF ISOSpeedRatings") or _number(tags, "EXIF PhotographicSensitivity")
    meta.iso = int(iso) if iso and iso > 0 else None
    orientation = _number(tags, "Image Orientation")
    meta.orientation = int(orientation) if orientation and 1 <= orientation <= 8 else None
    return meta


def _first_value(tags: dict[str, Any], key: str) -> Any:
    tag = tags.get(key)
    values = getattr(tag, "values", None)
    if isinstance(values, str | bytes):
        return values
    if isinstance(values, list | tuple) and values:
        return values[0]
    return None


def _text(tags: dict[str, Any], key: str) -> str | None:
    value = _first_value(tags, key)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = " ".join(value.replace("\x00", " ").split())
    return value or None


def _number(tags: dict[str, Any], key: str) -> float | None:
    value = _first_value(tags, key)
    try:
        if isinstance(value, Fraction):
            if value.denominator == 0:
                return None
            return float(value)
        if isinstance(value, int | float):
            return float(value)
    except (ZeroDivisionError, ValueError, OverflowError):
        return None
    return None


def _date(tags: dict[str, Any], key: str, subsec_key: str, offset_key: str) -> str | None:
    """EXIF "YYYY:MM:DD HH:MM:SS" (+ sub-seconds, + offset) -> ISO 8601, or None if unusable."""
    raw = _text(tags, key)
    if not raw:
        return None
    try:
        moment = datetime.strptime(raw[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None  # blanks, "0000:00:00 00:00:00" and other placeholders
    text = moment.isoformat()
    subsec = _text(tags, subsec_key)
    if subsec and subsec.isdigit():
        digits = subsec[:6]  # a fraction of a second: "7" = .700, pad to 3 or 6 digits for ISO
        text += "." + digits.ljust(3 if len(digits) <= 3 else 6, "0")
    offset = _text(tags, offset_key)
    if offset and len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
        try:
            datetime.fromisoformat(text + offset)
            text += offset
        except ValueError:
            pass
    return text
