"""Decoding whatever people upload: every odd but valid image works, everything else is refused
with one clear line. All files are generated here."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from explain.images import MAX_SIDE, ImageError, decode_image, to_model_input


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def upright() -> Image.Image:
    """60x30, red top-left quadrant, the rest grey: orientation is visible."""
    pixels = np.full((30, 60, 3), 128, np.uint8)
    pixels[:15, :30] = (255, 0, 0)
    return Image.fromarray(pixels)


# What the viewer must do for each EXIF orientation, and so its inverse we store.
STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_shown_upright(orientation):
    stored = upright() if STORE[orientation] is None else upright().transpose(STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    rgb = decode_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert rgb.shape == (30, 60, 3)
    assert rgb[:15, :30].mean(axis=(0, 1))[0] > 200 and rgb[:15, :30].mean(axis=(0, 1))[2] < 60
    assert rgb[15:, 30:].mean() == pytest.approx(128, abs=12)


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (20, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


VALID = {
    "png with alpha": lambda: encode(Image.new("RGBA", (8, 6), (255, 0, 0, 0)), "PNG"),
    "grayscale": lambda: encode(Image.new("L", (8, 6), 77), "PNG"),
    "16-bit png": lambda: encode(Image.fromarray(np.full((6, 8), 65535, np.uint16)), "PNG"),
    "palette": lambda: encode(Image.new("RGB", (8, 6), (0, 200, 0)).convert("P"), "PNG"),
    "cmyk jpeg": lambda: encode(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), "JPEG"),
    "webp": lambda: encode(Image.new("RGB", (8, 6), (10, 20, 30)), "WEBP", lossless=True),
    "bmp": lambda: encode(Image.new("RGB", (8, 6), (10, 20, 30)), "BMP"),
    "animated gif": lambda: animated("GIF"),
    "animated webp": lambda: animated("WEBP"),
    "1x1": lambda: encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"),
    "3x500": lambda: encode(Image.new("RGB", (3, 500), (1, 2, 3)), "PNG"),
    "tiff": lambda: encode(Image.new("RGB", (8, 6), (1, 2, 3)), "TIFF"),
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_images_decode_to_rgb(name):
    rgb = decode_image(VALID[name]())
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    if name == "png with alpha":
        assert (rgb == 255).all()  # transparent composited on white
    if name == "16-bit png":
        assert (rgb == 255).all()
    if name.startswith("animated"):
        assert rgb[..., 0].mean() > 200 and rgb[..., 2].mean() < 60  # the first frame: red
    if name == "3x500":
        assert rgb.shape == (500, 3, 3)
    assert to_model_input(rgb, (32, 32)).shape == (32, 32, 3)


def test_very_large_photo_is_shrunk_on_decode():
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)).resize(
        (8000, 6000)
    )
    rgb = decode_image(encode(big, "JPEG", quality=70))
    assert max(rgb.shape[:2]) <= MAX_SIDE and rgb.shape[1] / rgb.shape[0] == pytest.approx(
        8000 / 6000, rel=0.01
    )


def png_bomb(side: int = 40000) -> bytes:
    """A 1-bit PNG of side x side zero pixels: a few hundred KB that would decode to 1.6 GP."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + side // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


JPEG = encode(Image.new("RGB", (64, 48), (200, 10, 10)), "JPEG")
PNG = encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8)), "PNG")
REFUSED = {
    "zero bytes": (lambda: b"", "empty"),
    "truncated jpeg": (lambda: JPEG[: len(JPEG) // 2], "damaged or truncated"),
    "truncated png": (lambda: PNG[: len(PNG) // 2], "damaged or truncated"),
    "random bytes": (lambda: np.random.default_rng(2).bytes(5000), "not an image"),
    "text as jpg": (lambda: b"hello, this is a text file\n" * 20, "not an image"),
    "html as jpg": (lambda: b"<!doctype html><html><body><img src=x></body></html>", "not an image"),
    "svg as jpg": (
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        "not an image",
    ),
    "pdf": (lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "not an image"),
    "decompression bomb": (png_bomb, "pixel|too many pixels"),
    "over the size limit": (lambda: b"\xff\xd8" + b"\x00" * (51 * 1024 * 1024), "over the 50 MB limit"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_bad_files_are_refused_with_one_line(name):
    make, message = REFUSED[name]
    with pytest.raises(ImageError, match=message) as info:
        decode_image(make())
    assert "\n" not in str(info.value)


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=2048),
        st.builds(
            mutate,
            st.sampled_from([JPEG, PNG, VALID["animated gif"](), VALID["bmp"]()]),
            st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12),
        ),
        st.builds(lambda d, n: d[:n], st.sampled_from([JPEG, PNG]), st.integers(0, 4000)),
    )
)
def test_decoder_returns_bounded_rgb_or_our_error(data):
    try:
        rgb = decode_image(data)
    except ImageError:
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert 1 <= max(rgb.shape[:2]) <= MAX_SIDE
