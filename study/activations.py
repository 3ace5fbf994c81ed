"""What the maps do not give: the penultimate features (the input of the classifier's last
layer) and, at each stage end, every channel's strongest response and where it is (the
channel atlas is built from these).

Where the head is a global average pooling of the last block (ResNets, most CNNs), the
features are that pooling of the last block's activations, which the engine's pass already
returns (``keep=``): no second pass. Otherwise, and for the atlas, one compiled forward pass.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from explain.explainer import Explainer
from explain.graph import walk


@dataclass
class Responses:
    """What the probe gives for N photos."""

    features: np.ndarray  # (N, D) the penultimate features
    maxima: dict[str, np.ndarray]  # stage-end layer path -> (N, channels) strongest response
    where: dict[str, np.ndarray]  # layer path -> (N, channels) flat index (row * w + col) of it


#: Layers between the last block and the head that keep "global average of the last block".
_PASS_THROUGH = (keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.InputLayer)


def _layer_at(model: keras.Model, path: str) -> keras.layers.Layer:
    layer = model
    for name in path.split("/"):
        layer = layer.get_layer(name)
    return layer


def pooled_head(explainer: Explainer) -> bool:
    """True when the head's input is exactly the global average of the last block's output
    (only a GlobalAveragePooling2D and dropouts between them)."""
    leaves = explainer.layers.leaves
    last, head = explainer.layers.last.path, explainer.head.path
    if last not in leaves or head not in leaves:
        return False
    between = [_layer_at(explainer.model, p) for p in leaves[leaves.index(last) + 1 : leaves.index(head)]]
    pools = [layer for layer in between if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    others = [
        layer
        for layer in between
        if not isinstance(layer, (keras.layers.GlobalAveragePooling2D, *_PASS_THROUGH))
    ]
    return len(pools) == 1 and not others and not pools[0].keepdims


class ActivationProbe:
    """The stage ends and the penultimate layer of one explainer's model, compiled once."""

    def __init__(self, explainer: Explainer):
        self.explainer = explainer
        self.layers = [info.path for info in explainer.layers.stage_ends()]
        self.shapes = {path: explainer.layers[path].shape for path in self.layers}
        self.pooled = pooled_head(explainer)
        self._fn = None
        self._lock = threading.Lock()

    def _build(self):
        wanted = set(self.layers)
        head = self.explainer.head.path

        def probe(x):
            taps: dict[str, tf.Tensor] = {}
            flat: list[tf.Tensor] = []

            def record(path, _layer, out):
                if isinstance(out, (list, tuple)):
                    return
                if path in wanted:
                    taps[path] = out
                # The head's input is the last 2-D output before the head itself.
                if len(out.shape) == 2 and path != head and "head" not in taps:
                    flat.append(out)
                if path == head:
                    taps["head"] = out

            walk(self.explainer.model, x, record)
            features = tf.cast(flat[-1], tf.float32) if flat else tf.zeros((tf.shape(x)[0], 0))
            maxima, where = [], []
            for path in self.layers:
                a = tf.cast(taps[path], tf.float32)
                a = tf.reshape(a, (tf.shape(a)[0], -1, a.shape[-1]))  # (N, h*w, c)
                maxima.append(tf.reduce_max(a, axis=1))
                where.append(tf.argmax(a, axis=1, output_type=tf.int32))
            return features, maxima, where

        signature = [tf.TensorSpec((None, *self.explainer.input_shape), tf.float32)]
        return tf.function(probe, input_signature=signature, autograph=False)

    def __call__(self, batch: np.ndarray) -> Responses:
        """Return the features and stage-end responses of a prepared batch."""
        with self._lock:
            if self._fn is None:
                self._fn = self._build()
        features, maxima, where = self._fn(tf.convert_to_tensor(batch, tf.float32))
        return Responses(
            features.numpy(),
            {p: m.numpy() for p, m in zip(self.layers, maxima)},
            {p: w.numpy() for p, w in zip(self.layers, where)},
        )
