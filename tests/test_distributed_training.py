"""Data-parallel training: the same command on one device or two gives the same weights.

The host CPU is split into two XLA devices (``--xla_force_host_platform_device_count=2``,
read when JAX starts, so the runs happen in a child process). Each run trains the small CNN
for a few steps on a tiny pack through ``training.train_jax``'s own ``train()``; the float32
weights it chose come back in an ``.npz``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.test_training import write_folder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("jax") is None,
        reason="JAX is not installed (the GPU route trains with Keras on JAX; pip install jax)",
    ),
]  # slow: three short runs in one child process, about a minute of CPU

# Runs the trainer once per (name, extra flags) and saves its chosen float32 weights.
CHILD = """
import json, sys
import numpy as np
from training.train_jax import parse_args, train
pack, out, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
for name, extra in runs:
    args = parse_args(["--pack", pack, "--out", f"{out}/{name}", "--arch", "small_cnn", "--epochs", "2",
                       "--side", "32", "--eval-sides", "32", "--batch", "8", "--lr", "0.05",
                       "--minutes", "60", *extra])
    result = train(args)
    np.savez(f"{out}/{name}.npz", *result.weights)
"""


def run_child(tmp_path, runs: list[tuple[str, list[str]]], devices: int = 2) -> dict[str, list[np.ndarray]]:
    """Train each of ``runs`` in one child process with ``devices`` host devices; return their weights."""
    from training.pack import write_pack

    pack = tmp_path / "p.npz"
    if not pack.is_file():
        write_pack(write_folder(tmp_path / "photos", 12, size=(40, 50)), pack, train_side=40, val_side=32)
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(pack), str(tmp_path), json.dumps(runs)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    weights = {}
    for name, _ in runs:
        with np.load(tmp_path / f"{name}.npz") as saved:
            weights[name] = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    return weights


def largest_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One child process, three runs: one device, two devices, two devices with every option.

    The two-device run is also the options run's teacher (the same classes, another model).
    """
    tmp_path = tmp_path_factory.mktemp("data_parallel")
    weights = run_child(
        tmp_path,
        [
            ("one", ["--devices", "1"]),
            ("two", ["--devices", "2", "--peak-tflops", "1.0"]),
            (
                "options",
                ["--ema", "0.9", "--mixup", "0.2", "--cutmix", "1.0", "--teacher", str(tmp_path / "two")],
            ),
        ],
    )
    reports = {name: json.loads((tmp_path / name / "run.json").read_text()) for name in weights}
    return tmp_path, weights, reports


def test_two_devices_give_the_weights_of_one(runs):
    """Two devices, each with half of every global batch of 8, end where one device ends.

    Tolerance: 1e-5 absolute on every weight after 4 SGD steps (2 epochs of 2). The two runs
    do the same arithmetic but for the order of float32 sums (the gradient and batch-norm
    all-reduces add two halves; one device adds all at once), whose rounding (about 1e-7
    relative) SGD carries forward: the largest difference measured here was 7.5e-9, so the
    tolerance leaves three orders of magnitude for other CPUs and XLA versions. A wrong
    split changes the arithmetic itself (a shard's gradient instead of the global mean,
    per-device batch-norm statistics over 4 photos instead of 8, other augmentation on each
    device), not just its rounding; for scale, the options run below, with the same seed,
    differs from it by more than 1e-3 (another seed: 0.56).
    """
    _, weights, reports = runs
    one, two = weights["one"], weights["two"]
    assert len(one) == len(two) and all(a.shape == b.shape for a, b in zip(one, two))
    difference = largest_difference(one, two)
    assert difference < 1e-5, f"one vs two devices: largest weight difference {difference:.2e}"
    assert largest_difference(one, weights["options"]) > 1e-3
    assert (reports["one"]["devices"], reports["two"]["devices"]) == (1, 2)
    assert reports["one"]["global_batch"] == reports["two"]["global_batch"] == 8
    assert reports["one"]["peak_learning_rate"] == reports["two"]["peak_learning_rate"] == 0.05
    assert reports["one"]["steps"] == reports["two"]["steps"] == 4


def test_run_reports_images_per_second_flops_and_mfu(runs):
    _, _, reports = runs
    speed = reports["two"]["throughput"]
    assert speed["devices"] == 2 and speed["images_per_second"] > 0
    # FLOPs from XLA's cost analysis of the small CNN at 32 px: 3 x forward per training image.
    assert speed["train_gflops_per_image"] > 0
    expected = speed["images_per_second"] * speed["train_gflops_per_image"] / 1e3 / (1.0 * 2)
    assert speed["mfu"] == pytest.approx(expected, rel=0.05, abs=1e-4)
    assert "mfu" not in reports["one"]["throughput"]  # no --peak-tflops, no MFU


def test_recipe_options_train_on_two_devices(runs):
    """EMA, mixup with CutMix, and distillation from a teacher run: each trains and is recorded."""
    tmp_path, weights, reports = runs
    report = reports["options"]
    recipe = report["recipe"]
    assert (recipe["ema"], recipe["mixup"], recipe["cutmix"], recipe["distill"]) == (0.9, 0.2, 1.0, 0.5)
    assert recipe["teacher"] == str(tmp_path / "two") and report["devices"] == 2
    assert report["weights_from"] in ("last", "ema") and "32 ema" in report["validation_by_side"]
    assert all(np.all(np.isfinite(w)) for w in weights["options"])
    # The teacher costs a forward pass per training image on top of the student's 3.
    student = reports["two"]["throughput"]["train_gflops_per_image"]
    assert report["throughput"]["train_gflops_per_image"] == pytest.approx(student * 4 / 3, rel=0.02)
