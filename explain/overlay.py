"""Heatmaps laid over the photo, at the photo's own resolution and aspect ratio."""

from __future__ import annotations

import cv2
import numpy as np

COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "plasma": cv2.COLORMAP_PLASMA,
    "hot": cv2.COLORMAP_HOT,
}


def upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Return a [0, 1] map resized to (height, width) with bilinear interpolation."""
    height, width = size
    out = cv2.resize(values.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)


def colorize(values: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Return a [0, 1] map as an RGB uint8 picture in the named OpenCV colormap."""
    if colormap not in COLORMAPS:
        raise KeyError(f"unknown colormap {colormap!r}; choose from {sorted(COLORMAPS)}")
    grey = np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def overlay(rgb: np.ndarray, values: np.ndarray, opacity: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """Return the photo with the [0, 1] map blended over it, at the photo's resolution."""
    heat = colorize(upsample(values, rgb.shape[:2]), colormap)
    return cv2.addWeighted(heat, float(opacity), rgb, 1.0 - float(opacity), 0.0)
