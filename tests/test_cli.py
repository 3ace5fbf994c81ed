"""The headless CLIs: python -m explain (a model file) and python -m models.explain (registry names)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from PIL import Image

from explain.__main__ import main
from explain.methods import METHODS
from tests.conftest import ROOT, random_photo


def test_cli_writes_overlays_and_reports_bad_files(small_model_dir, tmp_path, capsys):
    good = tmp_path / "good photo.png"
    Image.fromarray(random_photo(3, (90, 120))).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a photo")
    out = tmp_path / "out"
    status = main(
        [
            str(good),
            str(bad),
            "--model",
            str(small_model_dir / "tiny.keras"),
            "--layers",
            "all",
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "bad.jpg" in captured.err and "not an image" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    report = json.loads(captured.out)
    first = report["results"][0]
    assert first["predicted"] in ("cat", "dog") and 0.5 <= first["probability"] <= 1
    assert len(first["files"]) == 3  # the small CNN's three conv blocks
    for name in first["files"]:
        with Image.open(name) as picture:
            assert picture.size == (120, 90)  # the photo's own resolution and aspect
    assert "error" in report["results"][1]


def test_cli_named_class_and_layer(small_model_dir, tmp_path, capsys):
    photo = tmp_path / "p.png"
    Image.fromarray(random_photo(4)).save(photo)
    status = main(
        [
            str(photo),
            "--model",
            str(small_model_dir / "tiny.keras"),
            "--layers",
            "conv2",
            "--class",
            "cat",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert status == 0
    text = capsys.readouterr().out
    assert "p_conv2_cat.png" in text


def test_cli_unknown_model(tmp_path, capsys):
    assert main(["x.jpg", "--model", "no-such-model", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no model file" in err and "python -m models.explain" in err


def test_registry_names_go_through_models_explain(small_model_dir, tmp_path, capsys, monkeypatch):
    from models.explain import main as named_main

    monkeypatch.setenv("CVD_MODELS_DIR", str(small_model_dir))
    photo = tmp_path / "p.png"
    Image.fromarray(random_photo(5)).save(photo)
    status = named_main(
        [str(photo), "--model", "tiny", "--layers", "last", "--out", str(tmp_path / "o"), "--json"]
    )
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "tiny" and len(report["results"][0]["files"]) == 1
    assert named_main(["x.jpg", "--model", "no-such-model", "--out", str(tmp_path)]) == 2
    assert "no model called" in capsys.readouterr().err


def test_engine_imports_nothing_from_above():
    # explain/ is the bottom layer: no import of models, study, ui, pages, training or streamlit
    above = {"models", "study", "ui", "pages", "training", "streamlit", "app"}
    for path in sorted((ROOT / "explain").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            assert not above.intersection(roots), f"{path.name} imports {roots} (line {node.lineno})"


@pytest.mark.parametrize("method", [m for m in METHODS if m != "gradcam"])
def test_cli_every_method(method, small_model_dir, tmp_path, capsys):
    photo = tmp_path / "p.png"
    Image.fromarray(random_photo(6)).save(photo)
    out = tmp_path / "o"
    args = [str(photo), "--model", str(small_model_dir / "tiny.keras"), "--method", method]
    status = main([*args, "--layers", "conv3", "--out", str(out), "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    tag = method.replace("+", "plus")  # gradcam++ -> gradcamplusplus in file names
    expected = f"p_conv3_{tag}_" if METHODS[method].uses_layer else f"p_{tag}_"
    assert [Path(f).name.startswith(expected) for f in result["files"]] == [True]
    with Image.open(result["files"][0]) as picture:
        assert picture.size == (160, 120)
    if method == "ig":
        assert result["completeness_relative_error"] < 0.05
