"""Flip test-time augmentation in models.evaluate, labels.csv test sets, and the card's evaluations."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

SIDE = 8
# The logit is a left-to-right ramp over the grey level (a photo and its mirror disagree) plus
# half a top-to-bottom one, which a mirror keeps: without it the mean of a photo and its mirror
# would be exactly 0.5 for every photo, and the flipped accuracy a matter of rounding.
RAMP = ((np.arange(SIDE) - (SIDE - 1) / 2) / 4.0)[None, :].repeat(SIDE, axis=0)
WEIGHTS = RAMP + 0.5 * RAMP.T


def lopsided_model() -> keras.Model:
    """Return a model whose answer on a photo's mirror differs: sigmoid(sum(grey * ramp))."""
    inputs = keras.Input((SIDE, SIDE, 3), name="image")
    grey = keras.layers.Conv2D(1, 1, use_bias=False, name="grey")(inputs)
    flat = keras.layers.Flatten()(grey)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="head")(flat)
    model = keras.Model(inputs, outputs)
    model.get_layer("grey").set_weights([np.full((1, 1, 3, 1), 1 / (3 * 255), np.float32)])
    model.get_layer("head").set_weights([WEIGHTS.reshape(-1, 1).astype(np.float32), np.zeros(1, np.float32)])
    return model


def by_hand(rgb: np.ndarray) -> float:
    """Return the lopsided model's probability of class 1, worked out in NumPy."""
    grey = rgb.astype(np.float64).mean(axis=2) / 255
    return float(1 / (1 + np.exp(-(grey * WEIGHTS).sum())))


def photos(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) for _ in range(n)]


def save_model(folder, name: str = "lopsided"):
    from models.card import ModelCard, Preprocessing

    folder.mkdir(parents=True, exist_ok=True)
    lopsided_model().save(folder / f"{name}.keras")
    ModelCard(name, "custom", ["cat", "dog"], Preprocessing((SIDE, SIDE))).save(folder / f"{name}.json")
    return folder / f"{name}.keras"


def write_pets_folder(root, per_class: int = 3):
    """An Oxford-IIIT Pet style folder: images/ and a labels.csv naming each photo's species."""
    (root / "images").mkdir(parents=True)
    rows = []
    for label, seed in (("cat", 1), ("dog", 2)):
        for i, rgb in enumerate(photos(seed, per_class)):
            Image.fromarray(rgb).save(root / "images" / f"{label}_{i}.png")
            rows.append({"image": f"images/{label}_{i}.png", "species": label, "breed": "x"})
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "species", "breed"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_flip_tta_is_the_mean_of_the_photo_and_its_mirror_by_hand():
    from explain.explainer import Explainer
    from models.evaluate import flip_averaged, mirrored_probabilities

    images = photos(0, 5)
    explainer = Explainer(lopsided_model(), ["cat", "dog"], (SIDE, SIDE))
    plain, mirrored = mirrored_probabilities(explainer, explainer.prepare(images))
    want_plain = np.array([by_hand(rgb) for rgb in images])
    want_mirror = np.array([by_hand(rgb[:, ::-1]) for rgb in images])
    assert np.abs(want_plain - want_mirror).min() > 0.01  # the mirror's answer really differs
    np.testing.assert_allclose(plain[:, 1], want_plain, atol=1e-5)
    np.testing.assert_allclose(mirrored[:, 1], want_mirror, atol=1e-5)
    np.testing.assert_allclose(
        flip_averaged(plain, mirrored)[:, 1], (want_plain + want_mirror) / 2, atol=1e-5
    )
    np.testing.assert_allclose(flip_averaged(plain, mirrored).sum(axis=1), 1.0, atol=1e-6)


def test_evaluate_with_tta_on_a_labels_csv_folder(tmp_path):
    from explain.explainer import Explainer
    from models.data import list_labelled
    from models.evaluate import evaluate, evaluate_with_and_without_flip

    folder = write_pets_folder(tmp_path / "pets")
    files = list_labelled(folder, ["cat", "dog"])
    assert len(files) == 6 and files.labels.tolist() == [0, 0, 0, 1, 1, 1]
    explainer = Explainer(lopsided_model(), ["cat", "dog"], (SIDE, SIDE))
    plain, flipped = evaluate_with_and_without_flip(explainer, files, "lopsided", batch_size=4)
    assert (plain.tta, flipped.tta) == (False, True) and plain.n == flipped.n == 6

    rgbs = [np.asarray(Image.open(p).convert("RGB")) for p in files.paths]
    p_plain = np.array([by_hand(rgb) for rgb in rgbs])
    p_flip = (p_plain + np.array([by_hand(rgb[:, ::-1]) for rgb in rgbs])) / 2
    labels = files.labels
    assert np.abs(p_flip - 0.5).min() > 1e-4  # no photo on the fence: the accuracy is not rounding
    assert len(set((p_flip > 0.5).tolist())) == 2  # and the mirrored mean still answers both ways
    for result, p in ((plain, p_plain), (flipped, p_flip)):
        assert result.accuracy == pytest.approx(np.mean((p > 0.5) == (labels == 1)))
        want_loss = -np.mean(np.where(labels == 1, np.log(p), np.log(1 - p)))
        assert result.loss == pytest.approx(want_loss, abs=1e-4)
    # The one-pass pair agrees with evaluate() run each way.
    assert evaluate(explainer, files, tta=True, batch_size=4).loss == pytest.approx(flipped.loss, abs=1e-6)
    assert evaluate(explainer, files, batch_size=4).loss == pytest.approx(plain.loss, abs=1e-6)


