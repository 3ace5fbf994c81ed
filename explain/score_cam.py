"""Score-CAM (Wang et al. 2020): channels weighted by how much the class score rises when the
photo is seen only through each channel's (upsampled, [0, 1]-scaled) activation map.

Needs a forward pass per channel: they run in batches, and only the ``max_channels``
strongest channels (by mean activation) take part, since a 2048-channel layer would otherwise
cost 2048 passes. No gradients.
"""

from __future__ import annotations

import numpy as np

from explain.attributions import default_batch_size
from explain.explainer import Explainer
from explain.overlay import upsample


def channel_masks(activations: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Return (channels, H, W) masks: each channel upsampled and min-max scaled to [0, 1]."""
    masks = np.empty((activations.shape[-1], *size), np.float32)
    for k in range(activations.shape[-1]):
        channel = activations[..., k].astype(np.float32)
        low, high = float(channel.min()), float(channel.max())
        scaled = (channel - low) / (high - low) if high > low else np.zeros_like(channel)
        masks[k] = upsample(scaled, size)
    return masks


def score_cam(
    explainer: Explainer,
    image: np.ndarray,
    activations: np.ndarray,
    target: int,
    max_channels: int = 64,
    batch_size: int | None = None,
) -> np.ndarray:
    """Return the (h, w) Score-CAM of one model input ``image`` (H, W, C) at a layer whose
    activations for that image are ``activations`` (h, w, channels)."""
    channels = activations.shape[-1]
    keep = np.argsort(-activations.reshape(-1, channels).mean(axis=0), kind="stable")[:max_channels]
    chosen = activations[..., keep]
    masks = channel_masks(chosen, image.shape[:2])
    scores = np.empty(len(keep), np.float64)
    batch_size = batch_size or default_batch_size(backward=False)
    for start in range(0, len(keep), batch_size):
        part = masks[start : start + batch_size]
        masked = image[None] * part[..., None]
        scores[start : start + len(part)] = explainer.class_scores(masked, target)
    weights = np.exp(scores - scores.max())
    weights /= weights.sum()
    return np.maximum((chosen * weights.astype(np.float32)).sum(axis=-1), 0.0)
