"""Eigen-CAM as the engine computed it until 2026-12-02: the baseline of the Eigen-CAM benches.

Block Krylov in position space: K = [S', (X Xᵀ) S', (X Xᵀ)² S', (X Xᵀ)³ S'] with S' = X S (8
start directions), Rayleigh-Ritz with Xᵀ K; 8 reads of X, three of them as Xᵀ Y (the product
TensorFlow's CPU kernels read slowest), and float64 for layers of 32 positions or channels or
fewer. ``bench/cam_costs.py`` times it and ``bench/eigen_cam_accuracy.py`` scores it beside the
engine's :func:`explain.cams.eigen_cam`; nothing else uses it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

BLOCK, DEPTH = 8, 4


def eigen_cam_before(a: tf.Tensor) -> tf.Tensor:
    """(N, h, w, c) activations -> (N, h, w) Eigen-CAM maps, by the method before."""
    a = tf.convert_to_tensor(a, tf.float32)
    _, h, w, c = a.shape
    n = tf.shape(a)[0]
    x = tf.reshape(a, (n, h * w, c))
    mean = tf.reduce_mean(x, axis=1, keepdims=True)
    if min(h * w, c) <= BLOCK * DEPTH:
        return _exact(x - mean, (h, w))

    def times(v: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, v) - tf.matmul(mean, v)

    def transposed_times(y: tf.Tensor) -> tf.Tensor:
        correction = tf.linalg.matrix_transpose(mean) * tf.reduce_sum(y, axis=1, keepdims=True)
        return tf.matmul(x, y, transpose_a=True) - correction

    start = np.random.default_rng(0).standard_normal((c, BLOCK)).astype(np.float32)
    start[:, 0] = 1.0
    y = times(tf.constant(start))
    channel_sum = y[..., :1]
    basis = [tf.math.l2_normalize(y, axis=1)]
    for _ in range(DEPTH - 1):
        basis.append(tf.math.l2_normalize(times(transposed_times(basis[-1])), axis=1))
    k = tf.concat(basis, axis=2)
    spread, directions = tf.linalg.eigh(tf.matmul(k, k, transpose_a=True))
    kept = spread > 1e-6 * spread[:, -1:]
    whiten = directions * tf.where(kept, tf.math.rsqrt(tf.maximum(spread, 1e-30)), 0.0)[:, None, :]
    projected = tf.matmul(whiten, transposed_times(k), transpose_a=True, transpose_b=True)
    values, vectors = tf.linalg.eigh(tf.matmul(projected, projected, transpose_b=True))
    u = tf.matmul(k, tf.matmul(whiten, vectors[..., -1:]))
    projection = u * tf.sqrt(tf.maximum(values[:, -1:], 0.0))[:, None, :]
    sign = tf.where(tf.reduce_sum(projection * channel_sum, axis=(1, 2), keepdims=True) < 0, -1.0, 1.0)
    return tf.nn.relu(tf.reshape(projection * sign, (n, h, w)))


def _exact(x: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    x = tf.cast(x, tf.float64)
    channel_sum = tf.reduce_sum(x, axis=2, keepdims=True)
    if x.shape[1] <= x.shape[2]:
        values, vectors = tf.linalg.eigh(tf.matmul(x, x, transpose_b=True))
        projection = vectors[..., -1:] * tf.sqrt(tf.maximum(values[:, -1:], 0.0))[:, None, :]
    else:
        _, vectors = tf.linalg.eigh(tf.matmul(x, x, transpose_a=True))
        projection = tf.matmul(x, vectors[..., -1:])
    sign = tf.where(tf.reduce_sum(projection * channel_sum, axis=(1, 2), keepdims=True) < 0, -1.0, 1.0)
    projection = tf.cast(projection * tf.cast(sign, tf.float64), tf.float32)
    return tf.nn.relu(tf.reshape(projection, (-1, *size)))
