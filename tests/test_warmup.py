"""The background warm-up: it loads and traces what the pages open with, and the pages reuse it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port, needs_chromium
from tests.test_pages import assert_clean, run


def tiny_entry():
    from models.registry import scan

    return next(e for e in scan() if e.name == "tiny")


def test_a_warmed_model_opens_inspect_without_tracing_again(small_model_dir, monkeypatch):
    import streamlit as st

    from ui.state import warm

    st.cache_resource.clear()  # other tests may have loaded and traced the same tiny model already
    monkeypatch.setenv("CVD_MODELS_DIR", str(small_model_dir))
    explainer = warm(tiny_entry()).explainer
    traced = explainer.traces
    assert traced == 1  # the one pass to every layer Inspect shows first, and nothing else
    at = run("pages/1_Inspect.py", inspect_model="tiny")
    assert_clean(at)
    assert any(s.value.startswith("Grad-CAM for") for s in at.subheader)
    assert any(s.value.startswith("Prediction: ") for s in at.subheader)
    # the page's first heatmap and its prediction both came from the warmed pass
    assert explainer.traces == traced


def test_before_the_warm_up_compiles_inspect_runs_the_pass_eagerly(small_model_dir, monkeypatch):
    import streamlit as st

    from ui.state import warm

    st.cache_resource.clear()
    monkeypatch.setenv("CVD_MODELS_DIR", str(small_model_dir))
    explainer = warm(tiny_entry(), compile_pass=False).explainer
    assert explainer.eager_until_compiled and explainer.compile_after == 3.0
    explainer.compile_after = None  # here the test compiles, below
    assert explainer.traces == 0
    at = run("pages/1_Inspect.py", inspect_model="tiny")
    assert_clean(at)
    assert any(s.value.startswith("Grad-CAM for") for s in at.subheader)
    assert explainer.traces == 0  # the first heatmap came without a trace
    warm(tiny_entry())
    assert explainer.traces == 1


def test_the_prediction_pass_is_warmed_after_the_first_heatmaps_pass(small_model_dir, monkeypatch):
    import streamlit as st

    from ui.state import warm, warm_prediction

    st.cache_resource.clear()
    monkeypatch.setenv("CVD_MODELS_DIR", str(small_model_dir))
    explainer = warm(tiny_entry()).explainer
    warm_prediction(tiny_entry())
    assert explainer.traces == 2
    explainer.predict(explainer.prepare([np.zeros((5, 7, 3), np.uint8)]))
    assert explainer.traces == 2  # the batched prediction was compiled already


def test_tensorflow_imports_without_hiding_jax_or_pandas_for_good():
    # In a new process: TF imported the quick way (Keras has not imported pandas), then JAX
    # (when installed) and pandas import as usual, and Keras still predicts.
    code = (
        "import sys; from ui.warmup import compile_quickly; compile_quickly(); "
        "assert 'tensorflow' in sys.modules and 'pandas' not in sys.modules; "
        "assert all(sys.modules.get(m, 0) is not None for m in ('jax', 'jaxlib', 'pandas')); "
        "import pandas, numpy, keras; print('pandas', pandas.DataFrame({'a': [1]}).shape); "
        "m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]); "
        "print('predict', m.predict(numpy.ones((3, 2)), verbose=0).shape); "
        "import importlib.util; "
        "print('jax', importlib.util.find_spec('jax') is not None and __import__('jax').__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[:2] == ["pandas (1, 1)", "predict (3, 1)"]
    assert lines[2] in ("jax jax", "jax False")


def test_the_warm_up_goes_through_every_model_and_names_a_broken_one(small_model_dir, tmp_path, monkeypatch):
    import ui.state
    from ui.warmup import WarmUp

    for name in ("tiny.keras", "tiny.json"):
        shutil.copy(small_model_dir / name, tmp_path / name)
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not really a zip")
    monkeypatch.setenv("CVD_MODELS_DIR", str(tmp_path))
    from models.registry import scan

    user = [e for e in scan() if e.source == "user"]
    monkeypatch.setattr(ui.state, "registry", lambda: user)
    monkeypatch.setattr(ui.state, "DEFAULT_MODEL", "tiny")
    warm_up = WarmUp(quiet=0.2)
    assert not warm_up.done and "starting" in warm_up.summary()
    # the second model waits until a page has been shown (or page_wait has passed)
    threading.Timer(1.0, warm_up.page_shown.set).start()
    began = time.monotonic()
    warm_up.run()
    assert warm_up.done and warm_up.imported.is_set()
    assert 1.0 <= time.monotonic() - began < warm_up.page_wait
    assert list(warm_up.states) == ["tiny", "broken"]  # the default model first
    assert warm_up.states["tiny"].startswith("ready in ")
    assert warm_up.states["broken"].startswith("failed (broken.keras: the file is damaged")
    assert "tiny: ready in " in warm_up.summary()


def test_compiles_wait_until_no_page_has_run_for_a_while_or_a_page_runs_long():
    from ui.warmup import WarmUp

    warm_up = WarmUp(quiet=0.4, long_run=30.0)
    warm_up.page_started()
    returned = []
    waiter = threading.Thread(target=lambda: (warm_up.wait_until_quiet(), returned.append(time.monotonic())))
    waiter.start()
    time.sleep(0.6)
    assert not returned  # a page is running
    finished = time.monotonic()
    warm_up.page_finished()
    assert warm_up.page_shown.is_set() and warm_up.timeline[-1][0] == "first page run ended"
    waiter.join(timeout=10)
    assert returned and 0.35 <= returned[0] - finished < 2.0
    # a page that has been running for long_run (explaining many photos): compile midway
    warm_up.long_run = 0.5
    warm_up.page_started()
    began = time.monotonic()
    warm_up.wait_until_quiet()
    assert 0.45 <= time.monotonic() - began < 2.0
    warm_up.page_finished()
    warm_up.page_started()  # pages back to back: it compiles anyway after quiet_wait
    warm_up.long_run, warm_up.quiet_wait = 30.0, 0.2
    began = time.monotonic()
    warm_up.wait_until_quiet()
    assert time.monotonic() - began < 1.0


def test_the_warm_up_can_be_switched_off(monkeypatch):
    from ui import warmup

    monkeypatch.setenv(warmup.ENV_SWITCH, "0")
    monkeypatch.setattr(warmup, "_current", None)
    warm_up = warmup.start()
    assert warm_up.done and warm_up.thread is None
    assert warmup.start() is warm_up  # one per process


def test_streamlit_run_serves_app_py_with_the_start_up_hook():
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(ROOT / "app.py")
    assert found.is_asgi_app and found.app_name == "app", found


@pytest.mark.browser
@needs_chromium
def test_a_first_visit_straight_to_inspect_gets_the_app_and_the_warm_up_note(tmp_path):
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    with open(tmp_path / "streamlit.log", "w") as log:
        server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{url}/Inspect", timeout=120_000)
            # app.py ran (its page list, not the pages/ folder's), and it says what is warming up
            page.get_by_text("Warming up (first start only)").first.wait_for(timeout=180_000)
            nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
            assert "Home" in nav and "app" not in nav.split(), nav
            browser.close()
    finally:
        server.kill()  # mid-warm-up: nothing to save
        server.wait(timeout=30)


def test_a_process_that_exits_during_the_warm_up_exits_cleanly():
    # The warm-up is loading the shipped ResNet-50 (TensorFlow's C++ code on its thread) when
    # the interpreter exits: it finishes that step and stops, instead of an abort (status 134).
    code = (
        "import time; from ui import warmup; w = warmup.start(); w.imported.wait(300); "
        "time.sleep(0.5); print('states', w.states)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "states" in out.stdout
