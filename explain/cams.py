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
    (N, h, w, c) tensors, not by arithmetic, so the methods share every pass over them: sums
    over positions are matrix products with a row of ones (TensorFlow reduces an inner axis
    faster than the outer ones); the channel-weighted maps (Grad-CAM, Grad-CAM++, XGrad-CAM)
    and Eigen-CAM's first Krylov block come from ONE product of the activations with their
    stacked channel weights and start directions; ``gradients * activations`` is formed once for
    HiResCAM and XGrad-CAM. The single-method functions below call this, so each formula is
    written once.
    """
    a = tf.convert_to_tensor(activations, tf.float32)
    _, h, w, c = a.shape
    n = tf.shape(a)[0]
    wanted = set(methods)
    unknown = wanted - set(CAM_FUNCTIONS)
    if unknown:
        choices = ", ".join(CAM_FUNCTIONS)
        raise KeyError(f"{sorted(unknown)[0]!r} is not a one-pass CAM; choose from {choices}")
    x = tf.reshape(a, (n, h * w, c))
    ones = tf.ones((n, 1, h * w))

    def position_sum(t: tf.Tensor) -> tf.Tensor:  # (N, hw, c) -> (N, 1, c)
        return tf.matmul(ones, t)

    out: dict[str, tf.Tensor] = {}
    weights: dict[str, tf.Tensor] = {}  # method -> (N, 1, c) channel weights
    sum_a = None
    if wanted - {"eigencam"}:
        g = tf.reshape(tf.convert_to_tensor(gradients, tf.float32), (n, h * w, c))
        if "gradcam" in wanted:
            weights["gradcam"] = position_sum(g) / (h * w)
        if wanted & {"gradcam++", "xgradcam"}:
            sum_a = position_sum(x)
        if wanted & {"hirescam", "xgradcam"}:
            product = g * x
            if "hirescam" in wanted:
                out["hirescam"] = tf.nn.relu(tf.reduce_sum(product, axis=-1))
            if "xgradcam" in wanted:
                weights["xgradcam"] = tf.math.divide_no_nan(position_sum(product), sum_a)
        if wanted & {"layercam", "gradcam++"}:
            positive = tf.nn.relu(g)
            if "layercam" in wanted:
                out["layercam"] = tf.nn.relu(tf.reduce_sum(positive * x, axis=-1))
            if "gradcam++" in wanted:
                # alpha * relu(g) = g^2 relu(g) / (2 g^2 + sum(A) g^3) = relu(g) / (2 + sum(A) relu(g))
                share = tf.math.divide_no_nan(positive, 2.0 + sum_a * positive)
                weights["gradcam++"] = position_sum(share)
    eigen = "eigencam" in wanted and min(h * w, c) > EXACT_EIGEN_SIZE
    columns = list(weights.values())
    if eigen:
        start = tf.broadcast_to(tf.constant(_start_directions(c)), (n, BLOCK, c))
        columns.append(start)
    if columns:
        products = tf.matmul(x, tf.concat(columns, axis=1), transpose_b=True)  # (N, hw, m + BLOCK)
        maps = tf.nn.relu(products[..., : len(weights)])
        for i, name in enumerate(weights):
            out[name] = maps[..., i]
    if eigen:
        out["eigencam"] = _eigen_cam(x, start, products[..., len(weights) :], sum_a)
    elif "eigencam" in wanted:
        out["eigencam"] = _exact_eigen_cam(x)
    return {name: tf.reshape(m, (n, h, w)) for name, m in out.items()}


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


#: Eigen-CAM's block Krylov space: BLOCK start directions, then KRYLOV_DEPTH - 1 products with
#: the centred XᵀX, 40 vectors in all (at most EXACT_EIGEN_SIZE). On 48 photos (ResNet-50, every
#: block) 99 % of maps are within 0.35 % of the SVD's peak, the worst 1.8 %; 16 x 3 cost a little
#: less and 12 x 4 a little more, with worse and better worst cases (README, Speed).
BLOCK, KRYLOV_DEPTH = 8, 5
#: A layer with at most this many positions or channels gets the exact eigendecomposition.
EXACT_EIGEN_SIZE = 64


def _eigen_cam(x: tf.Tensor, start: tf.Tensor, first: tf.Tensor, sum_a: tf.Tensor | None = None) -> tf.Tensor:
    """The leading left singular vector of the centred activations X_c (hw x c), times its
    singular value, by Rayleigh-Ritz on a block Krylov space (Musco & Musco 2015).

    ``x`` is (N, hw, c), not centred; ``start`` the start directions S as rows, (N, BLOCK, c)
    (the channel sum and fixed random directions); ``first`` is X Sᵀ, (N, hw, BLOCK), which
    :func:`layer_cams` gets from the same matrix product as the other CAMs' maps; ``sum_a``
    the activations' sum over positions where known, else it comes from the next product. The
    space is spanned, in channel space, by S, (X_cᵀX_c) S, ..., (X_cᵀX_c)⁴ S, kept as rows so
    that every product reads X the way TensorFlow's CPU kernels read fastest (Yᵀ X and X Uᵀ; the transposed
    product Xᵀ Y is 2 to 4 times slower there): 9 thin reads of X, one of them shared with the
    other CAMs. X is never centred in memory: the column means enter as rank-one corrections.
    On ResNet-50's blocks of real photos (the second singular value up to 0.98 of the first)
    99 % of maps are within 0.35 % of the SVD's peak, the worst of 768 within 1.8 %
    (``python bench/eigen_cam_accuracy.py --photos 48``).
    """
    hw = x.shape[1]
    u, y = start, first
    rows, blocks = [u], [y]
    mean = None if sum_a is None else sum_a / hw  # (N, 1, c)
    for _ in range(KRYLOV_DEPTH - 1):
        if mean is None:  # the column sums come with the product, as a column of ones
            z = tf.matmul(tf.concat([y, tf.ones_like(y[..., :1])], axis=2), x, transpose_a=True)
            z, mean = z[:, :-1], z[:, -1:] / hw
        else:
            z = tf.matmul(y, x, transpose_a=True)  # (N, k, c): (X uᵀ)ᵀ X
        z = z - hw * tf.matmul(u, mean, transpose_b=True) * mean  # u X_cᵀX_c = u XᵀX - hw (u mᵀ) m
        u = tf.math.l2_normalize(z, axis=2)
        y = tf.matmul(x, u, transpose_b=True)
        rows.append(u)
        blocks.append(y)
    basis = tf.concat(rows, axis=1)  # (N, r, c)
    images = tf.concat(blocks, axis=2) - tf.matmul(mean, basis, transpose_b=True)  # X_c basisᵀ
    # Rayleigh-Ritz: whiten the basis (dropping directions it barely spans), then the top
    # eigenvector of the whitened images' Gram matrix.
    spread, directions = tf.linalg.eigh(tf.matmul(basis, basis, transpose_b=True))
    kept = spread > 1e-6 * spread[:, -1:]
    whiten = directions * tf.where(kept, tf.math.rsqrt(tf.maximum(spread, 1e-30)), 0.0)[:, None, :]
    projected = tf.matmul(images, whiten)  # (N, hw, r)
    _, vectors = tf.linalg.eigh(tf.matmul(projected, projected, transpose_a=True))
    projection = tf.matmul(projected, vectors[..., -1:])  # X_c v for the unit Ritz vector v
    return tf.nn.relu(_signed(projection, images[..., :1])[..., 0])


def _exact_eigen_cam(x: tf.Tensor) -> tf.Tensor:
    """Eigen-CAM of (N, hw, c) activations with few positions or channels: the smaller Gram
    matrix of the centred activations (float32), its eigenvectors in float64."""
    x = x - tf.reduce_mean(x, axis=1, keepdims=True)
    if x.shape[1] <= x.shape[2]:
        values, vectors = tf.linalg.eigh(tf.cast(tf.matmul(x, x, transpose_b=True), tf.float64))
        scale = tf.sqrt(tf.maximum(values[:, -1:], 0.0))[:, None, :]
        projection = tf.cast(vectors[..., -1:] * scale, tf.float32)  # (N, hw, 1)
    else:
        _, vectors = tf.linalg.eigh(tf.cast(tf.matmul(x, x, transpose_a=True), tf.float64))
        projection = tf.matmul(x, tf.cast(vectors[..., -1:], tf.float32))
    return tf.nn.relu(_signed(projection, tf.reduce_sum(x, axis=2, keepdims=True))[..., 0])


def _signed(projection: tf.Tensor, channel_sum: tf.Tensor) -> tf.Tensor:
    """The projection with the sign that points the way the centred channel sum does."""
    agree = tf.reduce_sum(projection * channel_sum, axis=(1, 2), keepdims=True)
    return tf.where(agree < 0, -projection, projection)


@functools.cache
def _start_directions(channels: int) -> np.ndarray:
    """(BLOCK, channels): all ones (the channel sum), then fixed Gaussian directions."""
    start = np.random.default_rng(0).standard_normal((BLOCK, channels)).astype(np.float32)
    start[0] = 1.0
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
