"""Explain photos from the command line, without the dashboard.

    python -m explain photo.jpg [more.jpg ...] --model path/to/model.keras [--card model.json]
                      --layers last --method gradcam --out maps/

Writes one overlay PNG per photo and layer (per photo for the pixel attributions that use no
layer), and prints per photo the predicted class, its probability and the files written. A
file that cannot be read gets a one-line error and the exit status is 1, while the other
photos are still done.

This is the engine's command line: it takes a model file (and its card, the JSON beside it
or ``--card``) and imports nothing from ``models/``. Models by registry name (``--model
resnet50``), and other file formats, go through ``python -m models.explain`` (same arguments),
which loads the model and calls :func:`run` here.
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

from explain.methods import METHODS, method_map  # noqa: E402
from explain.overlay import COLORMAPS, overlay  # noqa: E402


def safe_name(text: str) -> str:
    """Return ``text`` reduced to characters that are safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "image"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m explain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="+", help="photo files (JPEG, PNG, WebP, BMP, GIF, TIFF)")
    parser.add_argument(
        "--model",
        required=True,
        help="a .keras model file (python -m models.explain also takes registry names such as resnet50)",
    )
    parser.add_argument("--card", help="the model's card (JSON); default: the .json beside the model file")
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
    parser.add_argument(
        "--method",
        default="gradcam",
        choices=list(METHODS),
        help="; ".join(f"{m.name}: {m.label}, {m.kind}, {m.cost}" for m in METHODS.values()),
    )
    parser.add_argument("--colormap", default="jet", choices=sorted(COLORMAPS))
    parser.add_argument("--opacity", type=float, default=0.45)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def load(model_path: str, card_path: str | None = None):
    """Return (explainer, name) for a .keras file and its card; raise ValueError with the reason."""
    from explain.card_file import read_card
    from explain.explainer import Explainer
    from explain.keras_file import NotAModel, read_keras_model

    path = Path(model_path)
    if not path.is_file():
        raise ValueError(
            f"no model file {model_path!r} (for a registry name such as resnet50, run "
            "python -m models.explain with the same arguments)"
        )
    if path.suffix.lower() != ".keras":
        raise ValueError(
            f"{path.name}: the engine reads .keras files; python -m models.explain converts others"
        )
    try:
        model = read_keras_model(path)
    except NotAModel as err:
        raise ValueError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds; all mean "unusable"
        raise ValueError(f"{path.name}: not a usable Keras model ({type(err).__name__}: {err})") from None
    card = Path(card_path) if card_path else path.with_suffix(".json")
    if card_path or card.is_file():
        channels = model.input_shape[-1] if not isinstance(model.input_shape, list) else None
        data = read_card(card, channels)
        explainer = Explainer(model, data.class_names, data.feeding.size)
        explainer.feeding = data.feeding
        return explainer, data.name
    return Explainer(model), path.stem


def main(argv: list[str] | None = None) -> int:
    """Run the command line on a model file; return the exit status."""
    args = parse_args(argv)
    try:
        explainer, name = load(args.model, args.card)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return run(explainer, args, name)


def run(explainer, args: argparse.Namespace, model_name: str) -> int:
    """Explain ``args.images`` with a loaded :class:`~explain.explainer.Explainer`; return the exit status."""
    from explain.attributions import integrated_gradients
    from explain.cams import normalize
    from explain.device import describe_device
    from explain.images import ImageError, decode_image

    method = METHODS[args.method]
    try:
        layers = explainer.layers.resolve(args.layers) if method.uses_layer else [None]
        target = -1
        if args.target != "predicted":
            names = explainer.class_names
            target = names.index(args.target) if args.target in names else int(args.target)
            if not 0 <= target < len(names):
                raise ValueError(f"class {args.target!r} out of range for classes {names}")
    except (ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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
        batch = explainer.prepare([rgb])
        probabilities = explainer.predict(batch)[0]
        predicted = int(probabilities.argmax())
        explained_index = predicted if target < 0 else target
        explained = explainer.class_names[explained_index]
        written, notes, extra = [], [], {}
        if method.one_pass:
            result = explainer.explain(batch, layers, explained_index, (method.name,))
            maps = {layer: result.cam(layer, 0, method.name) for layer in layers}
        elif method.name == "ig":
            ig = integrated_gradients(explainer, batch, explained_index)
            maps = {None: ig.map[0]}
            extra["completeness_relative_error"] = round(float(ig.relative_error[0]), 6)
        else:
            maps = {
                layer: method_map(explainer, method.name, batch, layer, explained_index)[0]
                for layer in layers
            }
        for layer, raw in maps.items():
            cam = normalize(raw)
            where = layer or "input"
            if not cam.ok:
                notes.append(f"{where}: {cam.message}")
            picture = overlay(rgb, cam.values, args.opacity, args.colormap)
            tag = [] if method.name == "gradcam" else [method.name.replace("+", "plus")]
            parts = [Path(path).stem, *([layer] if layer else []), *tag]
            name = "_".join(safe_name(p) for p in [*parts, explained]) + ".png"
            cv2.imwrite(str(out / name), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            written.append(str(out / name))
        results.append(
            {
                "image": path,
                "predicted": explainer.class_names[predicted],
                "probability": round(float(probabilities[predicted]), 4),
                "explained_class": explained,
                "files": written,
                "warnings": notes,
                **extra,
            }
        )
        if not args.json:
            print(f"{path}: {explainer.class_names[predicted]} ({probabilities[predicted]:.3f})")
            for name in written:
                print(f"  {name}")
            for note in notes:
                print(f"  warning: {note}")
    if args.json:
        print(
            json.dumps(
                {"model": model_name, "device": describe_device(), "method": args.method, "results": results},
                indent=2,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
