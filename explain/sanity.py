"""Sanity checks for saliency maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

- Cascading model-parameter randomisation: weights are re-initialised from the top of the
  network down, one block at a time, and the map is computed again after each step.
- Independent randomisation: each block alone is re-initialised (the rest keeps its trained
  weights), one block at a time.
- Random logit (the paper's data-randomisation cousin, as Quantus' ``RandomLogit``): the map
  of a class the photo is not, against the map of its class.

Each step is compared with the original map by Spearman's rank correlation and SSIM (both on
the maps scaled to [0, 1]). A map that explains the model changes as its weights are
destroyed (both fall); one that stays the same shows the photo's edges, not the model's
reasoning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from explain.explainer import Explainer


@dataclass
class SanityStep:
    randomised: str  # the block re-initialised (cascading: last; everything above is random too)
    layers: int  # how many weighted layers are random at this step
    spearman: float  # rank correlation of the map with the original one
    cam: np.ndarray
    ssim: float = float("nan")  # structural similarity with the original map


@dataclass(frozen=True)
class Similarity:
    """How alike two maps are."""

    spearman: float  # rank correlation, -1 .. 1 (NaN when a map is constant)
    ssim: float  # structural similarity of the maps scaled to [0, 1], -1 .. 1 (NaN: too small)


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


def _unit(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Return the SSIM (Wang et al. 2004) of two maps of one shape, each min-max scaled to
    [0, 1] first; the window is 7 or the largest odd side that fits (NaN under 3 cells).

    skimage.metrics.structural_similarity does the work.
    """
    from skimage.metrics import structural_similarity

    a, b = _unit(a), _unit(b)
    side = min(a.shape)
    window = min(7, side if side % 2 else side - 1)
    if window < 3:
        return float("nan")
    return float(structural_similarity(a, b, data_range=1.0, win_size=window))


def map_similarity(a: np.ndarray, b: np.ndarray, size: tuple[int, int] | None = None) -> Similarity:
    """Return the rank correlation and SSIM of two maps; with ``size`` both are first scaled
    to [0, 1] and upsampled bilinearly to (height, width), so maps of any grids compare as they
    are drawn over the photo."""
    if size is not None:
        from explain.overlay import upsample

        a = upsample(_unit(a).astype(np.float32), size) if a.shape != tuple(size) else a
        b = upsample(_unit(b).astype(np.float32), size) if b.shape != tuple(size) else b
    if a.shape != b.shape:
        raise ValueError(f"maps of shapes {a.shape} and {b.shape}: give a common size")
    return Similarity(spearman(a, b), ssim(a, b))


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


def _copy_of(explainer: Explainer) -> tuple[keras.Model, Explainer]:
    clone = keras.models.clone_model(explainer.model)
    clone.set_weights(explainer.model.get_weights())
    copy = Explainer(
        clone, explainer.class_names, explainer.input_shape[:2], explainer.scale, explainer.offset
    )
    copy.feeding = explainer.feeding
    return clone, copy


MapFunction = Callable[[Explainer, np.ndarray, str, int], np.ndarray]


def _map_function(method: str) -> MapFunction:
    """Return f(explainer, batch, layer, target) -> (h, w) map of the first image."""

    def one_map(explainer: Explainer, batch: np.ndarray, layer: str, target: int) -> np.ndarray:
        try:
            from explain.methods import METHODS, method_map
        except ImportError:  # an engine without the method registry: one-pass CAMs only
            return explainer.explain(batch[:1], [layer], target, (method,)).cam(layer, 0, method)
        if method not in METHODS:
            raise KeyError(f"unknown method {method!r}")
        return method_map(explainer, method, batch[:1], layer, [target])[0]

    return one_map


def _original(explainer: Explainer, batch: np.ndarray, layer: str, target: int, method: str):
    if target < 0:
        target = int(explainer.predict(batch[:1])[0].argmax())
    make = _map_function(method)
    return target, make, make(explainer, batch[:1], layer, target)


def randomisation_check(
    explainer: Explainer,
    batch: np.ndarray,
    layer: str,
    target: int = -1,
    method: str = "gradcam",
    seed: int = 0,
) -> list[SanityStep]:
    """Return one :class:`SanityStep` per block randomised, top down (cascading), for the
    first image: each step's map compared with the trained model's by rank correlation and SSIM.

    Works on a copy of the model; the explainer's own model is not touched.
    """
    target, make, reference = _original(explainer, batch, layer, target, method)
    clone, copy = _copy_of(explainer)
    rng = np.random.default_rng(seed)
    steps, count = [], 0
    for name, paths in cascade_groups(copy):
        for path in paths:
            reinitialise(_layer_at(clone, path), rng)
        count += len(paths)
        cam = make(copy, batch[:1], layer, target)
        steps.append(SanityStep(name, count, spearman(reference, cam), cam, ssim(reference, cam)))
    return steps


def independent_randomisation(
    explainer: Explainer,
    batch: np.ndarray,
    layer: str,
    target: int = -1,
    method: str = "gradcam",
    seed: int = 0,
) -> list[SanityStep]:
    """Return one :class:`SanityStep` per block (top down), with only that block's weights
    re-initialised and every other layer trained, for the first image.

    Works on one copy of the model whose block weights are restored after each step.
    """
    target, make, reference = _original(explainer, batch, layer, target, method)
    clone, copy = _copy_of(explainer)
    rng = np.random.default_rng(seed)
    steps = []
    for name, paths in cascade_groups(copy):
        layers = [_layer_at(clone, path) for path in paths]
        saved = [[w.numpy() for w in layer_.weights] for layer_ in layers]
        for layer_ in layers:
            reinitialise(layer_, rng)
        cam = make(copy, batch[:1], layer, target)
        steps.append(SanityStep(name, len(paths), spearman(reference, cam), cam, ssim(reference, cam)))
        for layer_, values in zip(layers, saved):
            for weight, value in zip(layer_.weights, values):
                weight.assign(value)
    return steps


@dataclass
class RandomLogit:
    """The map of the photo's class against the map of a class it is not."""

    target: int
    other: int
    spearman: float
    ssim: float
    cam: np.ndarray
    other_cam: np.ndarray


def random_logit(
    explainer: Explainer,
    batch: np.ndarray,
    layer: str,
    target: int = -1,
    method: str = "gradcam",
    seed: int = 0,
) -> RandomLogit:
    """Return the random-logit test (Sixt et al. 2020; Quantus' ``RandomLogit``) for the first
    image: the map of ``target`` (-1: the predicted class) against the map of another class
    drawn at random (for a 2-class model, the other class). Low similarity is good: the map
    depends on the class asked for.
    """
    target, make, reference = _original(explainer, batch, layer, target, method)
    n_classes = explainer.head.n_classes
    if n_classes < 2:
        raise ValueError("the random-logit test needs at least two classes")
    choices = [c for c in range(n_classes) if c != target]
    other = int(np.random.default_rng(seed).choice(choices))
    other_cam = make(explainer, batch[:1], layer, other)
    return RandomLogit(
        target, other, spearman(reference, other_cam), ssim(reference, other_cam), reference, other_cam
    )
