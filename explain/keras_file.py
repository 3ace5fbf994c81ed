"""Read a Keras 3 ``.keras`` file as a model, never running code it carries.

The one loader behind the engine's command line (``python -m explain``) and the registry
(``models.registry``), which word their own one-line messages around what it raises.
"""

from __future__ import annotations

from pathlib import Path

import keras


class NotAModel(TypeError):
    """The file loaded, but holds something other than a Keras model (``held``: its type)."""

    def __init__(self, name: str, held: str):
        super().__init__(f"{name}: holds a {held}, not a Keras model")
        self.held = held


def read_keras_model(path: str | Path) -> keras.Model:
    """Return the model in a ``.keras`` file, uncompiled, in Keras's safe mode (no Lambda code).

    Keras's own exceptions (a damaged zip, an unknown layer class, code that safe mode
    refuses) pass through unchanged for the caller to word; a file that holds another kind of
    object raises :class:`NotAModel`.
    """
    path = Path(path)
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    if not isinstance(model, keras.Model):
        raise NotAModel(path.name, type(model).__name__)
    return model
