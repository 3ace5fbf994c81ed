"""Which strided convolutions' gradients crash this TensorFlow? One new process per case.

    .venv/bin/python scripts/onednn_strided_crash.py [--quick]

TensorFlow 2.21's oneDNN gradient of a strided 1x1 convolution with few channels corrupts the
heap and aborts the process (README, "Known problems"); the engine works around it
(``explain.graph._strided_pointwise``). Rerun this after upgrading TensorFlow: when no case
crashes, the workaround can go. Each case computes the input's gradient of one stride-2
convolution (``tf.nn.convolution``, or ``tf.nn.depthwise_conv2d`` for "depthwise") three
times, in a process of its own, and prints ok or the signal it died of.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys

CASE = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
kind, size, channels, kernel, padding = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
rng = np.random.default_rng(0)
x = tf.constant(rng.random((1, size, size, channels)).astype(np.float32))
for _ in range(3):
    with tf.GradientTape() as tape:
        tape.watch(x)
        if kind == "depthwise":
            w = tf.constant(rng.random((kernel, kernel, channels, 1)).astype(np.float32))
            y = tf.nn.depthwise_conv2d(x, w, [1, 2, 2, 1], padding)
        else:
            w = tf.constant(rng.random((kernel, kernel, channels, channels)).astype(np.float32))
            y = tf.nn.convolution(x, w, 2, padding)
    tape.gradient(y, x).numpy()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the cases that crashed with 2.21")
    args = parser.parse_args()
    if args.quick:
        cases = [("conv", 24, 3, 1, "VALID"), ("conv", 28, 8, 1, "VALID"), ("conv", 32, 1, 1, "VALID")]
    else:
        cases = [
            ("conv", size, channels, kernel, padding)
            for size, channels, (kernel, padding) in itertools.product(
                (16, 24, 28, 32, 56), (1, 3, 8, 32), ((1, "VALID"), (3, "SAME"))
            )
        ] + [("depthwise", size, channels, 3, "SAME") for size, channels in ((28, 8), (56, 32), (14, 144))]
    crashed = 0
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for case in cases:
        done = subprocess.run(
            [sys.executable, "-c", CASE, *map(str, case)], capture_output=True, text=True, env=env
        )
        said = "ok" if done.returncode == 0 else f"CRASHED (exit {done.returncode})"
        crashed += done.returncode != 0
        kind, size, channels, kernel, padding = case
        print(
            f"{kind:9s} {kernel}x{kernel} {padding:5s} {size:3d} px {channels:3d} channels: {said}",
            flush=True,
        )
    print(f"{crashed} of {len(cases)} cases crashed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
