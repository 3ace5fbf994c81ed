"""Evaluate a model on a labelled folder.

    python -m models.evaluate --model resnet50 --data ../shared/data/cats_vs_dogs/test [--json]
    python -m models.evaluate --model resnet50 --data ../shared/data/oxford_pets --tta --update-card

Prints accuracy, loss, ROC AUC, the confusion matrix and the misclassified files. ``--tta``
averages the probabilities on each photo and its mirror image (horizontal-flip test-time
augmentation), both in one batched pass, and prints the figures without it too.
``--update-card`` writes the figures into the model card's ``evaluations``, under the test
set's name (``cats_vs_dogs/test``, ``oxford_pets``): without flipping at the top, with
``"tta": false``, and with ``--tta`` also those with flipping under ``"flip_tta"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from explain.explainer import Explainer  # noqa: E402
from explain.images import ImageError, decode_image  # noqa: E402
from explain.metrics import (  # noqa: E402
    accuracy,
    confusion_matrix,
    degenerate_warning,
    log_loss,
    roc_auc,
)
from models.data import LabelledFiles, list_labelled  # noqa: E402
from models.registry import ModelLoadError, completed_card, find, load_model  # noqa: E402


@dataclass
class Evaluation:
    """The figures of one model on one labelled folder."""

    model: str
    data: str
    n: int
    accuracy: float
    loss: float
    roc_auc: float | None
    class_names: list[str]
    confusion: list[list[int]]  # [true][predicted]
    misclassified: list[dict]  # file, true, predicted, probability of the predicted class
    unreadable: list[str]
    seconds: float
    input_size: list[int]
    warning: str | None = None  # set when the model looks degenerate
    tta: bool = False  # probabilities averaged over each photo and its mirror image

    def summary(self) -> dict:
        return {
            "tta": self.tta,
            "accuracy": round(self.accuracy, 4),
            "loss": round(self.loss, 4),
            "roc_auc": None if self.roc_auc is None else round(self.roc_auc, 4),
            "n": self.n,
            "data": self.data,
            "confusion": self.confusion,
            "input_size": self.input_size,
            "warning": self.warning,
        }


def mirrored_probabilities(explainer: Explainer, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (probabilities on ``batch``, probabilities on its horizontal mirror), one pass.

    The mirror is taken of the prepared (N, H, W, C) batch: resizing and centre-cropping are
    symmetric, so it is the model input of the mirrored photo.
    """
    both = explainer.predict(np.concatenate([batch, batch[:, :, ::-1, :]]))
    return both[: len(batch)], both[len(batch) :]


def flip_averaged(plain: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Return the test-time-augmented probabilities: the mean over a photo and its mirror."""
    return (plain + mirrored) / 2


def _predict_views(
    explainer: Explainer,
    files: LabelledFiles,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    mirror: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, list[str]]:
    """Return (probabilities, probabilities on the mirrors or None, readable indices, unreadable)."""
    plain: list[np.ndarray] = []
    mirrored: list[np.ndarray] = []
    kept: list[int] = []
    bad: list[str] = []
    for start in range(0, len(files), batch_size):
        images, index = [], []
        for i in range(start, min(start + batch_size, len(files))):
            try:
                with open(files.paths[i], "rb") as fh:
                    images.append(decode_image(fh.read()))
                index.append(i)
            except (ImageError, OSError) as err:
                bad.append(f"{files.paths[i]}: {err}")
        if images:
            batch = explainer.prepare(images)
            if mirror:
                a, b = mirrored_probabilities(explainer, batch)
                plain.append(a)
                mirrored.append(b)
            else:
                plain.append(explainer.predict(batch))
            kept.extend(index)
        if progress:
            progress(min(start + batch_size, len(files)), len(files))
    n_classes = explainer.head.n_classes
    empty = np.zeros((0, n_classes), np.float32)
    stack = lambda parts: np.concatenate(parts) if parts else empty  # noqa: E731
    return stack(plain), stack(mirrored) if mirror else None, np.asarray(kept, dtype=np.int64), bad


def predict_files(
    explainer: Explainer,
    files: LabelledFiles,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    tta: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return (probabilities, indices of readable files, unreadable file messages).

    With ``tta`` the probabilities are the mean over each photo and its mirror image.
    """
    plain, mirrored, kept, bad = _predict_views(explainer, files, batch_size, progress, tta)
    return (flip_averaged(plain, mirrored) if tta else plain), kept, bad


def evaluate(
    explainer: Explainer,
    files: LabelledFiles,
    model_name: str = "",
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    tta: bool = False,
) -> Evaluation:
    """Return the :class:`Evaluation` of ``explainer``'s model on ``files`` (flip-averaged with ``tta``)."""
    t0 = time.time()
    probs, kept, bad = predict_files(explainer, files, batch_size, progress, tta)
    return _evaluation(explainer, files, model_name, probs, kept, bad, time.time() - t0, tta)


def evaluate_with_and_without_flip(
    explainer: Explainer,
    files: LabelledFiles,
    model_name: str = "",
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Evaluation, Evaluation]:
    """Return (evaluation without, evaluation with flip test-time augmentation), from one pass."""
    t0 = time.time()
    plain, mirrored, kept, bad = _predict_views(explainer, files, batch_size, progress, True)
    seconds = time.time() - t0
    return (
        _evaluation(explainer, files, model_name, plain, kept, bad, seconds, False),
        _evaluation(explainer, files, model_name, flip_averaged(plain, mirrored), kept, bad, seconds, True),
    )


def _evaluation(explainer, files, model_name, probs, kept, bad, seconds, tta=False) -> Evaluation:
    labels = files.labels[kept]
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    n_classes = explainer.head.n_classes
    auc = roc_auc(probs[:, 1], labels == 1) if n_classes == 2 and len(labels) else None
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])]
    names = list(files.class_names)
    return Evaluation(
        model=model_name,
        data=str(Path(files.paths[0]).parent.parent) if files.paths else "",
        n=int(len(labels)),
        accuracy=accuracy(probs, labels),
        loss=log_loss(probs, labels),
        roc_auc=None if auc is None or np.isnan(auc) else auc,
        class_names=names,
        confusion=confusion_matrix(labels, predicted, n_classes).tolist(),
        misclassified=[
            {
                "file": files.paths[kept[i]],
                "true": names[labels[i]],
                "predicted": names[predicted[i]] if predicted[i] < len(names) else str(predicted[i]),
                "probability": round(float(probs[i, predicted[i]]), 4),
            }
            for i in wrong
        ],
        unreadable=bad,
        seconds=seconds,
        input_size=list(explainer.input_shape[:2]),
        warning=degenerate_warning(probs, names) if len(probs) else None,
        tta=tta,
    )


