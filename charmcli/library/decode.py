"""Turn the bytes of one photo file into the RGB ``PIL.Image`` the scorer gets.

Each file is read once (:func:`read_bytes`); hashing, decoding and EXIF all work on those bytes,
so the cache key (sha256) always describes exactly the pixels that were scored.

Two policies:

* ``exact=True`` is the official Charm pipeline, ``Image.open(f).convert("RGB")`` and nothing
  else, for reproducing published numbers.
* the default shows the model the photo *as people see it*: EXIF orientation applied, transparency
  composited on white, 16-bit data scaled (not clipped), CMYK colour-managed, and a long-side cap
  (``max_side``) that is the official para/spaq bicubic rule, so for those models the scorer's own
  pre-resize becomes a no-op. Big JPEGs are first shrunk by libjpeg's DCT scaling (``draft``),
  which skips most of the decode work.

Every failure, whatever Pillow raised, becomes a :class:`DecodeError` whose ``str`` is one line.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from charmcli.library.resize import long_side_size
from charmcli.library.scan import RAW_EXTENSIONS

try:  # optional: HEIC/HEIF
    import pillow_heif

    pillow_heif.register_heif_opener()
    HAVE_HEIF = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_HEIF = False

try:  # optional: JPEG XL (a Pillow plugin; importing it registers the format)
    import pillow_jxl  # noqa: F401

    HAVE_JXL = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_JXL = False

try:  # optional: camera RAW
    import rawpy

    HAVE_RAWPY = True
except ImportError:  # pragma: no cover - depends on the environment
    rawpy = None
    HAVE_RAWPY = False

#: Default pixel limit: 2 × Pillow's ``MAX_IMAGE_PIXELS`` ≈ 179 MP. It admits every current camera
#: (Phase One IQ4 151 MP, Fujifilm GFX100 102 MP) and most stitched panoramas, while a decoded
#: 179 MP RGB image is already ~540 MB per worker. It is also Pillow's own hard limit, so the
#: default needs no change to Pillow's globals; ``--max-pixels`` can go higher (see
#: :func:`_allow_in_pillow`).
DEFAULT_MAX_PIXELS = 2 * 89_478_485

#: The long side a photo is scaled down to before scoring (``--max-side``; 0 = native resolution):
#: the size the official para/spaq preprocessing resizes to, and fast on a CPU.
DEFAULT_MAX_SIDE = 1024

#: A JPEG is drafted only when libjpeg can deliver at least this multiple of the final size, so
#: the final bicubic resize still low-pass filters (draft alone is a crude box filter).
DRAFT_FACTOR = 2

# Our own max_pixels check replaces Pillow's bomb *warning* (the error still stands), and corrupt
# EXIF is a reason to ignore the tag, not to print to stderr from worker threads. These filters
# are process-wide on purpose: warnings.catch_warnings() per call would race between decoding
# threads. They are re-checked on every decode because a caller's catch_warnings() block (pytest
# wraps every test in one) restores the filter list it saw, dropping ours.
_QUIET = (
    (Image.DecompressionBombWarning, None),
    (UserWarning, r"PIL(\.|$)"),
)


def _quiet_pillow_warnings() -> None:
    present = {(f[0], f[2], getattr(f[3], "pattern", f[3]) or None) for f in warnings.filters}
    for category, module in _QUIET:
        if ("ignore", category, module) not in present:
            warnings.filterwarnings("ignore", category=category, module=module or "")


_quiet_pillow_warnings()

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_pillow_limit_lock = threading.Lock()
_srgb_profile: ImageCms.ImageCmsProfile | None = None


class DecodeError(Exception):
    """A file that cannot become an RGB image; ``str(e)`` is one line for the user.

    ``kind`` groups failures for summaries: ``empty``, ``unreadable``, ``unsupported``,
    ``missing-dependency``, ``too-large``, ``truncated``, ``corrupt``.
    """

    def __init__(self, reason: str, kind: str = "corrupt") -> None:
        reason = " ".join(str(reason).split())  # one line, whatever the source said
        if len(reason) > 300:
            reason = reason[:297] + "..."
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass
class DecodedImage:
    """A decoded photo plus what the cache and the report need to know about it."""

    image: Image.Image  #: mode "RGB", what the scorer gets
    sha256: str  #: hex sha256 of the file bytes
    size_bytes: int
    width: int  #: as displayed (after EXIF orientation when applied), before any downscale
    height: int
    format: str | None
    orientation: int | None  #: EXIF 0x0112 as found (None if absent)
    n_frames: int
    warnings: list[str] = field(default_factory=list)  #: one-line notes
    preprocess: str = ""  #: short stable tag of the policy, part of the score cache key
    exif_block: bytes | None = None  #: the raw EXIF block Pillow found (metadata reuses it)


def preprocess_tag(*, exact: bool = False, max_side: int = DEFAULT_MAX_SIDE, use_draft: bool = True) -> str:
    """The ``preprocess`` tag a decode with these options produces (lets a cache check first).

    Draft decoding changes pixels slightly, so turning it off changes the tag.
    """
    if exact:
        return "exact"
    tag = f"max{max_side}" if max_side > 0 else "native"
    return tag if use_draft else tag + "-nodraft"


def read_bytes(path: os.PathLike[str] | str | bytes) -> bytes:
    """Read a whole regular file; refuse FIFOs/devices without blocking on them.

    ``O_NONBLOCK`` makes opening a FIFO return at once (plain ``open`` would wait for a writer);
    the fstat check then rejects it. Raises :class:`DecodeError` (kind ``unreadable``).
    """
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise DecodeError(f"cannot read: {exc.strerror or type(exc).__name__}", "unreadable") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DecodeError("not a regular file", "unreadable")
        chunks = []
        while chunk := os.read(fd, max(st.st_size, 1 << 16)):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise DecodeError(f"cannot read: {exc.strerror or type(exc).__name__}", "unreadable") from exc
    finally:
        os.close(fd)


def load_image(
    path: os.PathLike[str] | str,
    *,
    exact: bool = False,
    max_side: int = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_draft: bool = True,
) -> DecodedImage:
    """:func:`read_bytes` + :func:`decode_image`; the file name picks the RAW decoder."""
    data = read_bytes(path)
    return decode_image(
        data,
        name=os.fsdecode(path),
        exact=exact,
        max_side=max_side,
        max_pixels=max_pixels,
        use_draft=use_draft,
    )


def decode_image(
    data: bytes,
    *,
    name: str = "",
    exact: bool = False,
    max_side: int = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_draft: bool = True,
    sha256: str | None = None,
) -> DecodedImage:
    """Decode one file's bytes into an RGB image under the chosen policy (see module doc).

    ``max_side``: cap on the long side (official para/spaq bicubic rule); 0 = native resolution.
    ``max_pixels``: refuse larger images before decoding any pixel; 0 = no limit.
    ``name``: only for messages and to route RAW extensions to rawpy.
    ``sha256``: the bytes' hex digest when the caller has hashed them already (hashed once).
    Raises :class:`DecodeError` for every failure; the first failure is final (no retries).
    """
    if max_side < 0:
        raise ValueError("max_side must be >= 0 (0 = native resolution)")
    _quiet_pillow_warnings()
    digest = sha256 or hashlib.sha256(data).hexdigest()
    tag = preprocess_tag(exact=exact, max_side=max_side, use_draft=use_draft)
    ext = os.path.splitext(name)[1].lower()
    try:
        if ext in RAW_EXTENSIONS or (not name and _looks_like_raw(data)):
            result = _decode_raw(
                data, ext, exact=exact, max_side=max_side, max_pixels=max_pixels, use_draft=use_draft
            )
        else:
            result = _decode_pillow(
                data, exact=exact, max_side=max_side, max_pixels=max_pixels, use_draft=use_draft
            )
    except DecodeError:
        raise
    except Exception as exc:  # every failure of a single file is reported, never raised raw
        raise _describe(exc, data) from exc
    result.sha256 = digest
    result.size_bytes = len(data)
    result.preprocess = tag
    return result


# --- Pillow path ---------------------------------------------------------------------------------


def _decode_pillow(
    data: bytes, *, exact: bool, max_side: int, max_pixels: int, use_draft: bool
) -> DecodedImage:
    _allow_in_pillow(max_pixels)
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise _unidentified(data) from exc
    fmt = im.format
    _check_pixels(im.size, max_pixels, fmt)
    n_frames = int(getattr(im, "n_frames", 1) or 1)
    notes = _frame_notes(fmt, n_frames)

    if exact:
        # The official pipeline, bit for bit: no orientation, no resize, Pillow's own convert.
        im.load()
        rgb = im.convert("RGB")
        return DecodedImage(
            rgb, "", 0, rgb.width, rgb.height, fmt, _orientation_as_found(im), n_frames, notes
        )

    # EXIF must not be read before load() except for JPEG: Pillow's PNG getexif() decodes the whole
    # image, which would swallow the first load failure (and a second load "succeeds" on some files).
    is_jpeg = fmt in ("JPEG", "MPO")
    if not is_jpeg:
        im.load()
    exif = _exif_of(im)  # parsed once, for both orientations below
    orientation = _orientation_as_found(im, exif)
    # pillow-heif has already rotated HEIF pixels (and reports 1), so the live tag is what to apply.
    live = _live_orientation(exif, notes)
    w, h = im.size
    disp_w, disp_h = (h, w) if live in (5, 6, 7, 8) else (w, h)
    target = long_side_size(disp_w, disp_h, max_side)
    block = im.info.get("exif")

    if is_jpeg:
        if use_draft and target != (disp_w, disp_h):
            want = (target[0] * DRAFT_FACTOR, target[1] * DRAFT_FACTOR)
            if live in (5, 6, 7, 8):
                want = (want[1], want[0])  # draft works in stored orientation
            if want[0] < w and want[1] < h:
                im.draft("RGB", want)
        im.load()
    if live in _TRANSPOSE:
        im = im.transpose(_TRANSPOSE[live])
    rgb = _to_rgb(im, notes)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.BICUBIC)
    decoded = DecodedImage(rgb, "", 0, disp_w, disp_h, fmt, orientation, n_frames, notes)
    decoded.exif_block = bytes(block) if isinstance(block, bytes | bytearray) else None
    return decoded


def image_size(data: bytes, name: str = "") -> tuple[int, int] | None:
    """Width and height from the header alone (no pixels decoded); ``None`` if unknown or RAW."""
    if os.path.splitext(name)[1].lower() in RAW_EXTENSIONS:
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # the decode proper reports what is wrong
        return None


def _exif_of(im: Image.Image) -> Image.Exif | None:
    try:
        return im.getexif()
    except Exception:  # unreadable EXIF means "no tags"
        return None


def _frame_notes(fmt: str | None, n_frames: int) -> list[str]:
    if n_frames <= 1 or fmt == "MPO":  # MPO extra frames are previews / stereo pairs, not animation
        return []
    if fmt == "TIFF":
        return [f"multi-page TIFF: scored page 1 of {n_frames}"]
    if fmt == "HEIF":
        return [f"HEIF with {n_frames} images: scored the primary image"]
    return [f"animated {fmt or 'image'}: scored frame 1 of {n_frames}"]


def _orientation_as_found(im: Image.Image, exif: Image.Exif | None = None) -> int | None:
    """EXIF 0x0112 as stored in the file (pillow-heif keeps the pre-rotation value aside)."""
    original = im.info.get("original_orientation")
    if isinstance(original, int):
        return original
    if exif is None:
        exif = _exif_of(im)
    value = exif.get(_ORIENTATION_TAG) if exif is not None else None
    return value if isinstance(value, int) else None


def _live_orientation(exif: Image.Exif | None, notes: list[str]) -> int:
    try:
        value = exif.get(_ORIENTATION_TAG) if exif is not None else None
    except Exception:
        return 1
    if value is None or value == 1:
        return 1
    if value in _TRANSPOSE:
        return int(value)
    notes.append(f"ignored invalid EXIF orientation {value!r}")
    return 1


def _check_pixels(size: tuple[int, int], max_pixels: int, fmt: str | None) -> None:
    w, h = size
    if max_pixels > 0 and w * h > max_pixels:
        raise DecodeError(_too_large(w * h, max_pixels, f"{fmt or 'image'} {w}x{h}"), "too-large")


def _too_large(pixels: int, limit: int, what: str) -> str:
    return (
        f"{what} = {pixels / 1e6:.1f} MP exceeds the {limit / 1e6:.0f} MP pixel limit; "
        f"raise it with --max-pixels {pixels} if you trust this file"
    )


def _allow_in_pillow(max_pixels: int) -> None:
    """Make sure Pillow's own bomb *error* does not undercut a higher user limit.

    Pillow raises at 2 × ``MAX_IMAGE_PIXELS`` whatever the caller wants. The global is only ever
    raised, never lowered or restored, so there is no set/restore race between threads; our own
    check (right after open, before any pixel is decoded) enforces the caller's limit.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is None or (max_pixels > 0 and max_pixels <= 2 * current):
        return
    with _pillow_limit_lock:
        current = Image.MAX_IMAGE_PIXELS
        if current is None:
            return
        if max_pixels <= 0:
            Image.MAX_IMAGE_PIXELS = None
        elif max_pixels > 2 * current:
            Image.MAX_IMAGE_PIXELS = (max_pixels + 1) // 2


