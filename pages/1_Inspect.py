"""Inspect: prediction, any method's map for either class at any layer with how it ranks for
this model, every method side by side, feature maps, and whether the map can be trusted."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from explain.feature_maps import channel_map, feature_grid, top_channels
from explain.methods import METHODS, ONE_PASS, names
from explain.overlay import COLORMAPS, colorize
from explain.report import Section, html_report, zip_of_pngs
from study.leaderboard import standing, standing_sentence
from ui import first_look
from ui.method_compare import board_for, independent_of, method_map_of, photo_scores, random_logit_of
from ui.render import heatmap_figure, layer_label, overlay_for, photo_figure, png_bytes, prediction_header
from ui.state import (
    DEFAULT_MODEL,
    explain,
    faithfulness_of,
    loaded_or_stop,
    model_picker,
    photo_inputs,
    sanity_of,
    sidebar_models,
)

st.set_page_config(page_title="Inspect", page_icon="🔍", layout="wide")
st.title("Inspect")

entries = sidebar_models()
with st.sidebar:
    entry = model_picker("Model", entries, key="inspect_model", default=DEFAULT_MODEL)
    labels = {name: m.label for name, m in METHODS.items()}
    method = st.selectbox(
        "Method",
        list(labels),
        format_func=lambda n: labels[n] if METHODS[n].one_pass else f"{labels[n]} ({METHODS[n].cost})",
        key="inspect_method",
    )
    colormap = st.selectbox("Colormap", list(COLORMAPS), key="inspect_colormap")
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key="inspect_opacity")
header = st.container()  # the model's caption, once it is loaded
photos, errors = photo_inputs("inspect")
for message in errors:
    st.error(message)
# A fresh server: the prediction and Grad-CAM from the file read as plain TensorFlow ops,
# about 2 s before Keras has built the model (ui.first_look); the full page replaces it.
first_look_area = st.empty()
if first_look.wanted(entry, photos, method):
    with first_look_area.container():
        first_look.show(entry, photos[0], colormap, opacity)
loaded = None
try:
    loaded = loaded_or_stop(entry)
finally:
    if loaded is None:  # the model did not load (the page says why): no stale first look
        first_look_area.empty()
explainer = loaded.explainer
with header:
    st.caption(
        f"{loaded.name}: {loaded.card.architecture}, input {explainer.input_shape[0]}×"
        f"{explainer.input_shape[1]}×{explainer.input_shape[2]}, classes {', '.join(explainer.class_names)}"
    )
    if loaded.card.notes:
        st.caption(loaded.card.notes)
if not photos:
    st.info("Upload a photo or pick a sample to begin.")
    st.stop()

catalog = explainer.layers
# The layer list and the method, as the widgets below will show them (read before they are
# drawn, so the first pass can run now and give the prediction as well).
blocks_only = st.session_state.get("inspect_blocks_only", True)
options = catalog.blocks if blocks_only and catalog.blocks else catalog.layers
paths = [info.path for info in options]
default = paths.index(catalog.last.path) if catalog.last.path in paths else len(paths) - 1
chosen_layer = st.session_state.get("inspect_layer")
one_pass = METHODS[method].one_pass
in_pass = method if one_pass else "gradcam"

if len(photos) > 1:
    # Predictions for every photo: one batched forward pass.
    probabilities = explainer.predict(explainer.prepare([p.rgb for p in photos]))
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
    probs = probabilities[index]
    photo = photos[index]
else:
    # One photo: the pass that explains the predicted class gives the prediction too, so a
    # fresh server compiles one function before the first heatmap, not two.
    photo = photos[0]
    kept = chosen_layer if chosen_layer in paths else paths[default]
    with st.spinner("Explaining…"):
        probs = explain(loaded, photo, paths, -1, (in_pass,), keep=kept).probabilities[0]
predicted = int(probs.argmax())
first_look_area.empty()

left, right = st.columns([1, 1])
with left:
    prediction_header(explainer.class_names, probs)
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
    st.toggle("Block outputs only", value=True, key="inspect_blocks_only")
    layer = st.selectbox(
        "Layer (grouped by stage, shallow to deep)",
        paths,
        index=default,
        format_func=lambda p: layer_label(catalog[p]),
        key="inspect_layer",
    )
    photo_figure(photo.rgb, photo.name)

# One cached pass for every layer in the list.
with st.spinner("Explaining…"):
    # The tap set is the whole list shown (blocks, or every layer): picking another layer from
    # it reuses the same compiled pass, and the cached result when the photo is the same
    # (class -1, "the predicted one", is how the prediction above was asked for).
    asked = -1 if choice == "predicted" else target
    result = explain(loaded, photo, paths, asked, (in_pass,), keep=layer)
if one_pass:
    cam = result.cam(layer, 0, method)
else:
    with st.spinner(f"{labels[method]}: {METHODS[method].cost}…"):
        cam = method_map_of(loaded, photo, method, layer, target)
picture, scaled = overlay_for(photo.rgb, cam, opacity, colormap)
method_name = labels[method]
board = board_for(entry.path, loaded.name)
with right:
    heatmap_figure(picture, layer, method_name, explainer.class_names[target])
    if not scaled.ok:
        st.warning(f"No meaningful heatmap: {scaled.message}.")
    st.caption(
        f"Map resolution {cam.shape[0]}×{cam.shape[1]} cells, shown at the photo's "
        f"{photo.rgb.shape[1]}×{photo.rgb.shape[0]} px."
        + (
            ""
            if METHODS[method].uses_layer
            else f" {method_name} has no layer: the map is of the input pixels."
        )
    )
    # How this method at this layer did on the model's leaderboard (study.leaderboard).
    if board is not None:
        sentence = standing_sentence(board, method, layer)
        if sentence:
            st.info(f"**Leaderboard**: {sentence} See the Leaderboard page for the whole board.")
        else:
            st.caption(
                f"The leaderboard of {loaded.name} ({board.get('photos', 0)} photos) scores "
                f"{', '.join(board.get('layers', []))}; pick one of those layers to see how "
                f"{method_name} ranked."
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
st.subheader(f"Every method at {layer}")
st.caption(
    "The one-pass CAMs come from one forward and backward pass; the slow methods on request. "
    "Scores are for this photo and this class (deletion: lower is better; insertion, ROAD: higher; "
    "drop: the confidence lost when the photo is seen only through the map)."
)
if st.toggle("Compare every method at this layer", key="inspect_compare"):
    fast = tuple(names(ONE_PASS))
    with st.spinner("One pass for every CAM…"):
        every = explain(loaded, photo, paths, target, fast, keep=layer)
    maps = {m: every.cam(layer, 0, m) for m in fast}
    others = [m for m in METHODS if m not in fast]
    if st.toggle(
        "Add the slow methods: " + ", ".join(f"{labels[m]} ({METHODS[m].cost})" for m in others),
        key="inspect_compare_slow",
    ):
        bar = st.progress(0.0, text="Slow methods…")
        for i, m in enumerate(others):
            bar.progress(i / len(others), text=f"{labels[m]}: {METHODS[m].cost} ({i + 1} of {len(others)})")
            maps[m] = method_map_of(loaded, photo, m, layer, target)
        bar.progress(1.0, text=f"{len(others)} slow methods done")
    scores = {}
    if st.toggle(
        f"Score each map on this photo (about {11 * len(maps) + 3} forward passes in batches)",
        key="inspect_compare_scores",
    ):
        with st.spinner("Deleting, inserting, imputing…"):
            scores = photo_scores(loaded, photo, layer, target, maps)
    per_row = 6
    items = list(maps.items())
    for start in range(0, len(items), per_row):
        columns = st.columns(per_row)
        for column, (m, m_cam) in zip(columns, items[start : start + per_row]):
            m_picture, m_scaled = overlay_for(photo.rgb, m_cam, opacity, colormap)
            lines = [f"**{labels[m]}**" + ("" if m_scaled.ok else " (flat map)")]
            if m in scores:
                f = scores[m]
                lines.append(
                    f"deletion {f['deletion']:.3f} · insertion {f['insertion']:.3f} · "
                    f"ROAD {f['road']:+.3f} · drop {100 * f['drop']:.0f}%"
                )
            found = standing(board, m, layer) if board is not None else None
            if found and "pointing" in found["at_layer"] and "deletion" in found["at_layer"]:
                (rp, of), (rd, _) = found["at_layer"]["pointing"], found["at_layer"]["deletion"]
                lines.append(f"board: #{rp}/{of} pointing, #{rd}/{of} deletion")
            column.image(m_picture, width="stretch")
            column.caption("  \n".join(lines))
    if scores:
        st.dataframe(
            [
                {
                    "method": labels[m],
                    "deletion area": round(f["deletion"], 4),
                    "insertion area": round(f["insertion"], 4),
                    "ROAD (LeRF-MoRF)": round(f["road"], 4),
                    "drop %": round(100 * f["drop"], 1),
                    "confidence rose": bool(f["increase"]),
                }
                for m, f in scores.items()
            ],
            hide_index=True,
            width="stretch",
            key="inspect_compare_table",
        )

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
        "**Sanity checks** (Adebayo et al. 2018): re-initialise the weights from the top block down "
        "(cascading), or one block at a time (independent). A map that explains the model changes as "
        "it is destroyed (rank correlation and SSIM fall); one that does not only shows edges."
    )
    if st.toggle("Run the randomisation checks", key="inspect_sanity"):
        with st.spinner("Randomising block by block…"):
            steps = sanity_of(loaded, photo, layer, target, in_pass)
            alone = independent_of(loaded, photo, layer, target, in_pass)
            logit = random_logit_of(loaded, photo, layer, target, in_pass)
        figure = go.Figure()
        blocks = [s.randomised for s in steps]
        figure.add_scatter(
            x=blocks, y=[s.spearman for s in steps], mode="lines+markers", name="cascading: rank"
        )
        figure.add_scatter(x=blocks, y=[s.ssim for s in steps], mode="lines+markers", name="cascading: SSIM")
        figure.add_scatter(
            x=[s.randomised for s in alone],
            y=[s.spearman for s in alone],
            mode="markers",
            name="one block: rank",
        )
        figure.add_scatter(
            x=[s.randomised for s in alone], y=[s.ssim for s in alone], mode="markers", name="one block: SSIM"
        )
        figure.update_layout(
            height=360,
            yaxis_title="similarity with the original map",
            yaxis_range=[-1, 1.05],
            xaxis_title="randomised (down to)",
            legend={"orientation": "h", "y": -0.35},
            margin={"t": 20},
        )
        st.plotly_chart(figure, width="stretch")
        if not one_pass:
            st.caption(f"Run with Grad-CAM: {method_name} would need {METHODS[method].cost} at every step.")
        other = explainer.class_names[logit.other]
        if np.isfinite(logit.spearman):
            said = f"rank correlation {logit.spearman:+.2f}, SSIM {logit.ssim:+.2f}"
        else:
            said = "one of the two maps is flat (zero everywhere), so they share nothing"
        st.caption(
            f"Random logit: the map for “{other}” (a class this photo is not asked about) against the map "
            f"for “{explainer.class_names[logit.target]}”: {said}. Low is good: the map depends on the class."
        )
        sections.append(
            Section(
                "Randomisation checks",
                figures={
                    **{
                        f"cascading {s.randomised}": f"rank {s.spearman:.3f}, SSIM {s.ssim:.3f}"
                        for s in steps
                    },
                    **{f"only {s.randomised}": f"rank {s.spearman:.3f}, SSIM {s.ssim:.3f}" for s in alone},
                    f"random logit ({other})": said,
                },
            )
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
