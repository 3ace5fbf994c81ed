"""What a classifier's output means: which activation ends it, and how to get logits."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from explain.graph import output_layer

_SQUASHING = {"sigmoid", "softmax", "log_softmax"}


@dataclass(frozen=True)
class Head:
    """The end of a classifier.

    ``kind`` is "sigmoid", "softmax", "log_softmax" or "linear" (the activation the model
    applies last); ``units`` the width of its output; ``path`` the layer computing it.
    Explanations use the logits: the layer's output without a sigmoid or softmax.
    """

    kind: str
    units: int
    path: str

    @property
    def n_classes(self) -> int:
        return 2 if self.units == 1 else self.units

    @property
    def strip_activation(self) -> bool:
        return self.kind in ("sigmoid", "softmax")

    def probabilities(self, logits: tf.Tensor) -> tf.Tensor:
        """Return (N, n_classes) probabilities from (N, units) logits."""
        if self.units == 1:
            p = tf.sigmoid(logits)
            return tf.concat([1.0 - p, p], axis=-1)
        if self.kind == "sigmoid":  # multi-label: each unit on its own
            return tf.sigmoid(logits)
        return tf.nn.softmax(logits, axis=-1)

    def class_score(self, logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
        """Return the (N,) score whose gradient explains class ``classes[i]`` for image i.

        One sigmoid unit: +logit explains the positive class, -logit the negative one,
        so both classes get a map that means something. Otherwise the class's logit.
        """
        if self.units == 1:
            sign = tf.where(classes == 1, 1.0, -1.0)
            return sign * logits[:, 0]
        return tf.gather(logits, classes, axis=1, batch_dims=1)


def activation_name(layer: keras.layers.Layer) -> str:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    fn = getattr(layer, "activation", None)
    if fn is None:
        return "linear"
    name = getattr(fn, "__name__", str(fn))
    return name if name in _SQUASHING else "linear"


def find_head(model: keras.Model) -> Head:
    """Return the model's :class:`Head`; raise ValueError when it is not a classifier."""
    path, layer = output_layer(model)
    shape = model.outputs[0].shape if hasattr(model, "outputs") and model.outputs else None
    if shape is None or len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"the model's output has shape {tuple(shape) if shape else '?'}; a classifier "
            "ends in (batch, classes)"
        )
    return Head(kind=activation_name(layer), units=int(shape[-1]), path=path)
