"""The registry of trained models: the shipped defaults plus a user's folder.

Scanning reads only file names and cards; weights load on demand, always with Keras'
safe mode, so a model file from a stranger cannot run code it carries.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras

from models.card import ModelCard, Preprocessing, card_path_for

DEFAULT_DIR = Path(__file__).resolve().parent / "shipped"
USER_DIR_ENV = "CVD_MODELS_DIR"
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
#: The app's own folder for models users upload or adopt (gitignored); $CVD_MODELS_DIR replaces it.
USER_DIR = Path(__file__).resolve().parents[1] / "user_models"


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
    """Return the models in the default folder, ``$CVD_MODELS_DIR`` and ``extra``."""
    entries: list[RegistryEntry] = []
    seen: set[str] = set()
    for folder, source in model_folders(extra):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in MODEL_SUFFIXES or not path.is_file():
                continue
            entry = entry_for(path, source)
            name = entry.name
            while entry.name in seen:
                entry.name = f"{name} ({source})" if entry.name == name else entry.name + "'"
            seen.add(entry.name)
            entries.append(entry)
    return entries


def entry_for(path: str | Path, source: str = "user") -> RegistryEntry:
    """Return the registry entry for one model file, reading its card if there is one."""
    path = Path(path)
    card_file = card_path_for(path)
    error = None
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
    if path.is_file():
        return entry_for(path)
    known = ", ".join(e.name for e in scan(extra)) or "none"
    raise ModelLoadError(f"no model called {name_or_path!r} (known: {known}) and no such file")


def load_model(path: str | Path) -> keras.Model:
    """Load a model file in safe mode; raise :class:`ModelLoadError` with the reason."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path.name}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            starts_like_zip = fh.read(4) == b"PK\x03\x04"
        if starts_like_zip:
            raise ModelLoadError(f"{path.name}: the file is damaged or truncated (incomplete zip archive)")
        raise ModelLoadError(f"{path.name}: not a Keras model file (a .keras file is a zip archive)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds; all mean "unusable"
        raise ModelLoadError(f"{path.name}: {_reason(err)}") from None
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path.name}: holds a {type(model).__name__}, not a Keras model")
    return model


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
