"""The randomisation tests in full, checked by hand: cascading and independent per block with
rank correlation and SSIM, the random-logit test, and SSIM itself."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from explain.explainer import Explainer
from explain.sanity import (
    cascade_groups,
    independent_randomisation,
    map_similarity,
    random_logit,
    randomisation_check,
    ssim,
)


@pytest.fixture(scope="module")
def tiny():
    from models.build import build_small_cnn
    from tests.conftest import random_photo

    keras.utils.set_random_seed(3)
    explainer = Explainer(build_small_cnn(input_size=32, width=8), ["cat", "dog"])
    return explainer, explainer.prepare([random_photo(1)])


def test_ssim_by_hand():
    rng = np.random.default_rng(0)
    a = rng.random((9, 9))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 3 * a + 1) == pytest.approx(1.0)  # both are min-max scaled first
    assert ssim(a, 1 - a) < -0.9  # the inverted map
    assert np.isnan(ssim(a[:2, :2], a[:2, :2]))  # no 3x3 window fits
    assert ssim(a[:5, :6], a[:5, :6]) == pytest.approx(1.0)  # a 5x5 window
    similar = map_similarity(a[:3, :3], a[:3, :3], size=(12, 12))
    assert similar.spearman == pytest.approx(1.0) and similar.ssim == pytest.approx(1.0)
    with pytest.raises(ValueError, match="common size"):
        map_similarity(a, a[:4, :4])


def test_cascading_randomises_from_the_top_and_keeps_the_model(tiny):
    explainer, batch = tiny
    before = [w.copy() for w in explainer.model.get_weights()]
    layer = explainer.layers.last.path
    steps = randomisation_check(explainer, batch, layer)
    groups = cascade_groups(explainer)
    assert (
        [s.randomised for s in steps] == [name for name, _ in groups] == ["head", "conv3", "conv2", "conv1"]
    )
    assert [s.layers for s in steps] == [1, 2, 3, 4]  # one weighted layer per group, cumulative
    assert all(-1 <= s.spearman <= 1 and -1 <= s.ssim <= 1 for s in steps)
    assert steps[-1].spearman < 0.9  # a fully random network gives another map
    assert all(np.array_equal(a, b) for a, b in zip(before, explainer.model.get_weights()))


def test_independent_randomisation_of_layers_above_a_gradient_free_map_changes_nothing(tiny):
    explainer, batch = tiny
    layer = explainer.layers.last.path  # conv3
    steps = independent_randomisation(explainer, batch, layer, method="eigencam")
    by_name = {s.randomised: s for s in steps}
    assert [s.layers for s in steps] == [1, 1, 1, 1]  # one block at a time
    # Eigen-CAM reads only conv3's activations: the head above it does not touch them.
    assert by_name["head"].spearman == pytest.approx(1.0) and by_name["head"].ssim == pytest.approx(1.0)
    assert by_name["conv1"].spearman < 0.99  # below it, the activations change
    # Grad-CAM depends on the head's weights through the gradient: randomising it alone changes the map.
    grad = {s.randomised: s for s in independent_randomisation(explainer, batch, layer, method="gradcam")}
    assert grad["head"].spearman < 0.99


def test_random_logit_takes_the_other_class_of_a_two_class_model(tiny):
    explainer, batch = tiny
    layer = explainer.layers.last.path
    result = random_logit(explainer, batch, layer, target=0)
    assert (result.target, result.other) == (0, 1)
    # A sigmoid model explains class 0 through -logit: the two Grad-CAMs weight the channels
    # with opposite signs, so after the ReLU they cannot both be positive in the same cell.
    assert not np.any((result.cam > 0) & (result.other_cam > 0))
    predicted = random_logit(explainer, batch, layer)
    assert (
        predicted.target == int(explainer.predict(batch).argmax()) and predicted.other == 1 - predicted.target
    )
