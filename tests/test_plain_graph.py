"""explain.plain_graph: a .keras file run as plain TensorFlow ops gives the engine's prediction
and Grad-CAM, and refuses what it cannot run instead of guessing."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from explain.explainer import Explainer
from explain.plain_graph import PlainGraph, PlainGraphError, first_look

ROOT = Path(__file__).resolve().parents[1]
layers = keras.layers


def _randomise_batch_norms(model: keras.Model, seed: int = 0) -> None:
    """Batch norms with statistics far from (0, 1), so a wrong formula shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            values = layer.get_weights()
            out = []
            for v in values[:-1]:
                out.append(rng.normal(0.3, 0.5, v.shape).astype(np.float32))
            out.append(rng.uniform(0.5, 2.0, values[-1].shape).astype(np.float32))  # variance > 0
            layer.set_weights(out)


def residual_model(head: str) -> keras.Model:
    """Every layer type the reader runs, in a small residual net ending in ``head``."""
    keras.utils.set_random_seed(1)
    image = keras.Input((None, None, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(image)
    x = layers.ZeroPadding2D(((1, 2), (2, 1)))(x)
    x = layers.Conv2D(8, 3, strides=2, name="stem")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    branch = layers.Conv2D(8, 1, use_bias=False)(x)
    branch = layers.BatchNormalization(scale=False, epsilon=1e-5)(branch)
    branch = layers.ReLU()(branch)
    branch = layers.Conv2D(8, 3, padding="same", dilation_rate=2, activation="relu")(branch)
    x = layers.Add()([x, branch])
    x = layers.ReLU(name="block_out")(x)
    y = layers.AveragePooling2D(2, padding="same")(x)
    y = layers.Conv2D(4, 3, padding="same", activation="swish")(y)
    z = layers.Conv2D(4, 1, strides=2)(x)
    x = layers.Concatenate(name="joined")([y, z])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    if head == "sigmoid":
        out = layers.Dense(1, activation="sigmoid")(x)
    elif head == "softmax-layer":
        out = layers.Softmax()(layers.Dense(3)(x))
    else:
        out = layers.Dense(3, activation=head)(x)
    model = keras.Model(image, out)
    _randomise_batch_norms(model)
    return model


def _photo(size: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (size, size, channels)).astype(np.float32)


def _compare(model: keras.Model, path: Path, size: int, layers: list[str]) -> None:
    """The plain graph's explanation against the engine's, at ``layers``, the last one kept."""
    model.save(path)
    graph = PlainGraph.read(path)
    x = _photo(size, model.input_shape[-1])
    look = first_look(graph, x, layers, keep=layers[-1])
    engine = Explainer(keras.saving.load_model(path), input_size=(size, size))
    result = engine.explain(x[None], layers, keep=layers[-1])
    np.testing.assert_allclose(look.probabilities, result.probabilities, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(look.targets, result.targets)
    for layer in layers:
        expected = result.cam(layer)
        assert expected.max() > 0, "the reference map is blank: the comparison would prove nothing"
        np.testing.assert_allclose(look.cam(layer), expected, rtol=1e-3, atol=1e-5 * float(expected.max()))
    np.testing.assert_allclose(look.kept_activations, result.kept_activations, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(look.kept_gradients, result.kept_gradients, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("head", ["sigmoid", "softmax", "softmax-layer", "linear"])
def test_the_plain_graph_gives_the_engines_prediction_and_map(tmp_path, head):
    model = residual_model(head)
    _compare(model, tmp_path / "m.keras", 40, ["block_out", "joined"])
    graph = PlainGraph.read(tmp_path / "m.keras")
    assert graph.last_spatial == "joined"  # the input of the global pooling
    assert graph.head_kind == ("softmax" if head == "softmax-layer" else head)


def test_a_sequential_model_with_flatten(tmp_path):
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(6, 3, activation="relu", name="conv"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Conv2D(5, 3, activation="elu", name="last_conv"),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ]
    )
    _randomise_batch_norms(model)
    model.save(tmp_path / "s.keras")
    assert PlainGraph.read(tmp_path / "s.keras").last_spatial == "last_conv"
    _compare(model, tmp_path / "s.keras", 28, ["conv", "last_conv"])


def test_what_it_cannot_run_it_refuses(tmp_path):
    keras.utils.set_random_seed(3)
    image = keras.Input((16, 16, 3))
    x = layers.DepthwiseConv2D(3)(image)
    x = layers.GlobalAveragePooling2D()(x)
    keras.Model(image, layers.Dense(2, activation="softmax")(x)).save(tmp_path / "depthwise.keras")
    with pytest.raises(PlainGraphError, match="DepthwiseConv2D"):
        PlainGraph.read(tmp_path / "depthwise.keras")

    inner = keras.Sequential([keras.Input((16, 16, 3)), layers.Conv2D(4, 3)], name="backbone")
    image = keras.Input((16, 16, 3))
    x = layers.GlobalAveragePooling2D()(inner(image))
    keras.Model(image, layers.Dense(2, activation="softmax")(x)).save(tmp_path / "nested.keras")
    with pytest.raises(PlainGraphError, match="backbone"):
        PlainGraph.read(tmp_path / "nested.keras")

    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(PlainGraphError, match="not a readable .keras file"):
        PlainGraph.read(tmp_path / "junk.keras")


def _edited_copy(folder: Path, edit) -> Path:
    """A copy of a saved residual model whose config.json ``edit(layer)`` changed, layer by layer."""
    import json
    import zipfile

    residual_model("softmax").save(folder / "m.keras")
    with zipfile.ZipFile(folder / "m.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    for layer in config["config"]["layers"]:
        edit(layer)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(folder / "edited.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return folder / "edited.keras"


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    """A file whose config says 4 filters but whose weights hold 8 is not run with a guess."""

    def fewer_filters(layer):
        if layer["name"] == "stem":
            layer["config"]["filters"] = 4

    with pytest.raises(PlainGraphError, match="do not match"):
        PlainGraph.read(_edited_copy(tmp_path, fewer_filters))


def test_a_config_of_another_shape_is_refused_not_crashed_on(tmp_path):
    """Keys missing or of the wrong type, as a hand-edited or foreign file may have."""

    def no_strides(layer):
        if layer["name"] == "stem":
            del layer["config"]["strides"]

    with pytest.raises(PlainGraphError, match="not a model this reader follows"):
        PlainGraph.read(_edited_copy(tmp_path, no_strides))


def test_the_shipped_resnet50_as_the_engine():
    path = ROOT / "models" / "shipped" / "resnet50.keras"
    if not path.is_file():
        pytest.skip("models/shipped/resnet50.keras is not in this checkout")
    from models.registry import find, load_model

    graph = PlainGraph.read(path)
    assert graph.last_spatial == "conv5_block3_out"
    engine = Explainer(load_model(find("resnet50").path), input_size=(192, 192))
    assert graph.blocks == [info.path for info in engine.layers.blocks]  # the page's tap set
    x = _photo(192, seed=4)
    look = first_look(graph, x, keep="conv5_block3_out")
    assert look.layers == graph.blocks
    result = engine.explain(x[None], graph.blocks, keep="conv5_block3_out")
    np.testing.assert_allclose(look.probabilities, result.probabilities, rtol=1e-4, atol=1e-6)
    for layer in graph.blocks:
        expected = result.cam(layer)
        np.testing.assert_allclose(look.cam(layer), expected, rtol=1e-3, atol=1e-4 * float(expected.max()))
    np.testing.assert_allclose(look.kept_activations, result.kept_activations, rtol=1e-4, atol=1e-4)


def mini_resnet() -> keras.Model:
    """Two residual blocks named as Keras's ResNets name them (the engine's catalog's blocks)."""
    keras.utils.set_random_seed(5)
    image = keras.Input((None, None, 3), name="image")
    x = layers.Rescaling(1 / 255)(image)
    x = layers.Conv2D(8, 3, strides=2, padding="same", name="conv1_conv")(x)
    for stage in (2, 3):
        # The strided 1x1 shortcut with 8 channels is one that TensorFlow 2.21's oneDNN
        # gradient crashes on (README, "Known problems"); the engine and the reader avoid it.
        shortcut = layers.Conv2D(8, 1, strides=2 if stage == 3 else 1)(x)
        y = layers.Conv2D(8, 3, strides=2 if stage == 3 else 1, padding="same")(x)
        y = layers.BatchNormalization()(y)
        y = layers.Add()([shortcut, y])
        x = layers.Activation("relu", name=f"conv{stage}_block1_out")(y)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(image, layers.Dense(1, activation="sigmoid", name="predictions")(x))
    _randomise_batch_norms(model)
    return model


def test_inspect_on_a_fresh_server_shows_the_first_look_then_the_full_page_from_it(tmp_path, monkeypatch):
    """The first run draws the page from the first look's pass (no second pass), and a later
    run that asks for something else (another class) runs the engine as usual."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import ui.state
    from models.card import ModelCard, Preprocessing

    mini_resnet().save(tmp_path / "mini.keras")
    ModelCard(
        name="mini",
        architecture="mini resnet",
        class_names=["cat", "dog"],
        preprocessing=Preprocessing((48, 48)),
    ).save(tmp_path / "mini.json")
    monkeypatch.setenv("CVD_MODELS_DIR", str(tmp_path))
    st.cache_resource.clear()
    st.cache_data.clear()
    monkeypatch.setattr(ui.state, "_LOADED", set())
    passes = []
    engine_explain = ui.state._explain

    def counted(*args, **kwargs):
        passes.append(args[2])  # the layers asked
        return engine_explain(*args, **kwargs)

    monkeypatch.setattr(ui.state, "_explain", counted)
    at = AppTest.from_file(str(ROOT / "pages" / "1_Inspect.py"), default_timeout=300)
    at.session_state["inspect_model"] = "mini"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    headers = [s.value for s in at.subheader]
    assert any(h.startswith("Grad-CAM for") for h in headers), headers
    assert any(h.startswith("Feature maps of conv3_block1_out") for h in headers), headers
    assert not any("A first look" in c.value for c in at.caption)  # replaced by the full page
    seen = [result for _, result in ui.state._FIRST_LOOK.values()]
    assert len(seen) == 1 and seen[0].layers == ["conv2_block1_out", "conv3_block1_out"]
    assert passes == [], "the page ran the engine's pass again instead of using the first look's"
    at.run()
    assert passes == []  # a rerun with the same choices still matches it

    # Pixels other than the page's own (another card's size or scaling) must not be reused.
    ((key, (model_input, result)),) = ui.state._FIRST_LOOK.items()
    ui.state._FIRST_LOOK[key] = (model_input * 0.5, result)
    at.run()
    assert passes, "pixels that differ from the page's were reused"
    passes.clear()
    ui.state._FIRST_LOOK[key] = (model_input, result)

    at.radio(key="inspect_class").set_value(0).run()
    assert not at.exception, [e.message for e in at.exception]
    assert passes, "another class must run the engine (the first look explains the predicted one)"


def test_the_last_layer_is_handed_on_before_the_others(tmp_path):
    residual_model("softmax").save(tmp_path / "m.keras")
    graph = PlainGraph.read(tmp_path / "m.keras")
    x = _photo(40)
    seen = []
    whole = first_look(graph, x, ["block_out", "joined"], keep="joined", first=seen.append)
    assert len(seen) == 1 and seen[0].layers == ["joined"] and seen[0].kept_layer == "joined"
    np.testing.assert_array_equal(seen[0].cam("joined"), whole.cam("joined"))
    np.testing.assert_array_equal(seen[0].probabilities, whole.probabilities)
    assert whole.layers == ["block_out", "joined"]
