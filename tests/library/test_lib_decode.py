"""decode.py: every file becomes an RGB image or one clear DecodeError, under both policies."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, JpegImagePlugin

from charmcli.library import decode
from charmcli.library.decode import (
    DecodedImage,
    DecodeError,
    decode_image,
    load_image,
    preprocess_tag,
    read_bytes,
)

# Files in bad/ that the photo set's README says decode fine.
BAD_BUT_DECODES = {
    "corrupted.jpg",
    "hopper_bad_exif.jpg",
    "image00971.jpg",
    "coffee_png_named.jpg",
    "rotating-squares.gif",
} | ({"chelsea.jxl"} if decode.HAVE_JXL else set())
BAD_KINDS = {
    "empty.jpg": "empty",
    "not_an_image.jpg": "unsupported",
    "giant-image.jpg": "too-large",
    "decompression_bomb.gif": "too-large",
    "truncated_half.jpg": "truncated",
    "truncated_image.png": "truncated",
    "l2rgb_read.bmp": "truncated",
    "broken_data_stream.png": "corrupt",
    "png_decompression_dos.png": "corrupt",
    "zero_width.gif": "corrupt",
    **({} if decode.HAVE_JXL else {"chelsea.jxl": "missing-dependency"}),
}


def _encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _gradient(w: int, h: int) -> Image.Image:
    """A smooth, asymmetric test picture (so flips and rotations are visible)."""
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + 2 * y) % 256], axis=-1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _mad(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


def _assert_one_line(err: DecodeError) -> None:
    text = str(err)
    assert text and "\n" not in text and len(text) <= 300, text
    assert err.kind in {
        "empty",
        "unreadable",
        "unsupported",
        "missing-dependency",
        "too-large",
        "truncated",
        "corrupt",
    }


# --- the shared photo set --------------------------------------------------------------------------


def _bad_files() -> list[str]:
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "photos" / "bad"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("name", _bad_files() or ["(shared photos absent)"])
def test_bad_inputs_decode_or_fail_in_one_line(shared_photos: Path, name: str) -> None:
    path = shared_photos / "bad" / name
    if name in BAD_BUT_DECODES:
        result = load_image(path)
        assert result.image.mode == "RGB" and result.image.size[0] > 0
        return
    with pytest.raises(DecodeError) as info:
        load_image(path)
    _assert_one_line(info.value)
    if name in BAD_KINDS:
        assert info.value.kind == BAD_KINDS[name], str(info.value)


def test_bad_messages_are_specific(shared_photos: Path) -> None:
    def message(name: str, **kwargs) -> str:
        with pytest.raises(DecodeError) as info:
            load_image(shared_photos / "bad" / name, **kwargs)
        return str(info.value)

    assert message("empty.jpg") == "empty file (0 bytes)"
    assert message("truncated_half.jpg").startswith("truncated JPEG (image file is truncated")
    assert "--max-pixels 280000000" in message("giant-image.jpg")
    if not decode.HAVE_JXL:
        assert "pip install 'charmcli[jxl]'" in message("chelsea.jxl")
    assert "text" in message("not_an_image.jpg")


def test_first_failure_is_final(shared_photos: Path) -> None:
    """broken_data_stream.png "loads" on a second try with a partial image: we must not retry."""
    data = (shared_photos / "bad" / "broken_data_stream.png").read_bytes()
    for _ in range(2):
        with pytest.raises(DecodeError):
            decode_image(data)


def test_no_warnings_reach_the_caller(shared_photos: Path) -> None:
    """Pillow's bomb warning (151 MP BMP) and corrupt-EXIF warning must not spam stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        with pytest.raises(DecodeError):
            load_image(shared_photos / "bad" / "l2rgb_read.bmp")
        load_image(shared_photos / "bad" / "hopper_bad_exif.jpg")
    assert [str(w.message) for w in caught] == []


