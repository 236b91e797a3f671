"""Technical measures of one decoded photo: focus on the subject, motion blur, exposure.

Pixels in, numbers out (numpy only, no torch, no files): the caller hands over the image it has
already decoded for scoring, so nothing is read or decoded twice. The numbers are *measures*;
whether they make a photo "soft" or "overexposed" is decided by the thresholds in
:mod:`charmcli.flags`, in one place.

Why these measures:

* **Focus on the subject, tile by tile.** One global Laplacian variance calls every portrait with
  a blurred background "soft" and every noisy night shot "sharp". Instead the image is cut into
  tiles; in each tile the *edge width* is estimated by re-blurring (the re-blur ratio of
  Crété-Roffet et al.): a Gaussian of known width σ barely changes the gradient energy of an
  edge that is already wide, and divides that of a crisp edge a lot. For an edge of Gaussian
  width w the ratio of gradient energies is ``sqrt(w² + σ²) / w``, which gives w in pixels,
  independent of contrast. The focus of the photo is the edge width of its *sharpest region*
  (the third-sharpest textured tile, so one stray tile of noise does not decide): a sharp
  subject on a soft background is sharp.
* **Motion blur** smears edges along one direction only. The same two images give two structure
  tensors (sums of ``∇I ∇Iᵀ``) over the textured tiles; the energy ratio along direction θ gives
  the edge width *along θ*. Camera shake makes the widest direction several times wider than the
  narrowest; defocus widens all directions alike.
* **Exposure**: luma (Rec. 709 weights on the 8-bit values) → fraction of clipped highlights,
  fraction of crushed shadows, and the mean brightness.

Everything is measured on a copy whose long side is at most :data:`WORK_SIDE` pixels (the size
charm scores at by default), so widths are in pixels of that size whatever the file's own size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from charmcli.library import faces

#: Long side of the working copy. Widths are "pixels at this size"; a photo smaller than this is
#: measured at its own size (it is not upsampled: that would invent softness).
WORK_SIDE = 1024
#: Tile side in working pixels: small enough to find a subject that fills 1 % of the frame.
TILE = 32
#: Width of the re-blur Gaussian, in working pixels (made of two boxes of width ``_BOX``).
REBLUR_SIGMA = 2.0
_BOX = 5
#: A tile takes part in focus only if its re-blurred gradient energy (per pixel, 0..255 values)
#: reaches this: flat sky, bokeh and noise-only tiles carry no focus information.
MIN_TILE_ENERGY = 4.0
#: Which textured tile is "the sharpest region": the k-th sharpest (0-based), not the very
#: sharpest, so a single tile of noise or a JPEG block edge cannot decide.
SHARPEST_RANK = 2
#: Edge widths are clamped to this (a featureless or fully blurred frame has no finite width).
MAX_WIDTH = 20.0
#: Luma at or above / at or below which a pixel counts as clipped / crushed (8-bit values).
HIGHLIGHT_LEVEL = 250
SHADOW_LEVEL = 5
#: Version of these measures; part of the stored key, so a change here recomputes them.
MEASURES_VERSION = "m1"

_ANGLES = np.linspace(0.0, math.pi, 16, endpoint=False)


@dataclass(frozen=True)
class Measures:
    """The pixel measures of one photo (no faces: see :mod:`charmcli.library.faces`)."""

    #: edge width (Gaussian σ, working pixels) of the sharpest region: ~0.5–1 crisp, > 2 soft
    focus_width: float
    #: fraction of textured tiles nearly as sharp as the sharpest region (how much is in focus)
    sharp_area: float
    #: edge width along the most blurred direction / along the least blurred one (1 = isotropic)
    motion_ratio: float
    #: edge width along the most blurred direction (working pixels)
    motion_width: float
    #: direction of the widest smear in degrees, 0 = horizontal, counter-clockwise, 0..180
    motion_angle: float
    #: fraction of pixels whose luma is >= HIGHLIGHT_LEVEL
    highlights: float
    #: fraction of pixels whose luma is <= SHADOW_LEVEL
    shadows: float
    #: mean luma, 0..1
    brightness: float
    #: luma below which 1 % of the pixels lie, 0..1 (the black point)
    luma_p01: float
    #: luma above which 1 % of the pixels lie, 0..1 (the white point: low when nothing is bright)
    luma_p99: float
    #: number of tiles with enough texture to judge focus (0: focus and motion unknown)
    textured_tiles: int
    #: size the measures were taken at
    work_width: int
    work_height: int

    def as_dict(self) -> dict[str, float | int]:
        """Plain numbers, rounded for storage and JSON."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def working_luma(image: Image.Image, side: int = WORK_SIDE) -> np.ndarray:
    """Float32 luma (0..255) of ``image`` with its long side capped at ``side``.

    Pillow's ``reduce`` (box average by an integer factor) then a bicubic step only when needed:
    cheap, and it does not sharpen the way a plain bicubic downscale of a large image would.
    """
    gray = image.convert("L") if image.mode != "L" else image
    w, h = gray.size
    if max(w, h) > side:
        factor = max(w, h) // side
        if factor >= 2:
            gray = gray.reduce(factor)
            w, h = gray.size
        if max(w, h) > side:
            r = side / max(w, h)
            gray = gray.resize((max(1, round(w * r)), max(1, round(h * r))), Image.Resampling.BICUBIC)
    return np.asarray(gray, dtype=np.float32)


