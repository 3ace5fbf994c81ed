"""Pixel attributions: gradients of the explained class score with respect to the input pixels.

- :func:`saliency`: the gradient's largest magnitude over colour channels (Simonyan et al. 2014).
- :func:`smoothgrad`: the same for the gradient averaged over noisy copies (Smilkov et al. 2017).
- :func:`integrated_gradients`: gradients along the straight path from a baseline, times the
  input's difference from it (Sundararajan et al. 2017), with its completeness check.
- :func:`guided_grad_cam`: guided backprop times the upsampled Grad-CAM (Selvaraju et al. 2017).

The score is the one every map explains (``explain.heads``): the logit for a sigmoid or
softmax head. Gradients are with respect to the model input (after the card's preprocessing).
Every function runs in batches of at most ``batch_size`` model inputs (default:
:func:`default_batch_size`), so memory does not grow
with the number of samples or steps. Maps are (N, H, W) at the model input's resolution.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from explain.cams import normalize
from explain.explainer import Explainer
from explain.overlay import upsample


@functools.cache
def _has_accelerator() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def default_batch_size(backward: bool = True) -> int:
    """Return how many model inputs one compiled call of a multi-pass method takes.

    16 (32 forward-only) with a GPU; 4 (8 forward-only) on a CPU, where big batches are
    slower per image: ResNet-50 at 224 px on the 2-core benchmark machine took 0.44 s per
    input gradient in batches of 1, 0.49 s in batches of 4 and 0.96 s in batches of 16.
    """
    size = 16 if _has_accelerator() else 4
    return size if backward else 2 * size


@tf.custom_gradient
def _positive_gradient(y: tf.Tensor):
    """Identity forward; backward lets only positive gradients through (guided backprop)."""
    return tf.identity(y), lambda dy: tf.nn.relu(dy)


def is_relu(layer: keras.layers.Layer) -> bool:
    """Return whether ``layer`` ends in a plain ReLU (an Activation, a ReLU layer or activation='relu')."""
    if isinstance(layer, keras.layers.ReLU):
        return not getattr(layer, "negative_slope", 0.0)
    return getattr(getattr(layer, "activation", None), "__name__", "") == "relu"


def _guide_relus(_path: str, layer: keras.layers.Layer, out):
    # A ReLU's own backward already zeroes the gradient where its input was negative; adding
    # "and only positive gradients" on its output gives Springenberg's guided backprop rule,
    # without touching the user's model (its layers and activations stay as they are).
    if is_relu(layer) and not isinstance(out, (list, tuple)):
        return _positive_gradient(out)
    return None


def _build_gradients(explainer: Explainer, guided: bool):
    def gradients(x, classes):
        explainer.traces += 1
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = explainer.logits(x, _guide_relus if guided else None)
            score = explainer.head.class_score(logits, explainer.targets(logits, classes))
            total = tf.reduce_sum(score)  # inside the tape, or the tape does not see it
        return score, tape.gradient(total, x)

    signature = explainer.signature(tf.TensorSpec((None,), tf.int32))
    return tf.function(gradients, input_signature=signature, autograph=False)


def input_gradients(
    explainer: Explainer,
    batch: np.ndarray,
    classes: Sequence[int] | int | None = None,
    guided: bool = False,
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (scores (N,), gradients (N, H, W, C)) of each input's class score.

    ``classes``: one per input, or one for all (``None`` or -1: each input's predicted class).
    ``guided``: guided backprop (only positive gradients pass back through ReLUs).
    """
    fn = explainer.compiled(("input_gradients", guided), lambda: _build_gradients(explainer, guided))
    batch_size = batch_size or default_batch_size()
    batch = np.asarray(batch, dtype=np.float32)
    target = np.broadcast_to(np.asarray(-1 if classes is None else classes, np.int32), (len(batch),))
    scores = np.empty(len(batch), np.float32)
    grads = np.empty_like(batch)
    for start in range(0, len(batch), batch_size):
        stop = start + batch_size
        s, g = fn(tf.convert_to_tensor(batch[start:stop]), tf.convert_to_tensor(target[start:stop]))
        scores[start:stop], grads[start:stop] = s.numpy(), g.numpy()
    return scores, grads


def magnitude(gradients: np.ndarray) -> np.ndarray:
    """Return (N, H, W): the largest absolute value over channels (how saliency is shown)."""
    return np.abs(gradients).max(axis=-1)


def saliency(
    explainer: Explainer, batch: np.ndarray, classes: Sequence[int] | int | None = None
) -> np.ndarray:
    """Return (N, H, W) gradient saliency: max over channels of |d score / d pixel|.

    tf-keras-vis' ``Saliency`` computes the same, then min-max scales it (``normalize_map``);
    ours is unscaled like every map here (``explain.cams.normalize`` scales for display).
    """
    return magnitude(input_gradients(explainer, batch, classes)[1])


