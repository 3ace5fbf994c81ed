"""Cached resources for the pages: models through cache_resource, maps through cache_data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import streamlit as st

from explain.explainer import Explainer, Explanation
from explain.images import MAX_FILE_BYTES, ImageError, decode_image
from models.card import ModelCard
from models.registry import ModelLoadError, RegistryEntry, completed_card, load_model, scan
from ui import warmup

MAX_PHOTOS = 16
#: The model Inspect opens with and the background warm-up loads first: the shipped ResNet-50
#: is both the more accurate (96.55 % against 95.65 % on the Kaggle test photos) and the faster.
DEFAULT_MODEL = "resnet50"


def _keep_keras_session_across_reruns() -> None:
    """Stop Streamlit's per-rerun ``keras.backend.clear_session()`` from reaching Keras.

    After every script run Streamlit calls ``keras.backend.clear_session()``
    (``script_runner._clean_problem_modules``), which empties TensorFlow's kernel cache and
    runs a full garbage collection: every rerun then rebuilds each kernel of our cached
    models (bench/explain_speed.py measured the Layer-depth page at 8.3 s for 0.72 s of
    engine work). Our models live in ``st.cache_resource`` and are built once, so that
    cleanup frees nothing of ours. Calls from anywhere else still go through.
    """
    import sys

    import keras

    original = keras.backend.clear_session
    if getattr(original, "_skips_streamlit", False):
        return

    def clear_session(*args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("streamlit."):
            return None
        return original(*args, **kwargs)

    clear_session._skips_streamlit = True
    keras.backend.clear_session = clear_session


_keep_keras_session_across_reruns()


@dataclass
class Photo:
    """One photo the user gave us: its name, digest and decoded pixels."""

    name: str
    digest: str
    rgb: np.ndarray


@dataclass
class LoadedModel:
    name: str
    card: ModelCard
    explainer: Explainer
    parameters: int
    path: str = ""  # the model file


def digest_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def registry(extra: str | None = None) -> list[RegistryEntry]:
    return scan(extra or None)


#: Paths of the model files loaded so far in this process (see :func:`is_loaded`).
_LOADED: set[str] = set()


def is_loaded(entry: RegistryEntry) -> bool:
    """Whether ``entry``'s model has been loaded in this process (a page's load is then quick)."""
    return str(entry.path) in _LOADED


@st.cache_resource(show_spinner=False, max_entries=8)
def _load(path: str, mtime: float, card_json: str) -> LoadedModel:
    import json

    from models.registry import entry_for

    entry = entry_for(path)
    entry.card = ModelCard.from_dict(json.loads(card_json)) if card_json else entry.card
    model = load_model(path)
    card = completed_card(entry, model)
    explainer = Explainer.from_card(model, card)
    # A page never waits for a trace: it runs a pass eagerly until it is compiled, by the
    # warm-up (ui.warmup) or, for the passes the warm-up does not know, 3 s after first use,
    # once no page has run for a few seconds or one has run for long (a trace slows
    # everything else down meanwhile).
    explainer.eager_until_compiled, explainer.compile_after = True, 3.0
    explainer.wait_to_compile = warmup.wait_until_quiet
    _LOADED.add(path)
    return LoadedModel(card.name, card, explainer, int(model.count_params()), path)


def _cached(entry: RegistryEntry) -> LoadedModel:
    import json

    card_json = json.dumps(entry.card.to_dict()) if entry.has_card else ""
    return _load(str(entry.path), entry.path.stat().st_mtime, card_json)


def load(entry: RegistryEntry) -> LoadedModel:
    """Return the loaded model of ``entry`` (cached); raise ModelLoadError/ValueError."""
    warmup.ask_for_model()
    with st.spinner(f"Loading {entry.name} (first time only)…"):
        return _cached(entry)


def warm(entry: RegistryEntry, compile_pass: bool = True) -> LoadedModel:
    """Return the loaded model of ``entry``, with the pass the pages open with compiled.

    Loads through the same cache as :func:`load`; then (``compile_pass``) traces and calls the
    one pass to every block (Grad-CAM, the tap set Inspect and Layer depth start with), so the
    pages' later photos run compiled; until then a page runs that pass eagerly
    (``Explainer.eager_until_compiled``), which is quicker than waiting for the trace. Inspect
    takes a single photo's prediction from that same pass. No Streamlit element is drawn: this
    runs on the background warm-up's thread (ui.warmup).
    """
    loaded = _cached(entry)
    if compile_pass:
        catalog = loaded.explainer.layers
        loaded.explainer.compile([info.path for info in (catalog.blocks or catalog.layers)])
    return loaded


def warm_prediction(entry: RegistryEntry) -> None:
    """Trace the batched prediction pass (several photos on Inspect, Errors, Models)."""
    explainer = _cached(entry).explainer
    explainer.predict(_blank(explainer))


def _blank(explainer: Explainer) -> np.ndarray:
    return explainer.prepare([np.full((*explainer.input_shape[:2], 3), 127, np.uint8)])


def try_load(entry: RegistryEntry) -> tuple[LoadedModel | None, str | None]:
    try:
        return load(entry), None
    except (ModelLoadError, ValueError, KeyError, OSError) as err:
        return None, str(err)


@st.cache_data(show_spinner=False, max_entries=64)
def _decode(digest: str, _data: bytes) -> np.ndarray:
    return decode_image(_data)


def decode(name: str, data: bytes) -> Photo:
    """Decode an upload (cached by content); raise ImageError with a one-line reason."""
    digest = digest_of(data)
    return Photo(name, digest, _decode(digest, data))


@st.cache_data(show_spinner=False, max_entries=128)
def _explain(
    model_key: str,
    digest: str,
    layers: tuple[str, ...],
    target: int,
    methods: tuple[str, ...],
    keep: str | None,
    _explainer: Explainer,
    _rgb: np.ndarray,
) -> Explanation:
    return _explainer.explain(_explainer.prepare([_rgb]), list(layers), target, methods, keep)


#: (model file, photo digest) -> the first look's explanation (ui.first_look), the page's
#: first result while it matches what the page asks: a fresh server's first pass is not run twice.
_FIRST_LOOK: dict[tuple[str, str], tuple[np.ndarray, Explanation]] = {}


def keep_first_look(path: str, photo: Photo, model_input: np.ndarray, result: Explanation) -> None:
    """Keep the first look's explanation of ``photo`` (fed to the model in ``path`` as
    ``model_input``); only the last one is kept."""
    _FIRST_LOOK.clear()
    _FIRST_LOOK[str(path), photo.digest] = (model_input, result)


def _from_first_look(
    loaded: LoadedModel, photo: Photo, layers: list[str], target: int, methods: tuple, keep: str | None
) -> Explanation | None:
    kept = _FIRST_LOOK.get((loaded.path, photo.digest))
    if kept is None:
        return None
    model_input, seen = kept
    if target != -1 or tuple(methods) != ("gradcam",) or keep != seen.kept_layer:
        return None
    if list(layers) != seen.layers or seen.class_names != loaded.explainer.class_names:
        return None
    # the same pixels as the page's explainer would feed (its card may size or scale them
    # differently from the registry's card the first look read)
    if not np.array_equal(loaded.explainer.prepare([photo.rgb])[0], model_input):
        return None
    return seen


def explain(
    loaded: LoadedModel,
    photo: Photo,
    layers: list[str],
    target: int = -1,
    methods: tuple[str, ...] = ("gradcam",),
    keep: str | None = None,
) -> Explanation:
    """Return the one-pass explanation of one photo, cached by (model, photo, layers, class, method)."""
    seen = _from_first_look(loaded, photo, layers, target, methods, keep)
    if seen is not None:
        return seen
    key = f"{loaded.name}:{id(loaded.explainer)}"
    return _explain(
        key, photo.digest, tuple(layers), int(target), tuple(methods), keep, loaded.explainer, photo.rgb
    )


def photo_inputs(key: str, multiple: bool = True) -> tuple[list[Photo], list[str]]:
    """Show the upload and sample widgets; return the decoded photos and per-file errors."""
    from ui.samples import available_samples

    uploads = st.file_uploader(
        "Upload photos" if multiple else "Upload a photo",
        type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"],
        accept_multiple_files=multiple,
        key=f"{key}_upload",
        max_upload_size=MAX_FILE_BYTES // 2**20,  # the server allows 500 MB for model files
    )
    if uploads is None:
        uploads = []
    elif not isinstance(uploads, list):
        uploads = [uploads]
    samples = available_samples()
    chosen = st.multiselect(
        "…or pick samples" if multiple else "…or pick a sample",
        list(samples),
        default=list(samples)[:1] if not uploads else [],
        max_selections=None if multiple else 1,
        key=f"{key}_samples",
    )
    photos, errors = [], []
    given = [(u.name, u.getvalue) for u in uploads] + [(n, samples[n]) for n in chosen]
    opened = st.session_state.get(f"{key}_open")
    if opened:
        from pathlib import Path

        given.insert(0, (Path(opened).name, Path(opened).read_bytes))
    if len(given) > MAX_PHOTOS:
        errors.append(f"{len(given)} photos given; only the first {MAX_PHOTOS} are used")
        given = given[:MAX_PHOTOS]
    for name, read in given:
        try:
            photos.append(decode(name, read()))
        except ImageError as err:
            errors.append(f"{name}: {err}")
    return photos, errors


def model_picker(label: str, entries: list[RegistryEntry], key: str, default: str | None = None):
    """Show a model select box; return the chosen entry (or None when there is none)."""
    if not entries:
        st.warning("No models found. Put .keras files in models/shipped or set CVD_MODELS_DIR.")
        return None
    names = [e.name for e in entries]
    index = names.index(default) if default in names else 0
    name = st.selectbox(label, names, index=index, key=key)
    return entries[names.index(name)]


def sidebar_models() -> list[RegistryEntry]:
    """Show the sidebar's model-folder field; return the registry's entries."""
    with st.sidebar:
        folder = st.text_input(
            "Extra model folder",
            key="model_folder",
            help="A folder of .keras/.h5 files (with optional .json cards), besides the shipped ones. "
            "The CVD_MODELS_DIR environment variable does the same.",
        )
    entries = registry(folder.strip() or None)
    for entry in entries:
        if entry.card_error:
            st.sidebar.warning(entry.card_error)
    return entries


def _input_of(loaded: LoadedModel, photo: Photo) -> np.ndarray:
    return loaded.explainer.prepare([photo.rgb])[0]


@st.cache_data(show_spinner=False, max_entries=64)
def _faithfulness(model_key: str, digest: str, layer: str, target: int, method: str, _loaded, _photo, _cam):
    from explain.cams import normalize
    from explain.faithfulness import faithfulness

    return faithfulness(_loaded.explainer, _input_of(_loaded, _photo), normalize(_cam).values, target)


def faithfulness_of(loaded: LoadedModel, photo: Photo, layer: str, target: int, method: str, cam: np.ndarray):
    """Return deletion/insertion curves for a map (cached by model, photo, layer, class, method)."""
    key = f"{loaded.name}:{id(loaded.explainer)}"
    return _faithfulness(key, photo.digest, layer, target, method, loaded, photo, cam)


@st.cache_data(show_spinner=False, max_entries=16)
def _sanity(model_key: str, digest: str, layer: str, target: int, method: str, _loaded, _photo):
    from explain.sanity import randomisation_check

    batch = _loaded.explainer.prepare([_photo.rgb])
    return randomisation_check(_loaded.explainer, batch, layer, target, method)


def sanity_of(loaded: LoadedModel, photo: Photo, layer: str, target: int, method: str):
    """Return the randomisation check's steps for one photo and layer (cached)."""
    return _sanity(
        f"{loaded.name}:{id(loaded.explainer)}", photo.digest, layer, target, method, loaded, photo
    )


