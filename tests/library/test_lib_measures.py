"""Pixel measures and faces on synthetic patterns and on real photos (degraded in memory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flag_degrade import close_eyes, defocus, exposure, labelled_faces, motion_blur
from PIL import Image, ImageDraw

from charmcli.flags import flag_names
from charmcli.library import faces, measures
from charmcli.library.decode import load_image
from charmcli.library.measures import MAX_WIDTH, WORK_SIDE, measure, measure_photo

needs_faces = pytest.mark.skipif(not faces.HAVE_FACES, reason="the faces extra (opencv) is not installed")


def _discs(size=(768, 512), seed=0) -> Image.Image:
    """Hard-edged discs of random grey levels: edges in every direction, nothing blurred."""
    rng = np.random.default_rng(seed)
    im = Image.new("L", size, 128)
    draw = ImageDraw.Draw(im)
    for _ in range(400):
        x, y = rng.integers(0, size[0]), rng.integers(0, size[1])
        r = int(rng.integers(4, 40))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.integers(0, 256)))
    return im.convert("RGB")


@pytest.fixture(scope="module")
def photo(request) -> Image.Image:
    """A real photo with detail all over, decoded as charm scores it (≤ 1024 px)."""
    path = Path(__file__).resolve().parents[2].parent / "shared" / "photos" / "DSCN0010.jpg"
    if not path.is_file():
        pytest.skip("shared photos absent")
    return load_image(path).image


def test_edge_width_follows_the_defocus_it_was_given():
    sharp = _discs()
    widths = [measure(defocus(sharp, s) if s else sharp).focus_width for s in (0, 1, 2, 3)]
    assert widths[0] < 0.9  # a hard edge
    assert widths == sorted(widths)  # more blur, wider edges
    assert widths[2] == pytest.approx(2.0, abs=0.35)  # the width is the σ, in pixels
    assert widths[3] == pytest.approx(3.0, abs=0.5)


def test_edge_width_does_not_depend_on_contrast():
    sharp = _discs()
    low = Image.eval(sharp, lambda v: 64 + v // 2)  # half the contrast
    for sigma in (2, 3):
        expected = measure(defocus(sharp, sigma)).focus_width
        assert measure(defocus(low, sigma)).focus_width == pytest.approx(expected, abs=0.1)


def test_a_sharp_subject_on_a_blurred_background_is_not_soft(photo):
    """Only a window of ~6 % of the frame stays sharp: the photo is still in focus."""
    blurred = defocus(photo, 4)
    w, h = photo.size
    box = (w // 2 - w // 8, h // 2 - h // 8, w // 2 + w // 8, h // 2 + h // 8)
    subject = blurred.copy()
    subject.paste(photo.crop(box), box[:2])
    m_subject, m_blurred = measure(subject).as_dict(), measure(blurred).as_dict()
    assert "soft" not in flag_names(m_subject)
    assert "soft" in flag_names(m_blurred)
    assert m_subject["sharp_area"] < 0.35  # little of the frame is as sharp as the subject


def test_motion_blur_is_told_from_defocus_and_its_direction_found(photo):
    for angle in (0, 45, 100, 150):
        m = measure(motion_blur(photo, 15, angle))
        assert abs((m.motion_angle - angle + 90) % 180 - 90) <= 12, (angle, m)
        assert "motion-blur" in flag_names(m.as_dict())
    assert "motion-blur" not in flag_names(measure(defocus(photo, 3)).as_dict())
    assert "motion-blur" not in flag_names(measure(photo).as_dict())


def test_exposure_measures_on_flat_frames():
    white = measure(Image.new("RGB", (300, 200), (255, 255, 255)))
    black = measure(Image.new("RGB", (300, 200), (0, 0, 0)))
    grey = measure(Image.new("RGB", (300, 200), (128, 128, 128)))
    assert (white.highlights, white.shadows, white.brightness) == (1.0, 0.0, 1.0)
    assert (black.highlights, black.shadows, black.brightness) == (0.0, 1.0, 0.0)
    assert grey.brightness == pytest.approx(128 / 255)
    assert grey.luma_p01 == grey.luma_p99 == pytest.approx(128 / 255)


def test_half_clipped_frame_counts_half():
    im = Image.new("RGB", (200, 100), (30, 30, 30))
    im.paste((255, 255, 255), (0, 0, 100, 100))
    assert measure(im).highlights == pytest.approx(0.5, abs=0.01)


def test_exposure_flags_on_a_real_photo(photo):
    assert not flag_names(measure(photo).as_dict())
    assert "overexposed" in flag_names(measure(exposure(photo, 3)).as_dict())
    assert "underexposed" in flag_names(measure(exposure(photo, -3)).as_dict())


def test_featureless_frame_has_no_focus_and_no_motion():
    m = measure(Image.new("RGB", (400, 300), (90, 120, 200)))
    assert m.textured_tiles == 0 and m.focus_width == MAX_WIDTH
    assert "motion-blur" not in flag_names(m.as_dict())


def test_tiny_and_grey_images_are_measured_without_error():
    for im in (Image.new("RGB", (10, 7)), Image.new("L", (40, 40), 200), Image.new("RGB", (1, 500))):
        m = measure(im)
        assert m.work_width == im.width and m.work_height == im.height


def test_large_images_are_measured_at_the_working_size_and_small_ones_not_upsampled():
    big = _discs((3000, 2000))
    m = measure(big)
    assert max(m.work_width, m.work_height) == WORK_SIDE
    small = measure(_discs((400, 300)))
    assert (small.work_width, small.work_height) == (400, 300)


def test_measures_module_is_pixel_only():
    code = (
        "import sys, charmcli.library.measures, charmcli.flags\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sqlite3', 'charmcli.model')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- faces ---------------------------------------------------------------------------------------


@needs_faces
def test_labelled_faces():
    """Every image of the labelled eye set gets its label (tests/data/faces/labels.tsv)."""
    rows = labelled_faces()
    assert any(closed for *_rest, closed in rows) and any(not closed for *_rest, closed in rows)
    for name, image, open_faces, closed_faces in rows:
        found = faces.detect(image)
        assert found is not None
        judged = found.faces + found.small_faces
        assert judged == open_faces + closed_faces, name
        assert found.eyes_closed == closed_faces, name


@needs_faces
def test_eyes_closed_flag_and_its_reason():
    _name, image, *_ = labelled_faces()[0]
    assert "eyes-closed" not in flag_names(measure_photo(image))
    shut = close_eyes(image, [(81, 82, 20, 9), (126, 83, 20, 9)])
    values = measure_photo(shut)
    assert values["faces"] == 1 and values["eyes_closed"] == 1
    from charmcli.flags import evaluate

    assert [f.reason for f in evaluate(values) if f.name == "eyes-closed"] == ["eyes closed: 1 of 1 face"]


@needs_faces
def test_no_faces_found_in_photos_without_people(photo):
    found = faces.detect(photo)
    assert found is not None and found.faces == 0 and found.eyes_closed == 0


def test_without_a_detector_eyes_are_not_measured(monkeypatch):
    monkeypatch.setattr(faces, "HAVE_FACES", False)
    values = measure_photo(_discs())
    assert values["faces"] is None and values["eyes_closed"] is None
    assert "eyes-closed" not in flag_names(values)
    assert faces.detector_version() == "none"
    assert measures.measures_version().endswith("+none")
    from charmcli.flags import eyes_note

    assert "not measured" in eyes_note(values)
