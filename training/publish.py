"""Ship a training run as a default model: weights (float16), card, history, test figures.

    python -m training.publish --run runs/resnet50 --name resnet50 \\
        --test ../shared/data/cats_vs_dogs/test [--to models/shipped] [--size 160]
    python -m training.publish --weights runs/jax-resnet50 --name resnet50 \\
        --test ../shared/data/cats_vs_dogs/test

``--run`` takes a ``training.train`` run folder; a run that has not finished is shipped from
its last checkpoint, and its card says so. ``--weights`` takes a ``training.train_jax`` run
folder (int8 ``weights.npz``, ``run.json``, ``history.csv``): the model is rebuilt here
with the same builder, given those weights, and saved as any other.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from explain.explainer import Explainer  # noqa: E402
from models.build import build_classifier  # noqa: E402
from models.card import ModelCard, Preprocessing  # noqa: E402
from models.data import list_labelled  # noqa: E402
from models.evaluate import evaluate  # noqa: E402
from models.export import save_for_inference  # noqa: E402
from models.registry import DEFAULT_DIR, load_model  # noqa: E402
from training.quantized import load_quantized  # noqa: E402


def card_from_weights(run: Path, name: str, target: Path) -> ModelCard:
    """Rebuild a ``training.train_jax`` run's model, save it at ``target``; return its card."""
    report = json.loads((run / "run.json").read_text())
    arch, n_classes = report["arch"], len(report["class_names"])
    model = build_classifier(arch, n_classes, report["recipe"].get("dropout", 0.0))
    model.set_weights(load_quantized(run / "weights.npz"))
    save_for_inference(model, target)
    side = int(report["input_size"])
    training = {k: v for k, v in report.items() if k not in ("arch", "class_names", "input_size")}
    training["weights"] = "trained in float32/bfloat16, brought back int8 per output channel, stored float16"
    return ModelCard(
        name=name,
        architecture=arch,
        class_names=list(report["class_names"]),
        preprocessing=Preprocessing(input_size=(side, side), channels=3),
        training=training,
        notes=(
            f"Trained from scratch by training.train_jax on {report['device']} for {report['epochs']} epochs "
            f"({report['seconds']} s) at {report['recipe']['side']} px crops; declared {side} px, the side "
            "with the best validation accuracy after batch-norm statistics were re-estimated."
        ),
    )


def publish_weights(run: Path, name: str, to: Path, test: str | None, size: int | None) -> ModelCard:
    """Ship a ``training.train_jax`` run; return its card."""
    to.mkdir(parents=True, exist_ok=True)
    target = to / f"{name}.keras"
    return _finish(card_from_weights(run, name, target), run, target, to, name, test, size)


def publish(run: Path, name: str, to: Path, test: str | None, size: int | None) -> ModelCard:
    """Ship a ``training.train`` run (its checkpoint where it has not finished); return its card."""
    to.mkdir(parents=True, exist_ok=True)
    target = to / f"{name}.keras"
    state = json.loads((run / "state.json").read_text())
    finished = (run / "model.keras").is_file() and (run / "model.json").is_file()
    if finished:
        card = ModelCard.load(run / "model.json")
        shutil.copyfile(run / "model.keras", target)
    else:
        model = load_model(run / "checkpoint.keras")
        save_for_inference(model, target)
        recipe = state.get("recipe", {})
        last = recipe.get("phases", [[160, 0]])[-1][0]
        card = ModelCard(
            name=name,
            architecture=state.get("arch", "unknown"),
            class_names=state.get("class_names", ["cat", "dog"]),
            preprocessing=Preprocessing(input_size=(last, last)),
            training={
                k: state.get(k)
                for k in (
                    "preset",
                    "recipe",
                    "data",
                    "n_train",
                    "n_val",
                    "seed",
                    "epochs_done",
                    "seconds",
                    "best_val_accuracy",
                )
            },
            notes=f"Unfinished run: shipped from the checkpoint after epoch {state['epochs_done']} of "
            f"{sum(n for _, n in recipe.get('phases', []))}.",
        )
    card.name = name
    card.training["epochs"] = state["epochs_done"]
    card.training["seconds"] = round(state.get("seconds", 0))
    return _finish(card, run, target, to, name, test, size)


def _finish(
    card: ModelCard, run: Path, target: Path, to: Path, name: str, test: str | None, size: int | None
) -> ModelCard:
    """Copy the run's history beside ``target``, evaluate on ``test`` and write the card."""
    shutil.copyfile(run / "history.csv", to / f"{name}.history.csv")
    card.history = f"{name}.history.csv"
    if size:
        card.preprocessing.input_size = (size, size)
    if test:
        model = load_model(target)
        explainer = Explainer.from_card(model, card)
        result = evaluate(explainer, list_labelled(test, card.class_names), name)
        card.test = {
            **result.summary(),
            "misclassified": len(result.misclassified),
            "command": f"python -m models.evaluate --model {name} --data {test}",
        }
        print(
            f"{name}: test accuracy {result.accuracy:.4f}, loss {result.loss:.4f}, "
            f"ROC AUC {result.roc_auc}, {result.n} photos",
            file=sys.stderr,
        )
    card.save(to / f"{name}.json")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.publish",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a training.train run folder")
    source.add_argument("--weights", help="a training.train_jax run folder (weights.npz, run.json)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--to", default=str(DEFAULT_DIR))
    parser.add_argument("--test", help="labelled test folder to evaluate on (figures go in the card)")
    parser.add_argument("--size", type=int, help="input side the card declares (default: the run's)")
    args = parser.parse_args(argv)
    ship = publish_weights if args.weights else publish
    card = ship(Path(args.run or args.weights), args.name, Path(args.to), args.test, args.size)
    print(json.dumps(card.test or {}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