def smoothgrad(
    explainer: Explainer,
    batch: np.ndarray,
    classes: Sequence[int] | int | None = None,
    samples: int = 16,
    noise: float = 0.15,
    seed: int = 0,
    batch_size: int | None = None,
) -> np.ndarray:
    """Return (N, H, W) SmoothGrad: max over channels of |mean gradient over noisy copies|.

    Each image gets ``samples`` copies with Gaussian noise of standard deviation ``noise``
    times its value range (max - min), as the paper (15 %, the PAIR saliency default). The
    class is the clean image's (noise does not change what is explained). We average the
    signed gradients, the paper's formula and Captum's ``smoothgrad``; tf-keras-vis averages
    their absolute values and PAIR's default their squares (SmoothGrad-Squared): those keep
    noise whose sign flips between samples, which averaging is meant to cancel.
    """
    batch = np.asarray(batch, dtype=np.float32)
    target = explainer.resolve_classes(batch, classes)
    rng = np.random.default_rng(seed)
    batch_size = batch_size or default_batch_size()
    out = np.empty(batch.shape[:3], np.float32)
    for i, image in enumerate(batch):
        sigma = noise * float(image.max() - image.min())
        total = np.zeros_like(image)
        for start in range(0, samples, batch_size):
            count = min(batch_size, samples - start)
            noisy = image[None] + rng.normal(0.0, sigma, (count, *image.shape)).astype(np.float32)
            total += input_gradients(explainer, noisy, int(target[i]), batch_size=batch_size)[1].sum(axis=0)
        out[i] = magnitude(total[None] / samples)[0]
    return out


@dataclass
class IntegratedGradients:
    """Integrated Gradients of N inputs, and how well they add up."""

    attributions: np.ndarray  # (N, H, W, C), signed
    map: np.ndarray  # (N, H, W): positive part of the sum over channels (evidence for the class)
    score_difference: np.ndarray  # (N,) score(input) - score(baseline)
    completeness_error: np.ndarray  # (N,) |sum of attributions - score_difference|

    @property
    def relative_error(self) -> np.ndarray:
        """Return (N,) the completeness error as a share of |score difference|."""
        return self.completeness_error / np.maximum(np.abs(self.score_difference), 1e-12)


def black_baseline(explainer: Explainer) -> np.ndarray:
    """Return the model input of an all-black photo (H, W, C), preprocessing included."""
    h, w, _ = explainer.input_shape
    return explainer.prepare([np.zeros((h, w, 3), np.uint8)])[0]


def integrated_gradients(
    explainer: Explainer,
    batch: np.ndarray,
    classes: Sequence[int] | int | None = None,
    steps: int = 32,
    baseline: np.ndarray | None = None,
    batch_size: int | None = None,
) -> IntegratedGradients:
    """Return Integrated Gradients from ``baseline`` (default: a black photo) in ``steps`` steps.

    The path integral uses the midpoint rule (steps at (k + 1/2) / steps), ``batch_size``
    path points per compiled call. Completeness (the paper's axiom): the attributions sum to
    score(input) - score(baseline); the error left by the finite sum is reported, and falls
    as the steps rise (the paper suggests 20 to 300 steps, and an error within 5 %).
    """
    batch = np.asarray(batch, dtype=np.float32)
    target = explainer.resolve_classes(batch, classes)
    base = black_baseline(explainer) if baseline is None else np.asarray(baseline, np.float32)
    batch_size = batch_size or default_batch_size()
    alphas = ((np.arange(steps, dtype=np.float32) + 0.5) / steps)[:, None, None, None]
    attributions = np.empty_like(batch)
    difference = np.empty(len(batch), np.float32)
    for i, image in enumerate(batch):
        total = np.zeros_like(image)
        for start in range(0, steps, batch_size):
            path = base + alphas[start : start + batch_size] * (image - base)
            total += input_gradients(explainer, path, int(target[i]), batch_size=batch_size)[1].sum(axis=0)
        attributions[i] = (image - base) * total / steps
        ends = explainer.class_scores(np.stack([image, base]), int(target[i]))
        difference[i] = ends[0] - ends[1]
    error = np.abs(attributions.reshape(len(batch), -1).sum(axis=1, dtype=np.float64) - difference)
    return IntegratedGradients(
        attributions=attributions,
        map=np.maximum(attributions.sum(axis=-1), 0.0),
        score_difference=difference,
        completeness_error=error.astype(np.float32),
    )


def guided_backprop(
    explainer: Explainer, batch: np.ndarray, classes: Sequence[int] | int | None = None
) -> np.ndarray:
    """Return (N, H, W, C) guided backprop gradients (Springenberg et al. 2015)."""
    return input_gradients(explainer, batch, classes, guided=True)[1]


def guided_grad_cam(
    explainer: Explainer,
    batch: np.ndarray,
    layer: str | None = None,
    classes: Sequence[int] | int | None = None,
) -> np.ndarray:
    """Return (N, H, W) Guided Grad-CAM: max over channels of |guided backprop| times the
    layer's Grad-CAM scaled to [0, 1] and upsampled (bilinear) to the input.

    The paper multiplies the (H, W, C) guided gradients by the map and shows them as colours;
    we keep one value per pixel, as for saliency, so every map is shown the same way.
    """
    batch = np.asarray(batch, dtype=np.float32)
    layer = layer or explainer.layers.last.path
    target = explainer.resolve_classes(batch, classes)
    cams = explainer.explain(batch, [layer], target, ("gradcam",)).cams["gradcam"][layer]
    guided = magnitude(guided_backprop(explainer, batch, target))
    size = explainer.input_shape[:2]
    return np.stack([g * upsample(normalize(c).values, size) for g, c in zip(guided, cams)])
