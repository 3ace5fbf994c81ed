"""Read a Keras 3 ``.keras`` file as a model, never running code it carries.

The one loader behind the engine's command line (``python -m explain``) and the registry
(``models.registry``), which word their own one-line messages around what it raises.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import keras


class NotAModel(TypeError):
    """The file loaded, but holds something other than a Keras model."""


def read_keras_model(path: str | Path) -> keras.Model:
    """Return the model in a ``.keras`` file, uncompiled, in Keras's safe mode (no Lambda code).

    Keras's own exceptions (a damaged zip, an unknown layer class, code that safe mode
    refuses) pass through unchanged for the caller to word; a file that holds another kind of
    object raises :class:`NotAModel`.
    """
    path = Path(path)
    with _weights_start_as_zeros():
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    if not isinstance(model, keras.Model):
        raise NotAModel(f"{path.name}: holds a {type(model).__name__}, not a Keras model")
    return model


_ZEROS_LOCK = threading.Lock()


@contextlib.contextmanager
def _weights_start_as_zeros():
    """Create variables as zeros, not from their random initialisers, while a file loads.

    Keras builds every layer with its initialiser (random numbers for 25 million weights of a
    ResNet-50) and then overwrites each variable with the file's values; Keras refuses a file
    that lacks any of them, so the random numbers are never seen. Drawing them was about a third
    of loading a shipped model here. TensorFlow backend only; one load at a time under it.
    """
    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf
    from keras.src.backend.tensorflow.core import Variable

    def zeros(variable, _initializer):
        variable._initialize(lambda: tf.zeros(variable._shape, dtype=variable._dtype))

    with _ZEROS_LOCK:
        original = Variable._initialize_with_initializer
        Variable._initialize_with_initializer = zeros
        try:
            yield
        finally:
            Variable._initialize_with_initializer = original
