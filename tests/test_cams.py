"""Class activation maps on tiny hand-built models, checked against values worked out by hand."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from explain.cams import grad_cam, grad_cam_plus_plus, layer_cam, normalize
from explain.explainer import Explainer
from tests.conftest import save_and_reload

X = np.array([[1.0, -2.0], [3.0, -4.0]], dtype=np.float32)


def hand_model(tmp_path, head: str = "sigmoid") -> keras.Model:
    """x (2x2x1) -> 1x1 conv with filters [1, -1] (layer 'feat') -> mean -> dense [2, 1]."""
    inputs = keras.Input((2, 2, 1))
    feat = keras.layers.Conv2D(2, 1, use_bias=False, name="feat")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(feat)
    units = 1 if head == "sigmoid" else 3
    out = keras.layers.Dense(units, activation=head, name="head")(pooled)
    model = keras.Model(inputs, out)
    model.get_layer("feat").set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2)])
    if head == "sigmoid":
        model.get_layer("head").set_weights([np.array([[2.0], [1.0]], np.float32), np.zeros(1, np.float32)])
    else:
        kernel = np.array([[2.0, 0.0, -1.0], [1.0, 3.0, 0.0]], np.float32)
        model.get_layer("head").set_weights([kernel, np.zeros(3, np.float32)])
    return save_and_reload(model, tmp_path, head)


def test_grad_cam_by_hand_sigmoid(tmp_path):
    # logit z = 2*mean(A1) + 1*mean(A2) with A1 = x, A2 = -x, so dz/dA_k = w_k / 4:
    # Grad-CAM weights (0.5, 0.25); "dog" (+z) map = relu(0.5x - 0.25x) = relu(0.25x),
    # "cat" (-z) map = relu(-0.25x).
    explainer = Explainer(hand_model(tmp_path), ["cat", "dog"])
    batch = X[None, :, :, None]
    dog = explainer.explain(batch, ["feat"], classes=1).cam("feat")
    cat = explainer.explain(batch, ["feat"], classes=0).cam("feat")
    np.testing.assert_allclose(dog, [[0.25, 0.0], [0.75, 0.0]], atol=1e-6)
    np.testing.assert_allclose(cat, [[0.0, 0.5], [0.0, 1.0]], atol=1e-6)
    # the probability is the sigmoid of the logit z = 2*mean(x) - mean(x) = -0.5
    probs = explainer.predict(batch)
    np.testing.assert_allclose(probs[0, 1], 1 / (1 + np.exp(0.5)), rtol=1e-6)


def test_grad_cam_by_hand_softmax_explains_the_logit(tmp_path):
    # logits = [2m1 + m2, 3m2, -m1] with m1 = mean(x) = -0.5, m2 = 0.5: gradients of class 1
    # wrt A = (0, 3/4) so map = relu(0.75 * -x); class 2: (-1/4, 0) so relu(-0.25 x).
    explainer = Explainer(hand_model(tmp_path, "softmax"), ["a", "b", "c"])
    batch = X[None, :, :, None]
    result = explainer.explain(batch, ["feat"], classes=1, methods=("gradcam", "layercam"))
    np.testing.assert_allclose(result.cam("feat"), [[0.0, 1.5], [0.0, 3.0]], atol=1e-6)
    # Layer-CAM keeps only positive gradients: relu(0.75 * A2) = relu(-0.75 x), same here.
    np.testing.assert_allclose(result.cam("feat", method="layercam"), [[0.0, 1.5], [0.0, 3.0]], atol=1e-6)
    c2 = explainer.explain(batch, ["feat"], classes=2).cam("feat")
    np.testing.assert_allclose(c2, [[0.0, 0.5], [0.0, 1.0]], atol=1e-6)
    assert result.probabilities.shape == (1, 3)
    np.testing.assert_allclose(result.probabilities.sum(), 1.0, rtol=1e-6)


def test_methods_on_arrays_by_hand():
    a = np.zeros((1, 2, 2, 2), np.float32)
    a[0, :, :, 0] = [[1, 2], [3, 4]]
    a[0, :, :, 1] = [[4, 0], [0, 0]]
    g = np.zeros_like(a)
    g[0, :, :, 0] = [[1, 1], [1, 1]]
    g[0, :, :, 1] = [[-2, 2], [-2, -2]]
    # Grad-CAM: weights (1, -1): relu(A0 - A1) = [[0, 2], [3, 4]]
    np.testing.assert_allclose(grad_cam(a, g).numpy()[0], [[0, 2], [3, 4]])
    # Layer-CAM: relu(g) * A summed: A0 + (0 except [0,1]: 2*0) = [[1, 2], [3, 4]]
    np.testing.assert_allclose(layer_cam(a, g).numpy()[0], [[1, 2], [3, 4]])
    # Grad-CAM++: channel 0: g=1, sumA=10: alpha = 1 / (2 + 10) per cell, weight = 4/12 = 1/3.
    # channel 1: sumA=4, g=2 at [0,1] only positive: alpha = 4/(8 + 4*8) = 0.1, weight 0.2.
    expected = np.maximum(a[0, :, :, 0] / 3 + 0.2 * a[0, :, :, 1], 0)
    np.testing.assert_allclose(grad_cam_plus_plus(a, g).numpy()[0], expected, rtol=1e-6)


def test_normalize_flags_zero_and_non_finite_maps():
    assert normalize(np.zeros((3, 3))).status == "zero"
    assert "zero everywhere" in normalize(np.zeros((3, 3))).message
    bad = np.ones((3, 3))
    bad[1, 1] = np.nan
    assert normalize(bad).status == "not finite"
    ok = normalize(np.array([[0.0, 2.0], [1.0, 4.0]]))
    assert ok.ok and ok.values.max() == pytest.approx(1.0) and ok.values[0, 1] == pytest.approx(0.5)
