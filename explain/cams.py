"""Class activation map methods: each a short function of one layer's (activations, gradients).

Inputs are (N, h, w, channels) for N images; outputs (N, h, w), one map per image, never
averaged over images or layers. They run inside the engine's compiled pass, and on NumPy
arrays as well (the results are tensors; call ``.numpy()``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from explain.methods import ONE_PASS, labels

CamMethod = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def grad_cam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their mean gradient, then ReLU."""
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))


def grad_cam_plus_plus(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), closed form for an exponential score."""
    g2 = tf.square(gradients)
    g3 = g2 * gradients
    sum_a = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
    denominator = 2.0 * g2 + sum_a * g3
    alpha = tf.math.divide_no_nan(g2, denominator)
    weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))


def layer_cam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Layer-CAM (Jiang et al. 2021): every position weighted by its own positive gradient."""
    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1))


def hires_cam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """HiResCAM (Draelos & Carin 2020): gradients times activations at every position, then ReLU.

    Like Grad-CAM without the spatial average of the gradients, so the map is exactly the
    part of the score's first-order change that each position explains.
    """
    return tf.nn.relu(tf.reduce_sum(gradients * activations, axis=-1))


def xgrad_cam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """XGrad-CAM (Fu et al. 2020): channels weighted by sum(g * A) / sum(A), then ReLU.

    A channel whose activations sum to zero gets weight 0 (pytorch-grad-cam adds 1e-7 to the
    denominator instead; the maps agree wherever the sum is not tiny).
    """
    numerator = tf.reduce_sum(gradients * activations, axis=(1, 2), keepdims=True)
    weights = tf.math.divide_no_nan(numerator, tf.reduce_sum(activations, axis=(1, 2), keepdims=True))
    return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))


def eigen_cam(activations: tf.Tensor, gradients: tf.Tensor | None = None, steps: int = 32) -> tf.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): the activations projected on their first principal
    component, then ReLU. No gradient (``gradients`` is ignored).

    As pytorch-grad-cam: positions are the samples, channels the features, centred over
    positions. The component comes from power iteration on the smaller of the two Gram
    matrices (channels x channels, or positions x positions for the deep, wide layers): one
    matrix product per image and layer, then ``steps`` cheap products with a small matrix, where
    a full SVD per image and layer would cost more than the convolutions. The iteration starts
    from the centred channel-sum map, which also fixes the component's sign: the projection
    points the way the activations' sum does (an SVD's sign is arbitrary).
    """
    del gradients
    a = tf.convert_to_tensor(activations, tf.float32)
    _, h, w, c = a.shape
    n = tf.shape(a)[0]
    x = tf.reshape(a, (n, h * w, c))
    x = x - tf.reduce_mean(x, axis=1, keepdims=True)  # (N, hw, c)
    start = tf.reduce_sum(x, axis=2, keepdims=True) + 1e-6  # (N, hw, 1); + 1e-6: never all zero
    if h * w <= c:
        # left singular vector u of X from X X^T (hw x hw); the projection X v is sigma u
        gram = tf.matmul(x, x, transpose_b=True)
        u = _leading_eigenvector(gram, start, steps)
        sigma = tf.sqrt(tf.maximum(tf.reduce_sum(u * tf.matmul(gram, u), axis=1, keepdims=True), 0.0))
        projection = (u * sigma)[..., 0]
    else:
        gram = tf.matmul(x, x, transpose_a=True)  # (N, c, c)
        v = _leading_eigenvector(gram, tf.matmul(x, start, transpose_a=True), steps)
        projection = tf.matmul(x, v)[..., 0]
    return tf.nn.relu(tf.reshape(projection, (n, h, w)))


def _leading_eigenvector(gram: tf.Tensor, start: tf.Tensor, steps: int) -> tf.Tensor:
    v = start
    for _ in range(steps):
        v = tf.matmul(gram, tf.math.l2_normalize(v, axis=1))
    return tf.math.l2_normalize(v, axis=1)


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
