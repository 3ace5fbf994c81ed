"""Model weights as int8 with one scale per output channel: how trained weights travel light.

A call to the accelerator machine brings back at most 64 MiB; ResNet-50 and ResNet-101 in
float16 are 126 MiB together, in int8 63 MiB. Kernels (arrays of two or more dimensions)
are stored as int8 with a float32 scale per output channel (the last axis), so each channel
keeps 8 bits of its own range; vectors (biases, batch-norm parameters and statistics) are
kept in float16, as the shipped ``.keras`` files keep every weight. The dequantized
weights differ from the trained ones by at most half a step per channel;
``training.train_jax`` measures what that costs in validation accuracy before it writes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def quantize(weights: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Return the arrays of an int8 encoding of ``weights`` (a ``model.get_weights()`` list)."""
    arrays: dict[str, np.ndarray] = {"count": np.asarray(len(weights))}
    for i, w in enumerate(weights):
        w = np.asarray(w, dtype=np.float32)
        if w.ndim >= 2:
            peak = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)
            scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
            arrays[f"q{i}"] = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
            arrays[f"s{i}"] = scale
        else:
            arrays[f"f{i}"] = w.astype(np.float16)
    return arrays


def dequantize(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Return the float32 weights list that :func:`quantize` encoded."""
    out = []
    for i in range(int(arrays["count"])):
        if f"q{i}" in arrays:
            out.append(arrays[f"q{i}"].astype(np.float32) * arrays[f"s{i}"])
        else:
            out.append(np.asarray(arrays[f"f{i}"], dtype=np.float32))
    return out


def save_quantized(weights: list[np.ndarray], path: str | Path) -> Path:
    """Write ``weights`` int8-encoded (zip-compressed ``.npz``) to ``path``; return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **quantize(weights))
    return path


def load_quantized(path: str | Path) -> list[np.ndarray]:
    """Return the float32 weights stored by :func:`save_quantized` at ``path``."""
    with np.load(path, allow_pickle=False) as z:
        return dequantize({key: z[key] for key in z.files})
