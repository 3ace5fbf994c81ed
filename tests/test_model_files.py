"""Model files from strangers: refused without running their code, each problem named."""

from __future__ import annotations

import keras
import pytest

from explain.explainer import Explainer
from models.build import build_small_cnn
from models.registry import ModelLoadError, load_model, scan

MARKER = "/tmp/cvd-lambda-ran"


def lambda_model() -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: (open(MARKER, "w").write("ran"), t)[1])(inputs)  # noqa: SIM115
    x = keras.layers.Conv2D(2, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def test_lambda_layer_is_refused_without_running(tmp_path):
    import os

    path = tmp_path / "evil.keras"
    lambda_model().save(path)
    if os.path.exists(MARKER):
        os.remove(MARKER)
    with pytest.raises(ModelLoadError, match="carries Python code"):
        load_model(path)
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_truncated_model_files(tmp_path, suffix):
    model = build_small_cnn(input_size=16)
    whole = tmp_path / f"whole{suffix}"
    model.save(whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="damaged or truncated"):
        load_model(cut)


def test_legacy_h5_loads(tmp_path):
    model = build_small_cnn(input_size=16)
    model.save(tmp_path / "legacy.h5")
    assert load_model(tmp_path / "legacy.h5").count_params() == model.count_params()


def test_not_a_model_file(tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_text("just text")
    with pytest.raises(ModelLoadError, match="not a Keras model file"):
        load_model(fake)


def test_not_a_classifier_and_not_an_image_model(tmp_path):
    inputs = keras.Input((16, 16, 3))
    segmenter = keras.Model(inputs, keras.layers.Conv2D(2, 1)(keras.layers.Conv2D(4, 3)(inputs)))
    with pytest.raises(ValueError, match="a classifier ends in"):
        Explainer(segmenter)
    vector_in = keras.Input((10,))
    tabular = keras.Model(vector_in, keras.layers.Dense(2, activation="softmax")(vector_in))
    with pytest.raises(ValueError, match="an image classifier takes"):
        Explainer(tabular)


def test_registry_lists_every_file_and_cards_stay_optional(tmp_path, monkeypatch):
    build_small_cnn(input_size=16).save(tmp_path / "good.keras")
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 broken zip")
    (tmp_path / "bad.json").write_text("{not json")
    monkeypatch.setenv("CVD_MODELS_DIR", str(tmp_path))
    entries = {e.name: e for e in scan() if e.source == "user"}
    assert set(entries) == {"good", "bad"}
    assert entries["bad"].card_error and "not a valid model card" in entries["bad"].card_error
    assert load_model(entries["good"].path)
    with pytest.raises(ModelLoadError, match="damaged or truncated"):
        load_model(entries["bad"].path)


def test_registry_without_the_default_folder(tmp_path, monkeypatch):
    import models.registry

    monkeypatch.setattr(models.registry, "DEFAULT_DIR", tmp_path / "absent")
    monkeypatch.delenv("CVD_MODELS_DIR", raising=False)
    assert scan() == []
    monkeypatch.setenv("CVD_MODELS_DIR", str(tmp_path / "also-absent"))
    assert scan(tmp_path / "nope") == []
