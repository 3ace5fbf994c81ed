"""Training curves: every run's accuracy and loss, train against validation, smoothed as in
TensorBoard; the learning rate and any other metric the history holds."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from explain.history import (
    LEARNING_RATE,
    MAX_HISTORY_BYTES,
    History,
    HistoryError,
    is_event_file,
    is_history_name,
    load_history,
    modified,
    pair_event_uploads,
    parse_history,
    smooth,
)
from ui.state import sidebar_models

st.set_page_config(page_title="Training curves", page_icon="📈", layout="wide")
st.title("Training curves")

LIMIT_MB = MAX_HISTORY_BYTES // 2**20
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
SPLITS = (("", "solid", "train"), ("val_", "dash", "validation"))


@st.cache_data(show_spinner=False, max_entries=64)
def _read_file(path: str, mtime: float, name: str) -> History:
    return load_history(path, name)


@st.cache_data(show_spinner=False, max_entries=64)
def _read_upload(data: bytes, name: str, filename: str) -> History:
    return parse_history(data, name, filename)


entries = sidebar_models()
runs, problems = {}, []
for entry in entries:
    path = entry.history_path
    if path is None:
        continue
    try:
        runs[entry.name] = (_read_file(str(path), modified(path), entry.name), entry.card.test or {})
    except (HistoryError, OSError) as err:
        problems.append(f"{entry.name}: {err}")

uploads = st.file_uploader(
    "Add a history: a Keras CSVLogger or pandas `to_csv` file, `history.history` as JSON, the "
    "log `fit()` printed (.txt or .log), or TensorBoard event files (`events.out.tfevents.*`; "
    f"give a run's train and validation files together). At most {LIMIT_MB} MB each.",
    # Event files end in ".v2" or in the writer's host name, so names are checked below.
    type=None,
    accept_multiple_files=True,
    max_upload_size=LIMIT_MB,
    key="curves_upload",
)
event_uploads = []
for upload in uploads or []:
    data = upload.getvalue()
    if not (is_history_name(upload.name) or is_event_file(upload.name, data)):
        problems.append(
            f"{upload.name}: not a history file (expected .csv, .json, .txt, .log or events.out.tfevents.*)"
        )
        continue
    name = f"{upload.name} (uploaded)"
    try:
        history = _read_upload(data, name, upload.name)
    except HistoryError as err:
        problems.append(f"{upload.name}: {err}")
        continue
    if is_event_file(upload.name, data):
        event_uploads.append((upload.name, history))
    else:
        runs[name] = (history, {})
for history in pair_event_uploads(event_uploads, " (uploaded)"):
    runs[history.name] = (history, {})
for message in problems:
    st.error(message)
if not runs:
    st.info("No training histories yet: the shipped models' cards point to theirs, or upload one.")
    st.stop()

# A keyed multiselect keeps its choice when its options change: select runs that just arrived
# (an upload) and drop runs that went, without touching what the user chose for the others.
known = st.session_state.get("curves_known")
if known is not None and "curves_runs" in st.session_state:
    kept = [n for n in st.session_state["curves_runs"] if n in runs]
    st.session_state["curves_runs"] = kept + [n for n in runs if n not in known and n not in kept]
st.session_state["curves_known"] = list(runs)
chosen = st.multiselect(
    "Runs",
    list(runs),
    default=None if "curves_runs" in st.session_state else list(runs),
    key="curves_runs",
)
histories = {name: runs[name][0] for name in chosen}
for name, history in histories.items():
    for warning in history.warnings:
        st.warning(f"{name}: {warning}")

left, right = st.columns([3, 1])
weight = left.slider(
    "Smoothing",
    min_value=0.0,
    max_value=0.99,
    value=0.6,
    step=0.01,
    key="curves_smoothing",
    help="TensorBoard's smoothing: an exponential moving average, debiased so the first epochs "
    "are not pulled towards zero. 0 draws the raw figures; the raw curve stays faint behind "
    "the smoothed one. The summary table below is always raw.",
)
log_loss = right.toggle("Loss on a log scale", key="curves_log_loss")
x_label = "step" if any(h.x_label == "step" for h in histories.values()) else "epoch"


def add_curve(figure, shown, history, key, color, dash, label, row, col, smoothed=True):
    """Draw one metric of one run: smoothed in front, the raw figures faint behind it."""
    legend = (history.name, label) not in shown  # one legend entry per run and line style
    shown.add((history.name, label))
    values = history.metrics[key]
    mode = "lines+markers" if len(history.epochs) <= 60 else "lines"  # markers blur long runs
    front = smooth(values, weight) if smoothed and weight > 0 else values
    if front is not values:
        figure.add_trace(
            go.Scatter(
                x=history.epochs,
                y=values,
                mode="lines",
                line={"color": color, "dash": dash, "width": 1},
                opacity=0.25,
                legendgroup=history.name,
                showlegend=False,
                hoverinfo="skip",
                connectgaps=False,
            ),
            row=row,
            col=col,
        )
    figure.add_trace(
        go.Scatter(
            x=history.epochs,
            y=front,
            customdata=values,
            mode=mode,
            name=f"{history.name} · {label}",
            line={"color": color, "dash": dash},
            legendgroup=history.name,
            showlegend=legend,
            connectgaps=False,
            hovertemplate=f"{label} %{{y:.4g}}"
            + (" (raw %{customdata:.4g})" if front is not values else "")
            + f"<br>{x_label} %{{x}}<extra>{history.name}</extra>",
        ),
        row=row,
        col=col,
    )


colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(histories)}
figure, shown = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy", "Loss")), set()
for name, history in histories.items():
    for col, metric in ((1, "accuracy"), (2, "loss")):
        for prefix, dash, label in SPLITS:
            if prefix + metric in history.metrics:
                add_curve(figure, shown, history, prefix + metric, colors[name], dash, label, 1, col)

if log_loss:
    figure.update_yaxes(type="log", row=1, col=2)
    hidden = sum(
        int((history.metrics[k] <= 0).sum())
        for history in histories.values()
        for k in ("loss", "val_loss")
        if k in history.metrics
    )
    if hidden:
        st.warning(f"{hidden} loss value(s) at or below 0 cannot be drawn on a log scale.")
figure.update_xaxes(title_text=x_label)
figure.update_layout(height=460, legend={"orientation": "h", "y": -0.2}, margin={"t": 40})
st.plotly_chart(figure, width="stretch", key="curves_main")

with_lr = {n: h for n, h in histories.items() if LEARNING_RATE in h.metrics}
if with_lr:
    st.subheader("Learning rate")
    rates, shown = make_subplots(rows=1, cols=1), set()
    for name, history in with_lr.items():
        # A schedule is drawn as it was set, never smoothed.
        add_curve(rates, shown, history, LEARNING_RATE, colors[name], "solid", "learning rate", 1, 1, False)
    every = np.concatenate([h.metrics[LEARNING_RATE] for h in with_lr.values()])
    every = every[np.isfinite(every)]
    if every.size and (every > 0).all() and every.max() >= 10 * every.min():
        rates.update_yaxes(type="log", dtick=1)  # decays over decades read best on a log axis
    rates.update_xaxes(title_text=x_label)
    rates.update_yaxes(title_text="learning rate", exponentformat="e")
    rates.update_layout(height=300, legend={"orientation": "h", "y": -0.3}, margin={"t": 20})
    st.plotly_chart(rates, width="stretch", key="curves_lr")

extras = list(dict.fromkeys(m for h in histories.values() for m in h.extra_metrics()))
if extras:
    st.subheader("Other metrics")
    cols = min(2, len(extras))
    rows = -(-len(extras) // cols)
    others, shown = make_subplots(rows=rows, cols=cols, subplot_titles=extras), set()
    for i, metric in enumerate(extras):
        for name, history in histories.items():
            for prefix, dash, label in SPLITS:
                if prefix + metric in history.metrics:
                    row, col = divmod(i, cols)
                    key = prefix + metric
                    add_curve(others, shown, history, key, colors[name], dash, label, row + 1, col + 1)
    others.update_xaxes(title_text=x_label)
    others.update_layout(height=320 * rows, legend={"orientation": "h", "y": -0.15}, margin={"t": 40})
    st.plotly_chart(others, width="stretch", key="curves_other")

st.subheader("Summary")
st.caption("Raw figures, not smoothed.")
table = []
for name, history in histories.items():
    summary = history.summary()
    test = runs[name][1]
    row = {"run": name, "epochs": summary["epochs"]}
    for label in ("max train accuracy", "min train loss", "max val accuracy", "min val loss"):
        value = summary[label]
        row[label] = None if value is None else f"{value:.4f} ({history.x_label} {summary[label + ' epoch']})"
    row["test accuracy"] = f"{test['accuracy']:.4f}" if "accuracy" in test else ""
    row["test loss"] = f"{test['loss']:.4f}" if "loss" in test else ""
    table.append(row)
st.dataframe(table, hide_index=True, width="stretch")
