"""Builders for the classifiers the project trains and tests against."""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

BACKBONES: dict[str, Callable[..., keras.Model]] = {
    "resnet50": keras.applications.ResNet50,
    "resnet101": keras.applications.ResNet101,
    "resnet152": keras.applications.ResNet152,
}


def _head(x, n_classes: int, dropout: float, dtype: str | None = None):
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    if n_classes == 2:
        return layers.Dense(1, activation="sigmoid", name="predictions", dtype=dtype)(x)
    return layers.Dense(n_classes, activation="softmax", name="predictions", dtype=dtype)(x)


def build_resnet(
    arch: str = "resnet50",
    n_classes: int = 2,
    dropout: float = 0.0,
    bn_momentum: float | None = None,
    input_size: int | None = None,
    head_dtype: str | None = None,
) -> keras.Model:
    """Return a flat ResNet classifier that takes RGB uint8-range input of any size.

    Rescaling to [0, 1] lives inside the model, so the file is all a user needs. Two
    classes get one sigmoid unit (the reference study's head); more get a softmax.
    ``head_dtype="float32"`` keeps the head in float32 under a mixed-precision policy.
    """
    if arch not in BACKBONES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(BACKBONES)}")
    side = input_size
    inputs = keras.Input((side, side, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    backbone = BACKBONES[arch](include_top=False, weights=None, input_tensor=x, pooling="avg")
    outputs = _head(backbone.output, n_classes, dropout, head_dtype)
    model = keras.Model(inputs, outputs, name=arch)
    if bn_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = bn_momentum
    return model


def build_classifier(
    arch: str,
    n_classes: int = 2,
    dropout: float = 0.0,
    bn_momentum: float | None = None,
    head_dtype: str | None = None,
) -> keras.Model:
    """Return the model a training run of ``arch`` trains: a ResNet, or the small CNN (any input size)."""
    if arch == "small_cnn":
        return build_small_cnn(input_size=None, n_classes=n_classes)
    return build_resnet(arch, n_classes, dropout=dropout, bn_momentum=bn_momentum, head_dtype=head_dtype)


def nest_backbone(backbone: keras.Model, n_classes: int = 2, name: str = "nested") -> keras.Model:
    """Return a transfer-learning style model with ``backbone`` used as one layer inside it."""
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = backbone(x)
    if len(x.shape) == 4:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, _head(x, n_classes, 0.0), name=name)


def build_small_cnn(
    input_size: int = 64,
    channels: int = 3,
    n_classes: int = 2,
    width: int = 16,
    final: str = "auto",
) -> keras.Model:
    """Return a small custom CNN of the kind users write by hand.

    ``final`` is "auto" (sigmoid for two classes, else softmax), "softmax",
    "log_softmax" (the famous bug when fed to a cross-entropy loss) or "linear".
    """
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for i, filters in enumerate((width, width * 2, width * 4)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if i < 2:
            x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if final == "auto":
        return keras.Model(inputs, _head(x, n_classes, 0.0), name="small_cnn")
    if final == "log_softmax":
        x = layers.Dense(n_classes, name="logits")(x)
        outputs = layers.Activation("log_softmax", name="log_softmax")(x)
    else:
        outputs = layers.Dense(n_classes, activation=final, name="predictions")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def build_mlp(input_size: int = 28, channels: int = 1, n_classes: int = 10) -> keras.Model:
    """Return a plain MLP classifier (no convolution, so no class activation maps)."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(n_classes, activation="softmax")(x), name="mlp")


def build_alexnet(input_size: int = 112, n_classes: int = 2) -> keras.Model:
    """Return an AlexNet-style CNN (large strided first conv, five convs, dense head)."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Conv2D(24, 11, strides=4, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, 2, padding="same", name="pool1")(x)
    x = layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, 2, padding="same", name="pool2")(x)
    for i, filters in enumerate((96, 96, 64)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i + 3}")(x)
    x = layers.MaxPooling2D(3, 2, padding="same", name="pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="fc6")(x)
    return keras.Model(inputs, _head(x, n_classes, 0.5), name="alexnet")


def build_inception(input_size: int = 139, n_classes: int = 2) -> keras.Model:
    """Return Keras' InceptionV3 (random weights) with a classifier head, flat."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    backbone = keras.applications.InceptionV3(include_top=False, weights=None, input_tensor=x, pooling="avg")
    return keras.Model(inputs, _head(backbone.output, n_classes, 0.0), name="inception_v3")
