"""The study: localisation metrics checked by hand, and whole runs on two tiny models and 8
generated photos with generated masks (local, resumed, Ray)."""

from __future__ import annotations

import csv
import json
import math

import cv2
import keras
import numpy as np
import pandas as pd
import pytest

from explain.localisation import (
    animal_mask,
    chance_level,
    energy_share,
    localisation,
    peak_position,
    pointing_hit,
    spread,
)
from tests.conftest import random_photo

# -- metrics on tiny maps, worked out by hand ---------------------------------------------------


def test_animal_mask_is_trimap_one_or_three():
    trimap = np.array([[1, 2], [3, 2]], np.uint8)
    assert animal_mask(trimap).tolist() == [[True, False], [True, False]]


def test_pointing_game_on_the_grid_and_upsampled():
    cam = np.zeros((2, 2), np.float32)
    cam[0, 1] = 1.0  # peak in the top-right cell
    top_right = np.zeros((4, 4), bool)
    top_right[:2, 2:] = True
    assert pointing_hit(cam, top_right) is True
    assert pointing_hit(cam, ~top_right) is False
    assert pointing_hit(np.zeros((2, 2)), top_right) is False  # a zero map points nowhere
    assert pointing_hit(np.full((2, 2), np.nan), top_right) is False


def test_energy_share_by_hand():
    cam = np.zeros((4, 4), np.float32)
    cam[0, 0], cam[3, 3] = 1.0, 3.0
    mask = np.zeros((4, 4), bool)
    mask[3, 3] = True
    assert energy_share(cam, mask) == pytest.approx(0.75)  # 3 of 4, same grid: no upsampling
    # An even map puts on the animal exactly the animal's share of the photo, at any grid.
    big = np.zeros((6, 8), bool)
    big[:3, :2] = True
    assert energy_share(np.ones((3, 3)), big) == pytest.approx(6 / 48)
    assert chance_level(big) == pytest.approx(6 / 48)
    # Negative values carry no mass.
    signed = np.array([[-5.0, 1.0], [0.0, 0.0]])
    assert energy_share(signed, np.array([[True, False], [False, False]])) == 0.0
    assert math.isnan(energy_share(np.zeros((2, 2)), mask[:2, :2]))


def test_spread_by_hand():
    one = np.zeros((4, 4))
    one[1, 2] = 2.0
    assert spread(one) == {"entropy": 0.0, "above_half": pytest.approx(1 / 16)}
    assert spread(np.ones((4, 4))) == {"entropy": pytest.approx(1.0), "above_half": 1.0}
    two = np.zeros((4, 4))
    two[0, 0] = two[3, 3] = 1.0  # two equal cells: entropy log 2 / log 16
    assert spread(two)["entropy"] == pytest.approx(0.25)
    assert spread(two)["above_half"] == pytest.approx(2 / 16)
    assert math.isnan(spread(np.zeros((3, 3)))["entropy"])


def test_peak_position_and_localisation_agree_with_the_single_functions():
    assert peak_position(np.array([[0, 0, 0], [0, 0, 5.0]])) == (0.75, pytest.approx(5 / 6))
    rng = np.random.default_rng(0)
    cam = rng.random((5, 7)).astype(np.float32)
    mask = np.zeros((40, 56), bool)
    mask[10:30, 5:25] = True
    figures = localisation(cam, mask)
    assert figures["pointing"] == pointing_hit(cam, mask)
    assert figures["energy"] == pytest.approx(energy_share(cam, mask))
    assert figures["entropy"] == pytest.approx(spread(cam, (40, 56))["entropy"])
    assert figures["chance"] == pytest.approx(chance_level(mask))


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    from study.summary import bootstrap_interval

    values = np.r_[np.zeros(30), np.ones(70), np.nan]
    a = bootstrap_interval(values, np.random.default_rng(0))
    b = bootstrap_interval(values, np.random.default_rng(0))
    assert a == b
    mean, low, high = a
    assert mean == pytest.approx(0.7) and low < 0.7 < high and high - low < 0.25
    assert bootstrap_interval(np.full(5, 2.0), np.random.default_rng(0)) == (2.0, 2.0, 2.0)


# -- whole runs on tiny models --------------------------------------------------------------


