"""How long from ``streamlit run app.py`` to the first heatmap on Inspect, in a real browser?

    python bench/first_heatmap.py [--runs 3] [--baseline REV [--baseline-env NAME=VALUE]]
                                  [--upload PHOTO] [--out FILE]

Each run is a whole new server process, as a user starts it: the clock starts when
``streamlit run app.py`` is launched; headless Chromium (already open, as a user's browser is)
opens the Inspect page the moment the server answers its health check, and the clock stops
when the first Grad-CAM overlay image has loaded in the page (for the default sample photo,
or for ``--upload PHOTO``, uploaded as soon as the page offers the file input). Also
recorded: when the page first showed anything (its title, or the note of what is still
warming up), so a blank wait shows up too, and when the whole page was there (its feature
maps, drawn after the heatmap: on a fresh server the first heatmap comes from the model file
read as plain TensorFlow ops, ``ui.first_look``, before Keras has built the model).

``--baseline REV`` measures an older commit in the same run, alternating old and new run by
run (so a machine that slows down or speeds up hurts both alike): it checks REV out with
``git worktree add`` under a temporary folder, with ``../shared`` linked beside it so both
see the same sample photos, and removes the worktree at the end. Both run with this Python.
Needs Playwright's Python driver and Debian's ``chromium`` (``bash scripts/setup.sh --test``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The same flags as tests/conftest.py (not imported from there: it imports Keras, whose
# TensorFlow would load in this process and compete with the server being timed).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
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
# True once a Grad-CAM overlay (its caption names the method) is in the page, not stale, and
# its picture has arrived. ``name`` (an upload) must also be the caption of a shown photo.
OVERLAY_SHOWN = """(name) => {
  const fresh = (el) => !el.closest('[data-stale="true"]');
  const shown = [...document.querySelectorAll('[data-testid="stImage"]')].filter(fresh)
    .map((el) => [el, (el.querySelector('[data-testid="stImageCaption"]') || {}).innerText || '']);
  if (name && !shown.some(([, c]) => c.startsWith(name))) return false;
  return shown.some(([el, c]) => c.includes('Grad-CAM') && [...el.querySelectorAll('img')]
    .some((img) => img.complete && img.naturalWidth > 0));
}"""

# True once the full page is there: the feature maps of the layer (drawn after the heatmap).
# On a fresh server Inspect first shows a heatmap from the model file read as plain ops
# (ui.first_look), then the whole page once Keras has built the model; both are timed.
FEATURE_MAPS_SHOWN = """() => [...document.querySelectorAll('[data-testid="stImage"]')]
  .filter((el) => !el.closest('[data-stale="true"]'))
  .some((el) => ((el.querySelector('[data-testid="stImageCaption"]') || {}).innerText || '')
    .startsWith('channels by mean activation')
    && [...el.querySelectorAll('img')].some((img) => img.complete && img.naturalWidth > 0))"""

# What the server's warm-up (ui/warmup.py) logs as it goes; older checkouts log nothing.
WARMUP_STEP = re.compile(r"warm-up: (.+?) at ([0-9.]+) s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok"
    except OSError:
        return False


def one_run(
    browser, checkout: Path, upload: Path | None, timeout: float, log: Path, extra_env: dict | None = None
) -> dict:
    """Start a server in ``checkout``, open Inspect, return seconds to the first page and heatmap."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "CVD_MODELS_DIR"} | (extra_env or {})
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "a") as out:
        start = time.perf_counter()
        server = subprocess.Popen(command, cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while not healthy(url):
            if server.poll() is not None or time.perf_counter() - start > timeout:
                raise RuntimeError(f"the server did not start; see {log}")
            time.sleep(0.05)
        serving = time.perf_counter() - start
        page.goto(f"{url}/Inspect", timeout=timeout * 1000)
        # The page's title, or the app's note of what is still warming up.
        page.locator('h1, [data-testid="stCaptionContainer"]').first.wait_for(timeout=timeout * 1000)
        first_paint = time.perf_counter() - start
        if upload is not None:
            page.wait_for_selector('input[type="file"]', state="attached", timeout=timeout * 1000)
            page.set_input_files('input[type="file"]', str(upload))
        page.wait_for_function(
            OVERLAY_SHOWN, arg=upload.name if upload else "", timeout=timeout * 1000, polling=50
        )
        heatmap = time.perf_counter() - start
        page.wait_for_function(FEATURE_MAPS_SHOWN, timeout=timeout * 1000, polling=50)
        full_page = time.perf_counter() - start
        errors = page.locator('[data-testid="stException"]').count()
    finally:
        page.close()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    if errors:
        raise RuntimeError(f"the page shows an exception; see {log}")
    with open(log, errors="replace") as text:
        text.seek(offset)
        steps = {m[1]: float(m[2]) for m in WARMUP_STEP.finditer(text.read())}
    return {
        "serving": serving,
        "first_paint": first_paint,
        "heatmap": heatmap,
        "full_page": full_page,
        "warm_up": steps,
    }


def worktree(rev: str, parent: Path) -> Path:
    """Check ``rev`` out under ``parent``/repo with ../shared linked beside it; return the folder."""
    checkout = parent / "repo"
    command = ["git", "worktree", "add", "--quiet", "--detach", str(checkout), rev]
    subprocess.run(command, cwd=ROOT, check=True)
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (parent / "shared").symlink_to(shared)
    return checkout


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} s (min {min(values):.1f}, max {max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each app (default 3)")
    parser.add_argument("--baseline", help="a git revision to measure too, alternating run by run")
    parser.add_argument(
        "--baseline-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set this in the baseline's environment (e.g. PYTHONPATH=DIR with older packages "
        "installed by `pip install --target DIR`, to measure a dependency change too)",
    )
    parser.add_argument("--upload", type=Path, help="upload this photo instead of using the default sample")
    parser.add_argument("--timeout", type=float, default=180, help="seconds one run may take")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    if CHROMIUM is None:
        sys.exit("first_heatmap: Debian's chromium is not installed (bash scripts/setup.sh --test)")
    from playwright.sync_api import sync_playwright

    baseline_env = dict(item.split("=", 1) for item in args.baseline_env)
    scratch = Path(tempfile.mkdtemp(prefix="first_heatmap_"))
    log = scratch / "servers.log"
    apps = {"this checkout": ROOT}
    try:
        if args.baseline:
            rev = subprocess.run(
                ["git", "rev-parse", "--short", args.baseline], cwd=ROOT, check=True, capture_output=True
            ).stdout.decode()
            apps = {f"baseline {rev.strip()}": worktree(args.baseline, scratch), **apps}
        results: dict[str, list[dict]] = {name: [] for name in apps}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for run in range(args.runs):
                for name, checkout in apps.items():
                    extra = baseline_env if checkout != ROOT else None
                    figures = one_run(browser, checkout, args.upload, args.timeout, log, extra)
                    results[name].append(figures)
                    print(
                        f"run {run + 1} {name}: server up {figures['serving']:.1f} s, page shown "
                        f"{figures['first_paint']:.1f} s, first heatmap {figures['heatmap']:.1f} s, "
                        f"whole page (feature maps) {figures['full_page']:.1f} s",
                        flush=True,
                    )
                    if figures["warm_up"]:  # its clock starts with the server's warm-up
                        steps = ", ".join(f"{k} {v:.1f}" for k, v in figures["warm_up"].items())
                        print(f"    warm-up (s after it started): {steps}", flush=True)
            browser.close()
    finally:
        if args.baseline and (scratch / "repo").exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(scratch / "repo")], cwd=ROOT)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, runs in results.items():
        shown = summary([r["first_paint"] for r in runs])
        print(f"{name}: first heatmap {summary([r['heatmap'] for r in runs])}; page shown {shown}")
        print(f"{' ' * len(name)}  whole page {summary([r['full_page'] for r in runs])}")
    if args.baseline:
        old, new = (statistics.median(r["heatmap"] for r in runs) for runs in results.values())
        print(f"new / baseline (medians): {new / old:.2f}")
        old, new = (statistics.median(r["full_page"] for r in runs) for runs in results.values())
        print(f"whole page, new / baseline (medians): {new / old:.2f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
