"""The Models page in a real browser: upload a Keras 2 .h5, check it on labelled photos, explain it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from explain.preprocess import Feeding
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.test_feeding_check import SIZE, colour_photos, write_folder

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]


def legacy_h5(path: Path) -> Path:
    """Write a tf-keras (Keras 2) .h5 trained on x/255 in BGR order, output 0 = dog, 1 = cat."""
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.utils.set_random_seed(0)
    photos, labels = colour_photos(400, 0)
    x = Feeding((SIZE, SIZE), scaling="unit", channel_order="BGR").pixels(photos)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.InputLayer(input_shape=(SIZE, SIZE, 3)),
            tf_keras.layers.Conv2D(4, 1, name="conv"),
            tf_keras.layers.GlobalAveragePooling2D(),
            tf_keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(tf_keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, labels, epochs=30, batch_size=64, verbose=0)
    assert model.evaluate(x, labels, verbose=0)[1] > 0.95
    model.save(path)
    return path


def test_upload_legacy_h5_check_it_then_explain_it(app_server, small_model_dir, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    h5 = legacy_h5(tmp_path / "colours.h5")
    photos, labels = colour_photos(48, 1)
    folder = write_folder(tmp_path / "labelled", photos, labels, ["dog", "cat"])
    cat = tmp_path / "a red one.png"
    Image.fromarray(np.asarray(colour_photos(2, 7)[0][1])).resize((64, 64)).save(cat)  # label 1: cat
    shots = Path(os.environ.get("CVD_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(f"{app_server.url}/Models", timeout=60_000)
            page.wait_for_selector('input[type="file"]', state="attached", timeout=120_000)
            page.locator('input[type="file"]').first.set_input_files(str(h5))
            page.get_by_text("Added colours.h5 as colours").first.wait_for(timeout=240_000)
            assert page.get_by_text("converted from HDF5").first.is_visible()
            assert (small_model_dir / "colours.keras").is_file()

            page.get_by_text("a folder on this machine").first.click()
            box = page.get_by_label("Folder of class subfolders, cat.N.jpg files, or a labels.csv")
            box.fill(str(folder))
            box.press("Enter")
            page.get_by_role("button", name="Run the check").click()
            page.get_by_text("Best: x / 255, BGR").first.wait_for(timeout=240_000)
            page.get_by_text("fed as: x / 255, BGR").first.wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(shots / "models.png"), full_page=True)

            page.goto(f"{app_server.url}/Inspect", timeout=60_000)
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.locator('[data-testid="stSelectbox"]').first.click()
            page.get_by_role("option", name="colours").click()
            page.get_by_text("classes dog, cat").first.wait_for(timeout=120_000)
            page.wait_for_selector('input[type="file"]', state="attached", timeout=120_000)
            page.locator('input[type="file"]').first.set_input_files(str(cat))
            page.get_by_text("a red one.png").first.wait_for(timeout=60_000)
            page.get_by_text("Prediction: cat").first.wait_for(timeout=180_000)
            page.get_by_text("Grad-CAM for").first.wait_for(timeout=180_000)
            # the heatmap itself, by its caption: the title can be up while a rerun is still
            # replacing the picture under it (seen once in a loaded suite run)
            heatmap = page.locator('[data-testid="stImageCaption"]', has_text="Grad-CAM")
            heatmap.first.wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(shots / "models_inspect.png"), full_page=True)
            browser.close()
    finally:
        for name in ("colours.keras", "colours.json"):  # the server's models folder is shared
            (small_model_dir / name).unlink(missing_ok=True)
