"""The penultimate features of every photo, reduced with PCA (NumPy's SVD): a few dozen
components to keep, and two to draw."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Pca:
    """Principal components of a feature matrix."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D), unit rows, sign fixed (largest loading positive)
    explained: np.ndarray  # (k,) share of the variance each component explains

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Return the features' coordinates on the components, (N, k)."""
        return (np.asarray(features, np.float64) - self.mean) @ self.components.T


def pca(features: np.ndarray, k: int = 64) -> Pca:
    """Return the first ``k`` principal components of (N, D) ``features``.

    Signs are fixed (each component's largest-magnitude loading is positive), so the same
    data always gives the same picture.
    """
    x = np.asarray(features, np.float64)
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    centred = x - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = max(0, min(k, vt.shape[0]))
    components = vt[:k]
    flip = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    flip[flip == 0] = 1
    components = components * flip[:, None]
    variance = s**2
    explained = variance[:k] / variance.sum() if variance.sum() > 0 else np.zeros(k)
    return Pca(mean, components, explained)