def _luma_full(image: Image.Image, side: int) -> np.ndarray:
    """8-bit luma for exposure: on the working copy too (fractions do not need full size)."""
    gray = image.convert("L") if image.mode != "L" else image
    if max(gray.size) > side:
        gray = gray.reduce(max(1, max(gray.size) // side))
    return np.asarray(gray)


def _box(a: np.ndarray, axis: int, width: int) -> np.ndarray:
    """Running mean of ``width`` samples along ``axis`` (edge-replicated), as shifted adds.

    Shifted slices stay contiguous along either axis; a cumulative sum down the columns does not
    (it was several times slower here).
    """
    r = width // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="edge")
    n = a.shape[axis]
    out = p[:n] if axis == 0 else p[:, :n]
    out = out.copy()
    for i in range(1, width):
        out += p[i : i + n] if axis == 0 else p[:, i : i + n]
    out *= np.float32(1.0 / width)
    return out


def _blur(a: np.ndarray) -> np.ndarray:
    """Gaussian-like blur of σ = :data:`REBLUR_SIGMA`: two box passes of width 5 per axis.

    Each box of width 5 has variance 2, two make σ = 2 exactly, and each box pass
    costs four adds where a 13-tap Gaussian costs thirteen multiply-adds.
    """
    for axis in (0, 1):
        a = _box(_box(a, axis, _BOX), axis, _BOX)
    return a


def _tile_tensor(a: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-tile mean of Ix², IxIy, Iy² (central differences on the interior)."""
    h, w = rows * TILE, cols * TILE
    ix = np.zeros((h, w), np.float32)
    iy = np.zeros((h, w), np.float32)
    # Tiles cover the top-left rows*TILE x cols*TILE pixels; differences read one pixel beyond.
    right = min(w + 1, a.shape[1])
    below = min(h + 1, a.shape[0])
    ix[:, 1 : right - 1] = a[:h, 2:right] - a[:h, : right - 2]
    iy[1 : below - 1, :] = a[2:below, :w] - a[: below - 2, :w]

    def tiles(v: np.ndarray) -> np.ndarray:  # differences were not halved: 1/4 here
        return v.reshape(rows, TILE, cols, TILE).sum(axis=(1, 3), dtype=np.float64) / (4.0 * TILE * TILE)

    return tiles(ix * ix), tiles(ix * iy), tiles(iy * iy)


def _width(ratio: np.ndarray | float) -> np.ndarray:
    """Edge width from the gradient-energy ratio sharp/blurred = sqrt(w²+σ²)/w."""
    r2 = np.maximum(np.asarray(ratio, dtype=np.float64) ** 2 - 1.0, 1e-9)
    return np.minimum(REBLUR_SIGMA / np.sqrt(r2), MAX_WIDTH)


def measure(image: Image.Image) -> Measures:
    """All pixel measures of one decoded RGB (or L) image."""
    luma = working_luma(image)
    h, w = luma.shape
    rows, cols = h // TILE, w // TILE

    focus_width, sharp_area = MAX_WIDTH, 0.0
    motion_ratio, motion_width, motion_angle = 1.0, MAX_WIDTH, 0.0
    n_textured = 0
    if rows and cols:
        sharp = _tile_tensor(luma, rows, cols)
        soft = _tile_tensor(_blur(luma), rows, cols)
        energy_sharp = sharp[0] + sharp[2]
        energy_soft = soft[0] + soft[2]
        textured = energy_soft >= MIN_TILE_ENERGY
        n_textured = int(textured.sum())
        if n_textured:
            widths = _width(np.sqrt(energy_sharp[textured] / energy_soft[textured]))
            ordered = np.sort(widths)
            focus_width = float(ordered[min(SHARPEST_RANK, len(ordered) - 1)])
            sharp_area = float(np.mean(widths <= focus_width * 1.5))
            # Directional widths from the tensors summed over textured tiles: the same shake
            # smears every tile alike, so the sum is the least noisy estimate.
            s = [float(t[textured].sum()) for t in sharp]
            b = [float(t[textured].sum()) for t in soft]
            c, si = np.cos(_ANGLES), np.sin(_ANGLES)
            e_sharp = c * c * s[0] + 2 * c * si * s[1] + si * si * s[2]
            e_soft = c * c * b[0] + 2 * c * si * b[1] + si * si * b[2]
            directional = _width(np.sqrt(e_sharp / np.maximum(e_soft, 1e-9)))
            widest, narrowest = int(np.argmax(directional)), float(directional.min())
            motion_width = float(directional[widest])
            motion_ratio = motion_width / max(narrowest, 1e-6)
            # Image rows grow downwards: flip the sign so the angle is counter-clockwise.
            motion_angle = (180.0 - math.degrees(float(_ANGLES[widest]))) % 180.0

    luma8 = _luma_full(image, WORK_SIDE)
    total = max(1, luma8.size)
    cumulative = np.cumsum(np.bincount(luma8.ravel(), minlength=256)) / total
    return Measures(
        focus_width=focus_width,
        sharp_area=sharp_area,
        motion_ratio=motion_ratio,
        motion_width=motion_width,
        motion_angle=motion_angle,
        highlights=float(np.count_nonzero(luma8 >= HIGHLIGHT_LEVEL)) / total,
        shadows=float(np.count_nonzero(luma8 <= SHADOW_LEVEL)) / total,
        brightness=float(luma8.mean()) / 255.0 if luma8.size else 0.0,
        luma_p01=float(np.searchsorted(cumulative, 0.01)) / 255.0,
        luma_p99=float(np.searchsorted(cumulative, 0.99)) / 255.0,
        textured_tiles=n_textured,
        work_width=w,
        work_height=h,
    )


def measures_version() -> str:
    """Identity of everything :func:`measure_photo` computes: stored with the measures, so a new
    version of the pixel measures or of the face detector recomputes them (and only then)."""
    return f"{MEASURES_VERSION}+{faces.detector_version()}"


def measure_photo(image: Image.Image) -> dict[str, float | int | None]:
    """Pixel measures and face counts of one decoded photo, as one flat mapping of numbers.

    Face counts are ``None`` when no face detector is installed ("not measured", never "no
    faces").
    """
    values: dict[str, float | int | None] = dict(measure(image).as_dict())
    found = faces.detect(image, work_side=WORK_SIDE)
    values.update(found.as_dict() if found is not None else dict.fromkeys(faces.FACE_FIELDS))
    return values


__all__ = [
    "MEASURES_VERSION",
    "WORK_SIDE",
    "Measures",
    "measure",
    "measure_photo",
    "measures_version",
    "working_luma",
]
