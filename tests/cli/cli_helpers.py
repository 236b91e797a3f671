"""Helpers for the CLI tests (a uniquely named module: ``conftest`` is ambiguous across test folders)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def make_photo(
    path: Path,
    *,
    seed: int,
    size: tuple[int, int] = (96, 64),
    date: str | None = None,
    make: str | None = None,
    model: str | None = None,
    lens: str | None = None,
) -> Path:
    """A small JPEG with distinct pixels and optional EXIF (date, camera, lens)."""
    w, h = size
    image = Image.new("RGB", size)
    image.putdata([((x * 7 + seed * 53) % 256, (y * 11 + seed * 29) % 256, (x * y + seed * 97) % 256)
                   for y in range(h) for x in range(w)])  # fmt: skip
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    sub = exif.get_ifd(0x8769)
    if date:
        sub[0x9003] = date  # DateTimeOriginal, "YYYY:MM:DD HH:MM:SS"
    if lens:
        sub[0xA434] = lens  # LensModel
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90, exif=exif)
    return path
