"""Every method of explain.methods on tiny models, checked against values worked out by hand
or with NumPy, and against tf-keras-vis where it implements the same method."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from explain import attributions
from explain.ablation_cam import ablation_cam
from explain.cams import CAM_FUNCTIONS, eigen_cam, grad_cam, hires_cam, layer_cams, xgrad_cam
from explain.explainer import Explainer
from explain.methods import KINDS, METHODS, ONE_PASS, PIXEL, SLOW_CAM, labels, method_map, names
from explain.score_cam import channel_masks, score_cam
from tests.conftest import save_and_reload
from tests.test_cams import X, hand_model


# -- the registry ---------------------------------------------------------------------------
def test_registry_kinds_and_one_pass_functions():
    assert set(names()) == set(METHODS) and sum(len(names(k)) for k in KINDS) == len(METHODS)
    assert set(names(ONE_PASS)) == set(CAM_FUNCTIONS)  # every one-pass CAM runs in the pass
    assert {"scorecam", "ablationcam"} <= set(names(SLOW_CAM))
    assert {"saliency", "smoothgrad", "ig", "guided-gradcam"} <= set(names(PIXEL))
    assert labels(ONE_PASS)["hirescam"] == "HiResCAM"
    with pytest.raises(ValueError):
        names("fast")


# -- one-pass CAMs on arrays ----------------------------------------------------------------
def arrays() -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((1, 2, 2, 2), np.float32)
    a[0, :, :, 0] = [[1, 2], [3, 4]]
    a[0, :, :, 1] = [[4, 1], [0, 0]]
    g = np.zeros_like(a)
    g[0, :, :, 0] = 1.0
    g[0, :, :, 1] = [[-2, 2], [-2, -2]]
    return a, g


def test_hires_xgrad_and_grad_cam_by_hand():
    a, g = arrays()
    # Grad-CAM: weights (mean g) = (1, -1): relu(A0 - A1) = relu([[-3, 1], [3, 4]])
    np.testing.assert_allclose(grad_cam(a, g).numpy()[0], [[0, 1], [3, 4]])
    # HiResCAM: relu(sum_k g*A) = relu(A0 + [[-8, 2], [0, 0]]) = relu([[-7, 4], [3, 4]])
    np.testing.assert_allclose(hires_cam(a, g).numpy()[0], [[0, 4], [3, 4]])
    # XGrad-CAM: w0 = sum(g0 A0)/sum(A0) = 1, w1 = (-8 + 2)/5 = -1.2: relu(A0 - 1.2 A1)
    np.testing.assert_allclose(xgrad_cam(a, g).numpy()[0], [[0, 0.8], [3, 4]], rtol=1e-6)
    # a channel whose activations sum to 0 gets weight 0 (no division by zero)
    z = a.copy()
    z[0, :, :, 1] = [[1, -1], [0, 0]]
    np.testing.assert_allclose(xgrad_cam(z, g).numpy()[0], a[0, :, :, 0])


def test_eigen_cam_by_hand_rank_one():
    # A[i, j, k] = m[i, j] * u[k]: the first principal component is u / |u|, so the map is
    # relu((m - mean m) * |u|) = relu([[-1.5, -0.5], [0.5, 1.5]] * 5)
    m = np.array([[1, 2], [3, 4]], np.float32)
    u = np.array([3, 4], np.float32)
    a = (m[:, :, None] * u)[None]
    np.testing.assert_allclose(eigen_cam(a, None).numpy()[0], [[0, 0], [2.5, 7.5]], rtol=1e-5)
    # the sign follows the activations' sum, whatever the sign of u's entries
    np.testing.assert_allclose(eigen_cam(-a, None).numpy()[0], [[7.5, 2.5], [0, 0]], rtol=1e-5)


def numpy_eigen_cam(a: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's get_2d_projection (centred SVD), with the sign fixed as ours."""
    h, w, c = a.shape
    x = a.reshape(-1, c) - a.reshape(-1, c).mean(axis=0)
    projection = x @ np.linalg.svd(x, full_matrices=False)[2][0]
    if projection @ x.sum(axis=1) < 0:
        projection = -projection
    return np.maximum(projection, 0).reshape(h, w)


