"""Legacy Keras files (HDF5, SavedModel, JSON + weights) converted once into Keras 3 ``.keras``.

The file is first read as data by :mod:`models.model_files` (Lambda layers, classes that are
not built-in, damaged files and absurd datasets are refused there); only then does tf-keras
build the model from that checked config and read the weights as data. A Keras 3 model is
rebuilt from an equivalent config, the weights copied layer by layer, its outputs compared
with tf-keras' on the same input, and the result saved as ``<sha256>.keras`` in a folder the
app owns. tf-keras is imported inside functions, so the app does not pay for it at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE_ENV = "CVD_CACHE_DIR"  # the app's cache root (as models.evaluate); conversions go in converted/


def default_cache_dir() -> Path:
    """Return the folder for converted models: ``$CVD_CACHE_DIR/converted``, else ``.cache/converted``."""
    return Path(os.environ.get(CACHE_ENV, ROOT / ".cache")) / "converted"


@dataclass
class Conversion:
    """What one conversion made and from what: enough for a card to say where a model came from."""

    keras_path: Path  # the Keras 3 .keras file in the cache
    source_format: str  # "HDF5", "SavedModel", "JSON + HDF5 weights", "JSON + Keras 3 weights", "Keras 3"
    saved_by: str  # e.g. "Keras 2.2.4" or "TensorFlow 2.12 / Keras 2.12.0"; "" when unknown
    digest: str  # SHA-256 of the source (for a folder or a pair: of its files, in a fixed order)
    notes: list[str]  # what the conversion changed or dropped, for the card

    def describe(self) -> str:
        """Return one line for the card: 'converted from HDF5 written by Keras 2.2.4'."""
        by = f" written by {self.saved_by}" if self.saved_by else ""
        return f"converted from {self.source_format}{by}"


def convert_to_keras3(path: Path, weights: Path | None = None, cache_dir: Path | None = None) -> Conversion:
    """Return the Keras 3 conversion of a legacy model file, converting it on first use.

    Parameters
    ----------
    path
        A legacy HDF5 model (any name: the bytes decide), a SavedModel folder, a ``.zip``
        holding a SavedModel or an architecture JSON with its weights, or an architecture
        JSON (``model.to_json()``) when ``weights`` is given.
    weights
        The weights of an architecture JSON: a ``save_weights`` HDF5 or a Keras 3
        ``.weights.h5``. Found beside a JSON automatically when it shares its stem.
    cache_dir
        Where converted files go (default :func:`default_cache_dir`); keyed by the source's
        SHA-256, so a second call with the same file is a lookup.

    Raises
    ------
    models.registry.ModelLoadError
        With a one-line reason, for any file refused by the safety check or that cannot be
        converted faithfully (outputs differing by more than 1e-4).
    """
    raise NotImplementedError("being written by A1 (issue #10)")
