"""The leaderboard on a tiny model with 4 generated photos and masks: every method x layer
gets every figure, ranks per metric, and a rerun resumes instead of recomputing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from study.leaderboard import aggregate, ordinal, photo_order, rank, run, standing


def make_pets(root, n=4, size=(48, 64)):
    """Write ``n`` photos (cats and dogs alternating) with trimaps and a labels.csv."""
    from PIL import Image

    from tests.conftest import random_photo

    (root / "images").mkdir(parents=True)
    (root / "trimaps").mkdir()
    lines = ["image,trimap,species"]
    for i in range(n):
        species = "cat" if i % 2 == 0 else "dog"
        Image.fromarray(random_photo(10 + i, size)).save(root / "images" / f"{species}_{i}.png")
        trimap = np.full(size, 2, np.uint8)  # background
        trimap[10:30, 20 + 4 * i : 44 + 4 * i] = 1  # the animal
        Image.fromarray(trimap).save(root / "trimaps" / f"{species}_{i}.png")
        lines.append(f"images/{species}_{i}.png,trimaps/{species}_{i}.png,{species}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_photo_order_is_seeded_and_alternates_the_classes():
    labels = np.array([0] * 6 + [1] * 4)
    order = photo_order(labels, seed=1)
    assert sorted(order) == list(range(10))
    assert labels[order[:8]].tolist() == [0, 1] * 4
    assert order == photo_order(labels, seed=1) != photo_order(labels, seed=2)


def test_rank_and_ordinal():
    assert rank([0.3, 0.1, float("nan"), 0.1], "lower") == [3, 1, None, 1]
    assert rank([0.3, 0.1, 0.2], "higher") == [1, 3, 2]
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"
    ]  # fmt: skip


def test_aggregate_ranks_by_hand():
    meta = {"layers": ["a", "b"], "class_names": ["cat", "dog"]}
    cell = lambda m, layer, d, e: {"method": m, "layer": layer, "deletion": d, "energy": e}  # noqa: E731
    records = [
        {
            "label": 0,
            "predicted": 0,
            "cells": [cell("gradcam", "a", 0.2, 0.5), cell("saliency", None, 0.4, 0.9)],
        },
        {
            "label": 1,
            "predicted": 0,
            "cells": [cell("gradcam", "a", 0.4, 0.7), cell("saliency", None, 0.2, 0.7)],
        },
        {"label": 1, "predicted": 1, "cells": [cell("gradcam", "b", 0.1, 0.1)]},
    ]
    board = aggregate(records, meta)
    assert board["photos"] == 3 and board["per_class"] == {"cat": 1, "dog": 2}
    assert board["accuracy"] == pytest.approx(2 / 3)
    rows = {(r["method"], r["layer"]): r for r in board["rows"]}
    assert rows["gradcam", "a"]["deletion"] == pytest.approx(0.3) and rows["gradcam", "a"]["n"] == 2
    assert rows["saliency", None]["energy"] == pytest.approx(0.8)
    # Deletion (lower is better): gradcam@b 0.1, gradcam@a 0.3 and saliency 0.3 tie.
    assert rows["gradcam", "b"]["rank"]["deletion"] == 1
    assert rows["gradcam", "a"]["rank"]["deletion"] == rows["saliency", None]["rank"]["deletion"] == 2
    # At layer b only gradcam@b and the layerless saliency compete; energy: saliency first.
    assert rows["saliency", None]["rank_at_layer"]["b"]["energy"] == 1
    assert rows["gradcam", "b"]["rank_at_layer"]["b"]["energy"] == 2
    got = standing(board, "saliency", "b")
    assert got["at_layer"]["energy"] == (1, 2) and got["overall"]["deletion"] == (2, 3)
    assert standing(board, "layercam", "a") is None


def test_randomisation_similarity_is_the_mean_of_its_absolute_values():
    # +0.6 on one photo and -0.6 on the other: the randomised maps follow the trained ones
    # (once inverted) as closely as a method at +0.6 on both, and far more than one at 0.1.
    meta = {"layers": ["a"], "class_names": ["cat", "dog"]}
    cell = lambda m, rho: {"method": m, "layer": "a", "random_spearman": rho}  # noqa: E731
    signs = [(0, 1, 1), (1, -1, -1)]  # (label, sign for gradcam, sign for hirescam)
    records = [
        {
            "label": label,
            "predicted": label,
            "cells": [cell("gradcam", 0.6 * g), cell("layercam", 0.6), cell("hirescam", 0.1 * h)],
        }
        for label, g, h in signs
    ]
    rows = {r["method"]: r for r in aggregate(records, meta)["rows"]}
    assert rows["gradcam"]["random_spearman"] == pytest.approx(0.6)
    assert rows["hirescam"]["random_spearman"] == pytest.approx(0.1)
    assert rows["hirescam"]["rank"]["random_spearman"] == 1
    assert rows["gradcam"]["rank"]["random_spearman"] == rows["layercam"]["rank"]["random_spearman"] == 2


@pytest.mark.slow
def test_leaderboard_on_a_tiny_model(tmp_path):
    import keras

    from explain.explainer import Explainer
    from explain.methods import METHODS
    from models.build import build_small_cnn
    from models.data import list_labelled

    keras.utils.set_random_seed(3)
    explainer = Explainer(build_small_cnn(input_size=32, width=8), ["cat", "dog"])
    files = list_labelled(make_pets(tmp_path / "pets"), ["cat", "dog"])
    assert files.masks is not None
    layers = explainer.layers.resolve(["stages", "last"])
    settings = {
        "steps": 2,
        "road_fractions": [0.5],
        "slow_channels": 4,
        "randomisation": True,
        "random_methods": list(METHODS),
        "seed": 0,
    }
    out = tmp_path / "board.json"
    lines = []
    board = run(
        explainer, files, out, "tiny", "pets", None, list(METHODS), layers, settings, log=lines.append
    )
    assert board["photos"] == 4 and board["per_class"] == {"cat": 2, "dog": 2} and len(lines) == 4
    layered = [m for m, spec in METHODS.items() if spec.uses_layer]
    assert len(board["rows"]) == len(layered) * len(layers) + len(METHODS) - len(layered)
    for row in board["rows"]:
        assert row["n"] == 4
        for metric in ("deletion", "insertion", "road", "average_drop", "pointing", "energy", "seconds"):
            assert np.isfinite(row[metric]), (row["method"], metric)
            assert 1 <= row["rank"][metric] <= len(board["rows"])
        assert 0.0 <= row["pointing"] <= 1.0 and row["chance"] == pytest.approx(row["chance"])
        assert "random_spearman" in row
    json.dumps(board)  # plain JSON
    # A rerun finds every photo done: nothing is computed again, the board is the same.
    again = run(
        explainer, files, out, "tiny", "pets", None, list(METHODS), layers, settings, log=lines.append
    )
    assert len(lines) == 4 and again["rows"] == board["rows"]


def test_aggregate_only_writes_the_board_from_finished_photos_without_the_model(
    small_model_dir, tmp_path, monkeypatch
):
    from explain.methods import METHODS
    from study.leaderboard import main

    monkeypatch.setenv("CVD_MODELS_DIR", str(small_model_dir))
    pets = make_pets(tmp_path / "pets")
    settings = {
        "steps": 4,
        "road_fractions": [0.25, 0.75],
        "slow_channels": 64,
        "randomisation": True,
        "random_methods": list(METHODS),
        "seed": 0,
    }
    cells = [{"method": "gradcam", "layer": "conv3", "deletion": 0.2, "random_spearman": float("nan")}]
    record = {"photo": "cat_0.png", "label": 0, "predicted": 0, "settings": settings, "cells": cells}
    out = tmp_path / "board.json"
    (tmp_path / "board.json.photos.jsonl").write_text(json.dumps(record) + "\n" + '{"cut off')
    assert main(["--model", "tiny", "--data", str(pets), "--aggregate-only", "--out", str(out)]) == 0
    board = json.loads(out.read_text())  # strict JSON: the NaN became null
    assert (
        board["photos"] == 1 and board["layers"] == ["conv3"] and board["per_class"] == {"cat": 1, "dog": 0}
    )
    assert board["rows"][0]["deletion"] == 0.2 and board["rows"][0]["random_spearman"] is None
