"""Which device TensorFlow computes on."""

from __future__ import annotations

import os

import tensorflow as tf


def describe_device() -> str:
    """Return e.g. 'GPU: NVIDIA H100' or 'CPU (2 cores)': where explanations run."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
        return "GPU: " + ", ".join(names)
    return f"CPU ({os.cpu_count()} cores)"