@pytest.mark.parametrize("shape", [(5, 6, 8), (2, 3, 16)])  # more positions than channels, and fewer
def test_eigen_cam_matches_an_svd(shape):
    rng = np.random.default_rng(0)
    h, w, c = shape
    # activations with a dominant spatial pattern plus noise, two images
    pattern = rng.normal(size=(2, h, w, 1))
    a = (pattern * rng.normal(size=(2, 1, 1, c)) + 0.1 * rng.normal(size=(2, h, w, c))).astype(np.float32)
    ours = eigen_cam(a, None).numpy()
    for i in range(2):
        np.testing.assert_allclose(ours[i], numpy_eigen_cam(a[i]), rtol=1e-4, atol=1e-5)


def test_eigen_cam_of_a_wide_layer_with_a_small_gap_matches_an_svd():
    # 24 x 24 positions x 96 channels: past the exact route's size, so the block Krylov route.
    # Second singular value 0.97 of the first, as at ResNet-50's conv3 blocks, where 32 steps
    # of power iteration were off by more than the whole peak.
    rng = np.random.default_rng(1)
    h, w, c = 24, 24, 96
    u, _ = np.linalg.qr(rng.normal(size=(h * w, c)))
    v, _ = np.linalg.qr(rng.normal(size=(c, c)))
    spectrum = np.concatenate([[10.0, 9.7, 9.0], 8.0 * 0.9 ** np.arange(c - 3)])
    x = (u * spectrum) @ v.T + rng.uniform(0, 3, size=c)  # plus column means, which are removed
    a = x.reshape(1, h, w, c).astype(np.float32)
    expected = numpy_eigen_cam(a[0])
    ours = eigen_cam(a, None).numpy()[0]
    assert np.abs(ours - expected).max() <= 5e-3 * expected.max()


def test_eigen_cam_beside_the_gradient_cams_is_the_same_map():
    # With the gradient CAMs, Eigen-CAM's first Krylov block comes out of their matrix product
    # and the column means from their activation sums; alone it makes both itself. Both must be
    # the SVD's map, for each of two images (past the exact route: 12 x 12 positions, 80 channels).
    rng = np.random.default_rng(2)
    h, w, c = 12, 12, 80
    pattern = rng.normal(size=(2, h, w, 1))
    a = pattern * rng.normal(size=(2, 1, 1, c)) + 0.3 * rng.normal(size=(2, h, w, c)) + 2.0
    a = a.astype(np.float32)
    g = rng.normal(size=a.shape).astype(np.float32)
    alone = eigen_cam(a, None).numpy()
    shared = layer_cams(a, g, names(ONE_PASS))
    np.testing.assert_allclose(shared["eigencam"].numpy(), alone, rtol=1e-4, atol=1e-4 * alone.max())
    np.testing.assert_allclose(shared["gradcam"].numpy(), grad_cam(a, g).numpy(), rtol=1e-5, atol=1e-6)
    for i in range(2):
        expected = numpy_eigen_cam(a[i])
        assert np.abs(alone[i] - expected).max() <= 1e-3 * expected.max()


