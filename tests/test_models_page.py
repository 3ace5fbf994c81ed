"""The Models page under AppTest, and the upload path under it (ui.model_uploads)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest
from streamlit.testing.v1 import AppTest

from models.adopt import adopt
from models.card import ModelCard
from tests.conftest import ROOT
from tests.test_feeding_check import SIZE, train_bgr_unit

PAGE = str(ROOT / "pages" / "5_Models.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A trained tiny model saved as .keras (fed x/255, BGR, output 0 = dog), and its labelled photos."""
    model, photos = train_bgr_unit(tmp_path_factory.getbasetemp())
    path = tmp_path_factory.mktemp("file") / "colours.keras"
    model.save(path)
    return path, photos


@pytest.fixture
def user_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user_models"
    monkeypatch.setenv("CVD_MODELS_DIR", str(folder))
    return folder


def run(**state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=300)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def by_label(widgets, label: str):
    return next(w for w in widgets if w.label.startswith(label))


def test_no_models_yet(user_dir):
    at = run()
    assert_clean(at)
    assert any("No models of yours yet" in i.value for i in at.info)


def test_found_then_checked_on_a_folder_writes_the_card(user_dir, trained):
    path, photos = trained
    adopt(path, to=user_dir)  # as an upload would: no check yet, x/255 RGB assumed
    at = run()
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown)
    assert "parameters: " in text and "explainable layers: " in text and "Keras 3 file" in text
    assert "class 0, class 1" in text

    at.radio(key="models_source").set_value("a folder on this machine").run()
    at.text_input(key="models_folder").set_value(str(photos)).run()
    at.slider(key="models_limit").set_value(24).run()
    at.button(key="models_check").click().run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Best: x / 255, BGR") for s in at.success), [s.value for s in at.success]
    table = at.dataframe[0].value
    assert len(table) == 40 and table.iloc[0]["classes (output 0, 1, …)"] == "dog, cat"
    card = ModelCard.load(user_dir / "colours.json")
    assert card.class_names == ["dog", "cat"]
    assert (card.preprocessing.scaling, card.preprocessing.channel_order) == ("unit", "BGR")
    assert any(k.startswith("feeding check") for k in card.evaluations)
    # The page now shows the checked card.
    assert "fed as: x / 255, BGR" in " ".join(m.value for m in at.markdown)


def test_card_by_hand_then_delete(user_dir, trained):
    path, _ = trained
    adopt(path, to=user_dir)
    at = run()
    by_label(at.selectbox, "Pixel scaling").set_value("symmetric").run()
    by_label(at.radio, "Resize").set_value("crop").run()
    by_label(at.text_input, "Class names").set_value("dog, cat").run()
    by_label(at.button, "Save the card").click().run()
    assert_clean(at)
    assert any("Saved the card" in s.value for s in at.success)
    card = json.loads((user_dir / "colours.json").read_text())
    assert card["class_names"] == ["dog", "cat"]
    assert card["preprocessing"]["scaling"] == "symmetric" and card["preprocessing"]["resize"] == "crop"

    by_label(at.text_input, "Class names").set_value("just one").run()
    by_label(at.button, "Save the card").click().run()
    assert any("2 classes; 1 names given" in e.value for e in at.error)

    at.checkbox(key="models_delete_sure").check().run()
    at.button(key="models_delete").click().run()
    assert_clean(at)
    assert not list(user_dir.glob("colours*"))
    assert any("No models of yours yet" in i.value for i in at.info)


# -- the upload path, without a browser ------------------------------------------------------
def test_upload_is_stored_under_our_names_and_kept_once(user_dir, trained):
    from ui.model_uploads import Upload, add_upload, already_added, user_entries

    path, _ = trained
    upload = Upload("../../evil name.keras", path.read_bytes())
    steps = []
    adopted = add_upload(upload, progress=lambda f, text: steps.append(f))
    assert adopted.name == "evil_name" and adopted.keras_path.parent == user_dir
    assert sorted(p.name for p in user_dir.iterdir()) == [".uploads", "evil_name.json", "evil_name.keras"]
    assert not any((user_dir / ".uploads").iterdir())  # the raw upload is not kept
    assert steps[-1] == 1.0 and steps == sorted(steps)
    assert already_added(upload.digest).name == "evil_name"
    assert [e.name for e in user_entries()] == ["evil_name"]


