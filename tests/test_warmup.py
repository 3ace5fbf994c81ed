"""The background warm-up: it loads and traces what the pages open with, and the pages reuse it."""

from __future__ import annotations

import shutil

from tests.test_pages import assert_clean, run


def tiny_entry():
    from models.registry import scan

    return next(e for e in scan() if e.name == "tiny")


def test_a_warmed_model_opens_inspect_without_tracing_again(small_model_dir, monkeypatch):
    from ui.state import warm

    monkeypatch.setenv("CVD_MODELS_DIR", str(small_model_dir))
    explainer = warm(tiny_entry()).explainer
    traced = explainer.traces
    assert traced == 2  # the prediction and the one pass to every layer Inspect shows first
    at = run("pages/1_Inspect.py", inspect_model="tiny")
    assert_clean(at)
    assert any(s.value.startswith("Grad-CAM for") for s in at.subheader)
    assert explainer.traces == traced  # the page's first heatmap used the warmed passes


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
    warm_up = WarmUp()
    assert not warm_up.done and "starting" in warm_up.summary()
    warm_up.run()
    assert warm_up.done
    assert list(warm_up.states) == ["tiny", "broken"]  # the default model first
    assert warm_up.states["tiny"].startswith("ready in ")
    assert warm_up.states["broken"].startswith("failed (broken.keras: the file is damaged")
    assert "tiny: ready in " in warm_up.summary()


def test_the_warm_up_can_be_switched_off(monkeypatch):
    from ui import warmup

    monkeypatch.setenv(warmup.ENV_SWITCH, "0")
    monkeypatch.setattr(warmup, "_current", None)
    warm_up = warmup.start()
    assert warm_up.done and warm_up.thread is None
    assert warmup.start() is warm_up  # one per process


def test_streamlit_run_serves_app_py_with_the_start_up_hook():
    from streamlit.web.server.app_discovery import discover_asgi_app

    from tests.conftest import ROOT

    found = discover_asgi_app(ROOT / "app.py")
    assert found.is_asgi_app and found.app_name == "app", found
