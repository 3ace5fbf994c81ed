"""Layer depth: two models side by side, the explanation at every residual block."""

import streamlit as st
from plotly.subplots import make_subplots

from explain.methods import METHODS, ONE_PASS, labels
from explain.overlay import COLORMAPS
from explain.report import Section, html_report, zip_of_pngs
from ui.render import overlay_for, thumbnail
from ui.state import (
    explain,
    faithfulness_by_depth,
    faithfulness_study,
    loaded_or_stop,
    model_picker,
    photo_inputs,
    sidebar_models,
)

st.set_page_config(page_title="Layer depth", page_icon="🪜", layout="wide")
st.title("Layer depth")
st.write(
    "How what the network looks at changes with depth: the same photo, two models, "
    "a map at every block, aligned by stage and by relative depth (0 = first layer, 1 = last)."
)

entries = sidebar_models()
names = [e.name for e in entries]
with st.sidebar:
    # Every block in one pass: only the CAMs computed from one layer's activations and gradients.
    one_pass = labels(ONE_PASS)
    method = st.selectbox(
        "Method",
        list(one_pass),
        format_func=one_pass.get,
        key="depth_method",
        help="The one-pass CAMs (every block in one forward and backward pass): "
        + "; ".join(f"{label}: {METHODS[name].reference}" for name, label in one_pass.items()),
    )
    colormap = st.selectbox("Colormap", list(COLORMAPS), key="depth_colormap")
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key="depth_opacity")
    target_mode = st.radio("Explain", ["predicted class", "first class", "second class"], key="depth_target")
if len(entries) < 1:
    st.warning("No models found.")
    st.stop()
c1, c2 = st.columns(2)
with c1:
    left_entry = model_picker("Left model", entries, "depth_left", "resnet50")
with c2:
    right_default = "resnet101" if "resnet101" in names else names[min(1, len(names) - 1)]
    right_entry = model_picker("Right model", entries, "depth_right", right_default)

photos, errors = photo_inputs("depth", multiple=False)
for message in errors:
    st.error(message)
if not photos:
    st.info("Upload a photo or pick a sample to begin.")
    st.stop()
photo = photos[0]
small = thumbnail(photo.rgb, 256)
stage_ends_only = st.toggle("Stage ends only", value=False, key="depth_stage_ends")
depth = st.slider("Depth (moves both columns)", 0.0, 1.0, 1.0, 0.01, key="depth_slider")

panels = []
for entry in (left_entry, right_entry):
    loaded = loaded_or_stop(entry)
    catalog = loaded.explainer.layers
    shown = catalog.stage_ends() if stage_ends_only else (catalog.blocks or catalog.layers)
    target = {"predicted class": -1, "first class": 0, "second class": 1}[target_mode]
    with st.spinner(f"Explaining with {loaded.name} at {len(catalog.blocks)} blocks…"):
        result = explain(
            loaded, photo, [info.path for info in catalog.blocks or catalog.layers], target, (method,)
        )
    panels.append((loaded, shown, result))

columns = st.columns(2)
for column, (loaded, shown, result) in zip(columns, panels):
    explainer = loaded.explainer
    predicted = int(result.predicted[0])
    probability = float(result.probabilities[0, predicted])
    with column:
        st.subheader(loaded.name)
        st.markdown(
            f"Prediction: **{explainer.class_names[predicted]}** ({probability:.1%}); "
            f"maps explain **{explainer.class_names[int(result.targets[0])]}**"
        )
        focus = min(shown, key=lambda info: abs(info.depth - depth))
        picture, scaled = overlay_for(photo.rgb, result.cam(focus.path, 0, method), opacity, colormap)
        st.image(
            picture,
            caption=f"{focus.path} · depth {focus.depth:.2f} · {focus.shape[0]}×{focus.shape[1]} map",
            width="stretch",
        )
        if not scaled.ok:
            st.warning(scaled.message)

st.divider()
st.subheader("Every block, by stage")
stages_left = {}
for info in panels[0][1]:
    stages_left.setdefault(info.stage, []).append(info)