def test_every_photo_decodes_as_the_manifest_says(shared_photos: Path, manifest: dict) -> None:
    for rel, row in manifest.items():
        if rel.startswith("bad/"):
            continue
        result = load_image(shared_photos / rel)
        assert result.sha256 == row["sha256"] and result.size_bytes == int(row["bytes"]), rel
        w, h = int(row["width"]), int(row["height"])
        tag = row["exif_orientation"].split(" ")[0]
        if tag in {"5", "6", "7", "8"}:  # stored sideways: displayed dimensions swap
            w, h = h, w
        assert (result.width, result.height) == (w, h), rel
        assert result.image.mode == "RGB", rel
        assert max(result.image.size) <= 1024, rel
        if row["pillow_format"]:
            assert result.format == row["pillow_format"], rel
        assert result.preprocess == "max1024"


def _centred_mad(a: Image.Image, b: Image.Image) -> float:
    """Mean abs difference after removing each image's mean (landscape_1 is a brighter encode)."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs((x - x.mean()) - (y - y.mean())).mean())


def test_exif_orientation_all_eight_look_the_same(shared_photos: Path) -> None:
    folder = shared_photos / "exif_orientation"
    reference = load_image(folder / "landscape_1.jpg").image
    # Negative controls: any wrong flip/rotation is far from the reference (about 50 or more).
    wrong = min(
        _centred_mad(reference, reference.transpose(t))
        for t in (
            Image.Transpose.FLIP_LEFT_RIGHT,
            Image.Transpose.FLIP_TOP_BOTTOM,
            Image.Transpose.ROTATE_180,
        )
    )
    for n in range(1, 9):
        result = load_image(folder / f"landscape_{n}.jpg")
        assert result.orientation == n
        assert result.image.size == (600, 450) and (result.width, result.height) == (600, 450)
        diff = _centred_mad(reference, result.image)
        assert diff < 10.0 and diff < wrong / 4, (n, diff, wrong)


def test_exact_mode_is_the_official_pipeline(shared_photos: Path, manifest: dict) -> None:
    for n in (1, 6, 8):
        rel = f"exif_orientation/landscape_{n}.jpg"
        path = shared_photos / rel
        result = load_image(path, exact=True)
        with Image.open(path) as im:
            official = im.convert("RGB")
        assert result.preprocess == "exact"
        assert result.orientation == n  # reported, not applied
        assert result.image.size == (int(manifest[rel]["width"]), int(manifest[rel]["height"]))
        assert (result.width, result.height) == result.image.size
        assert np.array_equal(np.asarray(result.image), np.asarray(official))


def test_heic_is_not_rotated_twice(shared_photos: Path) -> None:
    if not decode.HAVE_HEIF:
        pytest.skip("pillow-heif is not installed")
    result = load_image(shared_photos / "iphone_13_pro_max.HEIC")
    assert result.orientation == 6  # as stored in the file
    assert (result.width, result.height) == (3024, 4032)  # portrait once, not landscape again
    assert result.image.size == (768, 1024)


def test_raw_decodes_via_rawpy(shared_photos: Path) -> None:
    if not decode.HAVE_RAWPY:
        pytest.skip("rawpy is not installed")
    result = load_image(shared_photos / "Blackmagic_PocketCinema4K_12bit.dng")
    assert (result.width, result.height) == (4128, 2176)
    assert result.image.size == (1024, 539) and result.image.mode == "RGB"
    assert any("RAW" in w for w in result.warnings)
    assert 5 < np.asarray(result.image).mean() < 250  # a real picture, not black or white


def test_cmyk_with_icc_is_colour_managed(shared_photos: Path) -> None:
    path = shared_photos / "Channel_digital_image_CMYK_color.jpg"
    result = load_image(path)
    with Image.open(path) as im:
        naive = im.convert("RGB")
    assert result.image.size == naive.size
    assert _mad(result.image, naive) > 2.0  # the profile was applied, not a plain formula


def test_rgba_photo_is_composited_on_white(shared_photos: Path) -> None:
    result = load_image(shared_photos / "chelsea_alpha_vignette.png")
    arr = np.asarray(result.image)
    assert arr[0, 0].tolist() == [255, 255, 255]  # fully transparent corner
    assert arr[150, 225].tolist() != [255, 255, 255]


def test_sixteen_bit_photo_is_not_saturated(shared_photos: Path) -> None:
    arr = np.asarray(load_image(shared_photos / "blackmagic_dng_rawpy_16bit.png", max_side=0).image)
    assert (arr == 255).mean() < 0.2 and arr.std() > 5


def test_draft_is_close_to_full_decode_and_used(shared_photos: Path, monkeypatch) -> None:
    data = (shared_photos / "unsplash-rachel-hisko-rEM3cK8F1pk.jpg").read_bytes()
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append(size)
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    fast = decode_image(data)
    slow = decode_image(data, use_draft=False)
    assert calls == [(2048, 1364)]  # asked for >= 2x the final 1024x682
    assert fast.image.size == slow.image.size == (1024, 682)
    assert (fast.width, fast.height) == (slow.width, slow.height) == (6000, 4000)
    assert _mad(fast.image, slow.image) < 0.5
    assert fast.preprocess == "max1024" and slow.preprocess == "max1024-nodraft"


# --- resolution policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((4000, 3000), 1024, (1024, 768)),
        ((3000, 4000), 1024, (768, 1024)),
        ((1025, 10), 1024, (1024, 9)),
        ((100, 5000), 1024, (20, 1024)),
        ((1024, 1024), 1024, (1024, 1024)),
        ((1000, 700), 1024, (1000, 700)),
        ((3001, 2001), 512, (512, 341)),
        ((4000, 3000), 0, (4000, 3000)),
    ],
)
def test_resolution_policy_sizes(size, max_side, expected) -> None:
    data = _encode(Image.new("RGB", size, (10, 20, 30)), "PNG")
    result = decode_image(data, max_side=max_side)
    assert result.image.size == expected
    assert (result.width, result.height) == size
    assert result.preprocess == ("native" if max_side == 0 else f"max{max_side}")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_no_draft_resize_equals_the_official_rule(fmt: str) -> None:
    """For para/spaq the scorer's own pre-resize must see nothing left to do: same pixels."""
    data = _encode(_gradient(2500, 1400), fmt)
    result = decode_image(data, use_draft=False)
    with Image.open(io.BytesIO(data)) as im:
        official = im.convert("RGB").resize((1024, 573), Image.BICUBIC)
    assert np.array_equal(np.asarray(result.image), np.asarray(official))