CACHE_DIR = Path(os.environ.get("CVD_CACHE_DIR", Path(__file__).resolve().parents[1] / ".cache"))


def evaluation_key(
    model_path: str | Path, files: LabelledFiles, input_size: tuple[int, int], tta: bool = False
) -> str:
    """Return a key that changes when the model file, the photo list, the input size or TTA does."""
    import hashlib

    stat = Path(model_path).stat()
    flip = "|flip-tta" if tta else ""  # keys of evaluations without TTA stay what they were
    text = f"{Path(model_path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{input_size}{flip}|" + "\n".join(
        f"{p}|{label}" for p, label in zip(files.paths, files.labels)
    )
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def cached_evaluation(
    explainer: Explainer,
    files: LabelledFiles,
    model_path: str | Path,
    model_name: str = "",
    progress: Callable[[int, int], None] | None = None,
    cache_dir: str | Path | None = None,
    tta: bool = False,
) -> tuple[Evaluation, np.ndarray, list[str], np.ndarray]:
    """Return (evaluation, probabilities, paths, labels), from the disk cache when it has them.

    With ``tta`` the probabilities are averaged over each photo and its mirror image.
    """
    folder = Path(cache_dir or CACHE_DIR) / "evaluations"
    key = evaluation_key(model_path, files, explainer.input_shape[:2], tta)
    path = folder / f"{key}.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            return (
                Evaluation(**saved["evaluation"]),
                np.asarray(saved["probabilities"], np.float32),
                saved["paths"],
                np.asarray(saved["labels"], np.int64),
            )
        except (ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
    probs, kept, bad = predict_files(explainer, files, progress=progress, tta=tta)
    result = _evaluation(explainer, files, model_name, probs, kept, bad, 0.0, tta)
    paths = [files.paths[i] for i in kept]
    labels = files.labels[kept]
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "evaluation": asdict(result),
                "probabilities": probs.tolist(),
                "paths": paths,
                "labels": labels.tolist(),
            }
        )
    )
    tmp.replace(path)
    return result, probs, paths, labels


