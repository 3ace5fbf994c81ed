"""Photo bytes to RGB arrays, and RGB arrays to model inputs.

Every entry point that takes a user's file (pages, CLI, evaluation) decodes through
:func:`decode_image`, which either returns an upright RGB ``uint8`` array of bounded
size or raises :class:`ImageError` with a one-line message.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:  # explain.preprocess imports this module
    from explain.preprocess import Feeding

#: Largest file we read, in bytes (the dashboard's upload limit says the same).
MAX_FILE_BYTES = 50 * 1024 * 1024
#: Largest image we decode, in pixels (an 8000x6000 photo is 48 MP).
MAX_PIXELS = 64_000_000
#: Longest side of the array we hand on; larger photos are shrunk on decode.
MAX_SIDE = 2048


class ImageError(ValueError):
    """A file that is not an image we can decode safely; the message is for the user."""


def decode_image(
    data: bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    max_side: int = MAX_SIDE,
    max_bytes: int = MAX_FILE_BYTES,
) -> np.ndarray:
    """Return the photo as an upright RGB ``uint8`` array of shape (H, W, 3).

    EXIF orientation is applied, alpha is composited on white, grey, palette, CMYK and
    16-bit images become 8-bit RGB, animations give their first frame, and photos whose
    longest side exceeds ``max_side`` are shrunk (JPEGs already while decoding).
    """
    if not data:
        raise ImageError("the file is empty")
    if len(data) > max_bytes:
        raise ImageError(f"the file is {len(data) / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageError("the image has no pixels")
            if width * height > max_pixels:
                raise ImageError(
                    f"the image is {width}x{height} pixels, over the {max_pixels / 1e6:.0f} megapixel limit"
                )
            if image.format == "JPEG" and max(width, height) > max_side:
                # Let libjpeg scale by 1/2, 1/4 or 1/8 while decoding: a fraction of the memory.
                image.draft("RGB", (max_side, max_side))
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("the image declares far too many pixels (a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise ImageError("the file is not an image we can read (JPEG, PNG, WebP, BMP, GIF, TIFF)") from None
    except MemoryError:
        raise ImageError("the image is too large to decode in memory") from None
    except Exception as err:  # noqa: BLE001 - a decoder fed hostile bytes can raise anything
        raise ImageError(f"the image is damaged or truncated ({type(err).__name__})") from None
    if max(rgb.shape[:2]) > max_side:
        rgb = fit_within(rgb, max_side)
    return np.ascontiguousarray(rgb)


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if wide.max() > 255 else 255.0
        grey = np.clip(wide / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        grey = np.nan_to_num(np.asarray(image, dtype=np.float64))
        span = float(grey.max() - grey.min()) or 1.0
        grey = ((grey - grey.min()) / span * 255.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def fit_within(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Return the image shrunk so its longest side is at most ``max_side`` (aspect kept)."""
    height, width = rgb.shape[:2]
    factor = max_side / max(height, width)
    if factor >= 1:
        return rgb
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def resize_to(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Return the image resized to (height, width), as training and inference both do it."""
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = height * width < rgb.shape[0] * rgb.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=interpolation)


def to_model_input(
    rgb: np.ndarray,
    size: tuple[int, int],
    channels: int = 3,
    scale: float = 1.0,
    offset: float = 0.0,
    feeding: Feeding | None = None,
) -> np.ndarray:
    """Return a float32 (H, W, channels) array ready for the model.

    ``feeding`` (an :class:`explain.preprocess.Feeding`, from the model's card) replaces the
    plain ``x * scale + offset``: it also knows channel order, centre crop and ImageNet means.
    """
    if feeding is not None:
        return feeding(rgb)
    resized = resize_to(rgb, size)
    if channels == 1:
        resized = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY)[..., None]
    elif channels != 3:
        raise ValueError(f"models with {channels} input channels are not supported")
    out = resized.astype(np.float32)
    if scale != 1.0 or offset != 0.0:
        out = out * np.float32(scale) + np.float32(offset)
    return out
