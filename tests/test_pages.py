"""Every page under Streamlit's AppTest, with a real model file and a real photo."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

PAGES = ["app.py", "pages/1_Inspect.py", "pages/2_Layer_depth.py", "pages/3_Training_curves.py"]


@pytest.fixture
def user_models(small_model_dir, monkeypatch):
    monkeypatch.setenv("CVD_MODELS_DIR", str(small_model_dir))
    return small_model_dir


def run(page: str, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=300)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


@pytest.fixture
def no_warmup(monkeypatch):
    # app.py would start loading and tracing every model (the shipped ResNets too) on a
    # thread of this test process; tests/test_warmup.py tests the warm-up itself.
    monkeypatch.setenv("CVD_WARMUP", "0")


def test_home_lists_models(user_models, no_warmup):
    at = run("app.py")
    assert_clean(at)
    table = at.dataframe[0].value
    row = table[table["model"] == "tiny"].iloc[0]
    assert row["Kaggle test accuracy"] == "60.00% of 40 photos"  # the card's "test" figures
    assert row["Oxford-IIIT Pet accuracy"] == "not evaluated"
    assert row["parameters"].endswith(" M") and row["input"] == "64×64×3"
    assert any("Computing on" in c.value for c in at.caption)


def test_home_shows_accuracy_on_both_test_sets(small_model_dir, tmp_path, monkeypatch, no_warmup):
    import shutil

    from models.card import ModelCard

    shutil.copy(small_model_dir / "tiny.keras", tmp_path / "both.keras")
    card = ModelCard.load(small_model_dir / "tiny.json")
    card.name = "both"
    card.evaluations = {
        "cats_vs_dogs/test": {"accuracy": 0.9655, "n": 2000, "tta": False, "flip_tta": {"accuracy": 0.965}},
        "oxford_pets": {"accuracy": 0.93907, "n": 1075, "tta": True},
        "my photos": {"accuracy": 0.5, "n": 12},
    }
    card.save(tmp_path / "both.json")
    monkeypatch.setenv("CVD_MODELS_DIR", str(tmp_path))
    at = run("app.py")
    assert_clean(at)
    table = at.dataframe[0].value
    row = table[table["model"] == "both"].iloc[0]
    # evaluations win over "test"; the flip-TTA figure beside it
    assert row["Kaggle test accuracy"] == "96.55% of 2,000 photos (96.50% with flip TTA)"
    assert row["Oxford-IIIT Pet accuracy"] == "93.91% of 1,075 photos (flip TTA)"
    assert row["my photos accuracy"] == "50.00% of 12 photos"
    shipped = table[table["source"] == "shipped"]
    assert (shipped["my photos accuracy"] == "not evaluated").all()


def test_inspect_shows_prediction_heatmap_and_feature_maps(user_models):
    at = run("pages/1_Inspect.py", inspect_model="tiny")
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    headers = [s.value for s in at.subheader]
    assert any(h.startswith("Prediction: ") for h in headers), headers
    assert any(h.startswith("Grad-CAM for") for h in headers), headers
    assert any(h.startswith("Feature maps of conv3") for h in headers), headers
    assert len(at.get("image")) >= 4  # photo, overlay, zoomed channel, channel grid


def test_inspect_other_class_layer_and_method(user_models):
    at = run("pages/1_Inspect.py", inspect_model="tiny")
    at.radio(key="inspect_class").set_value(0).run()
    at.selectbox(key="inspect_method").set_value("layercam").run()
    at.toggle(key="inspect_blocks_only").set_value(False).run()
    at.selectbox(key="inspect_layer").set_value("conv2").run()
    assert_clean(at)
    assert any(s.value == "Layer-CAM for “cat”" for s in at.subheader)
    assert any(s.value.startswith("Feature maps of conv2") for s in at.subheader)


def test_layer_depth_shows_both_models_at_every_block(user_models):
    at = run("pages/2_Layer_depth.py", depth_left="tiny", depth_right="tiny")
    assert_clean(at)
    assert [s.value for s in at.subheader][:2] == ["tiny", "tiny"]
    assert len(at.get("image")) >= 4
    at.slider(key="depth_slider").set_value(0.0).run()
    at.toggle(key="depth_stage_ends").set_value(True).run()
    assert_clean(at)


def test_training_curves_plots_runs_and_summary(user_models):
    at = run("pages/3_Training_curves.py")
    assert_clean(at)
    table = at.dataframe[0].value
    row = table[table["run"] == "tiny"].iloc[0]
    assert row["max train accuracy"] == "0.6600 (epoch 3)"
    assert row["min val loss"] == "0.6600 (epoch 3)"
    assert row["test accuracy"] == "0.6000"
    assert at.get("plotly_chart")


def test_a_broken_model_is_named_and_the_others_still_load(small_model_dir, tmp_path, monkeypatch, no_warmup):
    import shutil

    for name in ("tiny.keras", "tiny.json", "tiny.history.csv"):
        shutil.copy(small_model_dir / name, tmp_path / name)
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "broken.history.csv").write_text("epoch,accuracy\n")
    monkeypatch.setenv("CVD_MODELS_DIR", str(tmp_path))
    at = run("app.py")
    assert_clean(at)
    assert "tiny" in list(at.dataframe[0].value["model"])
    assert any("broken" in e.value and "damaged or truncated" in e.value for e in at.error)
    at = run("pages/1_Inspect.py", inspect_model="broken")
    assert_clean(at)
    assert any("Cannot use model broken" in e.value for e in at.error)
    at.selectbox(key="inspect_model").set_value("tiny").run()
    assert_clean(at)
    assert any(s.value.startswith("Prediction: ") for s in at.subheader)


def make_labelled_folder(root, per_class=6):
    from PIL import Image

    from tests.conftest import random_photo

    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(random_photo(i + (50 if label == "dogs" else 0), (60, 80))).save(
                root / label / f"{i}.png"
            )
    return root


def test_errors_page_evaluates_caches_and_shows_the_gallery(user_models, tmp_path, monkeypatch):
    monkeypatch.setenv("CVD_CACHE_DIR", str(tmp_path / "cache"))
    import models.evaluate

    monkeypatch.setattr(models.evaluate, "CACHE_DIR", tmp_path / "cache")
    folder = make_labelled_folder(tmp_path / "photos")
    at = run(
        "pages/4_Errors.py",
        errors_model="tiny",
        errors_source="a folder on this machine",
        errors_folder=str(folder),
    )
    assert_clean(at)
    assert [m.label for m in at.metric] == ["Accuracy", "Loss", "ROC AUC", "Photos"]
    assert at.metric[3].value == "12"
    assert len(list((tmp_path / "cache" / "evaluations").glob("*.json"))) == 1
    assert len(at.get("image")) >= 2
    # An untrained small CNN answers one class for nearly everything: the page says so.
    probs_band = any("degenerate" in w.value for w in at.warning)
    assert probs_band
    again = run(
        "pages/4_Errors.py",
        errors_model="tiny",
        errors_source="a folder on this machine",
        errors_folder=str(folder),
    )
    assert_clean(again)
    assert again.metric[0].value == at.metric[0].value


def test_inspect_score_cam_faithfulness_sanity_and_exports(user_models):
    at = run("pages/1_Inspect.py", inspect_model="tiny", inspect_method="scorecam", inspect_exports=True)
    assert_clean(at)
    assert any(s.value.startswith("Score-CAM for") for s in at.subheader)
    at.toggle(key="inspect_faithfulness").set_value(True).run()
    at.toggle(key="inspect_sanity").set_value(True).run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 2
    assert any("top 20%" in c.value for c in at.caption)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download overlay PNG", "Download this view (PNGs in a ZIP)", "Download an HTML report"]


def test_layer_depth_faithfulness_and_exports(user_models):
    at = run(
        "pages/2_Layer_depth.py",
        depth_left="tiny",
        depth_right="tiny",
        depth_faithfulness=True,
        depth_exports=True,
    )
    assert_clean(at)
    assert at.get("plotly_chart")
    assert [b.label for b in at.get("download_button")] == [
        "Download every map (PNGs in a ZIP)",
        "Download an HTML report",
    ]


def test_inspect_any_layer_reuses_one_pass(user_models):
    from models.registry import scan
    from ui.state import load

    at = run("pages/1_Inspect.py", inspect_model="tiny", inspect_blocks_only=False)
    assert_clean(at)
    explainer = load(next(e for e in scan() if e.name == "tiny")).explainer  # the page's cached model
    for compiling in list(explainer._compiling.values()):
        compiling.join(timeout=120)  # the first run was eager; its pass compiles in the background
    before = explainer.traces
    for layer in ("conv1", "pool1", "conv2", "pool2", "conv3"):
        at.selectbox(key="inspect_layer").set_value(layer).run()
        assert_clean(at)
        assert any(s.value == f"Feature maps of {layer}" for s in at.subheader)
    at.radio(key="inspect_class").set_value(0).run()
    assert explainer.traces == before


def test_streamlit_rerun_cleanup_keeps_the_keras_session():
    import keras

    import ui.state  # noqa: F401  (installs the guard)

    keras.backend.clear_session()
    first = keras.backend.get_uid("probe")
    exec("import keras; keras.backend.clear_session()", {"__name__": "streamlit.runtime.scriptrunner.fake"})
    assert keras.backend.get_uid("probe") == first + 1  # not reset: Streamlit's call was skipped
    keras.backend.clear_session()
    assert keras.backend.get_uid("probe") == 1  # anyone else's call still clears