def test_cached_evaluation_keeps_tta_apart(tmp_path):
    from explain.explainer import Explainer
    from models.data import list_labelled
    from models.evaluate import cached_evaluation

    folder = write_pets_folder(tmp_path / "pets")
    files = list_labelled(folder, ["cat", "dog"])
    path = save_model(tmp_path / "models")
    explainer = Explainer(lopsided_model(), ["cat", "dog"], (SIDE, SIDE))
    cache = tmp_path / "cache"
    plain = cached_evaluation(explainer, files, path, "lopsided", cache_dir=cache)
    flipped = cached_evaluation(explainer, files, path, "lopsided", cache_dir=cache, tta=True)
    assert len(list((cache / "evaluations").glob("*.json"))) == 2
    assert (plain[0].tta, flipped[0].tta) == (False, True)
    assert not np.allclose(plain[1], flipped[1])
    again = cached_evaluation(explainer, files, path, "lopsided", cache_dir=cache, tta=True)
    assert again[0].tta and np.allclose(again[1], flipped[1])


def test_update_card_writes_evaluations_per_test_set(tmp_path, capsys):
    from models.evaluate import main, test_set_name

    path = save_model(tmp_path / "models")
    pets = write_pets_folder(tmp_path / "oxford_pets")
    kaggle = tmp_path / "cats_vs_dogs" / "test"
    for label, seed in (("cats", 3), ("dogs", 4)):
        (kaggle / label).mkdir(parents=True)
        for i, rgb in enumerate(photos(seed, 2)):
            Image.fromarray(rgb).save(kaggle / label / f"{i}.png")
    assert test_set_name(pets) == "oxford_pets" and test_set_name(kaggle) == "cats_vs_dogs/test"

    assert main(["--model", str(path), "--data", str(pets), "--tta", "--update-card", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tta"] is True and report["without_tta"]["tta"] is False
    assert main(["--model", str(path), "--data", str(kaggle), "--update-card"]) == 0
    capsys.readouterr()
    card = json.loads(path.with_suffix(".json").read_text())
    pets_figures = card["evaluations"]["oxford_pets"]
    assert pets_figures["n"] == 6 and pets_figures["tta"] is False
    assert pets_figures["flip_tta"]["tta"] is True and pets_figures["flip_tta"]["n"] == 6
    assert pets_figures["accuracy"] == report["without_tta"]["accuracy"]
    assert pets_figures["flip_tta"]["accuracy"] == round(report["accuracy"], 4)
    assert set(pets_figures) >= {"accuracy", "n", "loss", "roc_auc", "tta", "command"}
    kaggle_figures = card["evaluations"]["cats_vs_dogs/test"]
    assert kaggle_figures["n"] == 4 and kaggle_figures["tta"] is False and "flip_tta" not in kaggle_figures
    assert card["test"]["n"] == 6  # the card had no test figures: the first evaluation became them

    # A plain re-run keeps the earlier flip figures of the same photos.
    assert main(["--model", str(path), "--data", str(pets), "--update-card"]) == 0
    capsys.readouterr()
    again = json.loads(path.with_suffix(".json").read_text())["evaluations"]["oxford_pets"]
    assert again["flip_tta"] == pets_figures["flip_tta"]


def test_errors_page_flip_tta_toggle(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import models.evaluate

    save_model(tmp_path / "models")
    monkeypatch.setenv("CVD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(models.evaluate, "CACHE_DIR", tmp_path / "cache")
    folder = tmp_path / "photos"
    for label, seed in (("cats", 5), ("dogs", 6)):
        (folder / label).mkdir(parents=True)
        for i, rgb in enumerate(photos(seed, 3)):
            Image.fromarray(rgb).save(folder / label / f"{i}.png")
    at = AppTest.from_file(str(ROOT / "pages/4_Errors.py"), default_timeout=300)
    at.session_state["errors_model"] = "lopsided"
    at.session_state["errors_source"] = "a folder on this machine"
    at.session_state["errors_folder"] = str(folder)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.toggle(key="errors_tta").value is False
    assert any("Without test-time augmentation" in c.value for c in at.caption)
    loss_plain = at.metric[1].value
    at.toggle(key="errors_tta").set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("flip test-time augmentation" in c.value for c in at.caption)
    assert at.metric[1].value != loss_plain
    assert len(list((tmp_path / "cache" / "evaluations").glob("*.json"))) == 2
