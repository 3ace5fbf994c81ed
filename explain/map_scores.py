"""Every faithfulness score of several maps of one photo, their perturbed images batched
through the model together.

For one model input and any number of precomputed maps (methods x layers), this gives per map
the figures of :mod:`explain.faithfulness` (deletion and insertion areas, Petsiuk et al.
2018, same baselines, pixel order and trapezoid rule), :mod:`explain.road` (MoRF, LeRF and
combined, Rong et al. 2022) and :mod:`explain.confidence` (drop and increase in confidence,
Chattopadhay et al. 2018). The curves' end points do not depend on the map (the photo, the
black photo, the blurred photo), so they are run once per photo, not once per map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explain.confidence import seen_through
from explain.faithfulness import baseline_image, pixel_order
from explain.road import predict_in_batches, road_images


def score_maps(
    explainer,
    image: np.ndarray,
    target: int,
    maps: dict[str, np.ndarray],
    steps: int = 4,
    road_fractions: Sequence[float] = (0.25, 0.75),
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Return {map key: {deletion, insertion, road_morf, road_lerf, road, drop, increase}} for
    one model input ``image`` (H, W, C) and class ``target``.

    ``deletion``/``insertion`` are areas under the curves at ``steps + 1`` evenly spaced
    fractions (lower/higher is better); ``road_morf``/``road_lerf`` mean probabilities over
    ``road_fractions`` (lower/higher is better), ``road`` their difference LeRF - MoRF;
    ``drop`` max(0, Y - O) / Y and ``increase`` 1.0 when O > Y (Average Drop and Increase in
    Confidence are their means over photos, in %).
    """
    image = np.asarray(image, dtype=np.float32)
    height, width, channels = image.shape
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * height * width).astype(int)[1:-1]
    flat = image.reshape(-1, channels)
    black = baseline_image(image, "black").reshape(-1, channels)
    blur = baseline_image(image, "blur").reshape(-1, channels)
    offset = float(getattr(explainer, "offset", 0.0))
    batch = [image, black.reshape(image.shape), blur.reshape(image.shape)]
    keys = list(maps)
    for key in keys:
        order = pixel_order(maps[key], (height, width))
        for count in counts:
            deleted = flat.copy()
            deleted[order[:count]] = black[order[:count]]
            batch.append(deleted.reshape(image.shape))
        for count in counts:
            inserted = blur.copy()
            inserted[order[:count]] = flat[order[:count]]
            batch.append(inserted.reshape(image.shape))
        batch.extend(road_images(image, maps[key], road_fractions, True, seed=seed))
        batch.extend(road_images(image, maps[key], road_fractions, False, seed=seed))
        batch.append(seen_through(image, maps[key], offset))
    stacked = np.stack(batch)
    probs = predict_in_batches(explainer, stacked, np.full(len(stacked), int(target)), batch_size)
    original, black_p, blur_p = (float(p) for p in probs[:3])
    inner, k = len(counts), len(road_fractions)
    per_map = 2 * inner + 2 * k + 1
    out: dict[str, dict[str, float]] = {}
    for i, key in enumerate(keys):
        p = probs[3 + i * per_map : 3 + (i + 1) * per_map]
        deletion = np.r_[original, p[:inner], black_p]
        insertion = np.r_[blur_p, p[inner : 2 * inner], original]
        morf = p[2 * inner : 2 * inner + k]
        lerf = p[2 * inner + k : 2 * inner + 2 * k]
        masked = float(p[-1])
        out[key] = {
            "deletion": float(np.trapezoid(deletion, fractions)),
            "insertion": float(np.trapezoid(insertion, fractions)),
            "road_morf": float(morf.mean()),
            "road_lerf": float(lerf.mean()),
            "road": float((lerf - morf).mean()),
            "drop": max(0.0, original - masked) / max(original, 1e-12),
            "increase": float(masked > original),
        }
    return out
