"""The Leaderboard page and Inspect's leaderboard line and method comparison, under AppTest."""

from __future__ import annotations

import json
import shutil

import pytest

from study.leaderboard import aggregate
from tests.test_pages import assert_clean, run


def fake_board() -> dict:
    """A board for the tiny test model at its last block, conv3: three photos, by hand."""

    def cell(method, layer, deletion, pointing):
        return {"method": method, "layer": layer, "deletion": deletion, "pointing": pointing, "energy": 0.5}

    records = [
        {
            "label": i % 2,
            "predicted": i % 2,
            "cells": [
                cell("gradcam", "conv3", 0.1, 1.0),
                cell("layercam", "conv3", 0.3, 0.0),
                cell("saliency", None, 0.2, 1.0 if i else 0.0),
            ],
        }
        for i in range(3)
    ]
    meta = {
        "model": "tiny",
        "data": "pets",
        "layers": ["conv3"],
        "class_names": ["cat", "dog"],
        "settings": {},
    }
    return aggregate(records, meta)


@pytest.fixture
def models_with_board(small_model_dir, tmp_path, monkeypatch):
    for name in ("tiny.keras", "tiny.json", "tiny.history.csv"):
        shutil.copy(small_model_dir / name, tmp_path / name)
    (tmp_path / "leaderboard_tiny.json").write_text(json.dumps(fake_board()))
    monkeypatch.setenv("CVD_MODELS_DIR", str(tmp_path))
    return tmp_path


def test_leaderboard_page_shows_the_board_ranked(models_with_board):
    at = run("pages/7_Leaderboard.py", board_model="tiny", board_metric="deletion")
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["method"]) == ["Grad-CAM", "Gradient saliency", "Layer-CAM"]  # by deletion, lower first
    assert list(table["rank"]) == [1, 2, 3]
    assert any("Grad-CAM at conv3" in s.value for s in at.success)
    assert any("Only 3 photos" in w.value for w in at.warning)
    at.selectbox(key="board_metric").set_value("pointing").run()
    assert_clean(at)
    assert at.dataframe[0].value["rank"].tolist() == [1, 2, 3]
    assert at.dataframe[0].value["method"].iloc[0] == "Grad-CAM"
    at.selectbox(key="board_layer").set_value("conv3").run()
    assert_clean(at)
    assert len(at.dataframe[0].value) == 3


def test_leaderboard_page_without_a_board_says_how_to_make_one(small_model_dir, monkeypatch):
    monkeypatch.setenv("CVD_MODELS_DIR", str(small_model_dir))
    at = run("pages/7_Leaderboard.py", board_model="tiny")
    assert_clean(at)
    assert any("python -m study.leaderboard" in i.value for i in at.info)


def test_inspect_says_how_the_method_ranked_and_compares_every_method(models_with_board):
    from explain.methods import METHODS, ONE_PASS, names

    at = run("pages/1_Inspect.py", inspect_model="tiny")
    assert_clean(at)
    said = [i.value for i in at.info if "Leaderboard" in i.value]
    assert (
        said
        and "On 3 pets photos" in said[0]
        and "a hint, not a verdict" in said[0]
        and "1st of 3 for pointing game" in said[0]
    ), said
    assert "1st of 3 for deletion area" in said[0]
    images = len(at.get("image"))
    at.toggle(key="inspect_compare").set_value(True).run()
    assert_clean(at)
    assert len(at.get("image")) == images + len(names(ONE_PASS))
    assert any("board: #1/3 pointing" in c.value for c in at.caption)
    at.toggle(key="inspect_compare_slow").set_value(True).run()
    at.toggle(key="inspect_compare_scores").set_value(True).run()
    assert_clean(at)
    assert len(at.get("image")) == images + len(METHODS)
    table = at.dataframe[0].value  # the only table with one photo
    assert len(table) == len(METHODS)
    assert table["deletion area"].between(0, 1).all() and table["drop %"].between(0, 100).all()
    assert any("deletion" in c.value and "ROAD" in c.value for c in at.caption)


def test_inspect_a_slow_method_and_the_sanity_checks(models_with_board):
    at = run("pages/1_Inspect.py", inspect_model="tiny", inspect_method="ig", inspect_sanity=True)
    assert_clean(at)
    assert any(s.value.startswith("Integrated Gradients for") for s in at.subheader)
    assert any("has no layer" in c.value for c in at.caption)
    assert any(c.value.startswith("Random logit: the map for") for c in at.caption)
    assert len(at.get("plotly_chart")) == 1
