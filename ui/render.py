"""Small rendering pieces shared by pages: overlays as PNG bytes, layer labels, and the
prediction and heatmap headers that Inspect and its first look (ui.first_look) both draw."""

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


def prediction_header(class_names: list[str], probabilities: np.ndarray) -> int:
    """The predicted class with its probability, a bar, every class's; returns the predicted."""
    import streamlit as st

    predicted = int(np.argmax(probabilities))
    st.subheader(f"Prediction: {class_names[predicted]} ({probabilities[predicted]:.1%})")
    st.progress(float(probabilities[predicted]))
    st.caption(" · ".join(f"{n}: {p:.1%}" for n, p in zip(class_names, probabilities)))
    return predicted


def photo_figure(rgb: np.ndarray, name: str) -> None:
    import streamlit as st

    st.image(rgb, caption=f"{name} ({rgb.shape[1]}×{rgb.shape[0]})", width="stretch")


def heatmap_figure(picture: np.ndarray, layer: str, method_name: str, class_name: str) -> None:
    """The heatmap laid over the photo, under a title naming the method and the class."""
    import streamlit as st

    st.subheader(f"{method_name} for “{class_name}”")
    st.image(picture, caption=f"{layer} · {method_name} · class {class_name}", width="stretch")