# --- mode conversion -----------------------------------------------------------------------------


def _to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """Any Pillow mode -> RGB by what the values *mean* (not by clipping)."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(im), mode, notes), "L").convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(im, notes)
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema() == (255, 255):
            return rgba.convert("RGB")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba.convert("RGB"), mask=alpha)
        return background
    return im.convert("RGB")


def _to_uint8(arr: np.ndarray, mode: str, notes: list[str]) -> np.ndarray:
    """Scale one-channel 16/32-bit or float samples to 0..255 with rounding."""
    if mode in _SIXTEEN_BIT_MODES:
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    values = arr.astype(np.float64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = values * 255.0
    elif mode == "I" and lo >= 0 and hi <= 65535:
        scaled = values * (255.0 / 65535.0)  # 32-bit container holding 16-bit data (PNG/PGM/TIFF)
    else:
        # No known range: stretch what is there, and say so.
        span = hi - lo if hi > lo else 1.0
        scaled = (values - lo) * (255.0 / span)
        notes.append(f"{mode} image with values {lo:g}..{hi:g}: stretched to 0..255")
    return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """CMYK through its embedded ICC profile when there is one (print profiles matter a lot)."""
    global _srgb_profile
    icc = im.info.get("icc_profile")
    if icc:
        try:
            if _srgb_profile is None:
                _srgb_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, source, _srgb_profile, outputMode="RGB")
            if out is not None:
                return out
        except Exception as exc:  # a bad profile degrades to the plain conversion
            notes.append(f"CMYK ICC profile unusable ({type(exc).__name__}); plain conversion")
    return im.convert("RGB")


# --- RAW path ------------------------------------------------------------------------------------

# LibRaw "flip" -> EXIF orientation
_FLIP_TO_EXIF = {0: 1, 3: 3, 5: 8, 6: 6}


def _looks_like_raw(data: bytes) -> bool:
    head = data[:16]
    return head.startswith((b"FUJIFILMCCD-RAW", b"IIRO", b"IIRS", b"IIU\x00")) or (
        head[4:8] == b"ftyp" and head[8:12] == b"crx "
    )


def _decode_raw(
    data: bytes, ext: str, *, exact: bool, max_side: int, max_pixels: int, use_draft: bool
) -> DecodedImage:
    """RAW via rawpy: the camera's embedded JPEG when big enough, else a (half-size) demosaic."""
    fmt = ext.lstrip(".").upper() or "RAW"
    if not HAVE_RAWPY:
        raise DecodeError(f"{fmt} RAW needs rawpy: pip install 'charmcli[raw]'", "missing-dependency")
    with rawpy.imread(io.BytesIO(data)) as raw:
        sizes = raw.sizes
        orientation = _FLIP_TO_EXIF.get(sizes.flip, 1)
        w, h = (sizes.height, sizes.width) if sizes.flip in (5, 6) else (sizes.width, sizes.height)
        _check_pixels((w, h), max_pixels, fmt)
        target = (w, h) if exact else long_side_size(w, h, max_side)
        notes: list[str] = []

        if not exact and max_side > 0:
            preview = _raw_preview(
                raw, orientation, max_side=max_side, max_pixels=max_pixels, use_draft=use_draft
            )
            if preview is not None:
                rgb = preview.resize(target, Image.Resampling.BICUBIC) if preview.size != target else preview
                notes.append(f"RAW: scored the embedded {preview.width}x{preview.height} preview")
                return DecodedImage(rgb, "", 0, w, h, fmt, orientation, 1, notes)

        # half_size skips demosaicing (4x faster) and is still >= the final size.
        half = not exact and max_side > 0 and max(w, h) // 2 >= max_side
        array = raw.postprocess(use_camera_wb=True, half_size=half, output_bps=8)
    rgb = Image.fromarray(array, "RGB")
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.BICUBIC)
    notes.append("RAW: demosaiced" + (" at half size" if half else "") + " with camera white balance")
    if exact:
        notes.append("RAW has no official decoder; exact mode used a full-size rawpy demosaic")
    return DecodedImage(rgb, "", 0, w, h, fmt, orientation, 1, notes)