def test_draft_with_orientation_uses_original_dimensions() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(_gradient(2400, 1800), "JPEG", exif=exif.tobytes())
    result = decode_image(data, max_side=256)  # draft asks for 512x384 stored: libjpeg scale 1/4
    assert (result.width, result.height) == (1800, 2400)
    assert result.image.size == (192, 256)
    reference = decode_image(data, max_side=256, use_draft=False).image
    assert _mad(result.image, reference) < 1.0


# --- modes ---------------------------------------------------------------------------------------


def _png16_rgb(values: np.ndarray) -> bytes:
    """A 16-bit/channel RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = values.shape
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 1000, 30000, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    got = np.asarray(decode_image(data).image)[0, :, 0]
    assert got.tolist() == [0, 1, 4, 117, 255]
    # the official (exact) pipeline clips instead: documented difference
    assert np.asarray(decode_image(data, exact=True).image)[0, 1:, 0].tolist() == [255, 255, 255, 255]


def test_sixteen_bit_rgb_is_scaled_not_clipped() -> None:
    values = np.zeros((2, 3, 3), dtype=np.uint16)
    values[0, :, 0] = [0, 32768, 65535]
    values[1, :, 1] = [512, 4096, 61440]
    got = np.asarray(decode_image(_png16_rgb(values)).image)
    assert got[0, :, 0].tolist() == [0, 128, 255]
    assert got[1, :, 1].tolist() == [2, 16, 240]


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[0, 65535, 32768]], dtype=np.int32), [0, 255, 128]),  # "I" holding 16-bit data
        (np.array([[-100, -50, 100]], dtype=np.int32), [0, 64, 255]),  # unknown range: stretched
        (np.array([[0.0, 0.5, 1.0]], dtype=np.float32), [0, 128, 255]),  # "F" in 0..1
    ],
)
def test_32bit_modes_are_scaled(array: np.ndarray, expected: list[int]) -> None:
    data = _encode(Image.fromarray(array), "TIFF")
    assert np.asarray(decode_image(data).image)[0, :, 0].tolist() == expected


def test_cmyk_without_profile_uses_plain_conversion() -> None:
    im = Image.new("CMYK", (8, 8), (0, 255, 255, 0))
    result = decode_image(_encode(im, "JPEG", quality=100))
    r, g, b = np.asarray(result.image).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def test_palette_with_transparency_is_composited_on_white() -> None:
    im = Image.new("P", (4, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putdata([0, 1, 0, 1])
    data = _encode(im, "PNG", transparency=1)
    got = np.asarray(decode_image(data).image)[0]
    assert got.tolist() == [[255, 0, 0], [255, 255, 255], [255, 0, 0], [255, 255, 255]]


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_composited_on_white(mode: str) -> None:
    im = Image.new(mode, (2, 1))
    im.putpixel((0, 0), (0, 0) if mode == "LA" else (0, 0, 0, 0))  # black, fully transparent
    im.putpixel((1, 0), (0, 255) if mode == "LA" else (0, 0, 0, 255))  # black, opaque
    got = np.asarray(decode_image(_encode(im, "PNG")).image)[0]
    assert got.tolist() == [[255, 255, 255], [0, 0, 0]]


@pytest.mark.parametrize("mode", ["L", "1", "P"])
def test_simple_modes_become_rgb(mode: str) -> None:
    im = _gradient(16, 16).convert(mode)
    result = decode_image(_encode(im, "PNG"))
    assert result.image.mode == "RGB" and result.image.size == (16, 16)
    assert np.array_equal(np.asarray(result.image), np.asarray(im.convert("RGB")))


def test_animated_gif_scores_first_frame_with_a_warning() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    result = decode_image(buf.getvalue())
    assert result.n_frames == 3
    assert result.warnings == ["animated GIF: scored frame 1 of 3"]
    assert np.asarray(result.image)[0, 0].tolist() == [255, 0, 0]


# --- limits and generated failures ---------------------------------------------------------------


def test_pixel_limit_is_checked_before_any_pixel_is_decoded(monkeypatch) -> None:
    data = _encode(Image.new("RGB", (200, 100)), "PNG")

    def no_load(self):
        raise AssertionError("load() must not run for an over-limit image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    with pytest.raises(DecodeError) as info:
        decode_image(data, max_pixels=10_000)
    assert info.value.kind == "too-large"
    assert "--max-pixels 20000" in str(info.value)


def test_raising_the_pixel_limit_admits_a_giant(shared_photos: Path, monkeypatch) -> None:
    # The monotonic raise of Pillow's global is undone after the test by monkeypatch.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    result = load_image(shared_photos / "bad" / "giant-image.jpg", max_pixels=300_000_000)
    assert (result.width, result.height) == (20000, 14000)
    assert result.image.size == (1024, 716)


def test_zero_byte_text_html_and_random_bytes() -> None:
    cases = {
        b"": "empty",
        b"hello, this is not a photo\n": "unsupported",
        b"<!DOCTYPE html><html><body>404 Not Found</body></html>": "unsupported",
        np.random.default_rng(0).bytes(4096): "unsupported",
    }
    for data, kind in cases.items():
        with pytest.raises(DecodeError) as info:
            decode_image(data, name="photo.jpg")
        _assert_one_line(info.value)
        assert info.value.kind == kind
    with pytest.raises(DecodeError, match="HTML"):
        decode_image(b"<!DOCTYPE html><html></html>")


def test_truncated_at_several_points() -> None:
    data = _encode(_gradient(640, 480), "JPEG", quality=90)
    for fraction in (0.0005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9):
        cut = data[: max(1, int(len(data) * fraction))]
        with pytest.raises(DecodeError) as info:
            decode_image(cut)
        _assert_one_line(info.value)
    png = _encode(_gradient(64, 64), "PNG")
    for cut in (8, 20, 40, len(png) // 2, len(png) - 30):  # (only IEND missing would decode)
        with pytest.raises(DecodeError) as info:
            decode_image(png[:cut])
        _assert_one_line(info.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"]), st.data())
def test_damaged_files_only_ever_raise_decode_error(fmt: str, data) -> None:
    """Flip/cut bytes in small valid files: the result is an image or a DecodeError, never else."""
    blob = bytearray(_encode(_gradient(24, 16), fmt))
    cut = data.draw(st.integers(min_value=0, max_value=len(blob)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)), max_size=6))
    for pos, value in flips:
        blob[pos] = value
    try:
        result = decode_image(bytes(blob[:cut] if cut else blob))
    except DecodeError as err:
        _assert_one_line(err)
    else:
        assert result.image.mode == "RGB"


def test_read_bytes_refuses_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    with pytest.raises(DecodeError, match="not a regular file"):
        read_bytes(fifo)  # O_NONBLOCK: returns at once instead of waiting for a writer
    with pytest.raises(DecodeError, match="No such file"):
        read_bytes(tmp_path / "missing.jpg")


def test_hash_size_and_pickle(tmp_path: Path) -> None:
    data = _encode(_gradient(30, 20), "PNG")
    (tmp_path / "a.png").write_bytes(data)
    result = load_image(tmp_path / "a.png")
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.size_bytes == len(data)
    clone = pickle.loads(pickle.dumps(result))  # decoding may run in worker processes
    assert isinstance(clone, DecodedImage)
    assert np.array_equal(np.asarray(clone.image), np.asarray(result.image))


def test_preprocess_tag_matches_decode() -> None:
    data = _encode(Image.new("RGB", (10, 10)), "PNG")
    for kwargs in ({}, {"exact": True}, {"max_side": 0}, {"max_side": 512, "use_draft": False}):
        assert decode_image(data, **kwargs).preprocess == preprocess_tag(**kwargs)


def test_missing_optional_decoders_say_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(decode, "HAVE_RAWPY", False)
    with pytest.raises(DecodeError) as info:
        decode_image(b"II*\x00" + b"\x00" * 64, name="IMG_1.NEF")
    assert str(info.value) == "NEF RAW needs rawpy: pip install 'charmcli[raw]'"
    assert info.value.kind == "missing-dependency"
    monkeypatch.setattr(decode, "HAVE_HEIF", False)
    heic_header = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
    assert str(decode._unidentified(heic_header)) == "HEIC needs pillow-heif: pip install 'charmcli[heif]'"


def test_threads_give_the_same_results(shared_photos: Path) -> None:
    """Decoding runs in worker threads: results must not depend on interleaving."""
    from concurrent.futures import ThreadPoolExecutor

    names = ["DSCN0010.jpg", "exif_orientation/landscape_6.jpg", "chelsea_alpha_vignette.png", "BSG1.tiff"]
    datas = [(shared_photos / n).read_bytes() for n in names] * 4
    expected = [np.asarray(decode_image(d).image) for d in datas]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda d: np.asarray(decode_image(d).image), datas))
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))
