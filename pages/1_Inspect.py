"""Inspect: prediction, Grad-CAM for either class at any layer, and feature maps."""

import numpy as np
import streamlit as st

from explain.cams import METHOD_LABELS
from explain.feature_maps import channel_map, feature_grid, top_channels
from explain.overlay import COLORMAPS, colorize
from ui.render import layer_label, overlay_for, png_bytes
from ui.state import model_picker, photo_inputs, sidebar_models, try_load

st.set_page_config(page_title="Inspect", page_icon="🔍", layout="wide")
st.title("Inspect")

entries = sidebar_models()
with st.sidebar:
    entry = model_picker("Model", entries, key="inspect_model")
    method = st.selectbox("Method", list(METHOD_LABELS), format_func=METHOD_LABELS.get, key="inspect_method")
    colormap = st.selectbox("Colormap", list(COLORMAPS), key="inspect_colormap")
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key="inspect_opacity")
if entry is None:
    st.stop()
loaded, error = try_load(entry)
if error:
    st.error(f"Cannot use model {entry.name}: {error}")
    st.stop()
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

# One cached pass: maps at every block (so moving between blocks is free) plus the chosen layer.
with st.spinner("Explaining…"):
    from ui.state import explain

    layers = [info.path for info in catalog.blocks] or [layer]
    result = explain(loaded, photo, layers + [layer], target, (method,), keep=layer)
picture, scaled = overlay_for(photo.rgb, result.cam(layer, 0, method), opacity, colormap)
with right:
    st.subheader(f"{METHOD_LABELS[method]} for “{explainer.class_names[target]}”")
    st.image(
        picture,
        caption=f"{layer} · {METHOD_LABELS[method]} · class {explainer.class_names[target]}",
        width="stretch",
    )
    if not scaled.ok:
        st.warning(f"No meaningful heatmap: {scaled.message}.")
    st.download_button(
        "Download overlay PNG",
        png_bytes(picture),
        file_name=f"{method}_{layer.replace('/', '_')}_{explainer.class_names[target]}.png",
        mime="image/png",
        key="inspect_download",
    )
    h, w = result.cam(layer, 0, method).shape
    st.caption(
        f"Map resolution {h}×{w} cells, shown at the photo's {photo.rgb.shape[1]}×{photo.rgb.shape[0]} px."
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
    st.image(
        colorize(channel_map(activations, int(zoom)), "viridis"),
        caption=f"channel {int(zoom)}: mean {activations[..., int(zoom)].mean():.3f}, "
        f"max {activations[..., int(zoom)].max():.3f}",
        width="stretch",
    )
with c2:
    st.image(
        feature_grid(activations, top, tile=96),
        caption="channels by mean activation: " + ", ".join(str(int(c)) for c in top),
        width="stretch",
    )
if not np.isfinite(activations).all():
    st.warning("This layer's activations hold NaN or infinite values.")
