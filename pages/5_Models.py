"""Models: upload a model file, see what it is, set and check how it is fed, delete it."""

import streamlit as st

from explain.preprocess import CHANNEL_ORDERS, RESIZES, SCALING_HELP, SCALINGS
from models.registry import ModelLoadError, user_models_dir
from ui import model_uploads as uploads
from ui.samples import SHARED_TEST
from ui.state import try_load

st.set_page_config(page_title="Models", page_icon="🧩", layout="wide")
st.title("Models")
st.write(
    "Bring the model you trained: a Keras 3 `.keras`, a Keras 2 / tf.keras `.h5`, a `.zip` of a "
    "SavedModel or of an architecture JSON with its weights. It is converted once to Keras 3 and "
    "kept with the other models. Then tell (or let the photos tell) how it was fed."
)
st.caption(f"Your models are kept in `{user_models_dir()}`. Uploads up to {uploads.MAX_MODEL_MB} MB.")

# -- upload ------------------------------------------------------------------------------
st.subheader("Upload a model")
file = st.file_uploader(
    "Model file",
    type=uploads.MODEL_TYPES,
    key=f"models_upload_{st.session_state.get('models_upload_round', 0)}",  # a new key empties it
    max_upload_size=uploads.MAX_MODEL_MB,
    help="A .json is an architecture (model.to_json()): add its weights file below.",
)
weights = None
if file is not None and file.name.lower().endswith(".json"):
    weights = st.file_uploader(
        "Its weights (save_weights .h5, or a Keras 3 .weights.h5)",
        type=uploads.WEIGHT_TYPES,
        key="models_weights",
        max_upload_size=uploads.MAX_MODEL_MB,
    )
    if weights is None:
        st.info("Add the weights file that goes with this architecture.")
if file is not None and (weights is not None or not file.name.lower().endswith(".json")):
    model_file = uploads.Upload(file.name, file.getvalue())
    extra = uploads.Upload(weights.name, weights.getvalue()) if weights is not None else None
    key = model_file.digest + (f"+{extra.digest}" if extra else "")
    handled = st.session_state.setdefault("models_handled", {})
    if key not in handled:
        existing = uploads.already_added(model_file.digest) if extra is None else None
        if existing is not None:
            handled[key] = f"{file.name} is already here, as {existing.name}."
            st.session_state["models_pick"] = existing.name
        else:
            bar = st.progress(0.0, text=f"Reading {file.name}…")
            try:
                adopted = uploads.add_upload(
                    model_file, extra, progress=lambda f, text: bar.progress(f, text=text)
                )
                done = f"Added {file.name} as {adopted.name}: {adopted.found.converted_from}."
                handled[key] = done
                st.session_state["models_pick"] = adopted.name
            except (ModelLoadError, ValueError, OSError) as err:
                handled[key] = f"error: {err}"
            bar.empty()
    message = handled[key]
    if message.startswith("error: "):
        st.error(f"{file.name}: {message[7:]}")
    else:
        st.success(message)

# -- the user's models -------------------------------------------------------------------
st.subheader("Your models")
if st.session_state.get("models_deleted"):
    st.success(st.session_state.pop("models_deleted"))
entries = uploads.user_entries()
if not entries:
    st.info("No models of yours yet: upload one above (or run `python -m models.adopt FILE`).")
    st.stop()
names = [e.name for e in entries]
if st.session_state.get("models_pick") not in names:
    st.session_state["models_pick"] = names[-1]
entry = entries[names.index(st.selectbox("Model", names, key="models_pick"))]
card = entry.card
loaded, error = try_load(entry)
if error:
    st.error(f"Cannot use {entry.name}: {error}")
else:
    found, about = st.columns(2)
    with found:
        st.markdown("**What was found**")
        st.markdown("\n".join(f"- {line}" for line in uploads.found_of(entry, loaded.explainer)))
    with about:
        st.markdown("**Its card**")
        st.markdown(
            f"- classes: {', '.join(loaded.explainer.class_names)}\n"
            f"- fed as: {card.preprocessing.describe()}\n" + (f"- {card.notes}\n" if card.notes else "")
        )
        for test_set, figures in card.evaluations.items():
            accuracy, n = figures.get("accuracy", 0), figures.get("n", "?")
            st.caption(f"{test_set}: accuracy {accuracy:.1%} on {n} photos")
    st.caption(f"Pick **{entry.name}** on Inspect, Layer depth or Errors to explore it.")

