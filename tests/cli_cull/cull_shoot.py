"""The synthetic shoot of the culling CLI tests (a uniquely named module: ``conftest`` is ambiguous
across test folders). See tests/cli_cull/conftest.py for what is in it and why."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_helpers import make_photo

BURSTS = {
    "a": ["a0.jpg", "a1.jpg", "a2.jpg", "a3.jpg"],
    "b": ["b0.jpg", "b1.jpg", "b2.jpg", "c.jpg"],  # c joins at the default similarity
    "m": ["m0.jpg", "m1.jpg", "m2.jpg"],
}
SINGLES = ["s0.jpg", "s1.jpg", "s2.jpg"]
ALL = [n for names in BURSTS.values() for n in names] + SINGLES
STRICT = ["--similarity", "0.995"]  # splits c from the b burst (see the module docstring)
MTIME_BASE_NS = 1_700_000_000 * 10**9


def _scene(seed: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    r = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [(xx * r.uniform(0.5, 3) + r.uniform(0, 255)) % 256, (yy * r.uniform(0.5, 3) + r.uniform(0, 255)) % 256,
         ((xx + yy) * r.uniform(0.5, 2)) % 256], -1,
    )  # fmt: skip
    for _ in range(5):
        cx, cy, rad = r.uniform(0, w), r.uniform(0, h), r.uniform(8, 30)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < rad**2] = r.uniform(0, 255, 3)
    return img


def make_frame(path: Path, scene: int, k: int, date: str | None = None, subsec: str | None = None) -> Path:
    """Frame ``k`` of a burst of ``scene``: the scene shifted by k pixels plus a little sensor noise."""
    img = np.roll(_scene(scene), k, axis=1) + np.random.default_rng(scene * 100 + k).normal(0, 3, (120, 160, 3))
    exif = Image.Exif()
    if date:
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = date  # DateTimeOriginal
        if subsec:
            sub[0x9291] = subsec  # SubSecTimeOriginal
    Image.fromarray(np.clip(img, 0, 255).astype("uint8")).save(path, "JPEG", quality=92, exif=exif)
    return path


def make_shoot(root: Path) -> Path:
    root.mkdir(parents=True)
    for k in range(4):
        t = 1.2 * k
        make_frame(root / f"a{k}.jpg", 1, k, f"2024:06:01 10:00:{int(t):02d}", f"{round(t % 1 * 10)}")
    for k in range(3):
        make_frame(root / f"b{k}.jpg", 2, k, f"2024:06:01 10:00:{30 + k:02d}", "50")
    make_frame(root / "c.jpg", 3, 0, "2024:06:01 10:00:34", "00")
    for k in range(3):
        os.utime(make_frame(root / f"m{k}.jpg", 4, k), ns=(MTIME_BASE_NS, MTIME_BASE_NS + k * 500_000_000))
    for k in range(3):
        make_photo(root / f"s{k}.jpg", seed=20 + k, size=(160, 120), date=f"2024:06:01 11:{k:02d}:00")
    return root