def format_report(result: Evaluation, max_files: int = 20) -> str:
    names = result.class_names
    width = max(len(n) for n in names) + 2
    lines = [
        f"model     {result.model}",
        f"data      {result.data}  ({result.n} photos, input {result.input_size[0]}x{result.input_size[1]})",
        f"flip TTA  {'yes (mean of each photo and its mirror)' if result.tta else 'no'}",
        f"accuracy  {result.accuracy:.4f}",
        f"loss      {result.loss:.4f}",
    ]
    if result.roc_auc is not None:
        lines.append(f"ROC AUC   {result.roc_auc:.4f}")
    lines += [
        "",
        "confusion (rows: true, columns: predicted)",
        " " * width + "".join(n.rjust(width) for n in names),
    ]
    for name, row in zip(names, result.confusion):
        lines.append(name.ljust(width) + "".join(str(v).rjust(width) for v in row))
    lines += ["", f"misclassified: {len(result.misclassified)} (most confident first)"]
    for item in result.misclassified[:max_files]:
        lines.append(
            f"  {item['file']}  true {item['true']}, said {item['predicted']} ({item['probability']:.3f})"
        )
    if len(result.misclassified) > max_files:
        lines.append(f"  ... and {len(result.misclassified) - max_files} more (--json lists all)")
    for message in result.unreadable:
        lines.append(f"unreadable: {message}")
    if result.warning:
        lines.append(f"\nwarning: {result.warning}")
    lines.append(f"\n{result.seconds:.1f} s")
    return "\n".join(lines)


def test_set_name(folder: str | Path) -> str:
    """Return the name a test set goes by in a card's ``evaluations``.

    A folder named for its split (``cats_vs_dogs/test``) keeps its parent's name in front;
    any other folder goes by its own name (``oxford_pets``).
    """
    path = Path(folder).resolve()
    if path.name.lower() in {"test", "val", "valid", "validation", "train", "holdout"}:
        return f"{path.parent.name}/{path.name}"
    return path.name


def card_figures(result: Evaluation) -> dict:
    """Return the figures a card keeps for one evaluation."""
    return {**result.summary(), "misclassified": len(result.misclassified)}


def update_card(
    card_path: str | Path, name: str, plain: Evaluation, flipped: Evaluation | None, command: str
) -> dict:
    """Write an evaluation into the card's ``evaluations[name]``; return what was written.

    The figures without flipping sit at the top (``"tta": false``), those with flip TTA under
    ``"flip_tta"`` (kept from an earlier run on as many photos when this one has none). The
    card's older ``test`` is written only where it is empty or holds other figures for the same
    set. The JSON is edited in place, so the card's other fields stay as they were written.
    """
    path = Path(card_path)
    data = json.loads(path.read_text())
    evaluations = data.setdefault("evaluations", {})
    figures = {**card_figures(plain), "command": command}
    earlier = (evaluations.get(name) or {}).get("flip_tta")
    if flipped is not None:
        figures["flip_tta"] = card_figures(flipped)
    elif earlier and earlier.get("n") == plain.n:
        figures["flip_tta"] = earlier
    evaluations[name] = figures
    test = data.get("test") or {}
    same = {k: test.get(k) for k in ("accuracy", "loss", "n")} == {
        k: figures[k] for k in ("accuracy", "loss", "n")
    }
    if not test or (test_set_name(test.get("data", "")) == name and not same):
        data["test"] = {k: v for k, v in figures.items() if k != "flip_tta"}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="registry name or path of a model file")
    parser.add_argument(
        "--data", required=True, help="folder of class subfolders, cat.N.jpg files, or a labels.csv"
    )
    parser.add_argument("--size", type=int, help="input side to evaluate at (default: the card's)")
    parser.add_argument("--limit", type=int, help="at most this many photos per class (the first)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--tta", action="store_true", help="average each photo with its mirror (flip test-time augmentation)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--update-card", action="store_true", help="write the figures into the card's evaluations"
    )
    args = parser.parse_args(argv)
    try:
        entry = find(args.model)
        model = load_model(entry.path)
        card = completed_card(entry, model)
        explainer = Explainer.from_card(model, card)
        if args.size:
            explainer = Explainer(
                model, card.class_names, (args.size, args.size), explainer.scale, explainer.offset
            )
        files = list_labelled(args.data, card.class_names or None)
    except (ModelLoadError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.limit:
        files = files.first_per_class(args.limit)
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

    if args.tta:
        plain, result = evaluate_with_and_without_flip(explainer, files, entry.name, args.batch, progress)
    else:
        plain = result = evaluate(explainer, files, entry.name, args.batch, progress)
    if tty:
        print(file=sys.stderr)
    if args.update_card and entry.has_card:
        command = "python -m models.evaluate " + " ".join(argv if argv is not None else sys.argv[1:])
        update_card(
            entry.path.with_suffix(".json"),
            test_set_name(args.data),
            plain,
            result if args.tta else None,
            command,
        )
    if args.json:
        report = asdict(result)
        if args.tta:
            report["without_tta"] = plain.summary()
        print(json.dumps(report, indent=2))
    else:
        print(format_report(result))
        if args.tta:
            print(
                f"without flip TTA: accuracy {plain.accuracy:.4f}, loss {plain.loss:.4f}"
                + ("" if plain.roc_auc is None else f", ROC AUC {plain.roc_auc:.4f}")
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
