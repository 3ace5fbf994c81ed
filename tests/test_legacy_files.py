"""Legacy Keras files, as people have them: made here with tf-keras (the Keras 2 API), each
converted into a Keras 3 .keras that gives the original's outputs, and the shared real files
loaded and explained."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from models.convert import TOLERANCE, Conversion, convert_to_keras3
from models.registry import load_model
from tests.conftest import SHARED_DATA

REAL = SHARED_DATA / "real_models"
needs_real_models = pytest.mark.skipif(
    not REAL.is_dir(),
    reason="../shared/data/real_models is not beside this checkout (real-file tests skipped)",
)


def randomised(model):
    """Give every weight a random value (batch-norm variances positive) so that a wrong copy shows."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        values = layer.get_weights()
        new = []
        for w, v in zip(layer.weights, values):
            r = rng.normal(0, 0.3, v.shape).astype(v.dtype)
            new.append(np.abs(r) + 0.5 if "variance" in w.name else r)
        if values:
            layer.set_weights(new)
    return model


def sequential_sigmoid_head(tfk):
    """Standalone-Keras style: input shape on the first Conv2D, separate Activation layers,
    LeakyReLU, batch norm, an L2 regularizer and old initializers; one sigmoid output."""
    reg = tfk.regularizers.l2(1e-4)
    return tfk.Sequential(
        [
            tfk.layers.Conv2D(
                4, 3, input_shape=(20, 20, 3), kernel_initializer="he_normal", kernel_regularizer=reg
            ),
            tfk.layers.BatchNormalization(),
            tfk.layers.Activation("relu"),
            tfk.layers.MaxPooling2D(),
            tfk.layers.Conv2D(6, 3, padding="same", bias_initializer=tfk.initializers.Constant(0.1)),
            tfk.layers.LeakyReLU(alpha=0.1),  # Keras 3 calls it negative_slope
            tfk.layers.Flatten(),
            tfk.layers.Dense(8),
            tfk.layers.Dropout(0.5),
            tfk.layers.Dense(1),
            tfk.layers.Activation("sigmoid"),
        ]
    )


def grey_ten_classes(tfk):
    """A Fashion-MNIST-like model: 28x28 grey in, 10 classes out, functional."""
    inputs = tfk.Input((28, 28, 1))
    x = tfk.layers.Conv2D(4, 3)(inputs)
    x = tfk.layers.BatchNormalization()(x)
    x = tfk.layers.Activation("relu")(x)
    x = tfk.layers.MaxPooling2D()(x)
    x = tfk.layers.Flatten()(x)
    x = tfk.layers.Dense(10)(x)
    return tfk.Model(inputs, tfk.layers.Activation("softmax")(x))


def nested_backbone(tfk):
    """A Teachable Machine export in miniature: Sequential[Sequential[functional backbone with
    depthwise convolutions and ReLU6, pooling], Sequential[Dense, Dense softmax no bias]]."""
    inputs = tfk.Input((24, 24, 3))
    x = tfk.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = tfk.layers.BatchNormalization()(x)
    x = tfk.layers.ReLU(6.0)(x)
    y = tfk.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = tfk.layers.BatchNormalization()(y)
    x = tfk.layers.Add()([x, y])
    x = tfk.layers.Conv2D(8, 1, name="out_conv")(x)
    backbone = tfk.Model(inputs, tfk.layers.ReLU(6.0, name="out_relu")(x), name="backbone")
    features = tfk.Sequential([tfk.Input((24, 24, 3)), backbone, tfk.layers.GlobalAveragePooling2D()])
    head = tfk.Sequential(
        [
            tfk.layers.Dense(5, activation="relu", input_shape=(8,)),
            tfk.layers.Dense(2, activation="softmax", use_bias=False),
        ]
    )
    return tfk.Sequential([tfk.Input((24, 24, 3)), features, head])


def built_later(tfk):
    """A Sequential given no input shape and built afterwards (its config has build_input_shape)."""
    model = tfk.Sequential(
        [tfk.layers.Conv2D(3, 3, activation="relu"), tfk.layers.GlobalMaxPooling2D(), tfk.layers.Dense(3)]
    )
    model.build((None, 16, 16, 3))
    return model


