"""Class activation map methods: each a short function of one layer's (activations, gradients).

Inputs are (N, h, w, channels) for N images; outputs (N, h, w), one map per image, never
averaged over images or layers. They run inside the engine's compiled pass, and on NumPy
arrays as well (the results are tensors; call ``.numpy()``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from explain.methods import ONE_PASS, labels

CamMethod = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def layer_cams(
    activations: tf.Tensor, gradients: tf.Tensor | None, methods: Sequence[str]
) -> dict[str, tf.Tensor]:
    """Return every one-pass CAM in ``methods`` of one layer, sharing the work between them.

    The engine's pass calls this once per layer. On a CPU these maps are bound by reading the
    (N, h, w, c) tensors, not by arithmetic, so the methods share every pass over them: the
    channel-weighted maps (Grad-CAM, Grad-CAM++, XGrad-CAM) come from ONE matrix product of the
    activations with their stacked channel weights, and ``gradients * activations`` is formed
    once for HiResCAM and XGrad-CAM. The single-method functions below call this, so each
    formula is written once.
    """
    a = tf.convert_to_tensor(activations, tf.float32)
    _, h, w, c = a.shape
    n = tf.shape(a)[0]
    wanted = set(methods)
    unknown = wanted - set(CAM_FUNCTIONS)
    if unknown:
        choices = ", ".join(CAM_FUNCTIONS)
        raise KeyError(f"{sorted(unknown)[0]!r} is not a one-pass CAM; choose from {choices}")
    out: dict[str, tf.Tensor] = {}
    weights: dict[str, tf.Tensor] = {}  # method -> (N, 1, 1, c) channel weights
    if wanted - {"eigencam"}:
        g = tf.convert_to_tensor(gradients, tf.float32)
        if "gradcam" in wanted:
            weights["gradcam"] = tf.reduce_mean(g, axis=(1, 2), keepdims=True)
        if wanted & {"gradcam++", "xgradcam"}:
            sum_a = tf.reduce_sum(a, axis=(1, 2), keepdims=True)
        if wanted & {"hirescam", "xgradcam"}:
            product = g * a
            if "hirescam" in wanted:
                out["hirescam"] = tf.nn.relu(tf.reduce_sum(product, axis=-1))
            if "xgradcam" in wanted:
                total = tf.reduce_sum(product, axis=(1, 2), keepdims=True)
                weights["xgradcam"] = tf.math.divide_no_nan(total, sum_a)
        if wanted & {"layercam", "gradcam++"}:
            positive = tf.nn.relu(g)
            if "layercam" in wanted:
                out["layercam"] = tf.nn.relu(tf.reduce_sum(positive * a, axis=-1))
            if "gradcam++" in wanted:
                # alpha * relu(g) = g^2 relu(g) / (2 g^2 + sum(A) g^3) = relu(g) / (2 + sum(A) relu(g))
                share = tf.math.divide_no_nan(positive, 2.0 + sum_a * positive)
                weights["gradcam++"] = tf.reduce_sum(share, axis=(1, 2), keepdims=True)
    if weights:
        stacked = tf.concat([tf.reshape(v, (n, c, 1)) for v in weights.values()], axis=2)
        maps = tf.matmul(tf.reshape(a, (n, h * w, c)), stacked)  # (N, hw, methods)
        maps = tf.nn.relu(tf.reshape(maps, (n, h, w, len(weights))))
        for i, name in enumerate(weights):
            out[name] = maps[..., i]
    if "eigencam" in wanted:
        out["eigencam"] = _eigen_cam(a)
    return out


def grad_cam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their mean gradient, then ReLU."""
    return layer_cams(activations, gradients, ("gradcam",))["gradcam"]


def grad_cam_plus_plus(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), closed form for an exponential score.

    alpha = g^2 / (2 g^2 + sum(A) g^3) and weights sum(alpha * relu(g)); where g > 0 the
    term is relu(g) / (2 + sum(A) relu(g)), one pass over the gradients (0 where the
    denominator is 0, as the divide-no-NaN form gives).
    """
    return layer_cams(activations, gradients, ("gradcam++",))["gradcam++"]


def layer_cam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Layer-CAM (Jiang et al. 2021): every position weighted by its own positive gradient."""
    return layer_cams(activations, gradients, ("layercam",))["layercam"]


