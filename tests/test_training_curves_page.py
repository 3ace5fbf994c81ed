"""The Training curves page under AppTest: smoothing, log-scale loss, learning rate, extra curves."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

PAGE = str(ROOT / "pages" / "3_Training_curves.py")
HISTORY = (
    "epoch,accuracy,f1_score,learning_rate,loss,val_accuracy,val_f1_score,val_loss\n"
    "0,0.60,0.55,0.01,0.90,0.58,0.50,0.95\n"
    "1,0.70,0.66,0.01,0.70,0.66,0.60,0.80\n"
    "2,0.78,0.75,0.001,0.55,0.70,0.68,0.72\n"
    "3,0.83,0.80,0.0001,0.45,0.72,0.70,0.70\n"
)


@pytest.fixture
def lr_models(tmp_path, monkeypatch):
    """A models folder whose one card points to a CSVLogger history with a learning rate and F1."""
    from models.card import ModelCard

    # The registry and this page read cards and histories only, never the weights.
    (tmp_path / "lr_run.keras").write_bytes(b"")
    (tmp_path / "lr_run.history.csv").write_text(HISTORY)
    ModelCard(name="lr_run", history="lr_run.history.csv").save(tmp_path / "lr_run.json")
    monkeypatch.setenv("CVD_MODELS_DIR", str(tmp_path))
    return tmp_path


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def traces(figure: dict, run: str) -> list[dict]:
    return [t for t in figure["data"] if t.get("legendgroup") == run]


def ys(trace: dict) -> list[float]:
    """Return a trace's y values (plotly sends numpy arrays as base64 typed arrays)."""
    y = trace["y"]
    if isinstance(y, dict):
        y = np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"])
    return [round(float(v), 6) for v in y]


def test_smoothing_log_scale_learning_rate_and_extra_curves(lr_models):
    at = AppTest.from_file(PAGE, default_timeout=300)
    at.session_state["curves_runs"] = ["lr_run"]
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.slider(key="curves_smoothing").value == 0.6
    assert at.toggle(key="curves_log_loss").value is False
    uploader = at.get("file_uploader")[0].proto
    assert "At most 5 MB" in uploader.label and uploader.max_upload_size_mb == 5
    main, rates, others = figures(at)
    # Each metric twice: raw (faint, behind) and smoothed; smoothed starts at the raw value.
    losses = [t for t in traces(main, "lr_run") if t["xaxis"] == "x2"]
    assert len(losses) == 4
    raw, smoothed = losses[0], losses[1]
    assert raw["opacity"] < 0.5 and ys(raw) == [0.9, 0.7, 0.55, 0.45]
    assert ys(smoothed)[0] == 0.9 and ys(smoothed)[1] > 0.7
    assert main["layout"]["yaxis2"].get("type") != "log"
    # The learning rate, unsmoothed, on a log axis (it decays over decades).
    (rate,) = traces(rates, "lr_run")
    assert ys(rate) == [0.01, 0.01, 0.001, 0.0001] and rates["layout"]["yaxis"]["type"] == "log"
    assert others["layout"]["annotations"][0]["text"] == "f1_score"
    assert {t["name"] for t in traces(others, "lr_run") if "name" in t} == {
        "lr_run · train",
        "lr_run · validation",
    }
    summary = at.dataframe[0].value
    assert summary.iloc[0]["min val loss"] == "0.7000 (epoch 4)"  # raw, not smoothed

    at.slider(key="curves_smoothing").set_value(0.0).run()
    at.toggle(key="curves_log_loss").set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    main = figures(at)[0]
    losses = [t for t in traces(main, "lr_run") if t["xaxis"] == "x2"]
    assert len(losses) == 2 and ys(losses[0]) == [0.9, 0.7, 0.55, 0.45]  # raw only
    assert main["layout"]["yaxis2"]["type"] == "log"


def test_gaps_are_warned_about(tmp_path, monkeypatch):
    from models.card import ModelCard

    (tmp_path / "gappy.keras").write_bytes(b"")
    ragged = {"loss": [0.9, 0.7, 0.6], "val_loss": [1.0], "acc": [0.5, 0.6, 0.7]}
    (tmp_path / "gappy.history.json").write_text(json.dumps(ragged))
    ModelCard(name="gappy", history="gappy.history.json").save(tmp_path / "gappy.json")
    monkeypatch.setenv("CVD_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=300)
    at.session_state["curves_runs"] = ["gappy"]
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("gappy" in w.value and "different lengths" in w.value for w in at.warning)


def test_uploads_event_files_and_a_printed_log_are_new_selected_runs(lr_models, tmp_path):
    from tests.test_history import KERAS3_LOG, write_keras_logs

    logs = write_keras_logs(tmp_path / "logs")
    at = AppTest.from_file(PAGE, default_timeout=300)
    at.session_state["curves_runs"] = ["lr_run"]
    at.run()
    files = [(p.name, p.read_bytes(), "application/octet-stream") for p in logs.glob("*/*tfevents*")]
    files += [("notebook.txt", KERAS3_LOG.encode(), "text/plain"), ("model.h5", b"\x89HDF", "")]
    at.file_uploader(key="curves_upload").set_value(files).run()
    assert not at.exception, [e.message for e in at.exception]
    assert [e.value for e in at.error] == [
        "model.h5: not a history file (expected .csv, .json, .txt, .log or events.out.tfevents.*)"
    ]
    chosen = at.multiselect(key="curves_runs").value
    assert chosen[0] == "lr_run" and "notebook.txt (uploaded)" in chosen, chosen
    (tensorboard,) = [n for n in chosen if n.startswith("TensorBoard ")]
    row = at.dataframe[0].value.set_index("run").loc[tensorboard]
    assert row["epochs"] == 3 and row["max val accuracy"] == "0.6500 (epoch 3)"
