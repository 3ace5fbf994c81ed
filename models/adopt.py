"""Adopt a user's model file: load or convert it, check how to feed it, write it with its card.

Run:  python -m models.adopt FILE [--weights W] [--labels labels.txt] [--labelled DIR]
                                 [--limit N] [--to DIR] [--name NAME] [--json]

FILE is a Keras 3 ``.keras``, a legacy HDF5 (``.h5``/``.hdf5``, or under a ``.keras`` name), a
``.zip`` of a SavedModel or of an architecture JSON with its weights, or an architecture JSON
(with ``--weights``). The result is ``NAME.keras`` (Keras 3) and its card ``NAME.json`` in
DIR (default: the user models folder the registry lists, ``models.registry.user_models_dir``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from models.card import ModelCard, Preprocessing, read_labels_txt
from models.feeding_check import DEFAULT_LIMIT, FeedingCheck, check_folder

Progress = Callable[[float, str], None]


@dataclass
class Found:
    """What a model file turned out to hold, for people to read."""

    architecture: str
    parameters: int
    input_shape: tuple[int, int, int]
    output: str  # e.g. "2 classes (softmax)"
    explainable_layers: int
    blocks: int
    last_layer: str
    converted_from: str  # e.g. "converted from HDF5 written by Keras 2.2.4", or "Keras 3"
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Return 'key: value' lines for a terminal."""
        h, w, c = self.input_shape
        return [
            f"architecture: {self.architecture}",
            f"parameters: {self.parameters:,}",
            f"input: {h}×{w}×{c}",
            f"output: {self.output}",
            f"explainable layers: {self.explainable_layers} ({self.blocks} block"
            f"{'' if self.blocks == 1 else 's'}; last {self.last_layer})",
            f"from: {self.converted_from}",
            *(f"note: {n}" for n in self.notes),
        ]


@dataclass
class Opened:
    """A user's file as a Keras 3 model, with where it came from."""

    model: object  # keras.Model
    keras_path: Path  # a Keras 3 .keras holding it (the file itself, or the converted copy)
    origin: dict  # the card's ``converted_from``


def open_model(
    path: str | Path, weights: str | Path | None = None, cache_dir: str | Path | None = None
) -> Opened:
    """Return the file as a Keras 3 model, converting a legacy one (``models.convert``).

    Raises ``models.registry.ModelLoadError`` with a one-line reason.
    """
    from models.registry import ModelLoadError, load_model

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path.name}: no such file")
    if path.is_file() and path.suffix.lower() == ".keras" and zipfile.is_zipfile(path) and weights is None:
        model = load_model(path)
        origin = {
            "format": "Keras 3",
            "saved_by": "",
            "digest": _sha256(path),
            "file": path.name,
            "notes": [],
        }
        return Opened(model, path, origin)
    from models.convert import convert_to_keras3

    conversion = convert_to_keras3(
        path, Path(weights) if weights else None, Path(cache_dir) if cache_dir else None
    )
    model = load_model(conversion.keras_path)
    origin = {
        "format": conversion.source_format,
        "saved_by": conversion.saved_by,
        "digest": conversion.digest,
        "file": path.name + (f" + {Path(weights).name}" if weights else ""),
        "notes": list(conversion.notes),
    }
    return Opened(model, Path(conversion.keras_path), origin)


def describe(explainer, origin: dict) -> Found:
    """Return what the model is: architecture, size, input, output and explainable layers."""
    model, head, layers = explainer.model, explainer.head, explainer.layers
    if head.units == 1:
        output = f"1 unit ({head.kind}): 2 classes"
    else:
        output = f"{head.units} classes ({head.kind})"
    source = origin.get("format", "")
    converted = "Keras 3 file (no conversion)" if source == "Keras 3" else f"converted from {source}"
    if origin.get("saved_by"):
        converted += f" written by {origin['saved_by']}"
    return Found(
        architecture=model.name,
        parameters=int(model.count_params()),
        input_shape=tuple(int(s) for s in explainer.input_shape),
        output=output,
        explainable_layers=len(layers),
        blocks=len(layers.blocks),
        last_layer=layers.last.path,
        converted_from=converted,
        notes=list(origin.get("notes", [])),
    )


def first_card(name: str, explainer, origin: dict, class_names: list[str] | None) -> ModelCard:
    """Return the card a file gets before any check: its own input size, x/255 unless it rescales itself."""
    from models.registry import has_rescaling

    h, w, c = explainer.input_shape
    inside = has_rescaling(explainer.model)
    names = list(class_names or [])
    if len(names) != explainer.head.n_classes:
        names = [f"class {i}" for i in range(explainer.head.n_classes)]
    return ModelCard(
        name=name,
        architecture=explainer.model.name,
        class_names=names,
        preprocessing=Preprocessing(
            input_size=(h, w), channels=c, rescale_inside_model=inside, scaling="raw" if inside else "unit"
        ),
        converted_from=origin,
        notes="Not checked on labelled photos yet: pixels assumed "
        + ("raw (the model rescales them itself)." if inside else "scaled to 0–1 (x / 255)."),
    )