def transfer_tutorial(tfk):
    """TensorFlow's transfer-learning tutorial in miniature: augmentation layers, preprocess_input
    called inside the model (TensorFlow arithmetic layers), a functional backbone called with
    training=False inside a functional model, a logit output."""
    inputs = tfk.Input((24, 24, 3))
    x = tfk.Sequential([tfk.layers.RandomFlip("horizontal"), tfk.layers.RandomRotation(0.2)])(inputs)
    x = tfk.applications.mobilenet_v2.preprocess_input(x)
    backbone = nested_backbone(tfk).layers[0].layers[0]
    x = backbone(x, training=False)
    x = tfk.layers.GlobalAveragePooling2D()(x)
    x = tfk.layers.Dropout(0.2)(x)
    return tfk.Model(inputs, tfk.layers.Dense(1)(x))


BUILDERS = {
    "sigmoid_head": sequential_sigmoid_head,
    "grey_28": grey_ten_classes,
    "nested": nested_backbone,
    "built_later": built_later,
    "tutorial": transfer_tutorial,
}


@pytest.fixture(scope="session")
def legacy(tmp_path_factory):
    """Each model above, saved the legacy ways, with the tf-keras model's outputs on one input."""
    import tf_keras

    folder = tmp_path_factory.mktemp("legacy")
    made: dict[str, dict] = {}
    for name, build in BUILDERS.items():
        model = randomised(build(tf_keras))
        x = np.random.default_rng(2).uniform(0, 1, (3, *model.input_shape[1:])).astype("float32")
        files = {
            "h5": folder / f"{name}.h5",
            "json": folder / f"{name}.json",
            "weights": folder / f"{name}_w.h5",
        }
        model.save(files["h5"], save_format="h5")
        files["json"].write_text(model.to_json())
        model.save_weights(files["weights"], save_format="h5")
        made[name] = {"files": files, "x": x, "y": model(x, training=False).numpy()}
    # One SavedModel for the session (tf-keras writes them slowly): the sigmoid-head model.
    model = tf_keras.models.load_model(made["sigmoid_head"]["files"]["h5"], compile=False)
    model.save(folder / "saved", save_format="tf")
    made["sigmoid_head"]["files"]["savedmodel"] = folder / "saved"
    return made


def outputs(model, x):
    return np.asarray(model(x, training=False))


def assert_same(conversion: Conversion, case: dict):
    import keras

    model = keras.saving.load_model(conversion.keras_path, compile=False, safe_mode=True)
    got = outputs(model, case["x"])
    assert got.shape == case["y"].shape
    assert np.max(np.abs(got - case["y"])) <= TOLERANCE
    assert conversion.digest in conversion.keras_path.name


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_hdf5_converts_with_the_same_outputs(legacy, name, tmp_path):
    case = legacy[name]
    conversion = convert_to_keras3(case["files"]["h5"], cache_dir=tmp_path)
    assert conversion.source_format == "HDF5"
    assert conversion.saved_by.startswith("Keras 2.")
    assert conversion.describe().startswith("converted from HDF5 written by Keras 2.")
    assert_same(conversion, case)


