"""The Models page's work: store an uploaded model, convert it once, keep it, check it, delete it.

Uploads are written only under names we make, inside the app's user models folder
(``models.registry.user_models_dir``): ``.uploads/<digest><suffix>`` while converting, then
``NAME.keras`` and its card ``NAME.json``, which the registry lists after a restart too.
Conversion goes through ``st.cache_resource`` keyed by the upload's digest.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from models.adopt import Adopted, Opened, describe, open_model, save_adopted
from models.card import ModelCard, Preprocessing, card_path_for, read_labels_txt
from models.feeding_check import FeedingCheck, check_folder
from models.registry import RegistryEntry, entry_for, scan, user_models_dir

#: Largest model upload, in MB (also .streamlit/config.toml's server.maxUploadSize).
MAX_MODEL_MB = 500
MODEL_TYPES = ["keras", "h5", "hdf5", "zip", "json"]
WEIGHT_TYPES = ["h5", "hdf5"]
Progress = Callable[[float, str], None]


@dataclass
class Upload:
    """One uploaded file, as the page got it."""

    name: str
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def stored(upload: Upload, folder: Path) -> Path:
    """Return where the upload was written: ``folder/.uploads/<digest><suffix>`` (a name we make)."""
    suffix = Path(upload.name).suffix.lower()
    if suffix.lstrip(".") not in MODEL_TYPES:
        raise ValueError(f"{upload.name}: not a model file we take ({', '.join(MODEL_TYPES)})")
    if suffix == ".h5" and upload.name.lower().endswith(".weights.h5"):
        suffix = ".weights.h5"  # Keras 3 weights keep their double suffix
    target = folder / ".uploads" / f"{upload.digest[:24]}{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.stat().st_size != len(upload.data):
        target.write_bytes(upload.data)
    return target


@st.cache_resource(show_spinner=False, max_entries=4)
def _opened(digest: str, path: str, weights: str | None):
    """Return the converted upload (``models.adopt.Opened``) and its Explainer, once per digest."""
    from explain.explainer import Explainer

    opened = open_model(path, weights)
    return opened, Explainer(opened.model)


def user_entries() -> list[RegistryEntry]:
    """Return the registry's entries that live in the user models folder."""
    folder = user_models_dir().resolve()
    return [e for e in scan() if e.path.parent.resolve() == folder]


def already_added(digest: str) -> RegistryEntry | None:
    """Return the user model adopted from a file with this digest (kept in its card), if any."""
    for entry in user_entries():
        if entry.card.converted_from.get("upload_sha256") == digest:
            return entry
    return None


def add_upload(model: Upload, weights: Upload | None = None, progress: Progress | None = None) -> Adopted:
    """Return the upload adopted into the user models folder: stored, converted, written with a card.

    Raises ModelLoadError or ValueError with a one-line reason; the stored upload is removed
    either way (the converted model is all we keep).
    """
    folder = user_models_dir()
    say = progress or (lambda f, t: None)
    say(0.05, f"Saving {model.name} ({len(model.data) / 2**20:.1f} MB)")
    path = stored(model, folder)
    weights_path = stored(weights, folder) if weights is not None else None
    try:
        key = model.digest + (weights.digest if weights else "")
        say(0.2, f"Reading and converting {model.name} (a large legacy file takes a minute)")
        opened, explainer = _opened(key, str(path), str(weights_path) if weights_path else None)
        say(0.8, "Writing the Keras 3 file and its card")
        origin = {**opened.origin, "file": model.name + (f" + {weights.name}" if weights else "")}
        origin["upload_sha256"] = model.digest
        adopted = save_adopted(
            Opened(opened.model, opened.keras_path, origin), explainer, folder, Path(model.name).stem
        )
    finally:
        for p in (path, weights_path):
            if p is not None:
                p.unlink(missing_ok=True)
    say(1.0, f"Added {adopted.name}")
    return adopted


def found_of(entry: RegistryEntry, explainer) -> list[str]:
    """Return 'key: value' lines saying what the model is (``models.adopt.Found``)."""
    origin = entry.card.converted_from or {"format": "Keras 3"}
    return describe(explainer, origin).lines()


def labelled_from_zip(upload: Upload) -> Path:
    """Return the folder the zip of labelled photos was unpacked into (once per digest)."""
    from models.data import extract_labelled_zip

    target = Path(tempfile.gettempdir()) / "cvd-uploads" / upload.digest[:24]
    return target if target.is_dir() else extract_labelled_zip(upload.data, target)


@st.cache_data(show_spinner=False, max_entries=16)
def _check(model_key: str, folder: str, limit: int, names: tuple[str, ...], _explainer) -> FeedingCheck:
    return check_folder(_explainer, folder, limit=limit, output_names=list(names))


def run_check(entry: RegistryEntry, loaded, folder: str | Path, limit: int) -> FeedingCheck:
    """Return the check of the model on labelled photos (cached by model file, folder and limit)."""
    key = f"{entry.path}:{entry.path.stat().st_mtime}"
    return _check(key, str(folder), int(limit), tuple(entry.card.class_names), loaded.explainer)


def edited_card(
    card: ModelCard,
    scaling: str,
    channel_order: str,
    resize: str,
    grey: bool,
    class_names: list[str],
) -> ModelCard:
    """Return a copy of ``card`` fed as given and with these class names."""
    edited = ModelCard.from_dict(card.to_dict())
    prep = card.preprocessing
    edited.preprocessing = Preprocessing(
        input_size=prep.input_size,
        channels=prep.channels,
        scale=prep.scale,
        offset=prep.offset,
        rescale_inside_model=False,
        scaling=scaling,
        channel_order=channel_order,
        resize=resize,
        grey=grey,
    )
    edited.class_names = list(class_names)
    edited.notes = "Card set by hand on the Models page: " + edited.preprocessing.describe() + "."
    return edited


def parse_names(text: str, n_classes: int) -> list[str]:
    """Return class names typed as 'dog, cat' or as a labels.txt; raise ValueError when the count is wrong."""
    names = read_labels_txt(text.replace(",", "\n"))
    if len(names) != n_classes:
        raise ValueError(f"the model has {n_classes} classes; {len(names)} names given")
    return names


def save_card(entry: RegistryEntry, card: ModelCard) -> None:
    """Write ``card`` beside the entry's model file."""
    card.name = entry.name
    card.save(card_path_for(entry.path))


def delete(entry: RegistryEntry) -> None:
    """Remove a user model and its card; refuse anything outside the user models folder."""
    folder = user_models_dir().resolve()
    if entry.path.parent.resolve() != folder:
        raise ValueError(f"{entry.name} is not one of your uploaded models; it stays")
    card_path_for(entry.path).unlink(missing_ok=True)
    entry.path.unlink(missing_ok=True)


def card_version(entry: RegistryEntry) -> str:
    """Return a short key that changes whenever the entry's card does (for widget keys)."""
    text = json.dumps(entry.card.to_dict(), sort_keys=True)
    return f"{entry.name}_{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def reread(entry: RegistryEntry) -> RegistryEntry:
    """Return the entry read again from disk (after its card changed)."""
    return entry_for(entry.path, entry.source)
