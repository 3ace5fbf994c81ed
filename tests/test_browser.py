"""The real app in a real browser: headless Chromium uploads a photo on Inspect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, needs_chromium, random_photo, real_photo

pytestmark = [pytest.mark.browser, needs_chromium]


def test_upload_on_inspect_shows_prediction_and_heatmap(app_server, tmp_path):
    from playwright.sync_api import sync_playwright

    rgb = real_photo("dogs", 4003)
    if rgb is None:
        rgb = random_photo(7, (300, 400))
    photo = tmp_path / "my dog.jpg"
    from PIL import Image

    Image.fromarray(rgb).save(photo)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{app_server.url}/Inspect", timeout=60_000)
        page.wait_for_selector('input[type="file"]', state="attached", timeout=120_000)
        page.set_input_files('input[type="file"]', str(photo))
        page.get_by_text("my dog.jpg").first.wait_for(timeout=60_000)
        page.get_by_text("Prediction:").first.wait_for(timeout=180_000)
        page.get_by_text("Grad-CAM for").first.wait_for(timeout=180_000)
        page.locator('[data-testid="stImage"] img').nth(1).wait_for(timeout=120_000)
        images = page.locator('[data-testid="stImage"] img')
        captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
        assert images.count() >= 2
        assert any("Grad-CAM" in c for c in captions), captions
        assert page.locator('[data-testid="stException"]').count() == 0
        shots = Path(os.environ.get("CVD_SCREENSHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "inspect.png"), full_page=True)
        browser.close()


def test_a_bad_file_in_an_upload_is_named_and_the_good_one_explained(app_server, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    good = tmp_path / "good.png"
    Image.fromarray(random_photo(11, (120, 160))).save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(good.read_bytes()[:200])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{app_server.url}/Inspect", timeout=60_000)
        page.wait_for_selector('input[type="file"]', state="attached", timeout=120_000)
        page.set_input_files('input[type="file"]', [str(good), str(bad)])
        page.get_by_text("broken.jpg: the").first.wait_for(timeout=120_000)
        page.get_by_text("Grad-CAM for").first.wait_for(timeout=120_000)
        alert = page.locator('[data-testid="stAlertContentError"]').first.inner_text()
        assert "broken.jpg" in alert and "\n" not in alert.strip()
        assert page.locator('[data-testid="stException"]').count() == 0
        browser.close()
