"""Load: four browser sessions at once through upload and explanation; the server keeps serving
and its memory after 200 explanations is within 10% of its memory after 20."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, needs_chromium, random_photo

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]
SESSIONS = 4
TOTAL = 200


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_four_sessions_two_hundred_explanations(app_server, tmp_path):
    from playwright.async_api import async_playwright

    photos = []
    for i in range(TOTAL):
        path = tmp_path / f"p{i:03d}.png"
        Image.fromarray(random_photo(1000 + i, (72, 96))).save(path)
        photos.append(path)
    done: list[int] = []
    memory: dict[int, float] = {}

    async def session(browser, mine):
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        await page.goto(f"{app_server.url}/Layer_depth", timeout=60_000)
        await page.wait_for_selector('input[type="file"]', state="attached", timeout=120_000)
        for path in mine:
            await page.set_input_files('input[type="file"]', str(path))
            await page.get_by_text(f"Done: {path.name} with").wait_for(timeout=120_000)
            assert await page.locator('[data-testid="stException"]').count() == 0
            done.append(1)
            if len(done) in (20, TOTAL):
                memory[len(done)] = rss_mb(app_server.pid)
        await page.close()

    async def main():
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            share = TOTAL // SESSIONS
            await asyncio.gather(
                *(session(browser, photos[i * share : (i + 1) * share]) for i in range(SESSIONS))
            )
            await browser.close()

    asyncio.run(main())
    assert len(done) == TOTAL
    growth = (memory[TOTAL] - memory[20]) / memory[20]
    print(f"server RSS after 20: {memory[20]:.0f} MB, after {TOTAL}: {memory[TOTAL]:.0f} MB ({growth:+.1%})")
    assert growth < 0.10, memory
