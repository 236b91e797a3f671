"""Degraded copies of real photos for the flag tests and ``benchmarks/flags_accuracy.py``.

Every function takes a decoded RGB ``PIL.Image`` (the ≤ 1024 px working copy charm scores) and
returns a new image: the originals are never touched. Blur lengths are in pixels of that copy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FACES = Path(__file__).resolve().parent / "data" / "faces"


def defocus(image: Image.Image, sigma: float) -> Image.Image:
    """Gaussian defocus of standard deviation ``sigma`` pixels."""
    return image.filter(ImageFilter.GaussianBlur(sigma))


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Normalised line kernel: a straight smear of ``length`` px at ``angle_deg`` (counter-clockwise)."""
    size = math.ceil(length) | 1
    scale = 8  # draw large, then average down: an anti-aliased line
    big = Image.new("F", (size * scale, size * scale), 0.0)
    c = size * scale / 2
    dx = math.cos(math.radians(angle_deg)) * (length - 1) * scale / 2
    dy = -math.sin(math.radians(angle_deg)) * (length - 1) * scale / 2
    ImageDraw.Draw(big).line([(c - dx, c - dy), (c + dx, c + dy)], fill=1.0, width=scale)
    k = np.asarray(big.resize((size, size), Image.Resampling.BOX), dtype=np.float64)
    return k / k.sum()


def motion_blur(image: Image.Image, length: float, angle_deg: float) -> Image.Image:
    """Camera-shake blur: the image convolved with a line of ``length`` px (FFT, edges replicated)."""
    k = motion_kernel(length, angle_deg)
    n = k.shape[0]
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    h, w = a.shape[:2]
    r = n // 2
    shape = (h + 2 * r, w + 2 * r)
    kf = np.fft.rfft2(k, s=shape)
    out = np.empty_like(a)
    for ch in range(3):
        padded = np.pad(a[..., ch], r, mode="edge")
        full = np.fft.irfft2(np.fft.rfft2(padded) * kf, s=shape)
        out[..., ch] = full[2 * r : 2 * r + h, 2 * r : 2 * r + w]
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def exposure(image: Image.Image, ev: float) -> Image.Image:
    """Change exposure by ``ev`` stops in linear light (sRGB decoded, scaled, clipped, re-encoded)."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    linear = np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4) * 2.0**ev
    linear = np.clip(linear, 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return Image.fromarray((srgb * 255.0 + 0.5).astype(np.uint8))


def close_eyes(image: Image.Image, eyes: list[tuple[float, float, float, float]]) -> Image.Image:
    """Paint a closed eyelid over each eye ``(cx, cy, width, height)`` of the opening.

    A *synthetic* closed eye: the opening is filled with the skin tone just below it (feathered)
    and a dark lash line is drawn along its lower edge. It stands in for real closed-eye photos,
    none of which could be found in a package with a usable licence (see tests/data/faces).
    """
    out = image.convert("RGB")
    a = np.asarray(out, dtype=np.float32)
    for cx, cy, ew, eh in eyes:
        y0 = int(cy + eh * 0.9)
        patch = a[y0 : y0 + max(2, int(eh)), int(cx - ew / 2) : int(cx + ew / 2)].reshape(-1, 3)
        skin = tuple(int(v) for v in np.median(patch, axis=0))
        mask = Image.new("L", out.size, 0)
        ImageDraw.Draw(mask).ellipse([cx - ew / 2, cy - eh / 2, cx + ew / 2, cy + eh / 2], fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, eh / 6)))
        out = Image.composite(Image.new("RGB", out.size, skin), out, mask)
        lash = tuple(int(v * 0.45) for v in skin)
        ImageDraw.Draw(out).arc(
            [cx - ew / 2, cy - eh * 0.6, cx + ew / 2, cy + eh * 0.5],
            20,
            160,
            fill=lash,
            width=max(1, int(eh / 5)),
        )
    return out


def labelled_faces() -> list[tuple[str, Image.Image, int, int]]:
    """The eye set: ``(name, image, faces with open eyes, faces with closed eyes)``.

    Read from ``tests/data/faces/labels.tsv``: one real photo per row, labelled by hand, plus a
    synthetic closed-eye copy of each face whose eye positions are given.
    """
    rows: list[tuple[str, Image.Image, int, int]] = []
    for line in (FACES / "labels.tsv").read_text().splitlines()[1:]:
        if not line.strip():
            continue
        name, open_faces, closed_faces, eye_spec = line.split("\t")[:4]
        image = Image.open(FACES / name).convert("RGB")
        rows.append((name, image, int(open_faces), int(closed_faces)))
        if eye_spec.strip():
            eyes = [tuple(float(v) for v in eye.split(",")) for eye in eye_spec.split(";")]
            rows.append((name + " (eyes painted shut)", close_eyes(image, eyes), 0, len(eyes) // 2))
    return rows