# -- set the card by hand ------------------------------------------------------------------
if loaded is not None:
    explainer = loaded.explainer
    prep = card.preprocessing
    version = uploads.card_version(entry)  # a new card gets fresh widgets
    with st.expander("How it is fed, by hand", expanded=False):
        options = [s for s in SCALINGS if s != "affine" or prep.scaling == "affine"]
        current = "raw" if prep.rescale_inside_model else prep.scaling
        scaling = st.selectbox(
            "Pixel scaling",
            options,
            index=options.index(current) if current in options else 0,
            format_func=lambda s: f"{SCALINGS[s]}: {SCALING_HELP[s]}",
            key=f"models_scaling_{version}",
        )
        colour_model = explainer.input_shape[2] == 3
        order = st.radio(
            "Channel order",
            CHANNEL_ORDERS,
            index=CHANNEL_ORDERS.index(prep.channel_order),
            horizontal=True,
            disabled=not colour_model,
            help="OpenCV (cv2.imread) reads BGR; PIL, Keras and browsers give RGB.",
            key=f"models_order_{version}",
        )
        resize = st.radio(
            "Resize",
            list(RESIZES),
            index=list(RESIZES).index(prep.resize),
            format_func=RESIZES.get,
            horizontal=True,
            key=f"models_resize_{version}",
        )
        grey = st.checkbox(
            "Grey photos",
            value=prep.grey or not colour_model,
            disabled=not colour_model,
            help="A one-channel model always gets grey photos.",
            key=f"models_grey_{version}",
        )
        typed = st.text_input(
            f"Class names, output 0 to {explainer.head.n_classes - 1} (comma-separated)",
            value=", ".join(explainer.class_names),
            key=f"models_names_{version}",
        )
        labels_file = st.file_uploader(
            "…or a labels.txt (`0 dog` lines, as Teachable Machine writes it)",
            type=["txt"],
            key=f"models_labels_{version}",
            max_upload_size=1,
        )
        if st.button("Save the card", key=f"models_save_{version}"):
            try:
                text = labels_file.getvalue().decode("utf-8", "replace") if labels_file else typed
                class_names = uploads.parse_names(text, explainer.head.n_classes)
                uploads.save_card(entry, uploads.edited_card(card, scaling, order, resize, grey, class_names))
                st.session_state["models_saved"] = f"Saved the card of {entry.name}."
                st.rerun()
            except ValueError as err:
                st.error(f"Not saved: {err}")
    if st.session_state.get("models_saved"):
        st.success(st.session_state.pop("models_saved"))

    # -- the check ---------------------------------------------------------------------------
    st.subheader("Check on labelled photos")
    st.write(
        "Runs the model on labelled photos under every pixel scaling, channel order, resize and "
        "class order, and writes the best into its card."
    )
    sources = (["the shared test photos"] if SHARED_TEST.is_dir() else []) + [
        "a folder on this machine",
        "an uploaded zip",
    ]
    source = st.radio("Photos", sources, horizontal=True, key="models_source")
    folder = None
    if source == "the shared test photos":
        folder = SHARED_TEST
    elif source == "a folder on this machine":
        folder = st.text_input(
            "Folder of class subfolders, cat.N.jpg files, or a labels.csv", key="models_folder"
        ).strip()
    else:
        photos_zip = st.file_uploader(
            "Zip of class folders (cats/…, dogs/…)", type=["zip"], key="models_zip", max_upload_size=200
        )
        if photos_zip is not None:
            try:
                folder = uploads.labelled_from_zip(uploads.Upload(photos_zip.name, photos_zip.getvalue()))
            except ValueError as err:
                st.error(f"{photos_zip.name}: {err}")
    limit = st.slider("Photos used (all classes together)", 10, 200, 48, 2, key="models_limit")
    if st.button("Run the check", key="models_check", disabled=not folder):
        try:
            with st.spinner(f"Trying every way of feeding {entry.name} on {limit} photos…"):
                result = uploads.run_check(entry, loaded, folder, limit)
            uploads.save_card(entry, result.apply(uploads.reread(entry).card))
            st.session_state["models_result"] = (entry.name, result)
            st.rerun()
        except (ValueError, FileNotFoundError) as err:
            st.error(f"The check could not run: {err}")
    shown = st.session_state.get("models_result")
    if shown and shown[0] == entry.name:
        result = shown[1]
        (st.success if result.beats_chance else st.warning)(result.verdict())
        st.caption(f"Written into the card. {result.n} photos from {result.folder}.")
        if result.skipped:
            st.caption(f"{len(result.skipped)} photos could not be read, e.g. {result.skipped[0]}.")
        st.dataframe(result.table(), hide_index=True, width="stretch")


# -- delete --------------------------------------------------------------------------------
def _delete(doomed) -> None:
    uploads.delete(doomed)
    for key in ("models_pick", "models_result"):
        st.session_state.pop(key, None)
    st.session_state["models_delete_sure"] = False
    # Empty the uploader, so the file still in it is not added again; a new upload of it is.
    st.session_state["models_upload_round"] = st.session_state.get("models_upload_round", 0) + 1
    st.session_state.pop("models_handled", None)
    st.session_state["models_deleted"] = f"Deleted {doomed.name}."


st.subheader("Delete")
sure = st.checkbox(f"Delete {entry.name} and its card from this machine", key="models_delete_sure")
st.button("Delete", key="models_delete", disabled=not sure, type="primary", on_click=_delete, args=(entry,))
