"""Small rendering pieces shared by pages: overlays as PNG bytes, layer labels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from explain.cams import NormalizedMap, normalize
from explain.layers import LayerInfo
from explain.overlay import overlay


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def overlay_for(
    rgb: np.ndarray, cam: np.ndarray, opacity: float, colormap: str
) -> tuple[np.ndarray, NormalizedMap]:
    scaled = normalize(cam)
    return overlay(rgb, scaled.values, opacity, colormap), scaled


def layer_label(info: LayerInfo) -> str:
    h, w, c = info.shape
    return f"{info.stage} · {info.path} ({h}×{w}×{c})"


def thumbnail(rgb: np.ndarray, side: int = 320) -> np.ndarray:
    from explain.images import fit_within

    return fit_within(rgb, side)
