"""Inspect: prediction, Grad-CAM for either class at any layer, and feature maps."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from explain.cams import METHOD_LABELS, SLOW_METHOD_LABELS
from explain.feature_maps import channel_map, feature_grid, top_channels
from explain.overlay import COLORMAPS, colorize
from explain.report import Section, html_report, zip_of_pngs
from ui.render import layer_label, overlay_for, png_bytes
from ui.state import (
    DEFAULT_MODEL,
    explain,
    faithfulness_of,
    loaded_or_stop,
    model_picker,
    photo_inputs,
    sanity_of,
    score_cam_map,
    sidebar_models,
)

st.set_page_config(page_title="Inspect", page_icon="🔍", layout="wide")
st.title("Inspect")

entries = sidebar_models()
with st.sidebar:
    entry = model_picker("Model", entries, key="inspect_model", default=DEFAULT_MODEL)
    labels = {**METHOD_LABELS, **SLOW_METHOD_LABELS}
    method = st.selectbox("Method", list(labels), format_func=labels.get, key="inspect_method")
    colormap = st.selectbox("Colormap", list(COLORMAPS), key="inspect_colormap")
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key="inspect_opacity")
loaded = loaded_or_stop(entry)
explainer = loaded.explainer
st.caption(
    f"{loaded.name}: {loaded.card.architecture}, input {explainer.input_shape[0]}×"
    f"{explainer.input_shape[1]}×{explainer.input_shape[2]}, classes {', '.join(explainer.class_names)}"
)
if loaded.card.notes:
    st.caption(loaded.card.notes)

photos, errors = photo_inputs("inspect")
for message in errors:
    st.error(message)
if not photos:
    st.info("Upload a photo or pick a sample to begin.")
    st.stop()

# Predictions for every photo: one batched forward pass.
probabilities = explainer.predict(explainer.prepare([p.rgb for p in photos]))
if len(photos) > 1:
    rows = [
        {
            "photo": p.name,
            "prediction": explainer.class_names[int(pr.argmax())],
            "probability": round(float(pr.max()), 4),
        }
        for p, pr in zip(photos, probabilities)
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    index = st.selectbox(
        "Photo to explain", range(len(photos)), format_func=lambda i: photos[i].name, key="inspect_photo"
    )
else:
    index = 0
photo = photos[index]
probs = probabilities[index]
predicted = int(probs.argmax())

catalog = explainer.layers
left, right = st.columns([1, 1])
with left:
    st.subheader(f"Prediction: {explainer.class_names[predicted]} ({probs[predicted]:.1%})")
    st.progress(float(probs[predicted]))
    st.caption(" · ".join(f"{n}: {p:.1%}" for n, p in zip(explainer.class_names, probs)))
    class_options = ["predicted"] + list(range(len(explainer.class_names)))
    choice = st.radio(
        "Explain the class",
        class_options,
        format_func=lambda c: (
            f"predicted ({explainer.class_names[predicted]})"
            if c == "predicted"
            else explainer.class_names[c]
        ),
        horizontal=True,
        key="inspect_class",
    )
    target = predicted if choice == "predicted" else int(choice)
    blocks_only = st.toggle("Block outputs only", value=True, key="inspect_blocks_only")
    options = catalog.blocks if blocks_only and catalog.blocks else catalog.layers
    paths = [info.path for info in options]
    default = paths.index(catalog.last.path) if catalog.last.path in paths else len(paths) - 1
    layer = st.selectbox(
        "Layer (grouped by stage, shallow to deep)",
        paths,
        index=default,
        format_func=lambda p: layer_label(catalog[p]),
        key="inspect_layer",
    )
    st.image(photo.rgb, caption=f"{photo.name} ({photo.rgb.shape[1]}×{photo.rgb.shape[0]})", width="stretch")

# One cached pass for every layer in the list.
in_pass = method if method in METHOD_LABELS else "gradcam"
with st.spinner("Explaining…"):
    # The tap set is the whole list shown (blocks, or every layer): picking another layer from
    # it reuses the same compiled pass, and the cached result when the photo is the same.
    result = explain(loaded, photo, paths, target, (in_pass,), keep=layer)
    if method in SLOW_METHOD_LABELS:
        cam = score_cam_map(loaded, photo, layer, target)
    else:
        cam = result.cam(layer, 0, method)
picture, scaled = overlay_for(photo.rgb, cam, opacity, colormap)
method_name = labels[method].split(" (")[0]
with right:
    st.subheader(f"{method_name} for “{explainer.class_names[target]}”")
    st.image(
        picture, caption=f"{layer} · {method_name} · class {explainer.class_names[target]}", width="stretch"
    )
    if not scaled.ok:
        st.warning(f"No meaningful heatmap: {scaled.message}.")
    st.caption(
        f"Map resolution {cam.shape[0]}×{cam.shape[1]} cells, shown at the photo's "
        f"{photo.rgb.shape[1]}×{photo.rgb.shape[0]} px."
    )

st.divider()
st.subheader(f"Feature maps of {layer}")
activations = result.kept_activations[0]
channels = activations.shape[-1]
c1, c2 = st.columns([1, 2])
with c1:
    k = (
        st.slider("Strongest channels shown", 4, min(64, channels), min(16, channels), key="inspect_topk")
        if channels > 4
        else channels
    )
    top = top_channels(activations, k)
    zoom = st.number_input(
        f"Channel to zoom (0–{channels - 1})", 0, channels - 1, int(top[0]), key="inspect_channel"
    )
    zoomed = colorize(channel_map(activations, int(zoom)), "viridis")
    st.image(
        zoomed,
        caption=f"channel {int(zoom)}: mean {activations[..., int(zoom)].mean():.3f}, "
        f"max {activations[..., int(zoom)].max():.3f}",
        width="stretch",
    )
grid = feature_grid(activations, top, tile=96)
with c2:
    st.image(
        grid, caption="channels by mean activation: " + ", ".join(str(int(c)) for c in top), width="stretch"
    )
if not np.isfinite(activations).all():
    st.warning("This layer's activations hold NaN or infinite values.")

st.divider()
st.subheader("Can this map be trusted?")
f_col, s_col = st.columns(2)
sections = []
with f_col:
    st.markdown(
        "**Faithfulness**: delete the pixels the map ranks highest (the probability should fall "
        "fast: low area) or reveal them on a blurred photo (it should rise fast: high area)."
    )
    if st.toggle("Measure faithfulness (about 40 forward passes)", key="inspect_faithfulness"):
        with st.spinner("Deleting and inserting pixels…"):
            faith = faithfulness_of(loaded, photo, layer, target, method, cam)
        figure = go.Figure()
        figure.add_scatter(
            x=faith.fractions, y=faith.deletion, name=f"deletion (area {faith.deletion_auc:.3f})"
        )
        figure.add_scatter(
            x=faith.fractions, y=faith.insertion, name=f"insertion (area {faith.insertion_auc:.3f})"
        )
        figure.update_layout(
            height=320,
            xaxis_title="fraction of pixels",
            yaxis_title=f"p({explainer.class_names[target]})",
            legend={"orientation": "h", "y": -0.3},
            margin={"t": 20},
        )
        st.plotly_chart(figure, width="stretch")
        st.caption(
            f"Keeping only the top 20% of the map changes the probability by {-faith.top20_drop:+.3f} "
            f"(from {faith.original:.3f})."
        )
        sections.append(Section("Faithfulness", figures={k: f"{v:.4f}" for k, v in faith.summary().items()}))
with s_col:
    st.markdown(
        "**Sanity check**: re-initialise the weights from the top block down. A map that explains "
        "the model changes as it is destroyed (rank correlation falls); one that does not only shows edges."
    )
    if st.toggle("Run the randomisation check", key="inspect_sanity"):
        with st.spinner("Randomising block by block…"):
            steps = sanity_of(loaded, photo, layer, target, in_pass)
        figure = go.Figure(
            go.Scatter(x=[s.randomised for s in steps], y=[s.spearman for s in steps], mode="lines+markers")
        )
        figure.update_layout(
            height=320,
            yaxis_title="rank correlation with the original map",
            yaxis_range=[-1, 1],
            xaxis_title="randomised down to",
            margin={"t": 20},
        )
        st.plotly_chart(figure, width="stretch")
        if method in SLOW_METHOD_LABELS:
            st.caption("Run with Grad-CAM: Score-CAM would need 64 passes at every step.")
        sections.append(
            Section("Randomisation check", figures={s.randomised: f"{s.spearman:.3f}" for s in steps})
        )

st.divider()
st.download_button(
    "Download overlay PNG",
    png_bytes(picture),
    file_name=f"{method}_{layer.replace('/', '_')}_{explainer.class_names[target]}.png",
    mime="image/png",
    key="inspect_download",
)
if st.toggle("Prepare downloads of the whole view (ZIP of PNGs, HTML report)", key="inspect_exports"):
    pictures = {
        "photo": photo.rgb,
        f"{method}_{layer}_{explainer.class_names[target]}": picture,
        f"features_{layer}": grid,
        f"channel_{int(zoom)}": zoomed,
    }
    report = html_report(
        f"{photo.name}: {loaded.name}",
        [
            Section("Prediction", figures={n: f"{p:.4f}" for n, p in zip(explainer.class_names, probs)}),
            Section(
                f"{method_name} at {layer} for “{explainer.class_names[target]}”",
                scaled.message,
                pictures=[("photo", photo.rgb), ("overlay", picture)],
            ),
            Section(f"Feature maps of {layer}", pictures=[("strongest channels", grid)]),
            *sections,
        ],
        loaded.card.to_dict(),
    )
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download this view (PNGs in a ZIP)",
        zip_of_pngs(pictures),
        "inspect.zip",
        "application/zip",
        key="inspect_zip",
    )
    d2.download_button("Download an HTML report", report, "inspect.html", "text/html", key="inspect_html")
