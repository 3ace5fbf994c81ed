"""Run a Keras model layer by layer, seeing every layer's output, nested models included.

``keras.Model(outer.inputs, nested_layer.output)`` fails with "Graph disconnected" when the
layer sits inside a nested backbone. Instead we replay the model's own graph, descending
into nested models, and hand each layer's output to a callback. Run inside a
``tf.function`` this builds exactly the graph the model builds itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf
from keras.src.models.functional import Functional

OutputCallback = Callable[[str, keras.layers.Layer, Any], None]

#: Held while a head's activation is swapped for tracing (see :func:`walk`).
_SWAP_LOCK = threading.RLock()


class UnsupportedModel(ValueError):
    """A model whose layers cannot be replayed (for example a subclassed model)."""


def is_container(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, (keras.Sequential, Functional))


def walk(
    model: keras.Model,
    inputs: Any,
    on_output: OutputCallback | None = None,
    linear_head: str | None = None,
) -> Any:
    """Return the model's output for ``inputs``, calling ``on_output(path, layer, out)`` per layer.

    Paths name nested layers as ``"outer_layer/inner_layer"``. Layers run in inference mode.
    ``linear_head`` is the path of a layer whose activation is left out (to get logits).
    """
    walker = _Walker(on_output or (lambda *_: None), linear_head)
    with _SWAP_LOCK:
        return walker.run(model, inputs, "")


class _Walker:
    def __init__(self, on_output: OutputCallback, linear_head: str | None):
        self.on_output = on_output
        self.linear_head = linear_head

    def run(self, model: keras.Model, inputs: Any, prefix: str) -> Any:
        if isinstance(model, keras.Sequential):
            x = inputs
            for layer in model.layers:
                x = self.call(layer, prefix, x)
            return x
        if isinstance(model, Functional):
            return model._run_through_graph(
                inputs, operation_fn=lambda op: lambda *a, **k: self.call(op, prefix, *a, **k)
            )
        raise UnsupportedModel(
            f"{type(model).__name__} is a subclassed model; only Functional and Sequential "
            "models (and models nested in them) can be explained layer by layer"
        )

    def call(self, layer: keras.layers.Layer, prefix: str, *args: Any, **kwargs: Any) -> Any:
        path = prefix + layer.name
        if is_container(layer):
            out = self.run(layer, args[0] if len(args) == 1 else list(args), path + "/")
        else:
            if getattr(layer, "_call_has_training_arg", False):
                kwargs["training"] = False
            if path == self.linear_head:
                out = _call_without_activation(layer, *args, **kwargs)
            elif _is_strided_pointwise(layer) and len(args) == 1 and isinstance(args[0], tf.Tensor):
                out = _strided_pointwise(layer, args[0])
            else:
                out = layer(*args, **kwargs)
        # a callback may return a tensor that replaces the layer's output downstream
        # (Ablation-CAM zeroes channels, guided backprop wraps ReLU outputs)
        replaced = self.on_output(path, layer, out)
        return out if replaced is None else replaced


#: Strided 1x1 convolutions with fewer input channels than this take :func:`_strided_pointwise`.
#: The crash was seen with 1 to 8 channels, never with 32 (scripts/onednn_strided_crash.py);
#: wider ones (ResNet's shortcuts, 256 and more) keep TensorFlow's kernel: the workaround's
#: slice cost ResNet-50's pass 3-5 % there.
POINTWISE_WORKAROUND_CHANNELS = 64


def _is_strided_pointwise(layer: keras.layers.Layer) -> bool:
    """A plain 1x1 convolution with a stride and few input channels (small custom CNNs)."""
    return (
        type(layer) is keras.layers.Conv2D
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) != (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
        and int(layer.kernel.shape[-2]) < POINTWISE_WORKAROUND_CHANNELS
    )


def _strided_pointwise(layer: keras.layers.Conv2D, x: tf.Tensor) -> tf.Tensor:
    """The layer's output computed as every stride-th pixel, then the 1x1 convolution.

    The same numbers (a 1x1 kernel reads only the pixels the stride lands on, and neither
    padding adds any), but the gradient is a strided slice's: TensorFlow 2.21's oneDNN
    gradient of a strided 1x1 convolution with few channels (1 to 8, on 16 to 56 px inputs)
    corrupts the heap and aborts the process (README, "Known problems").
    """
    dtype = layer.compute_dtype
    rows, cols = layer.strides
    x = tf.cast(x, dtype)[:, ::rows, ::cols, :]
    y = tf.nn.convolution(x, tf.cast(layer.kernel, dtype), 1, "VALID")
    if layer.use_bias:
        y = tf.nn.bias_add(y, tf.cast(layer.bias, dtype))
    return layer.activation(y)


def _call_without_activation(layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
    if isinstance(layer, (keras.layers.Activation, keras.layers.Softmax)):
        return args[0]
    saved = layer.activation
    layer.activation = keras.activations.linear
    try:
        return layer(*args, **kwargs)
    finally:
        layer.activation = saved


def output_layer(model: keras.Model, prefix: str = "") -> tuple[str, keras.layers.Layer]:
    """Return (path, layer) of the layer that produces the model's (first) output."""
    if isinstance(model, keras.Sequential):
        layer = model.layers[-1]
    elif isinstance(model, Functional):
        layer = model.outputs[0]._keras_history[0]
    else:
        raise UnsupportedModel(f"{type(model).__name__} is a subclassed model")
    if is_container(layer):
        return output_layer(layer, prefix + layer.name + "/")
    return prefix + layer.name, layer