@st.cache_data(show_spinner=False, max_entries=16)
def _by_depth(
    model_key: str, digest: str, layers: tuple[str, ...], target: int, method: str, _loaded, _photo
):
    from explain.faithfulness import by_depth

    result = explain(_loaded, _photo, list(layers), target, (method,))
    cams = {layer: result.cam(layer, 0, method) for layer in layers}
    return by_depth(_loaded.explainer, _input_of(_loaded, _photo), cams, int(result.targets[0]))


def faithfulness_by_depth(
    loaded: LoadedModel, photo: Photo, layers: tuple[str, ...], target: int, method: str
):
    """Return faithfulness figures per layer for one photo (cached)."""
    return _by_depth(
        f"{loaded.name}:{id(loaded.explainer)}", photo.digest, layers, target, method, loaded, photo
    )


def faithfulness_study() -> dict | None:
    """Return the shipped folder-averaged faithfulness-by-depth study, if there is one."""
    import json

    from models.registry import DEFAULT_DIR

    path = DEFAULT_DIR / "faithfulness_by_depth.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None


def loaded_or_stop(entry: RegistryEntry | None) -> LoadedModel:
    """Return the loaded model of ``entry``; otherwise say why on the page and stop the run."""
    if entry is None:
        st.stop()
    loaded, error = try_load(entry)
    if error:
        st.error(f"Cannot use model {entry.name}: {error}")
        st.stop()
    return loaded
