"""Inspect's first heatmap on a fresh server, drawn while Keras is still building the model.

On a cold start Keras needs about 3 s to build the default model from its file; the same file
read as data and run as plain TensorFlow ops (``explain.plain_graph``) gives the prediction
and the Grad-CAM of every block in about 1 s, the same maps to float rounding. The page shows
that first, in a placeholder, then loads the model as usual and draws the full page in its
place, from this same result (``ui.state.keep_first_look``): the pass is not run twice. Any
model the reader cannot run (or without a card saying how its pixels are scaled) simply gets
no first look.
"""

from __future__ import annotations

import streamlit as st

from explain.explainer import Explanation
from models.registry import RegistryEntry
from ui.state import Photo, is_loaded, keep_first_look


def wanted(entry: RegistryEntry | None, photos: list[Photo], method: str) -> bool:
    """Whether this run should draw a first look: a fresh server (the model is not loaded
    yet), one photo, Grad-CAM, a ``.keras`` file with a card."""
    return (
        entry is not None
        and len(photos) == 1
        and method == "gradcam"
        and entry.has_card
        and entry.path.suffix == ".keras"
        and not is_loaded(entry)
    )


def show(entry: RegistryEntry, photo: Photo, colormap: str, opacity: float) -> bool:
    """Draw the prediction and Grad-CAM of ``photo`` from the plain graph; return whether drawn.

    The last block's map is drawn as soon as it is ready (it needs the backward pass through
    the head only); the other blocks' follow for the page (see below). Nothing is drawn when
    the file is one the plain reader does not run: the full page, which loads the model with
    Keras, follows either way.
    """
    from explain.plain_graph import PlainGraph, first_look

    try:
        graph = PlainGraph.read(entry.path)
        prep = entry.card.preprocessing
        # the card's whole recipe, as Explainer.from_card feeds the model
        x = prep.feeding(int(graph.input_shape[2] or prep.channels))(photo.rgb)
        layers = graph.blocks or [p for p in (graph.last_spatial,) if p]
        if not layers:
            return False
        look = first_look(
            graph,
            x,
            layers,
            keep=layers[-1],
            class_names=entry.card.class_names,
            first=lambda last: _draw(last, photo, colormap, opacity),
        )
    except Exception:  # noqa: BLE001 - a shortcut only (PlainGraphError: a file it does not
        return False  # read); whatever fails here, the full page, loaded by Keras, follows
    # The page asks for this same pass (every block, Grad-CAM, the predicted class, the last
    # block kept) once the model is loaded: it gets this result instead of running it again.
    keep_first_look(str(entry.path), photo, x, look)
    return True


def _draw(look: Explanation, photo: Photo, colormap: str, opacity: float) -> None:
    from ui.render import heatmap_figure, overlay_for, photo_figure, prediction_header

    names, layer, target = look.class_names, look.layers[-1], int(look.targets[0])
    picture, _ = overlay_for(photo.rgb, look.cam(layer), opacity, colormap)
    left, right = st.columns([1, 1])
    with left:
        prediction_header(names, look.probabilities[0])
        photo_figure(photo.rgb, photo.name)
    with right:
        heatmap_figure(picture, layer, "Grad-CAM", names[target])
        st.caption(
            ":material/hourglass_top: A first look while the model loads (first start only): "
            "the layer, class and method choices, feature maps and scores follow in a moment."
        )
