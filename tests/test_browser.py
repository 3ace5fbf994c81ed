"""The real app in a real browser: headless Chromium uploads a photo on Inspect."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, random_photo, real_photo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh --test installs it)"
    ),
]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(small_model_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = {**os.environ, "CVD_MODELS_DIR": str(small_model_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "app.py"),
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"streamlit did not start: {log.read_text()[-2000:]}")
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_upload_on_inspect_shows_prediction_and_heatmap(server, tmp_path):
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
        page.goto(f"{server}/Inspect", timeout=60_000)
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