def test_legacy_h5_upload_is_converted(user_dir):
    tf_keras = pytest.importorskip("tf_keras")
    from ui.model_uploads import Upload, add_upload

    legacy = tf_keras.Sequential(
        [
            tf_keras.layers.InputLayer(input_shape=(SIZE, SIZE, 3)),
            tf_keras.layers.Conv2D(4, 3),
            tf_keras.layers.Activation("relu"),
            tf_keras.layers.GlobalAveragePooling2D(),
            tf_keras.layers.Dense(1),
            tf_keras.layers.Activation("sigmoid"),
        ]
    )
    h5 = user_dir.parent / "old.h5"
    legacy.save(h5)
    adopted = add_upload(Upload("old.h5", h5.read_bytes()))
    assert adopted.card.converted_from["format"] != "Keras 3"
    assert "converted from" in adopted.found.converted_from
    assert adopted.found.output.startswith("1 unit")
    assert keras.saving.load_model(adopted.keras_path, safe_mode=True).count_params() == legacy.count_params()


def test_a_broken_upload_is_refused_in_one_line(user_dir):
    from models.registry import ModelLoadError
    from ui.model_uploads import Upload, add_upload

    with pytest.raises((ModelLoadError, ValueError)) as err:
        add_upload(Upload("x.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 100))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not a model file"):
        add_upload(Upload("x.exe", b"MZ"))
    assert not list(user_dir.glob("*.keras"))


def test_model_page_is_in_the_navigation():
    assert "pages/5_Models.py" in (ROOT / "app.py").read_text()


def test_upload_limits_500_mb_for_models_50_for_photos(user_dir, trained):
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == 500
    adopt(trained[0], to=user_dir)
    models = run()
    assert models.get("file_uploader")[0].proto.max_upload_size_mb == 500
    inspect = AppTest.from_file(str(ROOT / "pages" / "1_Inspect.py"), default_timeout=300)
    inspect.session_state["inspect_model"] = "colours"  # the tiny one, not a shipped ResNet
    inspect.run()
    photos = [u.proto for u in inspect.get("file_uploader") if u.proto.id.endswith("inspect_upload")]
    assert photos and photos[0].max_upload_size_mb == 50


def test_json_with_weights_and_savedmodel_zip_uploads(user_dir, tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    import shutil

    from ui.model_uploads import Upload, add_upload

    legacy = tf_keras.Sequential(
        [
            tf_keras.layers.InputLayer(input_shape=(SIZE, SIZE, 3)),
            tf_keras.layers.Conv2D(4, 3, activation="relu"),
            tf_keras.layers.GlobalAveragePooling2D(),
            tf_keras.layers.Dense(3, activation="softmax"),
        ]
    )
    arch = Upload("arch.json", legacy.to_json().encode())
    legacy.save_weights(tmp_path / "w.h5")
    adopted = add_upload(arch, Upload("w.h5", (tmp_path / "w.h5").read_bytes()))
    assert adopted.name == "arch" and adopted.card.converted_from["file"] == "arch.json + w.h5"
    assert adopted.found.output == "3 classes (softmax)"

    legacy.save(tmp_path / "saved", save_format="tf")
    zipped = shutil.make_archive(str(tmp_path / "saved_model"), "zip", tmp_path / "saved")
    adopted = add_upload(Upload("saved_model.zip", Path(zipped).read_bytes()))
    assert "SavedModel" in adopted.found.converted_from
    assert sorted(p.name for p in user_dir.glob("*.keras")) == ["arch.keras", "saved_model.keras"]


def test_an_upload_does_not_take_a_shipped_models_name(user_dir, trained):
    from models.registry import DEFAULT_DIR, scan
    from ui.model_uploads import Upload, add_upload

    shipped = [e.name for e in scan() if e.path.parent == DEFAULT_DIR]
    if not shipped:
        pytest.skip("no shipped models in models/shipped")
    adopted = add_upload(Upload(f"{shipped[0]}.keras", trained[0].read_bytes()))
    assert adopted.name == f"{shipped[0]}_2"