def hires_cam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """HiResCAM (Draelos & Carin 2020): gradients times activations at every position, then ReLU.

    Like Grad-CAM without the spatial average of the gradients, so the map is exactly the
    part of the score's first-order change that each position explains.
    """
    return layer_cams(activations, gradients, ("hirescam",))["hirescam"]


def xgrad_cam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """XGrad-CAM (Fu et al. 2020): channels weighted by sum(g * A) / sum(A), then ReLU.

    A channel whose activations sum to zero gets weight 0 (pytorch-grad-cam adds 1e-7 to the
    denominator instead; the maps agree wherever the sum is not tiny).
    """
    return layer_cams(activations, gradients, ("xgradcam",))["xgradcam"]


def eigen_cam(activations: tf.Tensor, gradients: tf.Tensor | None = None) -> tf.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): the activations projected on their first principal
    component, then ReLU. No gradient (``gradients`` is ignored).

    As pytorch-grad-cam: positions are the samples, channels the features, centred over
    positions; the sign is the one whose projection points the way the activations' channel
    sum does (an SVD's sign is arbitrary). See :func:`_eigen_cam` for how the component is found.
    """
    return layer_cams(activations, gradients, ("eigencam",))["eigencam"]


#: Block Krylov sizes of Eigen-CAM: BLOCK starting vectors, KRYLOV_DEPTH products with X X^T.
BLOCK, KRYLOV_DEPTH = 8, 4


def _eigen_cam(a: tf.Tensor) -> tf.Tensor:
    """The leading left singular vector of the centred activations X (hw x c), times its
    singular value, by Rayleigh-Ritz on a block Krylov space (Musco & Musco 2015).

    The space is spanned by [S, (X X^T) S, (X X^T)^2 S, (X X^T)^3 S] with S = X [1, R] (the
    channel-sum map and 7 fixed random directions): 32 vectors, made with thin matrix products
    that read X a few times, where a Gram matrix costs hw * c * min(hw, c) and a full SVD
    more. X is never centred in memory: the column means enter as rank-one corrections. On
    ResNet-50's blocks of real photos (where the second singular value reaches 0.975 of the
    first) the map is within 0.3 % of the SVD's peak; 32 steps of power iteration, used
    before, were off by up to 140 % there. Where the space spans all of X's range
    (min(hw, c) <= 32) the answer is exact up to rounding.
    """
    _, h, w, c = a.shape
    n = tf.shape(a)[0]
    x = tf.reshape(a, (n, h * w, c))
    mean = tf.reduce_mean(x, axis=1, keepdims=True)  # (N, 1, c)

    def times(v: tf.Tensor) -> tf.Tensor:  # centred X @ v: (N, c, k) -> (N, hw, k)
        return tf.matmul(x, v) - tf.matmul(mean, v)

    def transposed_times(y: tf.Tensor) -> tf.Tensor:  # centred X^T @ y: (N, hw, k) -> (N, c, k)
        return tf.matmul(x, y, transpose_a=True) - tf.linalg.matrix_transpose(mean) * tf.reduce_sum(
            y, axis=1, keepdims=True
        )

    if min(h * w, c) <= BLOCK * KRYLOV_DEPTH:
        return _small_eigen_cam(x - mean, (h, w))
    y = times(tf.constant(_start_directions(c)))
    channel_sum = y[..., :1]  # (N, hw, 1): fixes the sign
    basis = [tf.math.l2_normalize(y, axis=1)]
    for _ in range(KRYLOV_DEPTH - 1):
        basis.append(tf.math.l2_normalize(times(transposed_times(basis[-1])), axis=1))
    k = tf.concat(basis, axis=2)  # (N, hw, r)
    # Rayleigh-Ritz in the span of K: whiten K's Gram (dropping directions K barely spans),
    # then the top eigenvector of the whitened K^T X X^T K.
    spread, directions = tf.linalg.eigh(tf.matmul(k, k, transpose_a=True))
    kept = spread > 1e-6 * spread[:, -1:]
    whiten = directions * tf.where(kept, tf.math.rsqrt(tf.maximum(spread, 1e-30)), 0.0)[:, None, :]
    projected = tf.matmul(whiten, transposed_times(k), transpose_a=True, transpose_b=True)  # (N, r, c)
    values, vectors = tf.linalg.eigh(tf.matmul(projected, projected, transpose_b=True))
    u = tf.matmul(k, tf.matmul(whiten, vectors[..., -1:]))  # (N, hw, 1), unit length
    projection = u * tf.sqrt(tf.maximum(values[:, -1:], 0.0))[:, None, :]
    sign = tf.where(tf.reduce_sum(projection * channel_sum, axis=(1, 2), keepdims=True) < 0, -1.0, 1.0)
    return tf.nn.relu(tf.reshape(projection * sign, (n, h, w)))


def _small_eigen_cam(x: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Eigen-CAM of centred (N, hw, c) activations with few positions or channels: the
    eigenvectors of the smaller Gram matrix, in float64 (it costs nothing at this size)."""
    x = tf.cast(x, tf.float64)
    channel_sum = tf.reduce_sum(x, axis=2, keepdims=True)
    if x.shape[1] <= x.shape[2]:
        values, vectors = tf.linalg.eigh(tf.matmul(x, x, transpose_b=True))  # (N, hw, hw)
        projection = vectors[..., -1:] * tf.sqrt(tf.maximum(values[:, -1:], 0.0))[:, None, :]
    else:
        _, vectors = tf.linalg.eigh(tf.matmul(x, x, transpose_a=True))  # (N, c, c)
        projection = tf.matmul(x, vectors[..., -1:])
    sign = tf.where(tf.reduce_sum(projection * channel_sum, axis=(1, 2), keepdims=True) < 0, -1.0, 1.0)
    projection = tf.cast(projection * tf.cast(sign, tf.float64), tf.float32)
    return tf.nn.relu(tf.reshape(projection, (-1, *size)))


