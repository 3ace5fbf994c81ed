"""The training pipeline end to end on generated photos, and the pieces it stands on."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
from PIL import Image

from models.data import Augmentation, list_labelled, load_images, stratified_split
from tests.conftest import random_photo


def write_folder(root, per_class: int = 12, flat: bool = False, size=(40, 50)):
    """Cats are reddish, dogs bluish: learnable, so a short run moves off chance."""
    root.mkdir(parents=True, exist_ok=True)
    for label, tint in (("cat", (1.0, 0.5, 0.5)), ("dog", (0.5, 0.5, 1.0))):
        folder = root if flat else root / f"{label}s"
        folder.mkdir(exist_ok=True)
        for i in range(per_class):
            rgb = (random_photo(i + (0 if label == "cat" else 1000), size) * np.array(tint)).astype(np.uint8)
            Image.fromarray(rgb).save(folder / f"{label}.{i + 1}.jpg")
    return root


def test_list_labelled_reads_class_folders_and_kaggle_flat(tmp_path):
    folders = list_labelled(write_folder(tmp_path / "a", 5))
    flat = list_labelled(write_folder(tmp_path / "b", 5, flat=True))
    for files in (folders, flat):
        assert files.class_names == ("cat", "dog")
        assert len(files) == 10 and files.labels.tolist() == [0] * 5 + [1] * 5
    with pytest.raises(ValueError, match="neither class subfolders"):
        list_labelled(_empty(tmp_path))


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos")
    return tmp_path / "empty"


def test_stratified_split_is_seeded_and_balanced(tmp_path):
    files = list_labelled(write_folder(tmp_path / "d", 20))
    train, val = stratified_split(files, 0.25, seed=3)
    again, _ = stratified_split(files, 0.25, seed=3)
    assert train.paths == again.paths
    assert np.bincount(val.labels).tolist() == [5, 5]
    assert not set(train.paths) & set(val.paths)


def test_image_cache_is_reused(tmp_path):
    files = list_labelled(write_folder(tmp_path / "d", 3))
    first = load_images(files, 16, tmp_path / "cache")
    assert first.shape == (6, 16, 16, 3) and first.dtype == np.uint8
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(load_images(files, 16, tmp_path / "cache"), first)


def test_augmentation_identity_and_flip():
    rng = np.random.default_rng(0)
    batch = np.stack([random_photo(i, (24, 24)) for i in range(4)])
    np.testing.assert_array_equal(Augmentation().apply(batch, rng), batch)
    flipped = Augmentation(flip=True).apply(batch, np.random.default_rng(1))
    for original, out in zip(batch, flipped):
        assert np.array_equal(out, original) or np.array_equal(out, original[:, ::-1])
    moved = Augmentation(rotation=40, shear=0.2, zoom=0.2, flip=True).apply(batch, rng)
    assert moved.shape == batch.shape and not np.array_equal(moved, batch)


def run_train(*args: str) -> int:
    from training.train import main

    return main(list(args))


def test_train_end_to_end_then_resume(tmp_path):
    data = write_folder(tmp_path / "photos", 16)
    out = tmp_path / "run"
    common = [
        "--arch",
        "small_cnn",
        "--data",
        str(data),
        "--out",
        str(out),
        "--batch",
        "8",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--val-fraction",
        "0.25",
        "--lr",
        "0.003",
    ]
    assert run_train(*common, "--phases", "32:1,48:1") == 0
    for name in ("checkpoint.keras", "history.csv", "state.json", "model.keras", "model.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"accuracy", "loss", "val_accuracy", "val_loss"} <= set(rows[0])
    card = json.loads((out / "model.json").read_text())
    assert card["architecture"] == "small_cnn" and card["class_names"] == ["cat", "dog"]
    assert card["preprocessing"]["input_size"] == [48, 48]
    assert card["history"] == "history.csv" and card["training"]["epochs"] == 2

    # Resume: same run folder with a longer schedule goes on from epoch 2.
    assert run_train(*common, "--phases", "32:1,48:2", "--resume") == 0
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 3

    from models.registry import load_model

    model = load_model(out / "model.keras")
    assert model.count_params() > 0


def test_study_preset_is_the_reference_protocol():
    from training.train import PRESETS

    study = PRESETS["study"]
    assert study.phases[0][0] == 224 and study.batch == 20
    assert (study.optimizer, study.lr, study.momentum) == ("sgd", 1e-3, 0.9)
    aug = study.augmentation
    assert (aug.rotation, aug.shear, aug.zoom, aug.flip) == (40, 0.2, 0.2, True)


def test_float16_export_loads_as_float32(tmp_path):
    from models.build import build_small_cnn
    from models.export import save_for_inference
    from models.registry import load_model

    model = build_small_cnn(input_size=32)
    path = save_for_inference(model, tmp_path / "half.keras")
    loaded = load_model(path)
    assert all(w.dtype == "float32" for w in loaded.weights)
    x = np.stack([random_photo(i, (32, 32)) for i in range(3)]).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-3)
    model.save(tmp_path / "full.keras")
    assert path.stat().st_size < 0.75 * (tmp_path / "full.keras").stat().st_size


def test_evaluate_cli_reports_figures(tmp_path, capsys):
    from models.build import build_small_cnn
    from models.card import ModelCard, Preprocessing
    from models.evaluate import main

    data = write_folder(tmp_path / "test", 6)
    model = build_small_cnn(input_size=32)
    model.save(tmp_path / "m.keras")
    ModelCard("m", "small_cnn", ["cat", "dog"], Preprocessing((32, 32))).save(tmp_path / "m.json")
    assert main(["--model", str(tmp_path / "m.keras"), "--data", str(data), "--json", "--update-card"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 12 and 0 <= report["accuracy"] <= 1
    assert sum(map(sum, report["confusion"])) == 12
    assert len(report["misclassified"]) == round((1 - report["accuracy"]) * 12)
    assert json.loads((tmp_path / "m.json").read_text())["test"]["n"] == 12
    assert main(["--model", str(tmp_path / "nope.keras"), "--data", str(data)]) == 2
    keras.backend.clear_session()


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("jax") is None,
    reason="JAX is not installed (the GPU route trains with Keras on JAX; pip install jax)",
)
def test_training_on_the_jax_backend_gives_a_file_tensorflow_loads(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    data = write_folder(tmp_path / "photos", 8)
    out = tmp_path / "run"
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--arch",
            "small_cnn",
            "--data",
            str(data),
            "--out",
            str(out),
            "--batch",
            "4",
            "--phases",
            "32:1",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "model.json").read_text())["training"]["backend"] == "jax"
    from models.registry import load_model

    model = load_model(out / "model.keras")  # here, under TensorFlow
    x = np.stack([random_photo(i, (32, 32)) for i in range(2)]).astype(np.float32)
    assert model.predict(x, verbose=0).shape == (2, 1)


def test_schedule_options():
    from training.train import PRESETS, schedule

    cpu = PRESETS["cpu"]
    assert schedule(cpu, "96:3,160:1", None, None) == [(96, 3), (160, 1)]
    assert schedule(cpu, None, None, 128) == [(128, cpu.epochs)]
    assert schedule(cpu, None, 4, 128) == [(128, 4)]
    assert schedule(cpu, None, 20, None) == [(96, 18), (160, 2)]
    assert schedule(cpu, None, None, None) == cpu.phases
