"""The one-pass engine on real architectures with random weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from explain.cams import normalize
from explain.explainer import Explainer
from models.build import build_resnet, nest_backbone
from tests.conftest import ROOT, random_photo, save_and_reload

SIZE = 96


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = build_resnet("resnet50", input_size=None)
    return save_and_reload(model, tmp_path_factory.mktemp("r50"), "resnet50")


@pytest.fixture(scope="module")
def explainer50(resnet50):
    return Explainer(resnet50, ["cat", "dog"], (SIZE, SIZE))


def photos(n: int) -> np.ndarray:
    return np.stack([random_photo(i, (SIZE, SIZE)) for i in range(n)]).astype(np.float32)


def keras_example_grad_cam(model: keras.Model, image: np.ndarray, layer: str, sign: float) -> np.ndarray:
    """The Keras Grad-CAM example recipe, one layer at a time, as an independent reference."""
    head = model.get_layer("predictions")
    grad_model = keras.Model(model.inputs, [model.get_layer(layer).output, head.input])
    with tf.GradientTape() as tape:
        activations, pooled = grad_model(image[None], training=False)
        logit = tf.matmul(pooled, head.kernel) + head.bias
        score = sign * logit[:, 0]
    grads = tape.gradient(score, activations)
    weights = tf.reduce_mean(grads, axis=(0, 1, 2))
    cam = tf.nn.relu(tf.reduce_sum(activations[0] * weights, axis=-1))
    return cam.numpy()


def test_resnet_layers_grouped_by_stage(explainer50):
    catalog = explainer50.layers
    assert len(catalog.blocks) == 16
    assert [s for s in catalog.stages(blocks_only=True)] == ["conv2", "conv3", "conv4", "conv5"]
    assert [len(v) for v in catalog.stages(blocks_only=True).values()] == [3, 4, 6, 3]
    depths = [b.depth for b in catalog.blocks]
    assert depths == sorted(depths) and 0 < depths[0] < depths[-1] <= 1
    assert catalog.last.path == "conv5_block3_out"
    assert catalog.last.shape == (3, 3, 2048)
    assert [b.path for b in catalog.stage_ends()] == [
        "conv2_block3_out",
        "conv3_block4_out",
        "conv4_block6_out",
        "conv5_block3_out",
    ]


def test_resnet101_has_33_blocks():
    model = build_resnet("resnet101", input_size=None)
    catalog = Explainer(model, ["cat", "dog"], (64, 64)).layers
    assert len(catalog.blocks) == 33
    assert [len(v) for v in catalog.stages(blocks_only=True).values()] == [3, 4, 23, 3]


def test_one_pass_equals_separate_passes(resnet50, explainer50):
    batch = photos(2)
    result = explainer50.explain(batch, "blocks", classes=[1, 0])
    for layer in ("conv2_block1_out", "conv3_block4_out", "conv4_block2_out", "conv5_block3_out"):
        for i, sign in ((0, 1.0), (1, -1.0)):
            ours = normalize(result.cam(layer, i)).values
            reference = normalize(keras_example_grad_cam(resnet50, batch[i], layer, sign)).values
            np.testing.assert_allclose(ours, reference, atol=1e-5, err_msg=f"{layer} image {i}")


def test_per_image_results_do_not_depend_on_the_batch(explainer50):
    batch = photos(3)
    together = explainer50.explain(batch, "stages")
    alone = explainer50.explain(batch[1:2], "stages")
    for layer in together.layers:
        np.testing.assert_allclose(together.cam(layer, 1), alone.cam(layer, 0), rtol=1e-4, atol=1e-6)


def test_no_retrace_for_new_photos_classes_or_kept_layer(explainer50):
    explainer50.explain(photos(1), "blocks", keep="conv4_block1_out")
    before = explainer50.traces
    explainer50.explain(photos(2), "blocks", classes=[0, 1], keep="conv2_block2_out")
    explainer50.explain(photos(1) * 0.5, "blocks", classes=0, keep="conv5_block3_out")
    explainer50.explain(photos(3), "blocks")
    assert explainer50.traces == before


def test_kept_layer_returns_its_activations(explainer50):
    result = explainer50.explain(photos(1), "last", keep="conv3_block1_out")
    assert result.kept_activations.shape == (1, 12, 12, 512)
    assert np.isfinite(result.kept_activations).all()


def test_sigmoid_cat_and_dog_maps_differ_and_swap_when_the_logit_flips(tmp_path):
    keras.utils.set_random_seed(3)
    model = build_resnet("resnet50", input_size=None)
    flipped = keras.models.clone_model(model)
    flipped.set_weights(model.get_weights())
    head = flipped.get_layer("predictions")
    kernel, bias = head.get_weights()
    head.set_weights([-kernel, -bias])
    batch = photos(1)
    a = Explainer(model, ["cat", "dog"], (SIZE, SIZE))
    b = Explainer(flipped, ["cat", "dog"], (SIZE, SIZE))
    layer = "conv4_block6_out"
    dog, cat = (a.explain(batch, [layer], classes=c).cam(layer) for c in (1, 0))
    assert not np.allclose(normalize(dog).values, normalize(cat).values, atol=1e-3)
    np.testing.assert_allclose(b.explain(batch, [layer], classes=0).cam(layer), dog, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b.explain(batch, [layer], classes=1).cam(layer), cat, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.predict(batch)[0, ::-1], b.predict(batch)[0], rtol=1e-5)


def test_nested_backbone_gives_the_same_maps_as_flat(tmp_path, resnet50):
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    nested = nest_backbone(backbone, name="transfer")
    by_name = {layer.name: layer for layer in resnet50.layers}
    for layer in backbone.layers:
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    nested.get_layer("predictions").set_weights(resnet50.get_layer("predictions").get_weights())
    nested = save_and_reload(nested, tmp_path, "nested")

    flat_explainer = Explainer(resnet50, ["cat", "dog"], (SIZE, SIZE))
    nested_explainer = Explainer(nested, ["cat", "dog"], (SIZE, SIZE))
    assert [b.path for b in nested_explainer.layers.blocks][-1] == "resnet50/conv5_block3_out"
    assert len(nested_explainer.layers.blocks) == 16
    batch = photos(2)
    flat = flat_explainer.explain(batch, "stages")
    inner = nested_explainer.explain(batch, "stages")
    np.testing.assert_allclose(inner.probabilities, flat.probabilities, rtol=1e-5)
    for layer in flat.layers:
        np.testing.assert_allclose(
            inner.cams["gradcam"]["resnet50/" + layer], flat.cams["gradcam"][layer], rtol=1e-4, atol=1e-5
        )


def test_sequential_and_grayscale_multiclass(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu", name="c2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model = save_and_reload(model, tmp_path, "fashion")
    explainer = Explainer(model, [f"c{i}" for i in range(10)])
    assert explainer.input_shape == (28, 28, 1)
    assert explainer.layers.last.path == "c2"
    batch = explainer.prepare([random_photo(5, (40, 30))])
    assert batch.shape == (1, 28, 28, 1)
    result = explainer.explain(batch, "all", methods=("gradcam", "gradcam++", "layercam"))
    assert result.probabilities.shape == (1, 10)
    for method in ("gradcam", "gradcam++", "layercam"):
        assert result.cam("c2", 0, method).shape == (11, 11)


def test_log_softmax_output_still_gives_probabilities(tmp_path):
    from models.build import build_small_cnn

    model = save_and_reload(build_small_cnn(input_size=32, final="log_softmax"), tmp_path, "logsm")
    explainer = Explainer(model, ["cat", "dog"])
    assert explainer.head.kind == "log_softmax"
    probs = explainer.predict(explainer.prepare([random_photo(1)]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs >= 0).all()


def test_model_without_convolution_is_refused_clearly():
    from models.build import build_mlp

    with pytest.raises(ValueError, match="nothing for a class activation map"):
        Explainer(build_mlp())


def test_alexnet_and_inception_style_models(tmp_path):
    from models.build import build_alexnet, build_inception

    alexnet = Explainer(save_and_reload(build_alexnet(), tmp_path, "alexnet"), ["cat", "dog"])
    assert [b.path for b in alexnet.layers.blocks] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    inception = Explainer(build_inception(), ["cat", "dog"])
    blocks = [b.name for b in inception.layers.blocks]
    assert blocks[0] == "mixed0" and blocks[-1] == "mixed10" and len(blocks) == 11
    for explainer in (alexnet, inception):
        batch = explainer.prepare([random_photo(2, (150, 200))])
        result = explainer.explain(batch, "all")
        assert len(result.cams["gradcam"]) == len(explainer.layers.blocks)
        assert np.isfinite(result.cam(explainer.layers.last.path)).all()


def test_eager_until_compiled_gives_the_compiled_maps_without_a_trace(tmp_path):
    from tests.test_methods import image, small_conv_model

    explainer = Explainer(small_conv_model(tmp_path), ["a", "b", "c"])
    explainer.eager_until_compiled = True
    x = np.concatenate([image(0), image(1)])
    methods = ("gradcam", "layercam", "eigencam")
    eager = explainer.explain(x, ["c1", "feat"], [1, -1], methods, keep="feat")
    assert explainer.traces == 0 and not explainer.is_compiled(["c1", "feat"], methods)
    explainer.compile(["feat", "c1"], methods)
    assert explainer.traces == 1 and explainer.is_compiled(["c1", "feat"], methods)
    compiled = explainer.explain(x, ["c1", "feat"], [1, -1], methods, keep="feat")
    assert explainer.traces == 1  # compiled once, used from then on
    np.testing.assert_allclose(eager.probabilities, compiled.probabilities, rtol=1e-5)
    np.testing.assert_array_equal(eager.targets, compiled.targets)
    for method in methods:
        for layer in eager.layers:
            ours, theirs = eager.cams[method][layer], compiled.cams[method][layer]
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(eager.kept_activations, compiled.kept_activations, rtol=1e-5)


def test_a_background_compile_waits_until_the_caller_says_it_may_start(tmp_path):
    import threading
    import time

    from tests.test_methods import image, small_conv_model

    explainer = Explainer(small_conv_model(tmp_path), ["a", "b", "c"])
    gate = threading.Event()
    explainer.eager_until_compiled, explainer.compile_after = True, 0.0
    explainer.wait_to_compile = gate.wait
    explainer.explain(image(0), ["feat"])
    time.sleep(0.5)
    assert explainer.traces == 0 and not explainer.is_compiled(["feat"])  # still waiting
    gate.set()
    explainer._compiling[("feat",), ("gradcam",)].join(timeout=120)
    assert explainer.traces == 1 and explainer.is_compiled(["feat"])


def test_a_pass_first_run_eagerly_is_compiled_in_the_background(tmp_path):
    from tests.test_methods import image, small_conv_model

    explainer = Explainer(small_conv_model(tmp_path), ["a", "b", "c"])
    explainer.eager_until_compiled, explainer.compile_after = True, 0.0
    first = explainer.explain(image(0), ["feat"], methods=("layercam",))
    thread = explainer._compiling[("feat",), ("layercam",)]
    thread.join(timeout=120)
    assert explainer.is_compiled(["feat"], ("layercam",)) and explainer.traces == 1
    again = explainer.explain(image(0), ["feat"], methods=("layercam",))
    assert explainer.traces == 1 and len(explainer._compiling) == 1  # compiled once, started once
    before, after = first.cam("feat", method="layercam"), again.cam("feat", method="layercam")
    np.testing.assert_allclose(before, after, rtol=1e-5)


class _ShapeOnlyByRunning(keras.layers.Layer):
    """A layer that cannot say its output shape without running (as some legacy layers),
    once ``refuse`` is set (the functional model is built before)."""

    refuse = False

    def call(self, x):
        return x * 2.0

    def compute_output_spec(self, x):
        if self.refuse:
            raise NotImplementedError("run me to find out")
        return super().compute_output_spec(x)


def test_the_layer_catalogue_learns_shapes_without_running_the_model(monkeypatch):
    import explain.layers

    calls = []
    original = explain.layers.walk
    monkeypatch.setattr(explain.layers, "walk", lambda m, x, cb: (calls.append(x), original(m, x, cb))[1])
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, name="c1")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c2")(x)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    catalog = explain.layers.catalog(keras.Model(inputs, out), (33, 20, 3))
    assert [(i.name, i.shape) for i in catalog.layers] == [("c1", (16, 9, 4)), ("c2", (16, 9, 6))]
    assert len(calls) == 1 and isinstance(calls[0], keras.KerasTensor)  # nothing computed

    calls.clear()
    inputs = keras.Input((12, 12, 3))
    odd = _ShapeOnlyByRunning(name="odd")
    x = odd(keras.layers.Conv2D(5, 3, name="c1")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    odd.refuse = True
    catalog = explain.layers.catalog(model, (12, 12, 3))
    assert [(i.name, i.shape) for i in catalog.layers] == [("c1", (10, 10, 5)), ("odd", (10, 10, 5))]
    assert len(calls) == 2 and not isinstance(calls[1], keras.KerasTensor)  # it ran on a blank image


_STRIDED_POINTWISE = """
import sys
import keras, numpy as np
from explain.explainer import Explainer
from explain.plain_graph import PlainGraph, first_look
keras.utils.set_random_seed(0)
image = keras.Input((24, 24, 3))
x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="early")(image)
x = keras.layers.Conv2D(3, 1, strides=2, name="pointwise")(x)
x = keras.layers.Conv2D(3, 1, strides=2, padding="same", activation="relu", name="again")(x)
x = keras.layers.GlobalAveragePooling2D()(x)
model = keras.Model(image, keras.layers.Dense(2, activation="softmax")(x))
batch = np.random.default_rng(0).uniform(0, 1, (2, 24, 24, 3)).astype(np.float32)
explainer = Explainer(model, input_size=(24, 24))
result = explainer.explain(batch, ["early", "again"], methods=("gradcam", "layercam"), keep="early")
np.testing.assert_allclose(result.probabilities, model(batch).numpy(), rtol=1e-5, atol=1e-6)
assert np.abs(result.kept_gradients).max() > 0  # the gradient went through both strided convs
model.save(sys.argv[1])
look = first_look(PlainGraph.read(sys.argv[1]), batch[0], ["early"], keep="early")
np.testing.assert_allclose(look.kept_gradients[0], result.kept_gradients[0], rtol=1e-4, atol=1e-7)
print("explained")
"""


def test_a_strided_1x1_convolution_with_few_channels_is_explained_without_a_crash(tmp_path):
    """TensorFlow 2.21's oneDNN gradient of such a convolution corrupts the heap and aborts
    the process (README, "Known problems"); the engine's walk and the plain graph take every
    stride-th pixel first instead. Run in a process of its own, so that a regression fails
    this test rather than killing the test run."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _STRIDED_POINTWISE, str(tmp_path / "m.keras")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "explained" in done.stdout, done.stderr[-2000:]
