"""How close is Eigen-CAM to an exact SVD on real activations? Against a baseline in the same run.

    python bench/eigen_cam_accuracy.py [--photos 8] [--size 224]

For the shipped ResNet-50 (random weights where it is missing) and the first --photos
Oxford-IIIT Pet photos (../shared/data/oxford_pets; generated pictures where it is missing),
at every residual block: the ratio of the second to the first singular value of the centred
activations (how hard the problem is), and the largest difference from NumPy's float64 SVD
(pytorch-grad-cam's definition) as a share of the map's peak, for the engine's Eigen-CAM
(``explain.cams.eigen_cam``), the block Krylov method it replaced on 2026-12-02
(``bench/eigen_cam_before.py``) and the one before that (32 steps of power iteration on the
smaller Gram matrix, written out below). Prints one line per block, then the worst, the 99th
percentile and the median error of each over every photo and block.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.eigen_cam_before import eigen_cam_before  # noqa: E402
from explain.cams import eigen_cam  # noqa: E402
from explain.explainer import Explainer  # noqa: E402
from explain.images import decode_image  # noqa: E402

PETS = ROOT.parent / "shared" / "data" / "oxford_pets" / "images"


def svd_map(a: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's get_2d_projection in float64, the sign following the channel sum."""
    h, w, c = a.shape
    x = a.reshape(-1, c).astype(np.float64)
    x -= x.mean(axis=0)
    projection = x @ np.linalg.svd(x, full_matrices=False)[2][0]
    if projection @ x.sum(axis=1) < 0:
        projection = -projection
    return np.maximum(projection, 0).reshape(h, w)


def power_iteration_map(a: np.ndarray, steps: int = 32) -> np.ndarray:
    """The baseline: power iteration on the smaller Gram matrix from the channel-sum start."""
    h, w, c = a.shape
    x = a.reshape(-1, c).astype(np.float32)
    x -= x.mean(axis=0)
    start = x.sum(axis=1, keepdims=True) + 1e-6
    if h * w <= c:
        gram, v = x @ x.T, start
    else:
        gram, v = x.T @ x, x.T @ start
    for _ in range(steps):
        v = gram @ (v / np.linalg.norm(v))
    v /= np.linalg.norm(v)
    projection = (v * np.sqrt(max((v.T @ gram @ v).item(), 0.0)))[:, 0] if h * w <= c else (x @ v)[:, 0]
    return np.maximum(projection, 0).reshape(h, w)


def model_and_photos(count: int, size: int):
    import keras

    from models.build import build_resnet
    from models.registry import find, load_model

    try:
        model = load_model(find("resnet50").path)
    except Exception:  # noqa: BLE001 - no shipped model: random weights still show the gap
        keras.utils.set_random_seed(0)
        model = build_resnet("resnet50", input_size=None)
    every = sorted(PETS.glob("*.jpg"))
    files = every[:: max(1, len(every) // count)][:count]
    if files:
        rgbs = [decode_image(f.read_bytes()) for f in files]
    else:
        rng = np.random.default_rng(0)
        rgbs = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]
    return Explainer(model, ["cat", "dog"], (size, size)), rgbs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    explainer, rgbs = model_and_photos(args.photos, args.size)
    batch = explainer.prepare(rgbs)
    worst = {"engine": 0.0, "before": 0.0, "power iteration": 0.0}
    every: dict[str, list[float]] = {k: [] for k in worst}
    print(
        f"{'block':22s} {'s2/s1 max':>9s} {'engine':>9s} {'before':>9s} {'power it.':>9s}"
        "  (largest error / peak)"
    )
    for block in explainer.layers.blocks:
        acts = explainer.explain(batch, [block.path], keep=block.path).kept_activations
        ours = eigen_cam(acts).numpy()
        before = eigen_cam_before(acts).numpy()
        gap, errors = 0.0, {"engine": 0.0, "before": 0.0, "power iteration": 0.0}
        for i, a in enumerate(acts):
            x = a.reshape(-1, a.shape[-1]).astype(np.float64)
            s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
            gap = max(gap, s[1] / s[0])
            exact = svd_map(a)
            peak = max(exact.max(), 1e-12)
            errors["engine"] = max(errors["engine"], np.abs(ours[i] - exact).max() / peak)
            errors["before"] = max(errors["before"], np.abs(before[i] - exact).max() / peak)
            every["engine"].append(np.abs(ours[i] - exact).max() / peak)
            every["before"].append(np.abs(before[i] - exact).max() / peak)
            baseline = power_iteration_map(a)
            errors["power iteration"] = max(errors["power iteration"], np.abs(baseline - exact).max() / peak)
            every["power iteration"].append(np.abs(baseline - exact).max() / peak)
        for k in worst:
            worst[k] = max(worst[k], errors[k])
        row = " ".join(f"{errors[k]:9.1e}" for k in worst)
        print(f"{block.path:22s} {gap:9.3f} {row}")
    print("worst, of the peak: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    for k, errors_of_k in every.items():
        p99, median = np.percentile(errors_of_k, 99), np.median(errors_of_k)
        print(f"{k}: 99th percentile {p99:.1e}, median {median:.1e} of the peak ({len(errors_of_k)} maps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
