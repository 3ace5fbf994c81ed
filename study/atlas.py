"""The channel atlas: at each stage end, the channels that respond most strongly over the
dataset, and for each the photo patches that excite it most.

A channel's strength is the mean over photos of its strongest response in the photo; its
patches are boxes (fractions of the photo, the model sees the whole photo resized) around
the position of that response, as wide as a few cells of the layer's grid. Boxes and photo
ids are stored, not pictures: the page crops the photos when it shows the atlas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def patch_side(grid: int, cells: float = 3.0) -> float:
    """Return a patch's side as a fraction of the photo for a layer of ``grid`` cells a side:
    ``cells`` cells, kept between 15 % and 60 % of the photo so it is seen and still local."""
    return float(np.clip(cells / max(grid, 1), 0.15, 0.6))


def channel_atlas(
    photos: list[str],
    maxima: np.ndarray,
    where: np.ndarray,
    grid: tuple[int, int],
    channels: int = 8,
    patches: int = 6,
) -> pd.DataFrame:
    """Return the atlas rows of one layer: the ``channels`` strongest channels, each with
    its ``patches`` most exciting photos and a box (y0, x0, y1, x1 as fractions) in each.

    ``maxima`` (N, C) is each photo's strongest response per channel, ``where`` (N, C) the
    flat position (row * width + column) of it on the layer's (height, width) ``grid``.
    """
    values = np.asarray(maxima, np.float32)
    strength = np.nanmean(values, axis=0)
    order = np.argsort(-strength, kind="stable")[:channels]
    height, width = grid
    side_y, side_x = patch_side(height), patch_side(width)
    rows = []
    for rank, channel in enumerate(order):
        top = np.argsort(-values[:, channel], kind="stable")[:patches]
        for k, i in enumerate(top):
            row, col = divmod(int(where[i, channel]), width)
            cy, cx = (row + 0.5) / height, (col + 0.5) / width
            y0 = float(np.clip(cy - side_y / 2, 0, 1 - side_y))
            x0 = float(np.clip(cx - side_x / 2, 0, 1 - side_x))
            rows.append(
                {
                    "channel": int(channel),
                    "channel_rank": rank,
                    "strength": float(strength[channel]),
                    "patch_rank": k,
                    "photo": photos[i],
                    "response": float(values[i, channel]),
                    "y0": y0,
                    "x0": x0,
                    "y1": y0 + side_y,
                    "x1": x0 + side_x,
                }
            )
    return pd.DataFrame(rows)