@pytest.fixture(scope="module")
def study_models(tmp_path_factory):
    """Two small CNNs (different weights) saved with cards, as model files."""
    from models.build import build_small_cnn
    from models.card import ModelCard, Preprocessing

    folder = tmp_path_factory.mktemp("study_models")
    paths = []
    for seed, name in ((1, "tiny_a"), (2, "tiny_b")):
        keras.utils.set_random_seed(seed)
        build_small_cnn(input_size=32, width=8).save(folder / f"{name}.keras")
        ModelCard(
            name=name,
            architecture="small_cnn",
            class_names=["cat", "dog"],
            preprocessing=Preprocessing((32, 32)),
        ).save(folder / f"{name}.json")
        paths.append(str(folder / f"{name}.keras"))
    return paths


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """8 generated photos (4 cats, 4 dogs) with trimaps, in Oxford-IIIT Pet's layout."""
    folder = tmp_path_factory.mktemp("pets")
    (folder / "images").mkdir()
    (folder / "trimaps").mkdir()
    rows = []
    for i in range(8):
        size = (48 + 4 * i, 64)
        cv2.imwrite(str(folder / "images" / f"p{i}.png"), random_photo(i, size))
        trimap = np.full(size, 2, np.uint8)
        trimap[4 : 4 + 3 * i + 10, 8:40] = 1
        trimap[3, 8:40] = 3
        cv2.imwrite(str(folder / "trimaps" / f"p{i}.png"), trimap)
        rows.append(
            {"image": f"images/p{i}.png", "trimap": f"trimaps/p{i}.png", "species": "cat dog".split()[i % 2]}
        )
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["image", "trimap", "species"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def config(models, data, out, **kwargs):
    from study.run import StudyConfig

    kwargs.setdefault("atlas_photos", 5)  # the atlas pass on some photos only, as on big folders
    return StudyConfig(models=models, data=str(data), out=str(out), batch_size=3, **kwargs)


@pytest.fixture(scope="module")
def full_run(study_models, pets, tmp_path_factory):
    from study.run import run_study

    out = tmp_path_factory.mktemp("study_full")
    summary = run_study(config(study_models, pets, out, labelled_class=True), report=lambda *a: None)
    return out, summary


def test_study_table_holds_every_photo_model_and_block(full_run, pets):
    out, summary = full_run
    table = pd.read_parquet(out / "study.parquet")
    predicted = table[table["target"] == "predicted"]
    assert set(predicted["model"]) == {"tiny_a", "tiny_b"}
    assert len(predicted) == 8 * 2 * 3  # photos x models x blocks (conv1..conv3)
    assert predicted.groupby(["photo", "model"]).size().eq(3).all()
    assert set(predicted["pointing"].unique()) <= {0.0, 1.0}
    # the chance level is the animal's share of each photo (1 and 3 of the trimap)
    one = predicted[predicted["photo"] == "images/p2.png"].iloc[0]
    assert one["chance"] == pytest.approx((3 * 2 + 10 + 1) * 32 / (56 * 64))
    assert predicted["rel_depth"].min() == 0.0 and predicted["rel_depth"].max() == 1.0
    last = predicted[predicted["block_index"] == 2]
    assert np.allclose(last["agreement"], 1.0)  # the last block agrees with itself
    labelled = table[table["target"] == "labelled"]
    assert (~labelled["correct"]).all()  # labelled-class maps only where the answer is wrong
    assert (labelled["target_class"] == labelled["label"]).all()
    assert summary["photos"] == 8 and summary["has_masks"]
    curves = pd.DataFrame(summary["curves"])
    assert {"block", "stage", "depth"} <= set(curves["by"])
    assert {"all", "right", "wrong", "cat", "dog"} >= set(curves["split"]) >= {"all", "cat", "dog"}
    assert "chance" in curves[curves["metric"] == "pointing"]
    assert (curves["low"] <= curves["mean"] + 1e-9).all() and (curves["mean"] <= curves["high"] + 1e-9).all()
    embedding = pd.read_parquet(out / "embedding.parquet")
    assert len(embedding) == 16 and embedding[["x", "y"]].notna().all().all()
    atlas = pd.read_parquet(out / "atlas.parquet")
    assert set(atlas["model"]) == {"tiny_a", "tiny_b"}
    first_five = set(predicted.sort_values("photo")["photo"].unique()) & set(atlas["photo"])
    assert first_five and len(set(atlas["photo"])) <= 5
    assert ((atlas["y1"] - atlas["y0"]) > 0).all() and (atlas["y1"] <= 1).all() and (atlas["x0"] >= 0).all()
    # A finished study is resumed as a no-op: no new part.
    parts = sorted((out / "parts").glob("*.parquet"))
    from study.run import run_study

    run_study(
        config(
            json.loads((out / "run.json").read_text())["model_files"].values(), pets, out, labelled_class=True
        ),
        report=lambda *a: None,
    )
    assert sorted((out / "parts").glob("*.parquet")) == parts


def test_pooled_features_equal_the_head_input(study_models):
    from study.activations import pooled_head
    from study.batch import load_study_models

    (model,) = load_study_models({"tiny_a": study_models[0]})
    assert pooled_head(model.explainer)
    batch = model.explainer.prepare([random_photo(i, (40, 50)) for i in range(3)])
    kept = model.explainer.explain(batch, model.blocks, keep=model.blocks[-1]).kept_activations
    np.testing.assert_allclose(kept.mean(axis=(1, 2)), model.probe(batch).features, rtol=1e-5, atol=1e-6)


def test_a_resumed_run_equals_an_uninterrupted_one(full_run, study_models, pets, tmp_path):
    from study.run import run_study

    out, summary = full_run
    run_study(config(study_models, pets, tmp_path, labelled_class=True, limit=5), report=lambda *a: None)
    assert pd.read_parquet(tmp_path / "study.parquet")["photo"].nunique() == 5
    resumed = run_study(config(study_models, pets, tmp_path, labelled_class=True), report=lambda *a: None)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "study.parquet"), pd.read_parquet(out / "study.parquet"), rtol=1e-5
    )
    pd.testing.assert_frame_equal(pd.DataFrame(resumed["curves"]), pd.DataFrame(summary["curves"]), rtol=1e-5)