stages_right = {}
for info in panels[1][1]:
    stages_right.setdefault(info.stage, []).append(info)
aligned = list(stages_left) == list(stages_right)
rows = list(dict.fromkeys(list(stages_left) + list(stages_right))) if aligned else ["all"]
for stage in rows:
    if aligned:
        st.markdown(f"**{stage}**")
    cols = st.columns(2)
    for col, (_loaded, shown, result), stages in zip(cols, panels, (stages_left, stages_right)):
        infos = stages.get(stage, []) if aligned else shown
        with col:
            pictures, captions = [], []
            for info in infos:
                picture, scaled = overlay_for(small, result.cam(info.path, 0, method), opacity, colormap)
                pictures.append(picture)
                flag = "" if scaled.ok else f" ⚠ {scaled.status}"
                captions.append(f"{info.name} · {info.depth:.2f}{flag}")
            if pictures:
                st.image(pictures, caption=captions, width=150)

st.divider()
st.subheader("Which depth gives the most faithful map?")
st.caption(
    "Deletion area: the class probability as the map's top pixels are removed (lower is better). "
    "Insertion area: as they are revealed on a blurred photo (higher is better)."
)
figure = make_subplots(
    rows=1, cols=2, subplot_titles=("deletion area (lower is better)", "insertion area (higher is better)")
)
palette = ["#1f77b4", "#d62728"]
if st.toggle("Measure for this photo (about 20 forward passes per block)", key="depth_faithfulness"):
    for i, (loaded, shown, result) in enumerate(panels):
        with st.spinner(f"Measuring {loaded.name} at {len(shown)} layers…"):
            rows = faithfulness_by_depth(
                loaded, photo, tuple(info.path for info in shown), int(result.targets[0]), method
            )
        for col, key in ((1, "deletion_auc"), (2, "insertion_auc")):
            figure.add_scatter(
                x=[r["depth"] for r in rows],
                y=[r[key] for r in rows],
                mode="lines+markers",
                name=f"{loaded.name} · this photo",
                line={"color": palette[i]},
                showlegend=col == 1,
                row=1,
                col=col,
            )
study = faithfulness_study()
if study:
    for i, model in enumerate(m for m in study["models"] if m["model"] in {p[0].name for p in panels}):
        for col, key in ((1, "deletion_auc"), (2, "insertion_auc")):
            figure.add_scatter(
                x=[b["depth"] for b in model["blocks"]],
                y=[b[key] for b in model["blocks"]],
                mode="lines",
                line={"color": palette[i % 2], "dash": "dash"},
                name=f"{model['model']} · mean of {model['photos']} test photos",
                showlegend=col == 1,
                row=1,
                col=col,
            )
if figure.data:
    figure.update_xaxes(title_text="relative depth")
    figure.update_layout(height=380, legend={"orientation": "h", "y": -0.3}, margin={"t": 40})
    st.plotly_chart(figure, width="stretch")
else:
    st.caption("No folder-averaged study shipped yet: `python -m models.faithfulness` makes one.")

if st.toggle("Prepare downloads (ZIP of every map, HTML report)", key="depth_exports"):
    pictures, sections = {}, []
    for loaded, shown, result in panels:
        section = Section(
            f"{loaded.name}: predicted {loaded.explainer.class_names[int(result.predicted[0])]} "
            f"({float(result.probabilities[0].max()):.1%})"
        )
        for info in shown:
            picture, _ = overlay_for(small, result.cam(info.path, 0, method), opacity, colormap)
            pictures[f"{loaded.name}_{info.name}"] = picture
            section.pictures.append((f"{info.path} · depth {info.depth:.2f}", picture))
        sections.append(section)
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download every map (PNGs in a ZIP)",
        zip_of_pngs(pictures),
        "layer_depth.zip",
        "application/zip",
        key="depth_zip",
    )
    d2.download_button(
        "Download an HTML report",
        html_report(f"Layer depth: {photo.name}", sections),
        "layer_depth.html",
        "text/html",
        key="depth_html",
    )
st.caption(f"Done: {photo.name} with {panels[0][0].name} and {panels[1][0].name}.")