def labels_beside(path: str | Path) -> list[str] | None:
    """Return the class names of a ``labels.txt`` beside the model file (Teachable Machine), if any."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    labels = folder / "labels.txt"
    if labels.is_file() and labels.stat().st_size < 1_000_000:
        return read_labels_txt(labels.read_text(errors="replace"))
    return None


def free_name(stem: str, folder: Path, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """Return a file name we make from ``stem`` (letters, digits, _ and -) not yet used in ``folder``.

    ``taken`` holds other names to avoid (the registry's, so a shipped model keeps its name).
    """
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(stem).stem).strip("_-")[:40] or "model"
    name, n = base, 2
    while name in taken or (folder / f"{name}.keras").exists() or (folder / f"{name}.json").exists():
        name, n = f"{base}_{n}", n + 1
    return name


@dataclass
class Adopted:
    """A model written into a models folder, its card, what was found and the check."""

    name: str
    keras_path: Path
    card: ModelCard
    found: Found
    check: FeedingCheck | None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "keras_path": str(self.keras_path),
            "card": self.card.to_dict(),
            "found": asdict(self.found),
            "check": None
            if self.check is None
            else {"verdict": self.check.verdict(), **self.check.summary(), "table": self.check.table()},
        }


def adopt(
    path: str | Path,
    *,
    weights: str | Path | None = None,
    class_names: list[str] | None = None,
    labelled: str | Path | None = None,
    limit: int = DEFAULT_LIMIT,
    to: str | Path | None = None,
    name: str | None = None,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> Adopted:
    """Return the adopted model: converted if legacy, checked on ``labelled`` photos, written to ``to``.

    ``class_names`` default to a ``labels.txt`` beside the file. Raises ModelLoadError or
    ValueError with a one-line reason; nothing is written then.
    """
    from explain.explainer import Explainer
    from models.registry import user_models_dir

    folder = Path(to) if to else user_models_dir()
    if progress:
        progress(0.0, f"Reading {Path(path).name}")
    opened = open_model(path, weights, cache_dir)
    explainer = Explainer(opened.model)
    if class_names is None:
        class_names = labels_beside(path)
    check = None
    if labelled:
        step = (lambda f, text: progress(0.3 + 0.65 * f, text)) if progress else None
        names = first_card("-", explainer, opened.origin, class_names).class_names
        check = check_folder(explainer, labelled, limit=limit, output_names=names, progress=step)
    adopted = save_adopted(opened, explainer, folder, name or Path(path).stem, class_names, check)
    if progress:
        progress(1.0, f"Saved {adopted.keras_path.name}")
    return adopted


def save_adopted(
    opened: Opened,
    explainer,
    folder: str | Path,
    stem: str,
    class_names: list[str] | None = None,
    check: FeedingCheck | None = None,
) -> Adopted:
    """Return the model written as ``NAME.keras`` with its card ``NAME.json`` in ``folder`` (a free name)."""
    from models.registry import scan

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = free_name(stem, folder, {e.name for e in scan(folder)})
    card = first_card(name, explainer, opened.origin, class_names)
    if check is not None:
        check.apply(card)
    target = folder / f"{name}.keras"
    tmp = folder / f".{name}.partial"  # not a model suffix: a half-copied file never shows in the registry
    shutil.copyfile(opened.keras_path, tmp)
    tmp.replace(target)
    card.save(folder / f"{name}.json")
    return Adopted(name, target, card, describe(explainer, opened.origin), check)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.adopt", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help=".keras, .h5/.hdf5, a .zip of a SavedModel or JSON + weights, or a JSON")
    parser.add_argument("--weights", help="the weights file of an architecture JSON")
    parser.add_argument(
        "--labels", help="labels.txt (`0 dog` lines, or one name a line); default: beside FILE"
    )
    parser.add_argument(
        "--labelled", help="labelled photos to check it on (class folders, cat.N.jpg, labels.csv)"
    )
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help="photos the check uses (all classes)"
    )
    parser.add_argument("--to", help="models folder to write into (default: the app's user models folder)")
    parser.add_argument("--name", help="name of the written model (default: from FILE)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    from models.registry import ModelLoadError

    try:
        names = read_labels_txt(Path(args.labels).read_text(errors="replace")) if args.labels else None
        adopted = adopt(
            args.file,
            weights=args.weights,
            class_names=names,
            labelled=args.labelled,
            limit=args.limit,
            to=args.to,
            name=args.name,
        )
    except (ModelLoadError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(adopted.to_dict(), indent=2))
        return 0
    print("\n".join(adopted.found.lines()))
    if adopted.check is not None:
        print(f"\nCheck on {adopted.check.n} labelled photos from {args.labelled}:")
        print(_text_table(adopted.check.table(12)))
        if len(adopted.check.rows) > 12:
            print(f"… {len(adopted.check.rows) - 12} more ways, ranked lower")
        print(adopted.check.verdict())
    else:
        print("\nNot checked (no --labelled photos): " + adopted.card.notes)
    print(f"\nwrote {adopted.keras_path} and {adopted.keras_path.with_suffix('.json')}")
    print(f"classes: {', '.join(adopted.card.class_names)}; fed as {adopted.card.preprocessing.describe()}")
    return 0


def _text_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