def small_conv_model(tmp_path, units: int = 3) -> keras.Model:
    """8x8x3 -> conv relu -> conv relu 'feat' (6 channels) -> mean -> dense softmax/sigmoid."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="feat")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(units, activation="softmax" if units > 1 else "sigmoid", name="head")(x)
    return save_and_reload(keras.Model(inputs, out), tmp_path, f"conv{units}")


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)


def test_one_pass_gives_every_cam_of_the_recorded_activations_and_gradients(tmp_path):
    explainer = Explainer(small_conv_model(tmp_path), ["a", "b", "c"])
    x = np.concatenate([image(0), image(1)])
    result = explainer.explain(x, ["c1", "feat"], [1, 2], tuple(CAM_FUNCTIONS), keep="feat")
    for name, fn in CAM_FUNCTIONS.items():
        expected = fn(result.kept_activations, result.kept_gradients).numpy()
        np.testing.assert_allclose(result.cams[name]["feat"], expected, rtol=1e-5, atol=1e-6)
        assert result.cams[name]["c1"].shape == (2, 8, 8)
    assert explainer.traces == 1  # every method and layer in the one compiled pass


def test_new_cams_in_the_pass_by_hand(tmp_path):
    # Softmax hand model, class 1: gradients at 'feat' are (0, 3/4) everywhere, A2 = -x, so
    # HiResCAM = XGrad-CAM = Grad-CAM = relu(-0.75 x) (constant gradients); Eigen-CAM: A = (x, -x)
    # is rank one with u = (1, -1) whose channel sum is 0, so the sign comes from the start.
    explainer = Explainer(hand_model(tmp_path, "softmax"), ["a", "b", "c"])
    result = explainer.explain(X[None, :, :, None], ["feat"], 1, ("hirescam", "xgradcam", "eigencam"))
    for name in ("hirescam", "xgradcam"):
        np.testing.assert_allclose(result.cam("feat", method=name), [[0, 1.5], [0, 3.0]], atol=1e-6)
    eigen = result.cam("feat", method="eigencam")
    # |u| = sqrt 2, x - mean x = [[1.5, -1.5], [3.5, -3.5]]: one sign of it, times sqrt 2
    centred = (X - X.mean()) * np.sqrt(2)
    assert np.allclose(eigen, np.maximum(centred, 0), atol=1e-5) or np.allclose(
        eigen, np.maximum(-centred, 0), atol=1e-5
    )


# -- slow CAMs -------------------------------------------------------------------------------
def test_ablation_cam_by_hand(tmp_path):
    # Sigmoid hand model, "dog" (+logit): z = 2 m1 + m2, A1 = x, A2 = -x, mean x = -0.5:
    # z = -0.5; zeroing A1 gives 0.5, zeroing A2 gives -1. Weights (z - z_k) / |z| = (-2, 1),
    # map relu(-2x - x) = relu(-3x). (The paper's / z would flip both signs for this negative z.)
    explainer = Explainer(hand_model(tmp_path), ["cat", "dog"])
    batch = X[None, :, :, None]
    acts = explainer.explain(batch, ["feat"], 1, keep="feat").kept_activations[0]
    cam = ablation_cam(explainer, batch[0], "feat", acts, target=1)
    np.testing.assert_allclose(cam, [[0, 6], [0, 12]], atol=1e-5)
    # only the strongest channel (A2 = -x has the larger mean) ablated: weight 1 for it alone
    one = ablation_cam(explainer, batch[0], "feat", acts, target=1, max_channels=1)
    np.testing.assert_allclose(one, np.maximum(-X, 0), atol=1e-5)
    np.testing.assert_allclose(method_map(explainer, "ablationcam", batch, "feat", 1)[0], cam, atol=1e-5)


def test_every_method_runs_through_method_map(tmp_path):
    explainer = Explainer(small_conv_model(tmp_path), ["a", "b", "c"])
    x = np.concatenate([image(0), image(1)])
    for name in METHODS:
        maps = method_map(explainer, name, x, "feat")
        assert maps.shape == (2, 8, 8), name
        assert np.all(np.isfinite(maps)) and np.all(maps >= 0), name


# -- pixel attributions ------------------------------------------------------------------------
def relu_model(tmp_path) -> keras.Model:
    """z = 4 mean(relu(x - 0.5)) - mean(relu(x)) on a 2x2x1 input (logit of a sigmoid)."""
    inputs = keras.Input((2, 2, 1))
    r = keras.layers.Conv2D(2, 1, activation="relu", name="r")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(r)
    out = keras.layers.Dense(1, activation="sigmoid", name="head")(pooled)
    model = keras.Model(inputs, out)
    model.get_layer("r").set_weights([np.ones((1, 1, 1, 2), np.float32), np.array([-0.5, 0.0], np.float32)])
    model.get_layer("head").set_weights([np.array([[4.0], [-1.0]], np.float32), np.zeros(1, np.float32)])
    return save_and_reload(model, tmp_path, "relu")


R = np.array([[1.0, 0.2], [2.0, 0.1]], np.float32)


def test_saliency_by_hand(tmp_path):
    # softmax hand model, class 1: logit 3 mean(-x), so d/dx = -3/4 everywhere; |.| = 0.75
    explainer = Explainer(hand_model(tmp_path, "softmax"), ["a", "b", "c"])
    np.testing.assert_allclose(
        attributions.saliency(explainer, X[None, :, :, None], 1)[0], np.full((2, 2), 0.75)
    )
    # relu model: dz/dx = [x > 0.5] - 0.25 [x > 0]
    relu = Explainer(relu_model(tmp_path), ["cat", "dog"])
    scores, grads = attributions.input_gradients(relu, R[None, :, :, None], 1)
    np.testing.assert_allclose(grads[0, :, :, 0], [[0.75, -0.25], [0.75, -0.25]], atol=1e-6)
    np.testing.assert_allclose(scores, [4 * (0.5 + 1.5) / 4 - (1 + 0.2 + 2 + 0.1) / 4], rtol=1e-6)


def test_integrated_gradients_by_hand_and_complete(tmp_path):
    # From the black baseline (0): along a x, pixel i's gradient is [a x_i > 0.5] - 0.25 [a x_i > 0],
    # whose integral over a in (0, 1) is (1 - 0.5 / x_i)^+ - 0.25: attributions x_i * that,
    # = (x_i - 0.5)^+ - x_i / 4. The midpoint rule with 32 steps is exact for these x.
    explainer = Explainer(relu_model(tmp_path), ["cat", "dog"])
    result = attributions.integrated_gradients(explainer, R[None, :, :, None], 1, steps=32)
    expected = np.maximum(R - 0.5, 0) - R / 4
    np.testing.assert_allclose(result.attributions[0, :, :, 0], expected, atol=1e-6)
    np.testing.assert_allclose(result.map[0], np.maximum(expected, 0), atol=1e-6)
    np.testing.assert_allclose(result.score_difference, [expected.sum()], rtol=1e-5)
    assert result.completeness_error[0] < 1e-5 and result.relative_error[0] < 1e-5
    # a smooth model, few steps: the error is reported, and shrinks with more steps
    model = Explainer(small_conv_model(tmp_path), ["a", "b", "c"])
    coarse = attributions.integrated_gradients(model, image(), 1, steps=2, batch_size=1)
    fine = attributions.integrated_gradients(model, image(), 1, steps=64)
    assert fine.relative_error[0] < 0.05
    assert fine.completeness_error[0] <= coarse.completeness_error[0]


def test_smoothgrad_is_the_mean_gradient_over_noisy_copies(tmp_path):
    explainer = Explainer(relu_model(tmp_path), ["cat", "dog"])
    x = R[None, :, :, None]
    ours = attributions.smoothgrad(explainer, x, 1, samples=16, noise=0.15, seed=7)
    rng = np.random.default_rng(7)  # the same draws, worked out with NumPy
    noisy = x + rng.normal(0, 0.15 * (2.0 - 0.1), (16, 2, 2, 1))
    grads = (noisy > 0.5) - 0.25 * (noisy > 0)
    np.testing.assert_allclose(ours[0], np.abs(grads.mean(axis=0))[:, :, 0], atol=1e-6)
    # the linear hand model: the gradient is the same everywhere, so SmoothGrad = saliency
    hand = Explainer(hand_model(tmp_path), ["cat", "dog"])
    np.testing.assert_allclose(
        attributions.smoothgrad(hand, X[None, :, :, None], 0)[0], np.full((2, 2), 0.25)
    )


def test_guided_backprop_and_guided_grad_cam_by_hand_model_unchanged(tmp_path):
    model = relu_model(tmp_path)
    explainer = Explainer(model, ["cat", "dog"])
    x = R[None, :, :, None]
    # guided: the negative gradient (-1/4) into the second ReLU does not pass: [x > 0.5]
    guided = attributions.guided_backprop(explainer, x, 1)
    np.testing.assert_allclose(guided[0, :, :, 0], [[1, 0], [1, 0]], atol=1e-6)
    # Grad-CAM at 'r': weights (1, -1/4): relu(relu(x - .5) - x / 4) = [[.25, 0], [1, 0]], peak 1
    np.testing.assert_allclose(
        attributions.guided_grad_cam(explainer, x, "r", 1)[0], [[0.25, 0], [1, 0]], atol=1e-6
    )
    # the user's model is untouched: its activation is still ReLU and plain gradients are as before
    assert model.get_layer("r").activation.__name__ == "relu"
    plain = attributions.input_gradients(explainer, x, 1)[1]
    np.testing.assert_allclose(plain[0, :, :, 0], [[0.75, -0.25], [0.75, -0.25]], atol=1e-6)


def test_is_relu_finds_relu_layers():
    assert attributions.is_relu(keras.layers.ReLU())
    assert attributions.is_relu(keras.layers.Activation("relu"))
    assert attributions.is_relu(keras.layers.Conv2D(1, 1, activation="relu"))
    assert not attributions.is_relu(keras.layers.LeakyReLU())
    assert not attributions.is_relu(keras.layers.Conv2D(1, 1))


# -- against tf-keras-vis (test-only dependency) ---------------------------------------------
tkv = pytest.importorskip(
    "tf_keras_vis", reason="tf-keras-vis is a test-only dependency (requirements-dev.txt)"
)


def reference(cls_name: str, model: keras.Model):
    import importlib

    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    module, name = cls_name.split(":")
    cls = getattr(importlib.import_module(f"tf_keras_vis.{module}"), name)
    # ReplaceToLinear on a clone: the score is the class logit, as ours (the model is not changed)
    return cls(model, model_modifier=ReplaceToLinear(), clone=True)


AT_FEAT = {"penultimate_layer": "feat", "seek_penultimate_conv_layer": False, "expand_cam": False}


def test_grad_cam_and_layer_cam_equal_tf_keras_vis(tmp_path):
    model = small_conv_model(tmp_path)
    explainer = Explainer(model, ["a", "b", "c"])
    x = image(4)
    ours = explainer.explain(x, ["feat"], 1, ("gradcam", "layercam")).cams
    for method, ref in (("gradcam", "gradcam:Gradcam"), ("layercam", "layercam:Layercam")):
        theirs = np.asarray(reference(ref, model)(lambda out: out[:, 1], x, normalize_cam=False, **AT_FEAT))
        np.testing.assert_allclose(ours[method]["feat"], theirs, rtol=1e-4, atol=1e-6)


def test_grad_cam_plus_plus_differs_from_tf_keras_vis_as_documented(tmp_path):
    # Same activations and gradients; tf-keras-vis weights each position's alpha by exp(score)
    # and divides the alphas by their sum over positions. Ours (and pytorch-grad-cam) is the
    # paper's closed form: alpha = g^2 / (2 g^2 + sum(A) g^3), weight = sum(alpha relu(g)).
    model = small_conv_model(tmp_path)
    explainer = Explainer(model, ["a", "b", "c"])
    x = image(5)
    result = explainer.explain(x, ["feat"], 1, ("gradcam++",), keep="feat")
    a, g = result.kept_activations.astype(np.float64), result.kept_gradients.astype(np.float64)
    score = float(explainer.class_scores(x, 1)[0])
    e = np.exp(score)
    sum_a = a.sum(axis=(1, 2), keepdims=True)
    first, second, third = e * g, e * g**2, e * g**3
    alpha = second / (2 * second + third * sum_a + (second == 0))
    norm = alpha.sum(axis=(1, 2), keepdims=True)
    alpha = alpha / (norm + (norm == 0))
    their_formula = np.maximum(
        ((np.maximum(first, 0) * alpha).sum(axis=(1, 2), keepdims=True) * a).sum(-1), 0
    )
    theirs = np.asarray(
        reference("gradcam_plus_plus:GradcamPlusPlus", model)(
            lambda o: o[:, 1], x, normalize_cam=False, **AT_FEAT
        )
    )
    np.testing.assert_allclose(theirs, their_formula, rtol=1e-3, atol=1e-6)
    alpha_paper = np.divide(g**2, 2 * g**2 + sum_a * g**3, out=np.zeros_like(g), where=g != 0)
    ours_formula = np.maximum(
        ((alpha_paper * np.maximum(g, 0)).sum(axis=(1, 2), keepdims=True) * a).sum(-1), 0
    )
    np.testing.assert_allclose(result.cams["gradcam++"]["feat"], ours_formula, rtol=1e-4, atol=1e-7)


def test_score_cam_differs_from_tf_keras_vis_as_documented(tmp_path):
    # Same channel masks (min-max scaled activations; 'feat' has the input's size, so no
    # resampling). tf-keras-vis weights channel k by the softmax over classes of the masked
    # photo's logits, p_k(class); ours (the paper's) by the softmax over channels of the class
    # logits, which cannot vanish when a sigmoid saturates and sums to 1 over channels.
    model = small_conv_model(tmp_path)
    explainer = Explainer(model, ["a", "b", "c"])
    x = image(6)
    acts = explainer.explain(x, ["feat"], 1, keep="feat").kept_activations[0]
    masks = channel_masks(acts, (8, 8))
    logits = np.stack([explainer.predict(x * m[None, :, :, None]) for m in masks])[:, 0]  # probabilities
    theirs = np.asarray(
        reference("scorecam:Scorecam", model)(lambda o: o[:, 1], x, normalize_cam=False, **AT_FEAT)
    )
    their_formula = np.maximum((acts * logits[:, 1]).sum(-1), 0)
    np.testing.assert_allclose(theirs[0], their_formula, rtol=1e-3, atol=1e-6)
    class_logits = explainer.class_scores(x * masks[..., None], 1)
    weights = np.exp(class_logits - class_logits.max())
    ours_formula = np.maximum((acts * weights / weights.sum()).sum(-1), 0)
    np.testing.assert_allclose(score_cam(explainer, x[0], acts, 1), ours_formula, rtol=1e-4, atol=1e-7)


def test_saliency_equals_and_smoothgrad_differs_from_tf_keras_vis(tmp_path):
    model = small_conv_model(tmp_path)
    explainer = Explainer(model, ["a", "b", "c"])
    x = image(7)
    vis = reference("saliency:Saliency", model)
    theirs = np.asarray(vis(lambda o: o[:, 1], x, normalize_map=False))
    np.testing.assert_allclose(attributions.saliency(explainer, x, 1), theirs, rtol=1e-4, atol=1e-7)
    # SmoothGrad: tf-keras-vis averages |gradient| over the noisy copies; we average the signed
    # gradients (the paper, Captum), then take |.|. With its own noise, its map is the mean of
    # |g| and ours the |mean g|, never larger, smaller where the sign flips between copies.
    samples, noise = 8, 0.2
    np.random.seed(11)
    theirs = np.asarray(
        vis(lambda o: o[:, 1], x, smooth_samples=samples, smooth_noise=noise, normalize_map=False)
    )
    np.random.seed(11)
    sigma = noise * (x.max() - x.min())
    noisy = (x[None] + np.random.normal(0.0, sigma, (samples, *x.shape))).reshape(samples, *x.shape[1:])
    grads = attributions.input_gradients(explainer, noisy.astype(np.float32), 1)[1]
    np.testing.assert_allclose(theirs[0], np.abs(grads).mean(axis=0).max(axis=-1), rtol=1e-4, atol=1e-7)
    ours = np.abs(grads.mean(axis=0)).max(axis=-1)
    assert np.all(ours <= theirs[0] + 1e-6) and np.any(ours < theirs[0] - 1e-4)