@functools.cache
def _start_directions(channels: int) -> np.ndarray:
    """(channels, BLOCK): all ones (the channel sum), then fixed Gaussian directions."""
    start = np.random.default_rng(0).standard_normal((channels, BLOCK)).astype(np.float32)
    start[:, 0] = 1.0
    return start


#: The one-pass CAMs by name (see explain.methods for the full registry with labels and kinds).
CAM_FUNCTIONS: dict[str, CamMethod] = {
    "gradcam": grad_cam,
    "gradcam++": grad_cam_plus_plus,
    "layercam": layer_cam,
    "hirescam": hires_cam,
    "xgradcam": xgrad_cam,
    "eigencam": eigen_cam,
}
METHODS = CAM_FUNCTIONS  # the name this dict had before explain.methods
METHOD_LABELS = labels(ONE_PASS)
#: Methods that need more than the one pass (see explain.score_cam), offered where one map is shown.
SLOW_METHOD_LABELS = {"scorecam": "Score-CAM (64 forward passes)"}


@dataclass(frozen=True)
class NormalizedMap:
    """A map scaled to [0, 1], and whether it means anything."""

    values: np.ndarray  # (h, w) float32 in [0, 1]
    status: str  # "ok", "zero" or "not finite"
    peak: float  # the raw maximum before scaling

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def message(self) -> str:
        if self.status == "zero":
            return (
                "the map is zero everywhere: no position of this layer pushes the score for "
                "this class up (try the other class, another layer, or Layer-CAM)"
            )
        if self.status == "not finite":
            return "the map holds NaN or infinite values: the model's gradients overflowed here"
        return ""


def normalize(cam: np.ndarray, eps: float = 1e-12) -> NormalizedMap:
    """Return ``cam`` scaled to [0, 1] by its maximum, flagging all-zero and non-finite maps."""
    cam = np.asarray(cam, dtype=np.float32)
    if not np.all(np.isfinite(cam)):
        return NormalizedMap(np.zeros_like(cam), "not finite", float("nan"))
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= eps:
        return NormalizedMap(np.zeros_like(cam), "zero", peak)
    return NormalizedMap(np.clip(cam / peak, 0.0, 1.0), "ok", peak)
