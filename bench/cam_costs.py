"""What does each one-pass CAM cost on its own? Against Grad-CAM alone, in the same run.

    python bench/cam_costs.py [--reps 15] [--xla]

Only the CAM part of the engine's pass, on fixed random tensors shaped as ResNet-50's 16 block
outputs at 224 px (batch 1), compiled with tf.function; each variant timed in turn, medians:
  one elementwise pass      activations * 2 at every block (what reading them once costs)
  Grad-CAM                  the denominator of the engine's speed target
  5 gradient CAMs, shared   explain.cams.layer_cams (the engine's way)
  5 gradient CAMs, apart    each CAM's textbook formula on its own (the baseline)
  all 6 one-pass CAMs        explain.cams.layer_cams with Eigen-CAM too (what the target counts)
  Eigen-CAM                 the engine's block Krylov method, alone
  Eigen-CAM, before         the method it replaced (bench/eigen_cam_before.py), alone
  Gram matrices             the smaller Gram matrix of every block, nothing else
``--xla`` adds each variant compiled with XLA (jit_compile=True).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.eigen_cam_before import eigen_cam_before  # noqa: E402
from explain.cams import layer_cams  # noqa: E402

SHAPES = [(56, 56, 256)] * 3 + [(28, 28, 512)] * 4 + [(14, 14, 1024)] * 6 + [(7, 7, 2048)] * 3
GRADIENT_CAMS = ("gradcam", "gradcam++", "layercam", "hirescam", "xgradcam")


def apart(a: tf.Tensor, g: tf.Tensor) -> list[tf.Tensor]:
    """The five gradient CAMs, each by its own formula (as the engine computed them before)."""
    relu, total = tf.nn.relu, tf.reduce_sum
    mean_g = tf.reduce_mean(g, axis=(1, 2), keepdims=True)
    sum_a = total(a, axis=(1, 2), keepdims=True)
    g2 = tf.square(g)
    alpha = tf.math.divide_no_nan(g2, 2.0 * g2 + sum_a * g2 * g)
    plus = total(alpha * relu(g), axis=(1, 2), keepdims=True)
    x_weights = tf.math.divide_no_nan(total(g * a, axis=(1, 2), keepdims=True), sum_a)
    return [
        relu(total(mean_g * a, axis=-1)),
        relu(total(plus * a, axis=-1)),
        relu(total(relu(g) * a, axis=-1)),
        relu(total(g * a, axis=-1)),
        relu(total(x_weights * a, axis=-1)),
    ]


def gram(a: tf.Tensor) -> tf.Tensor:
    _, h, w, c = a.shape
    x = tf.reshape(a, (-1, h * w, c))
    return tf.matmul(x, x, transpose_b=True) if h * w <= c else tf.matmul(x, x, transpose_a=True)


VARIANTS = {
    "one elementwise pass": lambda acts, grads: [a * 2.0 for a in acts],
    "Grad-CAM": lambda acts, grads: [layer_cams(a, g, ("gradcam",)) for a, g in zip(acts, grads)],
    "Grad-CAM, textbook": lambda acts, grads: [
        tf.nn.relu(tf.reduce_sum(tf.reduce_mean(g, axis=(1, 2), keepdims=True) * a, axis=-1))
        for a, g in zip(acts, grads)
    ],
    "5 gradient CAMs, shared": lambda acts, grads: [
        layer_cams(a, g, GRADIENT_CAMS) for a, g in zip(acts, grads)
    ],
    "5 gradient CAMs, apart": lambda acts, grads: [apart(a, g) for a, g in zip(acts, grads)],
    "all 6 one-pass CAMs": lambda acts, grads: [
        layer_cams(a, g, (*GRADIENT_CAMS, "eigencam")) for a, g in zip(acts, grads)
    ],
    "Eigen-CAM": lambda acts, grads: [layer_cams(a, None, ("eigencam",)) for a in acts],
    "Eigen-CAM, before": lambda acts, grads: [eigen_cam_before(a) for a in acts],
    "Gram matrices": lambda acts, grads: [gram(a) for a in acts],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--xla", action="store_true", help="also each variant compiled with XLA")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    acts = [tf.constant(np.maximum(rng.normal(size=(1, *s)), 0).astype(np.float32)) for s in SHAPES]
    grads = [tf.constant(1e-3 * rng.normal(size=(1, *s)).astype(np.float32)) for s in SHAPES]
    functions = {}
    for name, body in VARIANTS.items():
        functions[name] = tf.function(body, autograph=False)
        if args.xla:
            functions[name + " (XLA)"] = tf.function(body, autograph=False, jit_compile=True)
    for fn in functions.values():
        fn(acts, grads)
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(args.reps):
        for name, fn in functions.items():
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), fn(acts, grads))
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["Grad-CAM"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:32s} {1000 * median:7.1f} ms  {median / base:5.2f} x Grad-CAM")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
