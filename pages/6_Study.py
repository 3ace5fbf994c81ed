"""Study: where every block of each model looks, over a whole labelled folder (python -m study)."""

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from models.registry import entry_for, scan
from study import explore
from study.run import StudyConfig, StudyError, run_study
from study.summary import METRICS
from ui import study_results as results
from ui.render import overlay_for, thumbnail
from ui.state import decode, explain, try_load

st.set_page_config(page_title="Study", page_icon="🔬", layout="wide")
st.title("Study")
st.write(
    "Where every block of each model looks, over a whole labelled folder: how often the map's "
    "peak is on the animal, how much of its mass is, how widely it spreads, and how it agrees "
    "with the last block, for right and wrong answers, with bootstrap 95 % intervals. "
    "Made by `python -m study` (or the run at the bottom of this page)."
)

folders = explore.study_folders(st.session_state.get("study_new_folder"))
if not folders:
    st.info("No study found: run `python -m study --data DIR --out study/results/NAME`, or start one below.")
else:
    name = st.selectbox("Study", list(folders), key="study_folder")
    folder = folders[name]
    summary = results.summary(folder)
    settings = summary.get("run", {})
    curves = results.curves(folder)
    # The order the study was asked for (resnet50 before resnet101), not alphabetical.
    models = [m for m in settings.get("models", []) if m in summary["models"]] or list(summary["models"])
    accuracy = ", ".join(
        f"{m} {info['accuracy']:.1%} right on {info['photos']} photos"
        for m, info in summary["models"].items()
    )
    st.caption(
        f"{settings.get('data', '?')}: {summary['photos']} photos; {accuracy}. "
        + ("Masks of the animal: yes." if summary["has_masks"] else "No masks: spread and agreement only.")
    )

    st.subheader("By depth")
    c1, c2, c3, c4 = st.columns(4)
    metric = c1.selectbox(
        "Metric", list(summary["metrics"]), format_func=lambda m: METRICS.get(m, m), key="study_metric"
    )
    split = c2.radio("Split", ["all", "right vs wrong", "cat vs dog"], horizontal=True, key="study_split")
    by = c3.radio(
        "Along", ["block", "depth"], horizontal=True, key="study_by", help="every block, or ten bins"
    )
    method = c4.selectbox("Method", sorted(curves["method"].unique()), key="study_method")
    chosen = curves[
        (curves["metric"] == metric)
        & (curves["by"] == by)
        & (curves["method"] == method)
        & (curves["target"] == "predicted")
    ]
    groups = {
        "all": ["all"],
        "right vs wrong": ["right", "wrong"],
        "cat vs dog": [s for s in chosen["split"].unique() if s not in ("all", "right", "wrong")],
    }[split]
    figure = go.Figure()
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    dashes = ["solid", "dash", "dot"]
    for i, model in enumerate(models):
        for j, group in enumerate(groups):
            line = chosen[(chosen["model"] == model) & (chosen["split"] == group)].sort_values("x")
            if line.empty:
                continue
            label = f"{model} · {group}" if group != "all" else model
            colour = colours[i % len(colours)]
            figure.add_trace(
                go.Scatter(
                    x=np.r_[line["x"], line["x"][::-1]],
                    y=np.r_[line["high"], line["low"][::-1]],
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.15,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
            figure.add_trace(
                go.Scatter(
                    x=line["x"],
                    y=line["mean"],
                    mode="lines+markers",
                    name=label,
                    line={"color": colour, "dash": dashes[j % len(dashes)]},
                    customdata=np.c_[line["low"], line["high"], line["n"], line["layer"]],
                    hovertemplate="%{customdata[3]} depth %{x:.2f}: %{y:.3f} "
                    "[%{customdata[0]:.3f}, %{customdata[1]:.3f}], n=%{customdata[2]}<extra></extra>",
                )
            )
    if "chance" in chosen and chosen["chance"].notna().any():
        chance = float(chosen.loc[chosen["split"] == "all", "chance"].mean())
        figure.add_hline(y=chance, line_dash="dot", line_color="grey", annotation_text=f"chance {chance:.2f}")
    figure.update_layout(
        xaxis_title="relative depth (0 = first block, 1 = last)",
        yaxis_title=METRICS.get(metric, metric),
        height=420,
        margin={"t": 30},
    )
    st.plotly_chart(figure, key="study_curves")
    st.caption(
        "Shaded: bootstrap 95 % interval over photos. Dotted grey line: the animal's share of the "
        "photo, what a map thrown at random scores."
    )

    table = results.table(folder)
    st.subheader("Best and worst localised photos at one block")
    g1, g2 = st.columns([1, 3])
    gallery_model = g1.selectbox("Model", models, key="study_gallery_model")
    blocks = summary["models"][gallery_model]["blocks"]
    layer = g2.select_slider(
        "Block",
        [b["layer"] for b in blocks],
        value=blocks[-1]["layer"],
        format_func=lambda p: f"{p} (depth {next(b['rel_depth'] for b in blocks if b['layer'] == p):.2f})",
        key="study_gallery_layer",
    )
    best, worst, how = explore.best_and_worst(table, gallery_model, layer, method, k=4)
    draw = st.toggle("Draw the maps (runs the model on these photos)", key="study_draw_maps")
    loaded = None
    if draw:
        model_file = explore.model_file(settings, gallery_model)
        loaded, problem = try_load(entry_for(model_file)) if model_file else (None, "no such model here")
        if loaded is None:
            st.warning(f"{gallery_model} cannot be loaded here ({problem}); showing the peaks only")
    st.caption(
        f"Ranked by {how}. "
        + ("The map of the predicted class at this block. " if loaded else "Red ring: the map's peak. ")
        + "Green: the animal's outline."
    )
    for title, rows, side in (("Best", best, "best"), ("Worst", worst, "worst")):
        st.markdown(f"**{title}**")
        columns = st.columns(max(len(rows), 1))
        for k, (column, (_, row)) in enumerate(zip(columns, rows.iterrows())):
            path = explore.photo_file(settings, row["photo"])
            caption = (
                f"{Path(row['photo']).name}: is {row['label_name']}, said {row['predicted_name']} "
                f"({row['probability']:.0%})"
                + (f"; energy {row['energy']:.2f}" if np.isfinite(row["energy"]) else "")
            )
            if path is None:
                column.caption(f"{caption} (photo not on this machine)")
                continue
            mask = explore.mask_file(settings, row["photo"])
            mask = str(mask) if mask else None
            if loaded is not None:
                photo = decode(Path(path).name, Path(path).read_bytes())
                cam = explain(loaded, photo, [layer], -1, (method,)).cam(layer, 0, method)
                picture = results.with_outline(overlay_for(thumbnail(photo.rgb), cam, 0.5, "jet")[0], mask)
            else:
                picture = results.marked_photo(str(path), float(row["peak_y"]), float(row["peak_x"]), mask)
            column.image(picture, caption=caption, width="stretch")
            if column.button("Open in Inspect", key=f"study_open_{side}_{k}"):
                st.session_state["inspect_open"] = str(path)
                st.session_state["inspect_model"] = gallery_model
                st.switch_page("pages/1_Inspect.py")

    embedding = results.table(folder, "embedding.parquet")
    if embedding is not None:
        st.subheader("Penultimate features")
        model = st.selectbox("Model", models, key="study_embedding_model")
        points = embedding[embedding["model"] == model].reset_index(drop=True)
        figure = go.Figure()
        for answer, colour in ((True, "#2ca02c"), (False, "#d62728")):
            part = points[points["correct"] == answer]
            figure.add_trace(
                go.Scatter(
                    x=part["x"],
                    y=part["y"],
                    mode="markers",
                    name="right" if answer else "wrong",
                    marker={"color": colour, "size": 6 if answer else 9, "opacity": 0.6 if answer else 0.9},
                    customdata=np.c_[
                        part["photo"], part["label_name"], part["predicted_name"], part["probability"]
                    ],
                    hovertemplate="%{customdata[0]}<br>is %{customdata[1]}, said %{customdata[2]} "
                    "(%{customdata[3]:.2f})<extra></extra>",
                )
            )
        info = summary.get("embedding", {}).get(model, {})
        figure.update_layout(
            xaxis_title="PC 1",
            yaxis_title="PC 2",
            height=420,
            margin={"t": 30},
            title=f"PCA of the {info.get('dimensions', '?')} features: the two axes hold "
            f"{info.get('explained_2d', float('nan')):.0%} of their variance",
        )
        picked = st.plotly_chart(figure, key="study_embedding", on_select="rerun", selection_mode="points")
        selected = (picked or {}).get("selection", {}).get("points", []) if picked else []
        if selected:
            photo = selected[0]["customdata"][0]
            path = explore.photo_file(settings, photo)
            if path is not None:
                st.image(results.marked_photo(str(path), float("nan"), float("nan"), None), caption=photo)
        else:
            st.caption("Click a point to see its photo.")

    atlas = results.table(folder, "atlas.parquet")
    if atlas is not None and len(atlas):
        st.subheader("Channel atlas")
        st.caption(
            "At each stage's end, the channels with the strongest response over the photos, and the "
            "patches that excite each most."
        )
        atlas_model = st.selectbox("Model", models, key="study_atlas_model")
        mine = atlas[atlas["model"] == atlas_model]
        stages = list(dict.fromkeys(mine.sort_values("rel_depth")["stage"]))
        tabs = st.tabs(stages)
        for tab, stage in zip(tabs, stages):
            rows = mine[mine["stage"] == stage]
            for _, patches in rows.groupby("channel_rank"):
                first = patches.iloc[0]
                cells = tab.columns([1] + [1] * len(patches))
                cells[0].caption(
                    f"{first['layer']} channel {first['channel']} (mean peak {first['strength']:.2f})"
                )
                for cell, (_, patch) in zip(cells[1:], patches.iterrows()):
                    path = explore.photo_file(settings, patch["photo"])
                    if path is None:
                        cell.caption("photo not here")
                        continue
                    box = (patch["y0"], patch["x0"], patch["y1"], patch["x1"])
                    cell.image(results.crop(str(path), box), width="stretch")

st.subheader("Run a study on a folder")
with st.form("study_run"):
    data = st.text_input(
        "Labelled folder (class folders, cat.N.jpg, or labels.csv with trimaps)", key="study_data"
    )
    names = [e.name for e in scan()]
    chosen_models = st.multiselect("Models", names, default=names[:2], key="study_models")
    limit = st.number_input("Photos (at most)", 1, 100_000, 40, key="study_limit")
    submitted = st.form_submit_button("Run the study")
if submitted:
    if not data or not Path(data).is_dir():
        st.error(f"no such folder: {data or '(empty)'}")
    elif not chosen_models:
        st.error("choose at least one model")
    else:
        out = explore.USER_STUDIES_DIR / Path(data).resolve().name
        bar = st.progress(0.0, text="loading the models…")
        config = StudyConfig(models=chosen_models, data=data, out=str(out), limit=int(limit))
        try:
            run_study(config, report=lambda done, total, line: bar.progress(done / max(total, 1), text=line))
        except StudyError as err:
            st.error(str(err))
        else:
            st.session_state["study_new_folder"] = str(out)
            st.success(f"done: {out}")
            st.rerun()