def test_other_settings_are_not_resumed(full_run, study_models, pets):
    from study.run import StudyError, run_study

    out, _ = full_run
    with pytest.raises(StudyError, match="other settings"):
        run_study(config(study_models, pets, out, methods=["layercam"]), report=lambda *a: None)


@pytest.mark.slow
def test_ray_engine_gives_the_local_table(full_run, study_models, pets, tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed")
    from study.engines import start_local_ray
    from study.run import run_study

    try:
        start_local_ray(1)
    except Exception as err:  # noqa: BLE001 - any failure to start means "no Ray here"
        pytest.skip(f"Ray cannot start here ({type(err).__name__}: {err})")
    try:
        run_study(
            config(study_models, pets, tmp_path, labelled_class=True, engine="ray", workers=1),
            report=lambda *a: None,
        )
    finally:
        ray.shutdown()
    out, _ = full_run
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "study.parquet"), pd.read_parquet(out / "study.parquet"), rtol=1e-5
    )


def test_the_command_line_says_why_it_cannot_run(pets, tmp_path, capsys):
    from study.__main__ import main

    assert main(["--models", "no_such_model", "--data", str(pets), "--out", str(tmp_path)]) == 2
    assert "no model called 'no_such_model'" in capsys.readouterr().err
    assert main(["--data", str(tmp_path), "--out", str(tmp_path), "--methods", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_study_page_shows_curves_gallery_embedding_and_atlas(full_run):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    out, _ = full_run
    at = AppTest.from_file(str(ROOT / "pages/6_Study.py"), default_timeout=120)
    at.session_state["study_new_folder"] = str(out)
    at.session_state["study_folder"] = str(out)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    headers = [s.value for s in at.subheader]
    assert headers[:2] == ["By depth", "Best and worst localised photos at one block"], headers
    assert {"Penultimate features", "Channel atlas"} <= set(headers)
    buttons = [b for b in at.button if b.label == "Open in Inspect"]
    assert len(buttons) == 8  # 4 best and 4 worst
    assert len(at.get("imgs")) >= 8 or len(at.get("image")) >= 8
    at.toggle(key="study_draw_maps").set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("The map of the predicted class" in c.value for c in at.caption)
    at.radio(key="study_split").set_value("right vs wrong").run()
    at.selectbox(key="study_metric").set_value("energy").run()
    assert not at.exception, [e.message for e in at.exception]


def test_deletion_and_insertion_areas_on_request(study_models, pets, tmp_path):
    from study.run import run_study

    run_study(config(study_models[:1], pets, tmp_path, deletion=True, limit=2), report=lambda *a: None)
    table = pd.read_parquet(tmp_path / "study.parquet")
    assert len(table) == 2 * 3
    ok = table[table["status"] == "ok"]
    assert len(ok) and ok["deletion_auc"].between(0, 1).all() and ok["insertion_auc"].between(0, 1).all()
