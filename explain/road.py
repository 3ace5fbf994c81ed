"""ROAD: RemOve And Debias (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy
for Attribution Methods", ICML).

Deletion curves replace pixels with black or blur; the shape of the hole then tells the model
where the map pointed, and the score falls for that alone (the "class information leakage"
the paper measures). ROAD instead fills each removed pixel with noisy linear imputation: the
weighted mean of its 8 neighbours (1/6 for the four direct ones, 1/12 for the diagonals),
solved for all removed pixels at once as one sparse linear system, plus a little Gaussian
noise. The hole then carries no shape.

Two orders, as in the paper: most relevant first (MoRF: the class probability should fall
fast; lower is better) and least relevant first (LeRF: it should stay; higher is better).
``combined`` is the mean of LeRF minus MoRF over the removal levels (higher is better), as
pytorch-grad-cam's ``ROADCombined`` scores one image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import splu

from explain.faithfulness import pixel_order

#: The removal levels pytorch-grad-cam's ROADCombined uses (20, 40, 60, 80 %).
DEFAULT_FRACTIONS = (0.2, 0.4, 0.6, 0.8)

# (dy, dx, weight): the paper's neighbour weights (its code's ``neighbors_weights``).
_NEIGHBOURS = (
    (-1, -1, 1 / 12),
    (-1, 0, 1 / 6),
    (-1, 1, 1 / 12),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (1, 1, 1 / 12),
)


def noisy_linear_imputation(
    image: np.ndarray,
    removed: np.ndarray,
    noise: float = 0.01,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Return ``image`` (H, W, C) with the ``removed`` (H, W) pixels imputed from their
    neighbours, each imputed value plus Gaussian noise of ``noise`` times the image's
    standard deviation (the paper's 0.01 on standardised inputs).

    Every removed pixel equals the weighted mean of its neighbours inside the photo, known
    or imputed. A region with no known pixel around it (everything removed) takes the
    photo's mean: a tiny pull towards it keeps the system solvable.
    """
    image = np.asarray(image, dtype=np.float32)
    removed = np.asarray(removed, dtype=bool).reshape(image.shape[:2])
    out = image.copy()
    count = int(removed.sum())
    if count == 0:
        return out
    height, width = removed.shape
    channels = image.shape[-1]
    index = np.full((height, width), -1, dtype=np.int64)
    ys, xs = np.nonzero(removed)
    index[ys, xs] = np.arange(count)
    own = np.arange(count)
    diagonal = np.zeros(count)
    rhs = np.zeros((count, channels))
    rows, cols, values = [], [], []
    for dy, dx, weight in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        diagonal[inside] += weight
        ny, nx = ny[inside], nx[inside]
        neighbour = index[ny, nx]
        unknown = neighbour >= 0
        rows.append(own[inside][unknown])
        cols.append(neighbour[unknown])
        values.append(np.full(int(unknown.sum()), -weight))
        # Each pixel appears once per offset, so plain fancy-index addition is exact.
        rhs[own[inside][~unknown]] += weight * image[ny[~unknown], nx[~unknown]]
    pull = 1e-6
    mean = image.reshape(-1, channels).mean(axis=0)
    rows.append(own)
    cols.append(own)
    values.append(diagonal + pull)
    matrix = csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(count, count)
    )
    # The system is symmetric: SuperLU with a symmetric ordering is about 1.5x faster here
    # than spsolve's default (0.4 s for 25,000 removed pixels).
    factor = splu(matrix.tocsc(), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
    solved = np.asarray(factor.solve(rhs + pull * mean)).reshape(count, channels)
    if noise > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        solved = solved + rng.normal(0.0, noise * float(image.std()), solved.shape)
    out[ys, xs] = solved.astype(np.float32)
    return out


def road_images(
    image: np.ndarray,
    saliency: np.ndarray,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    most_relevant_first: bool = True,
    noise: float = 0.01,
    seed: int = 0,
) -> np.ndarray:
    """Return (len(fractions), H, W, C): ``image`` with each fraction of its pixels removed,
    in the order of ``saliency`` (any resolution, upsampled bilinearly as on the overlay), and
    imputed by :func:`noisy_linear_imputation`."""
    height, width = image.shape[:2]
    order = pixel_order(saliency, (height, width))
    if not most_relevant_first:
        order = order[::-1]
    rng = np.random.default_rng(seed)
    out = []
    for fraction in fractions:
        removed = np.zeros(height * width, dtype=bool)
        removed[order[: int(round(fraction * order.size))]] = True
        out.append(noisy_linear_imputation(image, removed.reshape(height, width), noise, rng))
    return np.stack(out)


@dataclass
class Road:
    """Class probabilities of N images after ROAD removal, per removal level."""

    fractions: np.ndarray  # (k,)
    original: np.ndarray  # (N,) the untouched images
    morf: np.ndarray  # (N, k) most relevant removed first: lower is better
    lerf: np.ndarray  # (N, k) least relevant removed first: higher is better

    @property
    def combined(self) -> np.ndarray:
        """Return (N,) mean of LeRF - MoRF over the levels (higher: the map ranks pixels
        the way the model uses them)."""
        return (self.lerf - self.morf).mean(axis=1)


def predict_in_batches(
    explainer, images: np.ndarray, targets: np.ndarray, batch_size: int = 32
) -> np.ndarray:
    """Return the probability of ``targets[i]`` for each of ``images`` (batched forward passes)."""
    targets = np.asarray(targets)
    out = np.empty(len(images), np.float32)
    for start in range(0, len(images), batch_size):
        probs = explainer.predict(images[start : start + batch_size])
        out[start : start + len(probs)] = probs[np.arange(len(probs)), targets[start : start + batch_size]]
    return out


def road(
    explainer,
    inputs: np.ndarray,
    targets: Sequence[int],
    maps: Sequence[np.ndarray],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    noise: float = 0.01,
    seed: int = 0,
    batch_size: int = 32,
) -> Road:
    """Return ROAD MoRF and LeRF probabilities of ``targets`` for model inputs (N, H, W, C)
    and one precomputed map per input (any resolution). Every perturbed image of every
    input goes through the model in batches of ``batch_size``."""
    inputs = np.asarray(inputs, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    k = len(fractions)
    images = [inputs]
    for image, saliency in zip(inputs, maps):
        images.append(road_images(image, saliency, fractions, True, noise, seed))
        images.append(road_images(image, saliency, fractions, False, noise, seed))
    every = np.concatenate(images)
    repeated = np.concatenate([targets, np.repeat(targets, 2 * k)])
    probs = predict_in_batches(explainer, every, repeated, batch_size)
    n = len(inputs)
    per_image = probs[n:].reshape(n, 2, k)
    return Road(np.asarray(fractions, np.float32), probs[:n], per_image[:, 0], per_image[:, 1])
