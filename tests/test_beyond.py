"""Score-CAM, faithfulness curves and the randomisation check, on models whose answers are known."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from explain.explainer import Explainer
from explain.faithfulness import faithfulness
from explain.sanity import randomisation_check, rankdata, spearman
from explain.score_cam import score_cam
from tests.conftest import save_and_reload


def test_score_cam_by_hand(tmp_path):
    # feat = (x, -x) with x = [[1, 0], [0, 0]]; masks: (x, 1 - x); logit z = 2 m1 + m2 = mean(x)
    # masked inputs give z = 0.25 and 0, so weights softmax(0.25, 0) = (0.5622, 0.4378) and the
    # map relu(0.5622 x - 0.4378 x) = tanh(0.125) x.
    from tests.test_cams import hand_model

    explainer = Explainer(hand_model(tmp_path), ["cat", "dog"])
    x = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)[:, :, None]
    acts = explainer.explain(x[None], ["feat"], 1, keep="feat").kept_activations[0]
    cam = score_cam(explainer, x, acts, target=1)
    np.testing.assert_allclose(cam, [[np.tanh(0.125), 0], [0, 0]], atol=1e-6)


def left_half_model(tmp_path) -> keras.Model:
    """p(dog) = sigmoid(mean of the left half of the image): the right half does not matter."""
    inputs = keras.Input((8, 8, 1))
    left = keras.layers.Cropping2D(((0, 0), (0, 4)))(inputs)
    conv = keras.layers.Conv2D(1, 1, use_bias=False, name="conv")(left)
    pooled = keras.layers.GlobalAveragePooling2D()(conv)
    out = keras.layers.Dense(1, activation="sigmoid", name="head")(pooled)
    model = keras.Model(inputs, out)
    model.get_layer("conv").set_weights([np.ones((1, 1, 1, 1), np.float32)])
    model.get_layer("head").set_weights([np.ones((1, 1), np.float32), np.zeros(1, np.float32)])
    return save_and_reload(model, tmp_path, "left")


def test_deletion_and_insertion_by_hand(tmp_path):
    explainer = Explainer(left_half_model(tmp_path), ["cat", "dog"])
    image = np.ones((8, 8, 1), np.float32)
    left = np.zeros((8, 8), np.float32)
    left[:, :4] = 1.0
    right = 1.0 - left
    s = 1 / (1 + np.exp(-1.0))  # sigmoid(1), the untouched image
    good = faithfulness(explainer, image, left, 1, steps=2, insertion_baseline="black")
    bad = faithfulness(explainer, image, right, 1, steps=2, insertion_baseline="black")
    np.testing.assert_allclose(good.deletion, [s, 0.5, 0.5], rtol=1e-5)
    np.testing.assert_allclose(bad.deletion, [s, s, 0.5], rtol=1e-5)
    np.testing.assert_allclose(good.insertion, [0.5, s, s], rtol=1e-5)
    np.testing.assert_allclose(bad.insertion, [0.5, 0.5, s], rtol=1e-5)
    assert good.deletion_auc == pytest.approx(0.25 * (s + 0.5) + 0.25)
    assert good.deletion_auc < bad.deletion_auc and good.insertion_auc > bad.insertion_auc
    # Keeping the top 20% of the left map keeps 13 left-half pixels of 32: mean 13/32.
    assert good.top20_kept == pytest.approx(1 / (1 + np.exp(-13 / 32)), rel=1e-5)
    assert bad.top20_drop == pytest.approx(s - 0.5, rel=1e-5)


def test_rank_correlation():
    np.testing.assert_allclose(rankdata([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
    a = np.arange(16.0).reshape(4, 4)
    assert spearman(a, a * 3 + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_randomisation_check_destroys_a_trained_looking_map(tmp_path):
    from models.build import build_small_cnn

    keras.utils.set_random_seed(4)
    model = build_small_cnn(input_size=32)
    explainer = Explainer(model, ["cat", "dog"])
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]
    steps = randomisation_check(explainer, batch, "conv3", target=1)
    assert [s.randomised for s in steps] == ["head", "conv3", "conv2", "conv1"]
    assert [s.layers for s in steps] == [1, 2, 3, 4]
    assert all(-1 <= s.spearman <= 1 or np.isnan(s.spearman) for s in steps)
    assert steps[-1].spearman < 0.9
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)  # the original model is untouched


def test_degenerate_models_are_named(tmp_path):
    from explain.metrics import degenerate_warning
    from models.build import build_small_cnn
    from tests.conftest import random_photo

    model = build_small_cnn(input_size=32, final="log_softmax")
    kernel, _ = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([kernel * 0, np.array([5.0, -5.0], np.float32)])  # says "cat"
    explainer = Explainer(save_and_reload(model, tmp_path, "always_cat"), ["cat", "dog"])
    probs = explainer.predict(explainer.prepare([random_photo(i, (32, 32)) for i in range(20)]))
    warning = degenerate_warning(probs, ["cat", "dog"])
    assert "answers “cat” for 100% of the 20 photos" in warning
    assert "narrow band" in warning and "log-softmax" in warning
    rng = np.random.default_rng(0)
    healthy = rng.dirichlet([1, 1], size=50)
    assert degenerate_warning(healthy, ["cat", "dog"]) is None


def test_exports_are_self_contained(tmp_path):
    import io
    import zipfile

    from explain.report import Section, html_report, zip_of_pngs

    picture = np.zeros((4, 6, 3), np.uint8)
    archive = zipfile.ZipFile(io.BytesIO(zip_of_pngs({"a/b": picture, "a b": picture, "../x": picture})))
    names = archive.namelist()
    assert len(names) == 3 and all("/" not in n and not n.startswith(".") for n in names)
    page = html_report("T <1>", [Section("S", "text", {"accuracy": 0.9}, [("cap", picture)])], {"name": "m"})
    assert "data:image/png;base64," in page and "T &lt;1&gt;" in page and "http" not in page


def test_zip_upload_never_writes_outside(tmp_path):
    import io
    import zipfile

    from PIL import Image

    from models.data import extract_labelled_zip, list_labelled

    buf = io.BytesIO()
    jpg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpg, "JPEG")
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("set/cats/a.jpg", jpg.getvalue())
        archive.writestr("set/dogs/b.jpg", jpg.getvalue())
        archive.writestr("../../evil/dogs/c.jpg", jpg.getvalue())
        archive.writestr("/abs/cats/d.jpg", jpg.getvalue())
        archive.writestr("set/cats/readme.txt", b"hi")
    dest = tmp_path / "dest"
    extract_labelled_zip(buf.getvalue(), dest)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(dest in p.parents for p in written) and len(written) == 4
    files = list_labelled(dest)
    assert files.class_names == ("cat", "dog") and len(files) == 4
    with pytest.raises(ValueError, match="not a zip"):
        extract_labelled_zip(b"nope", dest)