def test_preprocess_input_inside_the_model_becomes_rescaling(legacy, tmp_path):
    import keras

    conversion = convert_to_keras3(legacy["tutorial"]["files"]["h5"], cache_dir=tmp_path)
    model = keras.saving.load_model(conversion.keras_path, safe_mode=True)
    rescaling = [layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    assert [(r.scale, r.offset) for r in rescaling] == [(1 / 127.5, 0.0), (1.0, -1.0)]
    assert any("Rescaling" in note for note in conversion.notes)


@pytest.mark.parametrize(
    ("family", "rebuilt"),
    [
        ("resnet50", ["Conv2D", "Normalization"]),
        ("densenet", ["Rescaling", "Normalization", "Normalization"]),
    ],
)
def test_imagenet_preprocess_input_inside_the_model(tmp_path, family, rebuilt):
    """keras.applications' preprocess_input inside a model: caffe style (resnet50: RGB->BGR by
    slicing, then the ImageNet means subtracted with bias_add) and torch style (densenet: x/255,
    means subtracted, divided by the per-channel std)."""
    import keras
    import tf_keras

    inputs = tf_keras.Input((12, 12, 3))
    x = getattr(tf_keras.applications, family).preprocess_input(inputs)
    x = tf_keras.layers.Conv2D(2, 3)(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    original = randomised(tf_keras.Model(inputs, tf_keras.layers.Dense(2, activation="softmax")(x)))
    original.save(tmp_path / "pre.h5", save_format="h5")
    pixels = np.random.default_rng(4).uniform(0, 255, (2, 12, 12, 3)).astype("float32")
    conversion = convert_to_keras3(tmp_path / "pre.h5", cache_dir=tmp_path / "cache")
    assert_same(conversion, {"x": pixels, "y": outputs(original, pixels)})
    model = keras.saving.load_model(conversion.keras_path, safe_mode=True)
    assert [type(layer).__name__ for layer in model.layers[1 : 1 + len(rebuilt)]] == rebuilt


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_json_and_weights_convert_with_the_same_outputs(legacy, name, tmp_path):
    case = legacy[name]
    conversion = convert_to_keras3(case["files"]["json"], case["files"]["weights"], cache_dir=tmp_path)
    assert conversion.source_format == "architecture JSON + HDF5 weights"
    assert_same(conversion, case)


def test_hdf5_under_a_keras_name_loads_through_the_registry(legacy, tmp_path, monkeypatch):
    monkeypatch.setenv("CVD_CACHE_DIR", str(tmp_path / "cache"))
    case = legacy["grey_28"]
    disguised = tmp_path / "model.keras"
    shutil.copyfile(case["files"]["h5"], disguised)
    model = load_model(disguised)
    assert np.max(np.abs(outputs(model, case["x"]) - case["y"])) <= TOLERANCE
    # Converted once, into the app's cache folder, and found there the second time.
    assert len(list((tmp_path / "cache" / "converted").glob("*.keras"))) == 1
    first = convert_to_keras3(disguised)
    assert first.keras_path.parent == tmp_path / "cache" / "converted"
    assert convert_to_keras3(disguised).keras_path == first.keras_path


def test_keras_2_functional_spelled_model(legacy, tmp_path):
    """Keras up to 2.3 called a functional model "Model" in its config."""
    import h5py

    case = legacy["grey_28"]
    old = tmp_path / "old.h5"
    shutil.copyfile(case["files"]["h5"], old)
    with h5py.File(old, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        assert config["class_name"] == "Functional"
        config["class_name"] = "Model"
        h5.attrs["model_config"] = json.dumps(config)
        h5.attrs["keras_version"] = "2.2.4"
    conversion = convert_to_keras3(old, cache_dir=tmp_path)
    assert conversion.saved_by == "Keras 2.2.4"
    assert_same(conversion, case)


def test_savedmodel_converts_without_calling_its_functions(legacy, tmp_path):
    case = legacy["sigmoid_head"]
    conversion = convert_to_keras3(case["files"]["savedmodel"], cache_dir=tmp_path)
    assert conversion.source_format == "SavedModel"
    assert conversion.saved_by.startswith("TensorFlow")
    assert_same(conversion, case)


def test_savedmodel_without_keras_metadata_file(legacy, tmp_path):
    """TF 2.2-2.4 kept the Keras config inside saved_model.pb (the root object's metadata)."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tf_keras.protobuf import saved_metadata_pb2

    old = tmp_path / "tf22"
    shutil.copytree(legacy["sigmoid_head"]["files"]["savedmodel"], old)
    meta = saved_metadata_pb2.SavedMetadata()
    meta.ParseFromString((old / "keras_metadata.pb").read_bytes())
    root = next(n for n in meta.nodes if n.node_path == "root")
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((old / "saved_model.pb").read_bytes())
    node = saved.meta_graphs[0].object_graph_def.nodes[0]
    node.user_object.metadata = root.metadata
    node.user_object.identifier = root.identifier
    (old / "saved_model.pb").write_bytes(saved.SerializeToString())
    (old / "keras_metadata.pb").unlink()
    assert_same(convert_to_keras3(old, cache_dir=tmp_path / "cache"), legacy["sigmoid_head"])


def test_zips_of_a_savedmodel_and_of_json_with_weights(legacy, tmp_path):
    saved = legacy["sigmoid_head"]["files"]["savedmodel"]
    archive = tmp_path / "saved.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in saved.rglob("*"):
            if file.is_file():
                zf.write(file, "my model/" + file.relative_to(saved).as_posix())
    conversion = convert_to_keras3(archive, cache_dir=tmp_path / "cache")
    assert conversion.source_format == "SavedModel in a zip"
    assert_same(conversion, legacy["sigmoid_head"])
    case = legacy["nested"]
    pair = tmp_path / "pair.zip"
    with zipfile.ZipFile(pair, "w") as zf:
        zf.write(case["files"]["json"], "arch.json")
        zf.write(case["files"]["weights"], "weights/w.h5")
    assert_same(convert_to_keras3(pair, cache_dir=tmp_path / "cache"), case)
    import keras

    keras3_zip = tmp_path / "k3.zip"
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)))
    model.save(tmp_path / "k3.keras")
    with zipfile.ZipFile(keras3_zip, "w") as zf:
        zf.write(tmp_path / "k3.keras", "k3.keras")
    assert convert_to_keras3(keras3_zip, cache_dir=tmp_path / "cache").source_format == "Keras 3 in a zip"
    # Unpacked copies do not outlive the conversion.
    assert not any((tmp_path / "cache" / "unpacked").glob("*/*"))


def test_keras3_weights_with_their_architecture(tmp_path):
    import keras

    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(3, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    (tmp_path / "net.json").write_text(model.to_json())
    model.save_weights(tmp_path / "net.weights.h5")
    x = np.random.default_rng(3).uniform(0, 1, (2, 12, 12, 3)).astype("float32")
    conversion = convert_to_keras3(tmp_path / "net.json", cache_dir=tmp_path / "cache")
    assert_same(conversion, {"x": x, "y": outputs(model, x)})


def test_registry_lists_savedmodel_folders_and_json_pairs(legacy, tmp_path, monkeypatch):
    from models.registry import scan

    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copytree(legacy["sigmoid_head"]["files"]["savedmodel"], folder / "exported")
    shutil.copyfile(legacy["grey_28"]["files"]["json"], folder / "fashion.json")
    shutil.copyfile(legacy["grey_28"]["files"]["weights"], folder / "fashion.h5")
    monkeypatch.setenv("CVD_MODELS_DIR", str(folder))
    monkeypatch.setenv("CVD_CACHE_DIR", str(tmp_path / "cache"))
    entries = {e.name: e for e in scan() if e.source == "user"}
    assert set(entries) == {"exported", "fashion"}
    assert entries["fashion"].card_error is None and not entries["fashion"].has_card
    model = load_model(entries["fashion"].path)
    assert np.max(np.abs(outputs(model, legacy["grey_28"]["x"]) - legacy["grey_28"]["y"])) <= TOLERANCE
    assert load_model(entries["exported"].path).output_shape == (None, 1)


# --------------------------------------------------------------------------- the shared real files

REAL_FILES = {
    "teachable_machine": ("teachable_machine_mobilenetv2/keras_model.h5", (224, 224, 3), 2),
    "keras_2_2_4_standalone": ("keras_2_2_4_standalone/dogs_vs_cats.h5", (32, 32, 3), 1),
    "keras_2_2_4_tf": ("keras_2_2_4_tf/cat_dog_model.h5", (128, 128, 3), 2),
    "fashion_mnist": ("keras_2_1_6_fashion_mnist/fashion_mnist.h5", (28, 28, 1), 10),
    "savedmodel_tf_2_12": ("savedmodel_tf_2_12/modelcheckpoint", (32, 32, 3), 10),
    "json_and_weights": ("json_and_weights_keras_2_0/cat_dog.h5", (150, 150, 3), 1),
    "hdf5_named_keras": ("hdf5_named_keras/cats_vs_dogs.keras", (150, 150, 3), 2),
}


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real-cache")


@needs_real_models
@pytest.mark.parametrize(
    "name",
    # MobileNetV2 at 224 px is built twice and traced once: a minute on a 2-core CPU.
    [pytest.param(n, marks=pytest.mark.slow) if n == "teachable_machine" else n for n in sorted(REAL_FILES)],
)
def test_shared_real_file_loads_and_explains(name, real_cache, monkeypatch, photo):
    from explain import Explainer
    from models.registry import completed_card, entry_for

    monkeypatch.setenv("CVD_CACHE_DIR", str(real_cache))
    relative, shape, outputs_n = REAL_FILES[name]
    path = REAL / relative
    entry = entry_for(path)
    model = load_model(path)
    assert tuple(model.input_shape[1:]) == shape and model.output_shape == (None, outputs_n)
    explainer = Explainer.from_card(model, completed_card(entry, model))
    result = explainer.explain(explainer.prepare([photo]), layers="last")
    assert np.all(np.isfinite(result.probabilities))
    heat = next(iter(result.cams["gradcam"].values()))
    assert heat.shape[0] == 1 and np.all(np.isfinite(heat))
    meta = json.loads(next(real_cache.glob("converted/*.json")).read_text())
    assert meta["source_format"]
