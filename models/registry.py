"""The registry of trained models: the shipped defaults plus a user's folder.

Scanning reads only file names and cards; weights load on demand, always with Keras'
safe mode, so a model file from a stranger cannot run code it carries. Legacy files (HDF5
under any name, SavedModel folders, architecture JSON + weights, zips of those) are read as
data, checked, and converted once into a Keras 3 ``.keras`` by :mod:`models.convert`.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras

from explain.keras_file import NotAModel, read_keras_model
from models.card import ModelCard, Preprocessing, card_path_for

DEFAULT_DIR = Path(__file__).resolve().parent / "shipped"
USER_DIR_ENV = "CVD_MODELS_DIR"
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
#: The app's own folder for models users upload or adopt (gitignored); $CVD_MODELS_DIR replaces it.
USER_DIR = Path(__file__).resolve().parents[1] / "user_models"
ZIP_MEMBERS_SCANNED = 2000  # scan() does not look into a zip with more entries than this


class ModelLoadError(ValueError):
    """A model file we will not or cannot use; the message says why, in one line."""


@dataclass
class RegistryEntry:
    """One model file found by the registry, with its card (made up when it has none)."""

    name: str
    path: Path
    card: ModelCard
    has_card: bool
    source: str  # "shipped" or "user"
    card_error: str | None = None

    @property
    def history_path(self) -> Path | None:
        if not self.card.history:
            return None
        path = (self.path.parent / self.card.history).resolve()
        # A file, or a TensorBoard log folder (explain.history.load_history reads both).
        return path if path.is_file() or path.is_dir() else None


def model_folders(extra: str | Path | None = None) -> list[tuple[Path, str]]:
    """Return the existing model folders: the shipped defaults, then the user's."""
    folders = [(DEFAULT_DIR, "shipped")] if DEFAULT_DIR.is_dir() else []
    for folder in (user_models_dir(), extra):
        if folder and Path(folder).is_dir():
            folders.append((Path(folder).resolve(), "user"))
    return folders


def user_models_dir() -> Path:
    """Return the folder uploads and ``models.adopt`` write to: ``$CVD_MODELS_DIR``, else ``user_models/``."""
    return Path(os.environ.get(USER_DIR_ENV) or USER_DIR)


def scan(extra: str | Path | None = None) -> list[RegistryEntry]:
    """Return the models in the default folder, ``$CVD_MODELS_DIR`` and ``extra``.

    Model files (``.keras``, ``.h5``, ``.hdf5``) everywhere; in user folders also SavedModel
    folders and zips whose member list names a model (no member is read).
    """
    entries: list[RegistryEntry] = []
    seen: set[str] = set()
    for folder, source in model_folders(extra):
        for path in sorted(folder.iterdir()):
            if not _is_model_path(path, source):
                continue
            entry = entry_for(path, source)
            name = entry.name
            while entry.name in seen:
                entry.name = f"{name} ({source})" if entry.name == name else entry.name + "'"
            seen.add(entry.name)
            entries.append(entry)
    return entries


def _is_model_path(path: Path, source: str) -> bool:
    """True for a model file, or (in a user's folder) a SavedModel folder or a zip holding a model."""
    if path.is_file() and path.suffix.lower() in MODEL_SUFFIXES:
        return True
    if source != "user":
        return False
    if path.is_dir():
        return (path / "saved_model.pb").is_file()
    if path.is_file() and path.suffix.lower() == ".zip":
        return _zip_holds_model(path)
    return False


def _zip_holds_model(path: Path) -> bool:
    # Reads the archive's directory only, never a member: a zip of photos is not a model.
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    if len(names) > ZIP_MEMBERS_SCANNED:
        return False
    return any(n.endswith("saved_model.pb") or n.lower().endswith((".h5", ".hdf5")) for n in names)


def _is_architecture_json(path: Path) -> bool:
    """True when NAME.json is a model's architecture (``model.to_json()``), not its card."""
    try:
        if path.stat().st_size > 32 * 2**20:
            return False
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "class_name" in data and "config" in data and "name" not in data


def entry_for(path: str | Path, source: str = "user") -> RegistryEntry:
    """Return the registry entry for one model file, reading its card if there is one."""
    path = Path(path)
    card_file = card_path_for(path)
    if path.name.lower().endswith(".weights.h5"):
        card_file = path.with_name(path.name[: -len(".weights.h5")] + ".json")
    error = None
    if card_file.is_file() and _is_architecture_json(card_file):
        # NAME.json + NAME.h5 from model.to_json() and save_weights: the JSON is the model's
        # architecture, not its card, so the model simply has no card yet.
        name = path.name.split(".")[0] if path.name.lower().endswith(".weights.h5") else path.stem
        return RegistryEntry(name, path, ModelCard(name=name, class_names=[]), False, source)
    if card_file.is_file():
        try:
            card = ModelCard.load(card_file)
            return RegistryEntry(card.name, path, card, True, source)
        except (ValueError, TypeError, KeyError, OSError) as err:
            error = f"{card_file.name} is not a valid model card ({err}); using defaults"
    card = ModelCard(name=path.stem, class_names=[])
    return RegistryEntry(path.stem, path, card, False, source, error)


