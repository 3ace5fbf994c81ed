"""Leaderboard: which method, at which layer, to trust for a model, from its shipped board
(python -m study.leaderboard)."""

import streamlit as st

from study.leaderboard import FEW_PHOTOS, METRICS
from ui.method_compare import board_for, board_path
from ui.state import DEFAULT_MODEL, model_picker, sidebar_models

st.set_page_config(page_title="Leaderboard", page_icon="🏆", layout="wide")
st.title("Leaderboard")
st.caption(
    "Every explanation method at the stage-end blocks of one model, scored on labelled photos "
    "with masks of the animal: does the map sit on the animal (pointing game, energy share), does "
    "it point at what the model uses (deletion, insertion, ROAD, Average Drop / Increase in "
    "Confidence), does it change when the model's weights are destroyed (randomisation: lower is "
    "better), and what it costs. Rank 1 is the best on each figure."
)

entries = sidebar_models()
with st.sidebar:
    entry = model_picker("Model", entries, key="board_model", default=DEFAULT_MODEL)
if entry is None:
    st.stop()
board = board_for(entry.path, entry.name)
if board is None:
    st.info(
        f"No leaderboard for {entry.name} yet ({board_path(entry.path, entry.name).name} beside the model "
        "file). Make one with `python -m study.leaderboard --model "
        f"{entry.name} --data ../shared/data/oxford_pets --limit 40 --out "
        f"{board_path(entry.path, entry.name)}`."
    )
    st.stop()

settings = board.get("settings", {})
per_class = ", ".join(f"{n} {name}s" for name, n in board.get("per_class", {}).items())
accuracy = board.get("accuracy")
st.markdown(
    f"**{board.get('model', entry.name)}** on **{board.get('photos', 0)}** photos of "
    f"`{board.get('data', '')}` "
    f"({per_class}; the model was right on {accuracy:.0%} of them; the labelled class is explained)."
    if accuracy is not None
    else f"**{board.get('model', entry.name)}**: no photo finished yet."
)
st.caption(
    f"Layers: {', '.join(board.get('layers', []))}. Deletion/insertion with {settings.get('steps')} steps, "
    f"ROAD at {settings.get('road_fractions')} of the pixels, Score-CAM/Ablation-CAM on "
    f"{settings.get('slow_channels')} channels, randomisation: every weight re-initialised "
    f"(maps made again for {len(settings.get('random_methods', []))} methods)."
)

if 0 < board.get("photos", 0) < FEW_PHOTOS:
    st.warning(
        f"Only {board['photos']} photos: the ranks below are a hint, not a verdict. The same command "
        "with a larger --limit goes on from the photos already done."
    )

rows = board.get("rows", [])
layers = ["every layer"] + list(board.get("layers", []))
c1, c2 = st.columns(2)
with c1:
    where = st.selectbox("Layer", layers, key="board_layer")
with c2:
    metric = st.selectbox(
        "Rank by",
        list(METRICS),
        format_func=lambda m: f"{METRICS[m][0]} ({METRICS[m][1]} is better)",
        key="board_metric",
    )
if where != "every layer":
    rows = [r for r in rows if r.get("layer") in (where, None)]


def rank_of(row: dict, name: str):
    if where == "every layer":
        return row.get("rank", {}).get(name)
    return row.get("rank_at_layer", {}).get(where, {}).get(name)


def number(value, digits: int = 3):
    return None if value is None or value != value else round(float(value), digits)


table = []
for row in rows:
    line = {
        "rank": rank_of(row, metric),
        "method": row.get("label", row.get("method")),
        "layer": row.get("layer") or "(input pixels)",
        "photos": row.get("n"),
    }
    for name, (label, better) in METRICS.items():
        line[f"{label} {'↓' if better == 'lower' else '↑'}"] = number(row.get(name))
    line["chance (animal's share)"] = number(row.get("chance"))
    table.append(line)
table.sort(key=lambda line: (line["rank"] is None, line["rank"] or 0))
st.dataframe(table, hide_index=True, width="stretch", key="board_table")

best = [line for line in table if line["rank"] == 1]
if best:
    names = "; ".join(f"{line['method']} at {line['layer']}" for line in best)
    st.success(f"Best by {METRICS[metric][0]}{'' if where == 'every layer' else ' at ' + where}: {names}.")
st.caption(
    "↓: lower is better, ↑: higher is better. A method without a layer (saliency, SmoothGrad, "
    "Integrated Gradients) competes at every layer. Seconds are on the machine the board was made "
    "on; the one-pass CAMs share one pass, its time. Figures are means over the photos."
)
