"""A ``.keras`` file's functional graph run as plain TensorFlow ops, without building Keras layers.

Loading a ``.keras`` file with Keras builds every layer object, creates and initialises every
variable and then overwrites it with the file's weights: 2.6-3 s for the shipped ResNet-50 on
this project's 2-core machine, the largest part of a fresh server's wait for its first heatmap
after the TensorFlow import. Reading the same file as data (``config.json`` through ``json``,
the weights through ``h5py``) and running each layer as the TensorFlow op it stands for takes
0.5 s, and one eager pass on it another 0.5 s (``python bench/first_heatmap.py`` measures the
app; the README's "Start-up" has the figures).

Only the layer types listed in :data:`LAYERS`, in a flat Functional or Sequential model, are
read; anything else (a nested model, a shared layer, a Lambda, an unknown layer, a
mixed-precision policy, weights whose shapes disagree with the config) raises
:class:`PlainGraphError` and the caller loads the model with Keras as usual. Nothing in the
file is ever executed: the config is data, and each layer type maps to code of ours.

:func:`first_look` gives the engine's explanation (prediction, Grad-CAM at every residual
block or the last spatial layer, one layer's activations) from this graph: the Inspect page's
first heatmap while the Keras model is still loading (``ui.first_look``), and its first full
result. The maps equal the engine's (:class:`explain.explainer.Explainer`) to float rounding;
the tests compare them.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from explain.cams import grad_cam
from explain.explainer import Explanation
from explain.graph import POINTWISE_WORKAROUND_CHANNELS
from explain.heads import Head
from explain.layers import is_resnet_block

#: The largest ``config.json`` read (the shipped ResNet-101's is 0.35 MB).
MAX_CONFIG_BYTES = 32 * 2**20
#: The largest weights file read into memory.
MAX_WEIGHTS_BYTES = 2 * 2**30


class PlainGraphError(ValueError):
    """The file cannot be run as a plain graph (the reason says why); load it with Keras."""


_ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "linear": lambda x: x,
    "relu": tf.nn.relu,
    "sigmoid": tf.sigmoid,
    "softmax": lambda x: tf.nn.softmax(x, axis=-1),
    "log_softmax": lambda x: tf.nn.log_softmax(x, axis=-1),
    "tanh": tf.tanh,
    "swish": tf.nn.silu,
    "silu": tf.nn.silu,
    "elu": tf.nn.elu,
    "relu6": tf.nn.relu6,
}
_SQUASHING = ("sigmoid", "softmax", "log_softmax")


def _activation(name: Any) -> Callable[[tf.Tensor], tf.Tensor]:
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        raise PlainGraphError(f"activation {name!r} is not one this reader knows")
    return _ACTIVATIONS[name]


def _pair(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * 2


def _padding(config: dict) -> str:
    padding = str(config.get("padding", "valid")).upper()
    if padding not in ("VALID", "SAME"):
        raise PlainGraphError(f"padding {padding.lower()!r} is not one this reader knows")
    return padding


def _conv2d(c: dict, w: list[np.ndarray]) -> Callable:
    if int(c.get("groups", 1)) != 1:
        raise PlainGraphError("grouped convolutions are not read")
    strides, dilation, padding, act = (
        _pair(c["strides"]),
        _pair(c["dilation_rate"]),
        _padding(c),
        _activation(c.get("activation", "linear")),
    )
    bias = w[1] if c.get("use_bias", True) else None

    pointwise = (
        tuple(w[0].shape[:2]) == (1, 1)
        and strides != [1, 1]
        and dilation == [1, 1]
        and int(w[0].shape[2]) < POINTWISE_WORKAROUND_CHANNELS
    )

    def run(x):
        if pointwise:  # every stride-th pixel, then 1x1: see explain.graph._strided_pointwise
            y = tf.nn.convolution(x[:, :: strides[0], :: strides[1], :], w[0], 1, "VALID")
        else:
            y = tf.nn.convolution(x, w[0], strides, padding, dilations=dilation)  # as Keras calls it
        return act(y if bias is None else tf.nn.bias_add(y, bias))

    return run


def _batch_norm(c: dict, w: list[np.ndarray]) -> Callable:
    axis = c.get("axis", -1)
    if axis not in (-1, 3, [-1], [3]):
        raise PlainGraphError("batch normalisation over an axis other than the channels")
    values = list(w)
    gamma = values.pop(0) if c.get("scale", True) else None
    beta = values.pop(0) if c.get("center", True) else None
    mean, variance = values
    epsilon = float(c.get("epsilon", 1e-3))
    return lambda x: tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)


def _dense(c: dict, w: list[np.ndarray]) -> Callable:
    act, bias = _activation(c.get("activation", "linear")), (w[1] if c.get("use_bias", True) else None)

    def run(x):
        y = tf.matmul(x, w[0])
        return act(y if bias is None else y + bias)

    return run


def _pool(op: Callable) -> Callable[[dict, list], Callable]:
    def make(c: dict, _w: list) -> Callable:
        size = _pair(c["pool_size"])
        strides = _pair(c.get("strides") or size)
        padding = _padding(c)
        return lambda x: op(x, size, strides, padding)

    return make


def _global(op: Callable) -> Callable[[dict, list], Callable]:
    def make(c: dict, _w: list) -> Callable:
        keepdims = bool(c.get("keepdims", False))
        return lambda x: op(x, axis=(1, 2), keepdims=keepdims)

    return make


def _relu_layer(c: dict, _w: list) -> Callable:
    if c.get("max_value") is not None or float(c.get("negative_slope", 0)) or float(c.get("threshold", 0)):
        raise PlainGraphError("a ReLU with a ceiling, slope or threshold is not read")
    return tf.nn.relu


def _rescaling(c: dict, _w: list) -> Callable:
    scale = np.asarray(c["scale"], np.float32)
    offset = np.asarray(c["offset"], np.float32)
    return lambda x: x * scale + offset


def _zero_padding(c: dict, _w: list) -> Callable:
    padding = c["padding"]
    rows, cols = (
        (_pair(padding[0]), _pair(padding[1]))
        if isinstance(padding, (list, tuple))
        else (
            [int(padding)] * 2,
            [int(padding)] * 2,
        )
    )
    return lambda x: tf.pad(x, [[0, 0], rows, cols, [0, 0]])


#: layer class -> (number of inputs: 1 or None for a list, builder(config, weights) -> op)
LAYERS: dict[str, tuple[int | None, Callable[[dict, list], Callable]]] = {
    "Rescaling": (1, _rescaling),
    "ZeroPadding2D": (1, _zero_padding),
    "Conv2D": (1, _conv2d),
    "BatchNormalization": (1, _batch_norm),
    "Activation": (1, lambda c, _w: _activation(c.get("activation"))),
    "ReLU": (1, _relu_layer),
    "Softmax": (1, lambda c, _w: _activation("softmax")),
    "Add": (None, lambda c, _w: tf.add_n),
    "Concatenate": (None, lambda c, _w: lambda xs: tf.concat(xs, axis=int(c.get("axis", -1)))),
    "MaxPooling2D": (1, _pool(tf.nn.max_pool2d)),
    "AveragePooling2D": (1, _pool(tf.nn.avg_pool2d)),
    "GlobalAveragePooling2D": (1, _global(tf.reduce_mean)),
    "GlobalMaxPooling2D": (1, _global(tf.reduce_max)),
    "Flatten": (1, lambda c, _w: lambda x: tf.reshape(x, (tf.shape(x)[0], -1))),
    "Dropout": (1, lambda c, _w: lambda x: x),
    "Dense": (1, _dense),
}
#: Layers that carry their own activation (left out of the head for its logits).
_ACTIVATED = ("Conv2D", "Dense", "Activation")
#: Layers whose output is the input of a classifier's head: Grad-CAM's layer is what they read.
_TO_VECTOR = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten")


@dataclass
class _Node:
    name: str
    kind: str
    inputs: list[str]
    run: Callable | None  # None: the model's input
    activation: str = "linear"
    linear: Callable | None = None  # the same layer without its activation (the head's logits)


def _snake(name: str) -> str:
    """Keras 3's name for a layer's weights group (``keras.src.utils.naming.to_snake_case``)."""
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _history(value: Any) -> list[str]:
    """The names of the layers whose outputs ``value`` (a node's args) holds, in order."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            layer, node, tensor = value["config"]["keras_history"]
            if node != 0 or tensor != 0:
                raise PlainGraphError("a layer used more than once, or with several outputs")
            return [layer]
        return [n for v in value.values() for n in _history(v)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _history(v)]
    return []


class PlainGraph:
    """A flat Functional or Sequential classifier read from a ``.keras`` file as data."""

    def __init__(self, nodes: list[_Node], input_shape: tuple, output: str):
        self.nodes = nodes
        self.input_shape = input_shape  # (height or None, width or None, channels)
        self.output = output
        by_name = {n.name: n for n in nodes}
        last = by_name[output]
        self.head_kind = last.activation if last.activation in _SQUASHING else "linear"
        #: The last spatial layer: the input of the layer that turns the maps into one vector.
        self.last_spatial = next((n.inputs[0] for n in reversed(nodes) if n.kind in _TO_VECTOR), None)
        #: The residual block outputs of a Keras ResNet (the engine's catalog's blocks), else [].
        self.blocks = [n.name for n in nodes if is_resnet_block(n.name)]

    @classmethod
    def read(cls, path: str | Path) -> PlainGraph:
        """Read ``path`` (a Keras 3 ``.keras`` zip); raise :class:`PlainGraphError` with the reason."""
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as archive:
                sizes = {i.filename: i.file_size for i in archive.infolist()}
                if sizes.get("config.json", MAX_CONFIG_BYTES + 1) > MAX_CONFIG_BYTES:
                    raise PlainGraphError(f"{path.name}: no config.json of a readable size")
                if sizes.get("model.weights.h5", MAX_WEIGHTS_BYTES + 1) > MAX_WEIGHTS_BYTES:
                    raise PlainGraphError(f"{path.name}: no model.weights.h5 of a readable size")
                config = json.loads(archive.read("config.json"))
                weights_bytes = archive.read("model.weights.h5")
        except (OSError, zipfile.BadZipFile, ValueError, KeyError) as err:
            if isinstance(err, PlainGraphError):
                raise
            raise PlainGraphError(f"{path.name}: not a readable .keras file ({err})") from err
        import h5py

        try:
            with h5py.File(io.BytesIO(weights_bytes), "r") as weights:
                return cls._from_config(config, weights)
        except PlainGraphError:
            raise
        except (OSError, KeyError, TypeError, AttributeError, IndexError, ValueError) as err:
            # a config or weights file of another shape than Keras 3 writes
            raise PlainGraphError(f"{path.name}: not a model this reader follows ({err!r})") from err

    @classmethod
    def _from_config(cls, config: dict, weights) -> PlainGraph:
        kind, body = config.get("class_name"), config.get("config", {})
        if kind not in ("Functional", "Sequential", "Model"):
            raise PlainGraphError(f"a {kind} model is not read (only Functional and Sequential)")
        layers = body.get("layers", [])
        groups = weights["layers"] if "layers" in weights else {}
        used: dict[str, int] = {}
        nodes: list[_Node] = []
        input_shape = None
        previous = None
        for layer in layers:
            name, class_name, c = (
                layer.get("name") or layer["config"]["name"],
                layer["class_name"],
                layer["config"],
            )
            base = _snake(class_name)
            count = used.get(base, 0)
            used[base] = count + 1
            if class_name == "InputLayer":
                shape = c.get("batch_shape") or c.get("batch_input_shape")
                if input_shape is not None or shape is None or len(shape) != 4:
                    raise PlainGraphError("not one image input")
                input_shape = tuple(shape[1:])
                nodes.append(_Node(name, class_name, [], None))
                previous = name
                continue
            if class_name not in LAYERS:
                raise PlainGraphError(f"layer {name!r} is a {class_name}, which this reader does not run")
            policy = c.get("dtype")
            policy_name = policy.get("config", {}).get("name") if isinstance(policy, dict) else policy
            if policy_name not in (None, "float32"):
                raise PlainGraphError(f"layer {name!r} computes in {policy_name}")
            if c.get("data_format", "channels_last") != "channels_last":
                raise PlainGraphError("channels-first layers are not read")
            group_name = base if count == 0 else f"{base}_{count}"
            values = _read_vars(groups, group_name)
            _check_shapes(name, class_name, c, values)
            arity, build = LAYERS[class_name]
            if kind == "Sequential":
                if previous is None:
                    shape = (layer.get("build_config") or {}).get("input_shape")
                    if shape is None or len(shape) != 4:
                        raise PlainGraphError("a Sequential model without an image input")
                    input_shape = tuple(shape[1:])
                    nodes.append(_Node("input", "InputLayer", [], None))
                    previous = "input"
                inputs = [previous]
            else:
                nodes_in = layer.get("inbound_nodes", [])
                if len(nodes_in) != 1:
                    raise PlainGraphError(f"layer {name!r} is used {len(nodes_in)} times")
                inputs = _history(nodes_in[0].get("args", []))
                if _history(nodes_in[0].get("kwargs", {})):
                    raise PlainGraphError(f"layer {name!r} is given a tensor by keyword")
            if (arity == 1 and len(inputs) != 1) or (arity is None and len(inputs) < 2):
                raise PlainGraphError(f"layer {name!r} is given {len(inputs)} inputs")
            constants = [tf.constant(v) for v in values]
            activation = (
                str(c.get("activation", "linear"))
                if class_name in _ACTIVATED
                else ("softmax" if class_name == "Softmax" else "linear")
            )
            run, linear = _runner(arity, build(c, constants)), None
            if class_name in ("Activation", "Softmax"):
                linear = _runner(1, lambda x: x)
            elif class_name in _ACTIVATED:
                linear = _runner(arity, build({**c, "activation": "linear"}, constants))
            nodes.append(_Node(name, class_name, inputs, run, activation, linear))
            previous = name
        if input_shape is None:
            raise PlainGraphError("no image input")
        if kind == "Sequential":
            output = previous
        else:
            outputs = body.get("output_layers") or []
            outputs = [outputs] if outputs and isinstance(outputs[0], str) else outputs
            if len(outputs) != 1:
                raise PlainGraphError("not one output")
            output = outputs[0][0]
        return cls(nodes, input_shape, output)

    def run(
        self, x: tf.Tensor, on_output: Callable[[str, tf.Tensor], None] | None = None, logits: bool = False
    ) -> tf.Tensor:
        """Return the model's output for ``x`` (N, H, W, C), calling ``on_output(name, out)``
        per layer; ``logits``: the output layer's sigmoid or softmax left out."""
        outputs: dict[str, tf.Tensor] = {}
        for node in self.nodes:
            if node.run is None:
                out = x
            elif logits and node.name == self.output and self.head_kind in ("sigmoid", "softmax"):
                out = node.linear([outputs[i] for i in node.inputs])
            else:
                out = node.run([outputs[i] for i in node.inputs])
            outputs[node.name] = out
            if on_output is not None:
                on_output(node.name, out)
        return outputs[self.output]


def _runner(arity: int | None, op: Callable) -> Callable[[list[tf.Tensor]], tf.Tensor]:
    return op if arity is None else (lambda xs: op(xs[0]))


def _read_vars(groups, name: str) -> list[np.ndarray]:
    if name not in groups:
        return []
    group = groups[name].get("vars", {})
    return [np.asarray(group[str(i)][()], np.float32) for i in range(len(group))]


def _check_shapes(name: str, kind: str, c: dict, values: list[np.ndarray]) -> None:
    """Raise unless the weights read are the ones the config describes."""
    if kind == "Conv2D":
        expected = 2 if c.get("use_bias", True) else 1
        ok = len(values) == expected and values[0].ndim == 4 and values[0].shape[-1] == int(c["filters"])
    elif kind == "Dense":
        expected = 2 if c.get("use_bias", True) else 1
        ok = len(values) == expected and values[0].ndim == 2 and values[0].shape[-1] == int(c["units"])
    elif kind == "BatchNormalization":
        expected = 2 + bool(c.get("scale", True)) + bool(c.get("center", True))
        ok = len(values) == expected and len({v.shape for v in values}) == 1
    else:
        ok = not values
    if not ok:
        raise PlainGraphError(f"layer {name!r}: the weights in the file do not match its config")


def first_look(
    graph: PlainGraph,
    x: np.ndarray,
    layers: Sequence[str] | None = None,
    keep: str | None = None,
    class_names: Sequence[str] | None = None,
    first: Callable[[Explanation], object] | None = None,
) -> Explanation:
    """Return the engine's :class:`~explain.explainer.Explanation` of one model input ``x``
    (H, W, C) for its predicted class: Grad-CAM at ``layers`` (default: the ResNet block
    outputs, else the last spatial layer), ``keep``'s activations and gradients; eagerly.

    ``first``, where given, is called with the explanation of the last of ``layers`` alone as
    soon as it is ready: its gradient needs the backward pass through the head only, the other
    layers' the whole network's, so a page can draw the last block's map before that runs.
    """
    layers = list(layers or graph.blocks or ([graph.last_spatial] if graph.last_spatial else []))
    if not layers:
        raise PlainGraphError("no spatial layer before the head")
    wanted = set(layers)
    taps: dict[str, tf.Tensor] = {}
    with tf.GradientTape(watch_accessed_variables=False, persistent=first is not None) as tape:

        def record(name: str, out: tf.Tensor) -> None:
            if name in wanted:
                tape.watch(out)
                taps[name] = out

        logits = tf.cast(
            graph.run(tf.convert_to_tensor(x[None], tf.float32), record, logits=True), tf.float32
        )
        if logits.shape.rank != 2:
            raise PlainGraphError("the output is not (batch, classes)")
        head = Head(kind=graph.head_kind, units=int(logits.shape[-1]), path=graph.output)
        probabilities = head.probabilities(logits)
        targets = tf.argmax(probabilities, axis=1, output_type=tf.int32)
        score = tf.reduce_sum(head.class_score(logits, targets))
    missing = wanted - set(taps)
    if missing:
        raise PlainGraphError(f"no layer {sorted(missing)[0]!r}")
    names = list(class_names or [])
    if len(names) != head.n_classes:
        names = [f"class {i}" for i in range(head.n_classes)]

    def explanation(paths: list[str]) -> Explanation:
        gradients = tape.gradient(score, [taps[p] for p in paths])
        gradients = [tf.zeros_like(taps[p]) if g is None else g for p, g in zip(paths, gradients)]
        kept = paths.index(keep) if keep in paths else None
        return Explanation(
            probabilities=probabilities.numpy(),
            logits=logits.numpy(),
            targets=targets.numpy(),
            class_names=names,
            cams={"gradcam": {p: grad_cam(taps[p], g).numpy() for p, g in zip(paths, gradients)}},
            kept_layer=keep if kept is not None else None,
            kept_activations=taps[keep].numpy() if kept is not None else None,
            kept_gradients=gradients[kept].numpy() if kept is not None else None,
            layers=paths,
        )

    if first is not None:
        first(explanation(layers[-1:]))
    return explanation(layers)
