"""Does a map point at what the model uses? Deletion and insertion curves (Petsiuk et al. 2018).

Deletion removes the pixels the map ranks highest first and watches the class probability
fall (lower area is better); insertion reveals them first on a blurred photo and watches it
rise (higher area is better). All steps of both curves go through the model as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from explain.explainer import Explainer
from explain.overlay import upsample


@dataclass
class Faithfulness:
    """Curves of the target class's probability against the fraction of pixels changed."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    original: float  # probability on the untouched image
    top20_kept: float  # probability with only the map's top 20% of pixels kept

    @property
    def deletion_auc(self) -> float:
        return float(np.trapezoid(self.deletion, self.fractions))

    @property
    def insertion_auc(self) -> float:
        return float(np.trapezoid(self.insertion, self.fractions))

    @property
    def top20_drop(self) -> float:
        """Confidence lost when only the top 20% of the map is kept (negative: it rose)."""
        return self.original - self.top20_kept

    def summary(self) -> dict[str, float]:
        return {
            "deletion_auc": self.deletion_auc,
            "insertion_auc": self.insertion_auc,
            "top20_drop": self.top20_drop,
            "original": self.original,
        }


def baseline_image(image: np.ndarray, kind: str) -> np.ndarray:
    """Return what removed pixels become: 'black' (zeros) or 'blur' (a heavy Gaussian blur)."""
    if kind == "black":
        return np.zeros_like(image)
    if kind == "blur":
        sigma = max(image.shape[:2]) / 10
        blurred = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigmaX=sigma)
        return blurred.reshape(image.shape)
    raise ValueError(f"unknown baseline {kind!r}")


def pixel_order(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Return pixel indices of an (H, W) image, most salient first (ties in reading order)."""
    values = upsample(saliency, size) if saliency.shape != size else saliency
    return np.argsort(-values.ravel(), kind="stable")


def faithfulness(
    explainer: Explainer,
    image: np.ndarray,
    saliency: np.ndarray,
    target: int,
    steps: int = 20,
    deletion_baseline: str = "black",
    insertion_baseline: str = "blur",
    batch_size: int = 32,
) -> Faithfulness:
    """Return deletion and insertion curves of one model input ``image`` (H, W, C) for a
    [0, 1] ``saliency`` map (any resolution) explaining class ``target``."""
    height, width = image.shape[:2]
    order = pixel_order(saliency, (height, width))
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * order.size).astype(int)
    removed_to = baseline_image(image, deletion_baseline).reshape(-1, image.shape[-1])
    revealed_from = baseline_image(image, insertion_baseline).reshape(-1, image.shape[-1])
    flat = image.reshape(-1, image.shape[-1])
    batch = []
    for count in counts:
        deleted = flat.copy()
        deleted[order[:count]] = removed_to[order[:count]]
        batch.append(deleted)
    for count in counts:
        inserted = revealed_from.copy()
        inserted[order[:count]] = flat[order[:count]]
        batch.append(inserted)
    top = int(round(0.2 * order.size))
    kept = removed_to.copy()
    kept[order[:top]] = flat[order[:top]]
    batch.append(kept)
    stacked = np.stack(batch).reshape(-1, *image.shape)
    probs = np.concatenate(
        [
            explainer.predict(stacked[i : i + batch_size])[:, target]
            for i in range(0, len(stacked), batch_size)
        ]
    )
    n = len(counts)
    return Faithfulness(
        fractions=fractions,
        deletion=probs[:n],
        insertion=probs[n : 2 * n],
        original=float(probs[0]),
        top20_kept=float(probs[-1]),
    )


def by_depth(
    explainer: Explainer,
    image: np.ndarray,
    cams: dict[str, np.ndarray],
    target: int,
    steps: int = 10,
) -> list[dict[str, float | str]]:
    """Return, per layer of ``cams`` (layer path -> raw map), its relative depth and the
    faithfulness figures of its map, for one model input ``image``."""
    from explain.cams import normalize

    rows = []
    for path, cam in cams.items():
        scores = faithfulness(explainer, image, normalize(cam).values, target, steps=steps)
        rows.append({"layer": path, "depth": explainer.layers[path].depth, **scores.summary()})
    return rows
