"""ROAD, Average Drop / Increase in Confidence and the batched scoring of maps, checked by hand
on tiny images and a stand-in model whose probability is a known function of the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from explain.confidence import confidence_change, seen_through, unit_map
from explain.faithfulness import faithfulness
from explain.map_scores import score_maps
from explain.road import noisy_linear_imputation, road, road_images


class MeanModel:
    """A 'model' whose class-1 probability is the mean pixel value inside ``window`` (class 0:
    one minus it): what it uses is known exactly."""

    offset = 0.0

    def __init__(self, window=(slice(None), slice(None))):
        self.window = window
        self.sizes: list[int] = []  # images per predict call

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        p = np.clip(batch[:, self.window[0], self.window[1], :].mean(axis=(1, 2, 3)), 0.0, 1.0)
        return np.stack([1.0 - p, p], axis=1)


def test_imputation_of_one_pixel_is_the_weighted_mean_of_its_neighbours():
    image = np.zeros((3, 3, 1), np.float32)
    image[0, 1] = image[1, 0] = image[1, 2] = image[2, 1] = 1.0  # the 4 direct neighbours
    image[0, 0] = 0.5  # one diagonal
    removed = np.zeros((3, 3), bool)
    removed[1, 1] = True
    out = noisy_linear_imputation(image, removed, noise=0.0)
    # Weights 1/6 (direct) and 1/12 (diagonal) sum to 1: 4 * 1/6 + 0.5 / 12.
    assert out[1, 1, 0] == pytest.approx(4 / 6 + 0.5 / 12, abs=1e-5)
    assert np.array_equal(out[~removed], image[~removed])  # known pixels untouched


def test_imputation_reproduces_a_linear_ramp_and_a_constant():
    ys, xs = np.mgrid[0:12, 0:16].astype(np.float32)
    ramp = np.stack([0.1 * xs + 0.05 * ys, np.full_like(xs, 0.3)], axis=-1)
    removed = np.zeros((12, 16), bool)
    removed[3:9, 4:13] = True  # a hole with known pixels all around
    out = noisy_linear_imputation(ramp, removed, noise=0.0)
    assert np.abs(out - ramp).max() < 1e-4  # symmetric weights: linear functions are kept


def test_imputation_noise_and_a_fully_removed_photo():
    rng = np.random.default_rng(0)
    image = rng.random((20, 20, 3)).astype(np.float32)
    removed = np.ones((20, 20), bool)
    out = noisy_linear_imputation(image, removed, noise=0.0)
    assert np.allclose(out, image.reshape(-1, 3).mean(axis=0), atol=1e-4)  # nothing known: the mean
    noisy = noisy_linear_imputation(image, removed, noise=0.5, rng=np.random.default_rng(1))
    assert np.std(noisy - out) == pytest.approx(0.5 * image.std(), rel=0.1)


def test_road_removes_the_most_relevant_pixels_first():
    image = np.zeros((10, 10, 1), np.float32)
    image[:, :5] = 1.0
    saliency = np.zeros((10, 10))
    saliency[:, :5] = np.arange(50).reshape(10, 5) + 1.0  # the left half, graded
    images = road_images(image, saliency, (0.3, 0.5), most_relevant_first=True, noise=0.0)
    assert images.shape == (2, 10, 10, 1)
    changed = np.abs(images[1] - image)[..., 0] > 1e-6
    assert changed[:, 5:].sum() == 0 and changed[:, :5].sum() >= 45  # only the left half moved
    least = road_images(image, saliency, (0.3,), most_relevant_first=False, noise=0.0)[0]
    assert np.array_equal(least[:, :5], image[:, :5])  # the right half goes first


def test_road_scores_a_map_of_what_the_model_uses_above_its_reverse():
    image = np.zeros((16, 16, 1), np.float32)
    image[4:12, 4:12] = 1.0
    model = MeanModel((slice(4, 12), slice(4, 12)))
    good = image[..., 0] + 0.01 * np.random.default_rng(0).random((16, 16))
    result = road(
        model, np.stack([image, image]), [1, 1], [good, 1.0 - good], fractions=(0.25, 0.5), noise=0.0
    )
    assert result.morf.shape == (2, 2) and result.original.tolist() == [1.0, 1.0]
    # Removing the square (most relevant for the good map) fills it from the dark border.
    assert result.morf[0, 1] < 0.5 and result.lerf[0, 1] == pytest.approx(1.0, abs=1e-3)
    assert result.combined[0] > 0.4 > -0.4 > result.combined[1]


def test_average_drop_and_increase_by_hand():
    image = np.full((4, 4, 3), 0.8, np.float32)
    half = np.zeros((2, 2))
    half[:, 0] = 1.0  # left half kept, right half black
    model = MeanModel()
    result = confidence_change(model, np.stack([image, image]), [1, 1], [half, np.ones((4, 4))])
    assert result.original == pytest.approx([0.8, 0.8])
    assert result.masked == pytest.approx([0.4, 0.8], abs=1e-6)  # bilinear 2->4 keeps the halves' mean
    assert result.drop == pytest.approx([0.5, 0.0], abs=1e-6)
    assert result.average_drop == pytest.approx(25.0, abs=1e-4)
    assert result.increase_in_confidence == 0.0  # equal is not an increase
    brighter = MeanModel((slice(0, 2), slice(None)))
    image2 = image.copy()
    image2[2:] = 0.0
    up = confidence_change(brighter, image2[None], [0], [np.r_[np.zeros((2, 4)), np.ones((2, 4))]])
    assert up.increase.tolist() == [True]  # class 0 = 1 - brightness of the top: hiding it helps


def test_seen_through_keeps_the_offset_for_shifted_inputs():
    image = np.full((2, 2, 1), 3.0, np.float32)
    out = seen_through(image, np.array([[1.0, 0.0], [0.5, 0.0]]), offset=-1.0)
    assert out[..., 0].tolist() == [[3.0, -1.0], [1.0, -1.0]]  # 0 on the map: the black photo (-1)
    assert unit_map(np.full((3, 3), np.nan), (3, 3)).max() == 0.0


def test_score_maps_agrees_with_each_metric_run_alone():
    rng = np.random.default_rng(3)
    image = rng.random((12, 12, 3)).astype(np.float32)
    model = MeanModel((slice(2, 8), slice(3, 9)))
    maps = {"a": rng.random((3, 3)), "b": rng.random((12, 12))}
    scores = score_maps(model, image, 1, maps, steps=4, road_fractions=(0.25, 0.75))
    for key, saliency in maps.items():
        alone = faithfulness(model, image, unit_map(saliency, (12, 12)), 1, steps=4)
        assert scores[key]["deletion"] == pytest.approx(alone.deletion_auc, abs=1e-6)
        assert scores[key]["insertion"] == pytest.approx(alone.insertion_auc, abs=1e-6)
        r = road(model, image[None], [1], [saliency], fractions=(0.25, 0.75))
        assert scores[key]["road"] == pytest.approx(float(r.combined[0]), abs=1e-6)
        c = confidence_change(model, image[None], [1], [saliency])
        assert scores[key]["drop"] == pytest.approx(float(c.drop[0]), abs=1e-6)
    # 3 shared end points + per map 3 + 3 curve points, 2 + 2 ROAD images and 1 masked photo.
    assert model.sizes[0] == 3 + 2 * (3 + 3 + 2 + 2 + 1)  # one batch for both maps


def test_score_maps_on_a_real_model(tiny_explainer):
    explainer, batch = tiny_explainer
    result = explainer.explain(batch[:1], "last", None, ("gradcam",))
    layer = explainer.layers.last.path
    scores = score_maps(explainer, batch[0], int(result.targets[0]), {"g": result.cam(layer)})
    assert set(scores["g"]) == {"deletion", "insertion", "road_morf", "road_lerf", "road", "drop", "increase"}
    assert all(np.isfinite(v) for v in scores["g"].values())


@pytest.fixture(scope="module")
def tiny_explainer():
    import keras

    from explain.explainer import Explainer
    from models.build import build_small_cnn
    from tests.conftest import random_photo

    keras.utils.set_random_seed(2)
    explainer = Explainer(build_small_cnn(input_size=32), ["cat", "dog"])
    return explainer, explainer.prepare([random_photo(1), random_photo(2)])
