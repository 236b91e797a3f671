"""The picture cache on its own: formats, orientation, the content check, where files go."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from charmcli.review.images import SIZES, ImageCache, ImageError


def entry_for(path) -> dict:
    """What the desk hands the cache: the path and the content the store recorded for it."""
    data = Path(path).read_bytes()
    return {"path": str(path), "_sha256": hashlib.sha256(data).hexdigest(), "_size": len(data)}


def picture(body: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(body))
    assert im.format == "JPEG"
    return im.convert("RGB")


@pytest.fixture
def photos(photos_dir, tmp_path):
    """A private copy: the cache must write nothing beside it."""
    root = tmp_path / "photos"
    shutil.copytree(photos_dir / "exif_orientation", root / "exif_orientation")
    for name in ("Channel_digital_image_CMYK_color.jpg", "Blackmagic_PocketCinema4K_12bit.dng",
                 "iphone_13_pro_max.HEIC", "openprinting_4x6-landscape-photo-sgray.png"):  # fmt: skip
        shutil.copyfile(photos_dir / name, root / name)
    return root


def test_every_exif_orientation_gives_the_same_upright_thumbnail(photos, tmp_path):
    cache = ImageCache(tmp_path / "cache")
    thumbs = [picture(cache.get(entry_for(photos / "exif_orientation" / f"landscape_{i}.jpg"), "thumb"))
              for i in range(1, 9)]  # fmt: skip
    assert {t.size for t in thumbs} == {(480, 360)}
    reference = np.asarray(thumbs[0], dtype=np.float64)
    wrong = (reference[:, ::-1], reference[::-1], reference[::-1, ::-1])  # mirrored, flipped, upside down
    for i, t in enumerate(thumbs[1:], start=2):
        pixels = np.asarray(t, dtype=np.float64)
        # the files were re-encoded when they were rotated (about 14 levels apart); a wrong transform is ~50
        assert np.abs(pixels - reference).mean() < 0.5 * min(np.abs(pixels - w).mean() for w in wrong), i


@pytest.mark.parametrize(
    "name, size",
    [
        ("Channel_digital_image_CMYK_color.jpg", (500, 333)),  # CMYK JPEG: converted, not inverted
        ("openprinting_4x6-landscape-photo-sgray.png", None),  # grey + alpha PNG
        ("Blackmagic_PocketCinema4K_12bit.dng", (4128, 2176)),  # RAW (rawpy)
        ("iphone_13_pro_max.HEIC", None),  # HEIC (pillow-heif)
    ],
)
def test_any_format_charm_reads(photos, tmp_path, name, size):
    pytest.importorskip("rawpy" if name.endswith(".dng") else "pillow_heif" if name.endswith(".HEIC") else "PIL")
    cache = ImageCache(tmp_path / "cache")
    entry = entry_for(photos / name)
    thumb, preview = picture(cache.get(entry, "thumb")), picture(cache.get(entry, "preview"))
    assert max(thumb.size) == min(SIZES["thumb"], max(preview.size)) and max(preview.size) <= SIZES["preview"]
    assert abs(thumb.width / thumb.height - preview.width / preview.height) < 0.02
    if size is not None:
        assert abs(preview.width / preview.height - size[0] / size[1]) < 0.01
    assert np.asarray(thumb).std() > 5  # a picture, not a blank tile
    assert cache.made == 1  # one decode made both


def test_cache_files_are_named_by_content_in_the_cache_folder_only(photos, tmp_path):
    cache = ImageCache(tmp_path / "cache")
    photo = photos / "exif_orientation" / "landscape_3.jpg"
    before = sorted(os.listdir(photo.parent))
    entry = entry_for(photo)
    cache.get(entry, "thumb")
    assert sorted(os.listdir(photo.parent)) == before
    files = sorted(p.relative_to(cache.root).as_posix() for p in cache.root.rglob("*") if p.is_file())
    sha = entry["_sha256"]
    assert files == [f"v1/preview-2048/{sha[:2]}/{sha}.jpg", f"v1/thumb-480/{sha[:2]}/{sha}.jpg"]
    moved = tmp_path / "elsewhere.jpg"  # a renamed photo keeps its thumbnail
    shutil.move(photo, moved)
    cache.get({**entry, "path": str(moved)}, "thumb")
    assert cache.made == 1


def test_a_changed_photo_is_not_rendered(photos, tmp_path):
    cache = ImageCache(tmp_path / "cache")
    photo = photos / "exif_orientation" / "landscape_1.jpg"
    entry = entry_for(photo)
    other = photos / "exif_orientation" / "landscape_2.jpg"
    for target in (other, photos / "exif_orientation"):
        photo.unlink()
        photo.symlink_to(target)
        with pytest.raises(ImageError) as caught:
            cache.get(entry, "preview")
        assert caught.value.status in (404, 409)
    photo.unlink()
    same_size = bytearray(other.read_bytes()[: entry["_size"]].ljust(entry["_size"], b"\0"))
    photo.write_bytes(bytes(same_size))  # same size, different content: caught by the hash
    with pytest.raises(ImageError, match="changed since it was scored"):
        cache.full(entry)
    os.unlink(photo)
    os.mkfifo(photo)  # a FIFO under the photo's name: never blocks, never read
    with pytest.raises(ImageError):
        cache.get(entry, "thumb")
    assert cache.made == 0 and not any(cache.root.rglob("*.jpg"))