def _raw_preview(
    raw, orientation: int, *, max_side: int, max_pixels: int, use_draft: bool
) -> Image.Image | None:
    """The embedded JPEG/bitmap preview, upright, if its long side reaches ``max_side``."""
    try:
        thumb = raw.extract_thumb()
    except Exception:  # no preview (LibRawNoThumbnailError) or an unreadable one
        return None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            im = Image.open(io.BytesIO(thumb.data))
            _check_pixels(im.size, max_pixels, "RAW preview")
            if max(im.size) < max_side:
                return None
            decoded = _decode_pillow(
                bytes(thumb.data), exact=False, max_side=0, max_pixels=max_pixels, use_draft=use_draft
            )
            image, own_orientation = decoded.image, decoded.orientation
        else:
            image, own_orientation = Image.fromarray(np.asarray(thumb.data)).convert("RGB"), None
            if max(image.size) < max_side:
                return None
    except Exception:  # a broken preview just means "demosaic instead"
        return None
    if own_orientation in (None, 1) and orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])  # previews are stored as the sensor saw them
    return image


# --- error descriptions --------------------------------------------------------------------------

_BRANDS_HEIF = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_BRANDS_AVIF = {b"avif", b"avis"}


def _sniff(data: bytes) -> str | None:
    """A format name from magic bytes, for messages when Pillow could not say."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _BRANDS_HEIF:
            return "HEIF"
        if brand in _BRANDS_AVIF:
            return "AVIF"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "JPEG XL"
    return None


def _unidentified(data: bytes) -> DecodeError:
    """Why Pillow could not even identify the bytes, in words."""
    if not data:
        return DecodeError("empty file (0 bytes)", "empty")
    kind = _sniff(data)
    if kind == "HEIF" and not HAVE_HEIF:
        return DecodeError("HEIC needs pillow-heif: pip install 'charmcli[heif]'", "missing-dependency")
    if kind == "AVIF":
        return DecodeError(
            "AVIF is not supported by this Pillow build (Pillow >= 11.3 wheels include it)",
            "missing-dependency",
        )
    if kind == "JPEG XL":
        if HAVE_JXL:
            return DecodeError("corrupt JPEG XL (header not recognised)", "corrupt")
        return DecodeError("JPEG XL needs pillow-jxl-plugin: pip install 'charmcli[jxl]'", "missing-dependency")
    if kind is not None:
        return DecodeError(f"corrupt {kind} (header not recognised)", "corrupt")
    head = data[:512]
    if head.startswith(b"%PDF"):
        return DecodeError("PDF document, not an image", "unsupported")
    if head.startswith(b"PK\x03\x04"):
        return DecodeError("ZIP archive, not an image", "unsupported")
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:200]:
        return DecodeError("HTML page, not an image (a saved web page?)", "unsupported")
    if b"<svg" in text:
        return DecodeError("SVG vector image is not supported", "unsupported")
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        decoded = ""
    if decoded and all(ch.isprintable() or ch in "\r\n\t" for ch in decoded):
        return DecodeError("text file, not an image", "unsupported")
    return DecodeError(f"not a recognised image format (starts with {data[:8].hex(' ')})", "unsupported")


_BOMB_RE = re.compile(r"Image size \((\d+) pixels\) exceeds limit of (\d+)")


def _describe(exc: Exception, data: bytes) -> DecodeError:
    """Map any exception from open/load/convert to a one-line DecodeError."""
    fmt = _sniff(data) or "image"
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, Image.DecompressionBombError):
        match = _BOMB_RE.search(message)
        if match:
            pixels, limit = int(match.group(1)), int(match.group(2))
            return DecodeError(_too_large(pixels, limit, f"{fmt} image"), "too-large")
        return DecodeError(f"{fmt} too large ({message})", "too-large")
    if isinstance(exc, MemoryError):
        return DecodeError(
            f"out of memory decoding {fmt}; lower --max-pixels or use fewer workers", "too-large"
        )
    if rawpy is not None and isinstance(exc, rawpy.LibRawError):
        return DecodeError(f"RAW decoder failed ({type(exc).__name__}: {message})", "corrupt")
    if isinstance(exc, OSError) and "truncated" in message:
        return DecodeError(f"truncated {fmt} ({message})", "truncated")
    if isinstance(exc, EOFError):
        return DecodeError(f"truncated {fmt} (unexpected end of data)", "truncated")
    return DecodeError(f"corrupt {fmt} ({type(exc).__name__}: {message})", "corrupt")


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "HAVE_HEIF",
    "HAVE_JXL",
    "HAVE_RAWPY",
    "DecodeError",
    "DecodedImage",
    "decode_image",
    "image_size",
    "load_image",
    "preprocess_tag",
    "read_bytes",
]
