"""Pictures for the desk: thumbnails and previews made once and cached, full size and explain on demand.

Every picture is a fresh JPEG rendering of the photo decoded by
:func:`charmcli.library.decode.decode_image` (EXIF orientation applied, every format charm reads,
RAW through its embedded preview, big JPEGs drafted), so the browser never gets the original's
bytes and a format it cannot show (HEIC, TIFF, DNG) still shows.

**What may be rendered.** The desk hands over an entry it knows (see :mod:`.desk`); before a
photo is opened its size must still be the size the store recorded, and after it is read its
sha256 must be the content that was scored. A file swapped since scoring — a symlink pointed at
``~/.ssh/id_rsa`` or at a photo outside the library, a different picture under the old name —
fails that check and nothing is rendered. ``read_bytes`` refuses FIFOs and devices.

**The cache** lives in charm's data folder (``<user data dir>/charm/review-cache``, platformdirs;
``$CHARM_REVIEW_CACHE`` overrides), never beside the photos. Files are named by content sha256
and size, so a moved or renamed photo keeps its thumbnail and nothing about the path leaks into
the name; they are written atomically, so a killed server leaves no half-written JPEG. Decodes
run at most :data:`MAX_DECODES` at a time: a grid of 24 MP photos must not decode forty at once.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from charmcli.cull.explain import draw_kept_cells
from charmcli.library.atomic import atomic_write_bytes
from charmcli.library.decode import DecodedImage, DecodeError, decode_image, read_bytes

#: Long side in pixels of each cached rendering (a retina grid cell; a large screen).
SIZES = {"thumb": 480, "preview": 2048}
QUALITY = {"thumb": 82, "preview": 88, "full": 92, "explain": 88}
CACHE_VERSION = "v1"  #: bump when renderings change, so old files are not served
MAX_DECODES = 2



def no_cells_reason(score: dict[str, Any]) -> str:
    """Why a score has no kept cells to draw, as ``charm show`` tells it (``0 kept cells (short)``)."""
    if score.get("token_path") == "short":
        return ("no cells to mark: the photo took the short path, where every cell is kept at full "
                "resolution (none was downsampled)")  # fmt: skip
    if not score.get("token_path"):
        return "no cells to mark: this model sees the whole photo resized and keeps no cells"
    return "no cells to mark: this score kept none"

class ImageError(Exception):
    """No picture for this photo; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


def picture_cache_dir() -> Path:
    """``$CHARM_REVIEW_CACHE``, else ``<user data dir>/charm/review-cache`` (next to charm.db)."""
    env = os.environ.get("CHARM_REVIEW_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("charm", appauthor=False)) / "review-cache"


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True, progressive=True)
    return buf.getvalue()


def _shrunk(image: Image.Image, side: int) -> Image.Image:
    out = image.copy()
    out.thumbnail((side, side), Image.Resampling.LANCZOS)
    return out


class ImageCache:
    """Renderings of desk entries (dicts with ``path``, ``_sha256``, ``_size``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else picture_cache_dir()
        self._decodes = threading.BoundedSemaphore(MAX_DECODES)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.made = 0  #: renderings decoded from a photo (for tests and the benchmark)

    def file_for(self, sha256: str, kind: str) -> Path:
        return self.root / CACHE_VERSION / f"{kind}-{SIZES[kind]}" / sha256[:2] / f"{sha256}.jpg"

    @contextmanager
    def _per_photo(self, sha256: str) -> Iterator[None]:
        """One rendering per content at a time (the grid and the loupe may ask together)."""
        with self._locks_lock:
            lock = self._locks.setdefault(sha256, threading.Lock())
        with lock:
            yield

    def _decode(self, entry: dict[str, Any], *, max_side: int, exact: bool = False) -> DecodedImage:
        """Decode the photo if it is still the content the store scored (see the module doc)."""
        path = entry["path"]
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ImageError(f"cannot read the photo: {exc.strerror or exc}") from None
        if st.st_size != entry["_size"]:
            raise ImageError("the photo changed since it was scored; run `charm score` on it again", 409)
        with self._decodes:
            try:
                data = read_bytes(path)
                if len(data) != entry["_size"]:
                    raise ImageError("the photo changed since it was scored; run `charm score` on it again", 409)
                decoded = decode_image(data, name=os.fsdecode(path), max_side=max_side, exact=exact)
            except DecodeError as exc:
                raise ImageError(f"cannot decode the photo: {exc}", 422) from None
        if decoded.sha256 != entry["_sha256"]:
            raise ImageError("the photo changed since it was scored; run `charm score` on it again", 409)
        self.made += 1
        return decoded

    def get(self, entry: dict[str, Any], kind: str) -> bytes:
        """JPEG bytes of the ``thumb`` or ``preview`` of ``entry``, made (both at once) if not cached."""
        if kind not in SIZES:
            raise ValueError(f"unknown rendering {kind!r}")
        sha = entry["_sha256"]
        target = self.file_for(sha, kind)
        with self._per_photo(sha):
            try:
                return target.read_bytes()
            except FileNotFoundError:
                pass
            preview = self._decode(entry, max_side=SIZES["preview"]).image
            made = {"preview": _shrunk(preview, SIZES["preview"])}
            made["thumb"] = _shrunk(made["preview"], SIZES["thumb"])
            out: dict[str, bytes] = {}
            for name, image in made.items():
                out[name] = _jpeg(image, QUALITY[name])
                path = self.file_for(sha, name)
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_bytes(path, out[name])
                except OSError:
                    pass  # a read-only data folder costs speed, not the picture
            return out[kind]

    def full(self, entry: dict[str, Any]) -> bytes:
        """The photo at native resolution (for 100 % zoom); not cached, it is as big as the photo."""
        with self._per_photo(entry["_sha256"]):
            return _jpeg(self._decode(entry, max_side=0).image, QUALITY["full"])

    def explain(self, entry: dict[str, Any], score: dict[str, Any]) -> bytes:
        """The preview with the 28-px cells Charm kept at full resolution drawn on it.

        ``score`` is the store's score row the entry was ranked by. Its cells are in the
        coordinates of the image the tokenizer saw, oriented as that score's decode policy
        oriented it: EXIF rotation applied, except for ``exact`` (the official pipeline), whose
        overlay is drawn on the unrotated photo, as ``charm show --explain`` does.
        """
        cells = [tuple(c) for c in json.loads(score.get("kept_cells") or "[]")]
        if not cells or not score.get("input_width") or not score.get("input_height"):
            raise ImageError(no_cells_reason(score))
        if score.get("preprocess") == "exact":
            with self._per_photo(entry["_sha256"]):
                base = _shrunk(self._decode(entry, max_side=0, exact=True).image, SIZES["preview"])
        else:
            base = Image.open(io.BytesIO(self.get(entry, "preview")))
        image = draw_kept_cells(base, cells, int(score.get("cell_size") or 28),
                                (int(score["input_width"]), int(score["input_height"])))  # fmt: skip
        return _jpeg(image, QUALITY["explain"])
