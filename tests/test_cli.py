"""The headless CLI: python -m explain."""

from __future__ import annotations

import json

from PIL import Image

from explain.__main__ import main
from tests.conftest import random_photo


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
    assert "no model called" in capsys.readouterr().err