def find(name_or_path: str, extra: str | Path | None = None) -> RegistryEntry:
    """Return the entry named ``name_or_path``, or the entry for that file path."""
    for entry in scan(extra):
        if name_or_path in (entry.name, entry.path.stem):
            return entry
    path = Path(name_or_path)
    if path.is_file() or (path / "saved_model.pb").is_file():
        return entry_for(path)
    known = ", ".join(e.name for e in scan(extra)) or "none"
    raise ModelLoadError(f"no model called {name_or_path!r} (known: {known}) and no such file")


def load_model(path: str | Path, weights: str | Path | None = None) -> keras.Model:
    """Load a model file in safe mode; raise :class:`ModelLoadError` with the reason.

    A Keras 3 ``.keras`` zip loads directly. A legacy HDF5 file (under any name: the bytes
    decide), a SavedModel folder, an architecture JSON with its ``weights`` (or a weights
    HDF5 with ``NAME.json`` beside it), or a ``.zip`` of one of those is first read as data
    and checked, then converted once into a cached ``.keras`` (:func:`models.convert.convert_to_keras3`).
    """
    from models.model_files import sniff

    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelLoadError(f"{path.name}: a folder without saved_model.pb; not a SavedModel")
        return _load_converted(path, None)
    if not path.is_file():
        raise ModelLoadError(f"{path.name}: no such file")
    kind = sniff(path)
    suffix = path.suffix.lower()
    if kind == "hdf5":
        if suffix in (".h5", ".hdf5") and weights is None and _written_by_keras3(path):
            return _load_keras3(path)  # Keras 3's own HDF5 (checked first), read by Keras 3 itself
        return _load_converted(path, weights)
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        if kind == "zip":
            raise ModelLoadError(f"{path.name}: the file is damaged or truncated (incomplete zip archive)")
        raise ModelLoadError(f"{path.name}: not a Keras model file (a .keras file is a zip archive)")
    if suffix == ".keras":
        return _load_keras3(path)
    if kind in ("zip", "json"):
        return _load_converted(path, weights)
    raise ModelLoadError(
        f"{path.name}: not a model file this app reads (.keras, HDF5, SavedModel, JSON or zip)"
    )


def _written_by_keras3(path: Path) -> bool:
    from models.model_files import read_hdf5

    info = read_hdf5(path)  # raises ModelLoadError for a damaged, hostile or code-carrying file
    return info.kind == "hdf5-model" and info.keras3


def _load_converted(path: Path, weights: str | Path | None) -> keras.Model:
    from models.convert import convert_to_keras3

    conversion = convert_to_keras3(path, Path(weights) if weights else None)
    return _load_keras3(conversion.keras_path, shown=path.name)


def _load_keras3(path: Path, shown: str | None = None) -> keras.Model:
    shown = shown or path.name
    try:
        return read_keras_model(path)
    except NotAModel as err:
        raise ModelLoadError(f"{shown}: holds a {err.held}, not a Keras model") from None
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds; all mean "unusable"
        raise ModelLoadError(f"{shown}: {_reason(err)}") from None


def _reason(err: Exception) -> str:
    text = " ".join(str(err).split())
    if "safe_mode" in text or "lambda" in text.lower() and "unsafe" in text.lower():
        return (
            "refused: the file carries Python code (a Lambda layer), which safe mode will not "
            "run; rebuild the model without Lambda layers to use it here"
        )
    if "custom" in text.lower() and ("registered" in text.lower() or "Unknown" in text):
        return f"uses a custom layer this app does not know ({text[:160]})"
    if isinstance(err, (OSError, zipfile.BadZipFile, EOFError)) or "truncated" in text.lower():
        return f"the file is damaged or truncated ({text[:160]})"
    return f"cannot be loaded ({type(err).__name__}: {text[:200]})"


def has_rescaling(model: keras.Model) -> bool:
    """True when the model rescales pixels itself (a Rescaling or Normalization layer early on)."""
    for layer in model.layers[:4]:
        if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)):
            return True
        if isinstance(layer, keras.Model) and has_rescaling(layer):
            return True
    return False


def completed_card(entry: RegistryEntry, model: keras.Model) -> ModelCard:
    """Return the entry's card with what a card-less model file implies filled in."""
    if entry.has_card:
        return entry.card
    card = entry.card
    shape = model.input_shape if not isinstance(model.input_shape, list) else (None,)
    if len(shape) == 4:
        h, w, c = shape[1:]
        inside = has_rescaling(model)
        card.preprocessing = Preprocessing(
            input_size=(h or 224, w or 224),
            channels=c or 3,
            scale=1.0 if inside else 1.0 / 255,
            rescale_inside_model=inside,
        )
        card.notes = "No card beside this file: input size read from the model; pixels " + (
            "rescaled by the model itself." if inside else "assumed to be scaled to [0, 1]."
        )
    card.architecture = model.name
    return card
