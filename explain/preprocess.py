"""How a decoded RGB photo is fed to a model: resize, grey, pixel scaling, channel order.

A model file does not say how it was trained to see pixels, so the recipe travels beside it
(the model card). :class:`Feeding` is the engine's side of that recipe: a plain value that
turns a decoded RGB ``uint8`` photo into the model's float input, in two steps so a check
over many recipes can resize a batch once and rescale it many times.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from explain.images import resize_to

#: Pixel scalings, by name, with a label for people.
SCALINGS: dict[str, str] = {
    "unit": "x / 255",
    "symmetric": "x / 127.5 − 1",
    "raw": "raw 0–255",
    "caffe": "caffe (− ImageNet means)",
    "torch": "torch (ImageNet mean / std)",
    "affine": "x · scale + offset",
}
#: What each scaling gives, and who uses it.
SCALING_HELP: dict[str, str] = {
    "unit": "0 to 1: most tutorials (ImageDataGenerator(rescale=1/255))",
    "symmetric": "−1 to 1: Teachable Machine, MobileNet/Inception/Xception preprocess_input",
    "raw": "0 to 255 as decoded: models that rescale inside themselves (EfficientNet, ours)",
    "caffe": "0–255 less the ImageNet channel means; keras.applications ResNet50/VGG use it with BGR",
    "torch": "(x / 255 − (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225): DenseNet, PyTorch ports",
    "affine": "x · scale + offset with numbers of your own (older cards)",
}
CHANNEL_ORDERS = ("RGB", "BGR")
#: How a photo of another shape reaches the model's size.
RESIZES: dict[str, str] = {
    "stretch": "stretch to the input size",
    "crop": "centre crop to the input's shape, then resize (Teachable Machine)",
}
# keras.applications.imagenet_utils, given here in RGB order (BGR there, after the flip).
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Feeding:
    """The recipe that turns a decoded RGB ``uint8`` photo into one model input.

    ``channels`` is what the model takes (1 or 3); ``grey`` turns colour photos grey first
    (always so for one channel). Per-channel constants are in RGB order and applied before
    ``channel_order`` reorders, so ``caffe`` with ``BGR`` is exactly keras.applications' caffe.
    ``scale`` and ``offset`` are used by the ``affine`` scaling only.
    """

    size: tuple[int, int] = (224, 224)
    channels: int = 3
    scaling: str = "raw"
    channel_order: str = "RGB"
    resize: str = "stretch"
    grey: bool = False
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown pixel scaling {self.scaling!r} (known: {', '.join(SCALINGS)})")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"unknown channel order {self.channel_order!r} (RGB or BGR)")
        if self.resize not in RESIZES:
            raise ValueError(f"unknown resize {self.resize!r} (known: {', '.join(RESIZES)})")
        if self.channels not in (1, 3):
            raise ValueError(f"models with {self.channels} input channels are not supported")

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Return the float32 (H, W, channels) model input for one decoded RGB photo."""
        return self.pixels(self.resized(rgb)[None])[0]

    def resized(self, rgb: np.ndarray) -> np.ndarray:
        """Return the photo at the model's size, still RGB ``uint8`` (stretched or centre-cropped)."""
        if self.resize == "crop":
            rgb = centre_crop(rgb, self.size[1] / self.size[0])
        return resize_to(rgb, self.size)

    def pixels(self, batch: np.ndarray) -> np.ndarray:
        """Return (N, H, W, channels) float32 model inputs from resized (N, H, W, 3) RGB photos."""
        batch = np.asarray(batch)
        if self.grey or self.channels == 1:
            # All N photos as one tall image: cv2's grey is per pixel, so one call does the batch.
            n, h, w = batch.shape[:3]
            tall = np.ascontiguousarray(batch.reshape(n * h, w, 3).astype(np.uint8))
            batch = cv2.cvtColor(tall, cv2.COLOR_RGB2GRAY).reshape(n, h, w, 1)
        x = batch.astype(np.float32)
        scale, offset = self._constants(x.shape[-1])
        x = x * scale + offset
        if x.shape[-1] == 1 and self.channels == 3:
            x = np.repeat(x, 3, axis=-1)
        if self.channel_order == "BGR" and x.shape[-1] == 3:
            x = x[..., ::-1]
        return np.ascontiguousarray(x, dtype=np.float32)

    def _constants(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Return per-channel (scale, offset) with ``x * scale + offset`` the scaling."""
        if self.scaling == "unit":
            scale, offset = np.float32(1 / 255), np.float32(0)
        elif self.scaling == "symmetric":
            scale, offset = np.float32(1 / 127.5), np.float32(-1)
        elif self.scaling == "raw":
            scale, offset = np.float32(1), np.float32(0)
        elif self.scaling == "affine":
            scale, offset = np.float32(self.scale), np.float32(self.offset)
        elif self.scaling == "caffe":
            mean = np.array(CAFFE_MEAN_RGB, dtype=np.float32)
            scale, offset = np.float32(1), -(mean if channels == 3 else mean.mean(keepdims=True))
        else:  # torch
            mean = np.array(TORCH_MEAN_RGB, dtype=np.float32)
            std = np.array(TORCH_STD_RGB, dtype=np.float32)
            if channels == 1:
                mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
            scale, offset = 1 / (255 * std), -mean / std
        return np.asarray(scale, np.float32), np.asarray(offset, np.float32)

    def describe(self) -> str:
        """Return the recipe in a few words, e.g. 'x / 255 (0 to 1), RGB, stretch, 224×224'."""
        scaling = SCALINGS[self.scaling]
        if self.scaling == "affine":
            scaling = f"x · {self.scale:g} + {self.offset:g}"
        colour = "grey" if self.grey or self.channels == 1 else self.channel_order
        resize = "centre crop" if self.resize == "crop" else "stretch"
        return f"{scaling}, {colour}, {resize}, {self.size[0]}×{self.size[1]}"


def centre_crop(rgb: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """Return the largest centred part of the photo with width / height == ``aspect``."""
    height, width = rgb.shape[:2]
    if width / height > aspect:
        new_width = max(1, round(height * aspect))
        left = (width - new_width) // 2
        return rgb[:, left : left + new_width]
    new_height = max(1, round(width / aspect))
    top = (height - new_height) // 2
    return rgb[top : top + new_height]
