"""Explain photos from the command line, without the dashboard.

    python -m explain photo.jpg [more.jpg ...] --model resnet50 --layers last --out maps/

Writes one overlay PNG per photo and layer, and prints per photo the predicted class, its
probability and the files written. A file that cannot be read gets a one-line error and
the exit status is 1, while the other photos are still done.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402

from explain.cams import METHODS, normalize  # noqa: E402
from explain.device import describe_device  # noqa: E402
from explain.explainer import Explainer  # noqa: E402
from explain.images import ImageError, decode_image  # noqa: E402
from explain.overlay import COLORMAPS, overlay  # noqa: E402


def safe_name(text: str) -> str:
    """Return ``text`` reduced to characters that are safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "image"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m explain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="+", help="photo files (JPEG, PNG, WebP, BMP, GIF, TIFF)")
    parser.add_argument("--model", required=True, help="registry name or path of a model file")
    parser.add_argument(
        "--layers",
        nargs="+",
        default=["last"],
        help="'last', 'all' (every block), 'stages' (stage ends) or layer names",
    )
    parser.add_argument("--out", required=True, help="folder for the overlay PNGs")
    parser.add_argument(
        "--class", dest="target", default="predicted", help="'predicted', or a class name or index to explain"
    )
    parser.add_argument("--method", default="gradcam", choices=sorted(METHODS))
    parser.add_argument("--colormap", default="jet", choices=sorted(COLORMAPS))
    parser.add_argument("--opacity", type=float, default=0.45)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from models.registry import ModelLoadError, completed_card, find, load_model

    try:
        entry = find(args.model)
        model = load_model(entry.path)
        explainer = Explainer.from_card(model, completed_card(entry, model))
        layers = explainer.layers.resolve(args.layers)
    except (ModelLoadError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    target = -1
    if args.target != "predicted":
        names = explainer.class_names
        target = names.index(args.target) if args.target in names else int(args.target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, failed = [], 0
    for path in args.images:
        try:
            rgb = decode_image(Path(path).read_bytes())
        except (ImageError, OSError) as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            results.append({"image": path, "error": str(err)})
            failed += 1
            continue
        result = explainer.explain(explainer.prepare([rgb]), layers, target, (args.method,))
        predicted = int(result.predicted[0])
        explained = explainer.class_names[int(result.targets[0])]
        written, notes = [], []
        for layer in layers:
            cam = normalize(result.cam(layer, 0, args.method))
            if not cam.ok:
                notes.append(f"{layer}: {cam.message}")
            picture = overlay(rgb, cam.values, args.opacity, args.colormap)
            name = f"{safe_name(Path(path).stem)}_{safe_name(layer)}_{safe_name(explained)}.png"
            cv2.imwrite(str(out / name), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            written.append(str(out / name))
        results.append(
            {
                "image": path,
                "predicted": explainer.class_names[predicted],
                "probability": round(float(result.probabilities[0, predicted]), 4),
                "explained_class": explained,
                "files": written,
                "warnings": notes,
            }
        )
        if not args.json:
            print(f"{path}: {explainer.class_names[predicted]} ({result.probabilities[0, predicted]:.3f})")
            for name in written:
                print(f"  {name}")
            for note in notes:
                print(f"  warning: {note}")
    if args.json:
        print(
            json.dumps(
                {"model": entry.name, "device": describe_device(), "method": args.method, "results": results},
                indent=2,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
