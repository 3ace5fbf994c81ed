"""Training curves: accuracy and loss of every run, train against validation."""

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from explain.history import HistoryError, load_history, parse_history
from ui.state import sidebar_models

st.set_page_config(page_title="Training curves", page_icon="📈", layout="wide")
st.title("Training curves")

entries = sidebar_models()
runs, problems = {}, []
for entry in entries:
    path = entry.history_path
    if path is None:
        continue
    try:
        history = load_history(path, entry.name)
    except (HistoryError, OSError) as err:
        problems.append(f"{entry.name}: {err}")
        continue
    runs[entry.name] = (history, entry.card.test or {})

uploads = st.file_uploader(
    "Add a history file (Keras CSVLogger CSV or history.history JSON)",
    type=["csv", "json", "txt"],
    accept_multiple_files=True,
    key="curves_upload",
)
for upload in uploads or []:
    name = f"{upload.name} (uploaded)"
    try:
        runs[name] = (parse_history(upload.getvalue(), name, upload.name), {})
    except HistoryError as err:
        problems.append(f"{upload.name}: {err}")
for message in problems:
    st.error(message)
if not runs:
    st.info("No training histories yet: the shipped models' cards point to theirs, or upload one.")
    st.stop()

chosen = st.multiselect("Runs", list(runs), default=list(runs), key="curves_runs")
for name in chosen:
    for warning in runs[name][0].warnings:
        st.warning(f"{name}: {warning}")

palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
figure = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy", "Loss"))
for i, name in enumerate(chosen):
    history = runs[name][0]
    color = palette[i % len(palette)]
    for col, metric in ((1, "accuracy"), (2, "loss")):
        for prefix, dash, label in (("", "solid", "train"), ("val_", "dash", "validation")):
            values = history.metrics.get(prefix + metric)
            if values is None:
                continue
            figure.add_trace(
                go.Scatter(
                    x=history.epochs,
                    y=values,
                    # Past a few dozen epochs markers only blur the curve into a band.
                    mode="lines+markers" if len(history.epochs) <= 60 else "lines",
                    name=f"{name} · {label}",
                    line={"color": color, "dash": dash},
                    legendgroup=name,
                    showlegend=col == 1,
                    connectgaps=False,
                ),
                row=1,
                col=col,
            )
figure.update_xaxes(title_text="epoch")
figure.update_layout(height=460, legend={"orientation": "h", "y": -0.2}, margin={"t": 40})
st.plotly_chart(figure, width="stretch")

st.subheader("Summary")
table = []
for name in chosen:
    summary = runs[name][0].summary()
    test = runs[name][1]
    row = {"run": name, "epochs": summary["epochs"]}
    for label in ("max train accuracy", "min train loss", "max val accuracy", "min val loss"):
        value = summary[label]
        row[label] = None if value is None else f"{value:.4f} (epoch {summary[label + ' epoch']})"
    row["test accuracy"] = f"{test['accuracy']:.4f}" if "accuracy" in test else ""
    row["test loss"] = f"{test['loss']:.4f}" if "loss" in test else ""
    table.append(row)
st.dataframe(table, hide_index=True, width="stretch")
