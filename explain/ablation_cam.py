"""Ablation-CAM (Desai & Ramaswamy 2020): channels weighted by how much the class score drops
when that channel of the layer is zeroed.

One forward pass per channel: the photo is repeated ``batch_size`` times (default: 8 on a
CPU, 32 with a GPU) and each copy has a different channel zeroed at the layer (through
``explain.graph.walk``'s output hook, so nested backbones and skip connections work and the
user's model is not changed). Only the ``max_channels`` strongest channels (by mean
activation) are ablated, as for Score-CAM; the others get weight 0. No gradients.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from explain.attributions import default_batch_size
from explain.explainer import Explainer


def _build_ablation(explainer: Explainer, layer: str):
    def ablated_scores(x, keep, target):
        # x: (1, H, W, C); keep: (B, channels) of 0/1; one copy of x per row of keep
        explainer.traces += 1

        def zero_channels(path, _layer, out):
            if path == layer:
                return out * tf.cast(keep[:, None, None, :], out.dtype)
            return None

        copies = tf.repeat(x, tf.shape(keep)[0], axis=0)
        logits = explainer.logits(copies, zero_channels)
        return explainer.head.class_score(logits, tf.fill(tf.shape(keep)[:1], target))

    signature = explainer.signature(tf.TensorSpec((None, None), tf.float32), tf.TensorSpec((), tf.int32))
    return tf.function(ablated_scores, input_signature=signature, autograph=False)


def ablation_cam(
    explainer: Explainer,
    image: np.ndarray,
    layer: str,
    activations: np.ndarray,
    target: int,
    max_channels: int | None = 64,
    batch_size: int | None = None,
) -> np.ndarray:
    """Return the (h, w) Ablation-CAM of one model input ``image`` (H, W, C) at ``layer``,
    whose activations for that image are ``activations`` (h, w, channels).

    Channel k's weight is (y - y_k) / |y|, y the class score and y_k the score with channel
    k zeroed. The paper divides by y; |y| gives the same map when y > 0 and keeps "the score
    drops" meaning "positive weight" when the score (a logit) is negative. ``max_channels``
    None ablates every channel.
    """
    fn = explainer.compiled(("ablation", layer), lambda: _build_ablation(explainer, layer))
    channels = activations.shape[-1]
    count = channels if max_channels is None else min(max_channels, channels)
    chosen = np.argsort(-activations.reshape(-1, channels).mean(axis=0), kind="stable")[:count]
    x = tf.convert_to_tensor(np.asarray(image, np.float32)[None])
    t = tf.constant(int(target), tf.int32)
    score = float(fn(x, tf.ones((1, channels), tf.float32), t).numpy()[0])
    weights = np.zeros(channels, np.float32)
    batch_size = batch_size or default_batch_size(backward=False)
    for start in range(0, count, batch_size):
        part = chosen[start : start + batch_size]
        keep = np.ones((len(part), channels), np.float32)
        keep[np.arange(len(part)), part] = 0.0
        ablated = fn(x, tf.convert_to_tensor(keep), t).numpy()
        weights[part] = (score - ablated) / max(abs(score), 1e-12)
    return np.maximum((activations.astype(np.float32) * weights).sum(axis=-1), 0.0)
