"""The model-randomisation sanity check (Adebayo et al. 2018).

Weights are re-initialised from the top of the network down, one block at a time, and the
map is computed again after each step. A map that explains the model changes as its weights
are destroyed (the rank correlation with the original map falls); one that stays the same
shows the photo's edges, not the model's reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from explain.explainer import Explainer


@dataclass
class SanityStep:
    randomised: str  # the block re-initialised last (everything above it is random too)
    layers: int  # how many weighted layers are random so far
    spearman: float  # rank correlation of the map with the original one
    cam: np.ndarray


def rankdata(values: np.ndarray) -> np.ndarray:
    """Return average ranks (1-based), ties sharing their mean rank."""
    values = np.asarray(values).ravel()
    sorter = np.argsort(values, kind="mergesort")
    inverse = np.empty(sorter.size, dtype=np.intp)
    inverse[sorter] = np.arange(sorter.size)
    ordered = values[sorter]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    dense = first.cumsum()[inverse]
    bounds = np.r_[np.flatnonzero(first), first.size]
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (NaN when one is constant)."""
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def _layer_at(model: keras.Model, path: str) -> keras.layers.Layer:
    layer = model
    for name in path.split("/"):
        layer = layer.get_layer(name)
    return layer


def reinitialise(layer: keras.layers.Layer, rng: np.random.Generator) -> None:
    """Give a layer fresh random weights (batch-norm back to its defaults)."""
    if isinstance(layer, keras.layers.BatchNormalization):
        for variable, value in (
            ("gamma", 1.0),
            ("beta", 0.0),
            ("moving_mean", 0.0),
            ("moving_variance", 1.0),
        ):
            weight = getattr(layer, variable, None)
            if weight is not None:
                weight.assign(np.full(weight.shape, value, weight.dtype))
        return
    for weight in layer.weights:
        shape = tuple(weight.shape)
        if "bias" in weight.path:
            weight.assign(np.zeros(shape, weight.dtype))
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else max(shape[0], 1)
            weight.assign((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(weight.dtype))


def cascade_groups(explainer: Explainer) -> list[tuple[str, list[str]]]:
    """Return (name, weighted layer paths) groups from the top: the head, then each block."""
    model = explainer.model
    blocks = {info.path for info in (explainer.layers.blocks or explainer.layers.layers)}
    groups: list[tuple[str, list[str]]] = []
    current: list[str] = []
    for path in explainer.layers.leaves:
        if _layer_at(model, path).weights:
            current.append(path)
        if path in blocks:
            groups.append((path, current))
            current = []
    groups.append(("head", current))
    return [(name, paths) for name, paths in reversed(groups) if paths]


def randomisation_check(
    explainer: Explainer,
    batch: np.ndarray,
    layer: str,
    target: int = -1,
    method: str = "gradcam",
    seed: int = 0,
) -> list[SanityStep]:
    """Return one :class:`SanityStep` per block randomised, top down, for the first image.

    Works on a copy of the model; the explainer's own model is not touched.
    """
    original = explainer.explain(batch[:1], [layer], target, (method,))
    target = int(original.targets[0])
    clone = keras.models.clone_model(explainer.model)
    clone.set_weights(explainer.model.get_weights())
    copy = Explainer(
        clone, explainer.class_names, explainer.input_shape[:2], explainer.scale, explainer.offset
    )
    rng = np.random.default_rng(seed)
    reference = original.cam(layer, 0, method)
    steps, count = [], 0
    for name, paths in cascade_groups(copy):
        for path in paths:
            reinitialise(_layer_at(clone, path), rng)
        count += len(paths)
        cam = copy.explain(batch[:1], [layer], target, (method,)).cam(layer, 0, method)
        steps.append(SanityStep(name, count, spearman(reference, cam), cam))
    return steps
