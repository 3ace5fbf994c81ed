"""Feature maps: a layer's channels as pictures."""

from __future__ import annotations

import math

import numpy as np

from explain.overlay import colorize


def top_channels(activations: np.ndarray, k: int = 16) -> np.ndarray:
    """Return the indices of the ``k`` channels with the highest mean activation, strongest first.

    ``activations`` is one image's (h, w, channels).
    """
    means = activations.reshape(-1, activations.shape[-1]).mean(axis=0)
    return np.argsort(-means, kind="stable")[: min(k, len(means))]


def channel_map(activations: np.ndarray, channel: int) -> np.ndarray:
    """Return one channel scaled to [0, 1] by its own range (a flat channel gives zeros)."""
    values = activations[..., channel].astype(np.float32)
    if not np.all(np.isfinite(values)):
        return np.zeros_like(values)
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def feature_grid(
    activations: np.ndarray,
    channels: np.ndarray | list[int],
    tile: int = 96,
    columns: int | None = None,
    colormap: str = "viridis",
    gap: int = 2,
) -> np.ndarray:
    """Return the given channels side by side as one RGB uint8 picture."""
    import cv2

    channels = list(channels)
    columns = columns or max(1, math.ceil(math.sqrt(len(channels))))
    rows = max(1, math.ceil(len(channels) / columns))
    grid = np.full((rows * (tile + gap) - gap, columns * (tile + gap) - gap, 3), 255, np.uint8)
    for i, channel in enumerate(channels):
        picture = colorize(channel_map(activations, channel), colormap)
        picture = cv2.resize(picture, (tile, tile), interpolation=cv2.INTER_NEAREST)
        r, c = divmod(i, columns)
        grid[r * (tile + gap) : r * (tile + gap) + tile, c * (tile + gap) : c * (tile + gap) + tile] = picture
    return grid
