"""The accelerator route: photo packs, int8 weights, training.train_jax and the device script.

The route is made for a GPU machine without TensorFlow; here it runs on the CPU, on
generated photos and a small CNN, through the same commands and files.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from models.data import list_labelled, stratified_split
from tests.conftest import ROOT
from tests.test_training import write_folder
from training.pack import read_pack, write_pack
from training.quantized import dequantize, load_quantized, quantize, save_quantized

needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None,
    reason="JAX is not installed (the GPU route trains with Keras on JAX; pip install jax)",
)


def test_quantize_by_hand():
    kernel = np.array([[1.0, -0.5], [0.5, 0.25]], np.float32)
    bias = np.array([0.1, -3.0], np.float32)
    arrays = quantize([kernel, bias, np.zeros((3, 2), np.float32)])
    # Channel 0 peaks at 1.0 (step 1/127), channel 1 at 0.5 (step 0.5/127).
    assert arrays["q0"].tolist() == [[127, -127], [64, 64]]
    np.testing.assert_allclose(arrays["s0"], [1 / 127, 0.5 / 127], rtol=1e-6)
    assert arrays["f1"].dtype == np.float16 and "q1" not in arrays
    back = dequantize(arrays)
    np.testing.assert_allclose(back[0], [[1.0, -0.5], [64 / 127, 0.25 * 128 / 127]], rtol=1e-6)
    np.testing.assert_allclose(back[1], bias, rtol=1e-3)
    assert np.all(back[2] == 0)  # an all-zero channel stays zero (no division by zero)


def test_quantized_round_trip_is_within_half_a_step(tmp_path):
    rng = np.random.default_rng(0)
    weights = [
        rng.normal(0, 0.05, (3, 3, 64, 128)).astype(np.float32),
        rng.normal(size=128).astype(np.float32),
    ]
    path = save_quantized(weights, tmp_path / "w.npz")
    back = load_quantized(path)
    step = np.abs(weights[0]).reshape(-1, 128).max(axis=0) / 127
    assert np.all(np.abs(back[0] - weights[0]) <= step / 2 + 1e-7)
    assert [w.shape for w in back] == [w.shape for w in weights]
    assert path.stat().st_size < sum(w.size for w in weights) * 1.1  # about a byte a weight


def test_pack_keeps_models_train_split(tmp_path):
    data = write_folder(tmp_path / "photos", 8, size=(30, 45))
    pack = read_pack(write_pack(data, tmp_path / "p.npz", train_side=24, val_side=32, val_fraction=0.25))
    train, val = stratified_split(list_labelled(data), 0.25, 0)
    assert pack.class_names == ("cat", "dog")
    assert pack.train.labels.tolist() == train.labels.tolist()
    assert pack.val.labels.tolist() == val.labels.tolist()
    images = pack.train.decode()
    assert images.shape == (len(train), 24, 24, 3) and images.dtype == np.uint8
    assert pack.val.decode().shape == (len(val), 32, 32, 3)
    # Cats are reddish and dogs bluish in write_folder: the colours survive the JPEG round trip.
    red_minus_blue = images[..., 0].mean(axis=(1, 2)) - images[..., 2].mean(axis=(1, 2))
    assert np.all((red_minus_blue > 0) == (pack.train.labels == 0))


@needs_jax
def test_augment_and_schedule():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import jax.numpy as jnp

    from training.train_jax import JaxRecipe, augment, learning_rate

    recipe = JaxRecipe(jitter=0.0)
    grey = jnp.full((4, 20, 20, 3), 90, jnp.uint8)
    out = augment(grey, jax.random.key(0), 16, recipe)
    assert out.shape == (4, 16, 16, 3)
    np.testing.assert_allclose(np.asarray(out), 90.0, atol=1e-3)  # resampling a flat image
    noisy = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 20, 20, 3)), jnp.uint8)
    jittered = np.asarray(augment(noisy, jax.random.key(1), 16, JaxRecipe()))
    assert jittered.min() >= 0 and jittered.max() <= 255

    lrs = [learning_rate(p, recipe) for p in np.linspace(0, 1, 101)]
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(recipe.lr) and peak / 100 == pytest.approx(recipe.warmup, abs=0.01)
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))  # warm-up rises
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))  # cosine falls
    assert lrs[-1] == pytest.approx(recipe.lr * 0.005)


@needs_jax
def test_device_script_then_publish_gives_a_model_tensorflow_loads(tmp_path):
    """scripts/train_on_device.sh as the device tool runs it, then training.publish --weights here."""
    data = write_folder(tmp_path / "photos", 12, size=(40, 50))
    pack = write_pack(data, tmp_path / "p.npz", train_side=40, val_side=48)
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "OUT": str(out),
        "PACK": str(pack),
        "RUNS": str(tmp_path / "runs"),
        "ARCHS": "small_cnn",
        "TRAIN_ARGS": "--epochs 2 --side 32 --eval-sides 32 48 --batch 8",
        "TRAIN_UNTIL": "400",
        "HARD_STOP": "540",
        "ARGS_small_cnn": "",  # the script's default EMA doubles the final validation: not needed here
        "WHEELS": str(tmp_path / "no-wheels"),  # this machine has Keras; the GPU machine gets .whl/
        "PYTHON": sys.executable,  # the venv's, which has JAX; the GPU machine's python3 gets .whl/
    }
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        ["bash", "scripts/train_on_device.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["runs.tgz", "small_cnn.weights.npz.part00"], done.stdout

    # What comes back, put together again as the README says.
    run = tmp_path / "back" / "jax-small_cnn"
    run.mkdir(parents=True)
    subprocess.run(["tar", "xzf", str(out / "runs.tgz"), "-C", str(run.parent)], check=True)
    (run / "weights.npz").write_bytes((out / "small_cnn.weights.npz.part00").read_bytes())
    report = json.loads((run / "run.json").read_text())
    assert report["epochs"] == 2 and report["input_size"] in (32, 48) and report["backend"] == "jax"
    with open(run / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert set(rows[0]) == {"epoch", "accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"}

    from training.publish import main as publish

    assert (
        publish(
            ["--weights", str(run), "--name", "tiny", "--to", str(tmp_path / "shipped"), "--test", str(data)]
        )
        == 0
    )
    card = json.loads((tmp_path / "shipped" / "tiny.json").read_text())
    assert card["preprocessing"]["input_size"] == [report["input_size"]] * 2
    assert card["training"]["epochs"] == 2 and card["test"]["n"] == 24
    assert (tmp_path / "shipped" / "tiny.history.csv").is_file()

    from models.registry import load_model

    model = load_model(tmp_path / "shipped" / "tiny.keras")  # here, under TensorFlow
    weights = load_quantized(run / "weights.npz")
    assert len(model.get_weights()) == len(weights)
    for got, want in zip(model.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)  # float16 in the file


def test_train_jax_refuses_without_a_pack(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train_jax",
            "--pack",
            str(tmp_path / "none.npz"),
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "no photo pack at" in done.stderr and "Traceback" not in done.stderr
