"""Faithfulness of Grad-CAM by depth, averaged over photos, for several models.

    python -m models.faithfulness --models resnet50 resnet101 --data ../shared/data/cats_vs_dogs/test \
        --per-class 10 --out models/shipped/faithfulness_by_depth.json

For each model and each residual block: the mean deletion area (lower is better), insertion
area (higher is better) and top-20% confidence drop of the map for the predicted class,
over the first ``--per-class`` photos of each class. The Layer-depth page plots the file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from explain.explainer import Explainer  # noqa: E402
from explain.faithfulness import by_depth  # noqa: E402
from explain.images import decode_image  # noqa: E402
from models.data import list_labelled  # noqa: E402
from models.registry import completed_card, find, load_model  # noqa: E402


def study(name: str, data: str, per_class: int, steps: int, method: str = "gradcam") -> dict:
    entry = find(name)
    model = load_model(entry.path)
    explainer = Explainer.from_card(model, completed_card(entry, model))
    files = list_labelled(data, explainer.class_names)
    files = files.first_per_class(per_class)
    blocks = [b.path for b in explainer.layers.blocks]
    per_photo = []
    t0 = time.time()
    for path in files.paths:
        rgb = decode_image(Path(path).read_bytes())
        batch = explainer.prepare([rgb])
        result = explainer.explain(batch, blocks, None, (method,))
        cams = {b: result.cam(b, 0, method) for b in blocks}
        rows = by_depth(explainer, batch[0], cams, int(result.targets[0]), steps)
        per_photo.append(rows)
        print(f"{name}: {len(per_photo)}/{len(files)} photos", file=sys.stderr, flush=True)
    summary = []
    for j, block in enumerate(blocks):
        values = {
            k: [rows[j][k] for rows in per_photo] for k in ("deletion_auc", "insertion_auc", "top20_drop")
        }
        summary.append(
            {
                "layer": block,
                "depth": explainer.layers[block].depth,
                **{k: float(np.mean(v)) for k, v in values.items()},
                **{k + "_sd": float(np.std(v)) for k, v in values.items()},
            }
        )
    return {
        "model": entry.name,
        "photos": len(files),
        "method": method,
        "steps": steps,
        "input_size": list(explainer.input_shape[:2]),
        "seconds": round(time.time() - t0),
        "blocks": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.faithfulness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", nargs="+", default=["resnet50", "resnet101"])
    parser.add_argument("--data", required=True)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    report = {
        "data": str(Path(args.data)),
        "per_class": args.per_class,
        "models": [study(m, args.data, args.per_class, args.steps) for m in args.models],
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
