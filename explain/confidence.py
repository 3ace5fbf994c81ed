"""Average Drop and Increase in Confidence (Chattopadhay et al. 2018, "Grad-CAM++", WACV).

The photo is shown to the model through the map: every pixel multiplied by the map's value
there (upsampled bilinearly as on the overlay, scaled to [0, 1] by its maximum). A map that
covers what the model needs keeps its confidence.

- Average Drop: mean over photos of max(0, Y - O) / Y, in %: lower is better.
- Increase in Confidence: share of photos where O > Y, in %: higher is better.

Y is the class probability on the photo, O on the photo seen through the map. Pixels are
multiplied in photo space (0 is black), so a model input ``scale * pixel + offset`` becomes
``offset + (x - offset) * map``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explain.overlay import upsample
from explain.road import predict_in_batches


def unit_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Return the map's non-negative part scaled to [0, 1] at (height, width); zeros for a map
    with no positive, finite value."""
    values = np.nan_to_num(np.asarray(saliency, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    values = np.maximum(values, 0.0)
    peak = float(values.max()) if values.size else 0.0
    values = values / peak if peak > 1e-12 else np.zeros_like(values)
    return values if values.shape == tuple(size) else upsample(values, size)


def seen_through(image: np.ndarray, saliency: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Return the model input ``image`` (H, W, C) with each pixel multiplied by the map."""
    mask = unit_map(saliency, image.shape[:2])[..., None]
    return (offset + (np.asarray(image, np.float32) - offset) * mask).astype(np.float32)


@dataclass
class Confidence:
    """Class probabilities of N photos before and after being seen through their maps."""

    original: np.ndarray  # (N,) Y
    masked: np.ndarray  # (N,) O

    @property
    def drop(self) -> np.ndarray:
        """Return (N,) max(0, Y - O) / Y per photo (a fraction)."""
        return np.maximum(0.0, self.original - self.masked) / np.maximum(self.original, 1e-12)

    @property
    def increase(self) -> np.ndarray:
        """Return (N,) whether the confidence rose (O > Y)."""
        return self.masked > self.original

    @property
    def average_drop(self) -> float:
        """Return the Average Drop in % (lower is better)."""
        return float(100.0 * self.drop.mean())

    @property
    def increase_in_confidence(self) -> float:
        """Return the Increase in Confidence in % (higher is better)."""
        return float(100.0 * self.increase.mean())


def confidence_change(
    explainer,
    inputs: np.ndarray,
    targets: Sequence[int],
    maps: Sequence[np.ndarray],
    batch_size: int = 32,
) -> Confidence:
    """Return the probabilities of ``targets`` for model inputs (N, H, W, C) before and after
    each is seen through its precomputed map (any resolution); one batched run of 2N images."""
    inputs = np.asarray(inputs, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    offset = float(getattr(explainer, "offset", 0.0))
    masked = np.stack([seen_through(x, m, offset) for x, m in zip(inputs, maps)])
    probs = predict_in_batches(
        explainer, np.concatenate([inputs, masked]), np.r_[targets, targets], batch_size
    )
    n = len(inputs)
    return Confidence(probs[:n], probs[n:])
