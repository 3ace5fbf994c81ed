"""Train a cats-vs-dogs (or any folder-of-classes) classifier, resumably.

    python -m training.train --arch resnet50 --data ../shared/data/cats_vs_dogs/train \\
        --out runs/resnet50 --preset cpu

Each epoch writes ``checkpoint.keras`` (weights and optimizer), appends ``history.csv``
(Keras CSVLogger format) and updates ``state.json``; ``--resume`` goes on from there.
At the end ``model.keras`` (float16 weights, no optimizer) and its card ``model.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from models.build import build_classifier  # noqa: E402
from models.card import ModelCard, Preprocessing  # noqa: E402
from models.data import (  # noqa: E402
    Augmentation,
    list_labelled,
    load_images,
    stratified_split,
)
from models.export import save_for_inference  # noqa: E402


@dataclass
class Recipe:
    """A training protocol: resolution schedule, optimiser, augmentation."""

    phases: list[tuple[int, int]]  # (image side, epochs), run in order
    batch: int
    optimizer: str  # "sgd" or "adamw"
    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_fraction: float = 0.0
    cosine: bool = False
    label_smoothing: float = 0.0
    dropout: float = 0.0
    bn_momentum: float | None = None
    augmentation: Augmentation = field(default_factory=Augmentation)
    eval_size: int | None = None  # the input size the card declares

    @property
    def epochs(self) -> int:
        return sum(n for _, n in self.phases)


PRESETS: dict[str, Recipe] = {
    # The reference study, exactly: 224 px, SGD 0.001 momentum 0.9, batch 20, BCE,
    # ImageDataGenerator(rotation 40, shear 0.2, zoom 0.2, horizontal flip, rescale 1/255).
    "study": Recipe(
        phases=[(224, 30)],
        batch=20,
        optimizer="sgd",
        lr=1e-3,
        augmentation=Augmentation(rotation=40, shear=0.2, zoom=0.2, flip=True),
    ),
    # Most accuracy per CPU hour (see README): small images for most epochs, then the
    # declared resolution for the last one so batch-norm statistics and filters match it.
    "cpu": Recipe(
        phases=[(96, 9), (160, 1)],
        batch=64,
        optimizer="adamw",
        lr=2e-3,
        weight_decay=5e-4,
        warmup_fraction=0.1,
        cosine=True,
        label_smoothing=0.1,
        dropout=0.2,
        bn_momentum=0.9,
        augmentation=Augmentation(rotation=20, zoom=0.15, shift=0.1, flip=True),
    ),
}


class Batches(keras.utils.PyDataset):
    """Shuffled, augmented batches from an in-memory uint8 array; drops the last partial batch."""

    def __init__(self, images, labels, batch, augmentation, seed, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.batch = images, labels, batch
        self.augmentation = augmentation
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images))

    def __len__(self) -> int:
        return max(1, len(self.images) // self.batch)

    def __getitem__(self, index):
        idx = np.sort(self.order[index * self.batch : (index + 1) * self.batch])
        x = self.augmentation.apply(np.asarray(self.images[idx]), self.rng)
        return x.astype(np.float32), self.labels[idx]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.images))


class SaveState(keras.callbacks.Callback):
    """After each epoch: checkpoint with optimizer state, then record the epoch as done."""

    def __init__(self, out: Path, state: dict):
        super().__init__()
        self.out, self.state = out, state

    def on_epoch_end(self, epoch, logs=None):
        tmp = self.out / "checkpoint.tmp.keras"
        self.model.save(tmp)
        tmp.replace(self.out / "checkpoint.keras")
        self.state["epochs_done"] = epoch + 1
        self.state["seconds"] = self.state.get("seconds", 0.0) + time.time() - self.state["_t"]
        self.state["_t"] = time.time()
        logs = logs or {}
        val = logs.get("val_accuracy")
        if val is not None and val > self.state.get("best_val_accuracy", -1):
            self.state["best_val_accuracy"] = float(val)
            self.state["best_epoch"] = epoch + 1
        write_state(self.out, self.state)


def write_state(out: Path, state: dict) -> None:
    clean = {k: v for k, v in state.items() if not k.startswith("_")}
    (out / "state.json").write_text(json.dumps(clean, indent=2) + "\n")


def make_optimizer(recipe: Recipe, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = max(1, recipe.epochs * steps_per_epoch)
    lr: float | keras.optimizers.schedules.LearningRateSchedule = recipe.lr
    if recipe.cosine:
        warmup = int(total * recipe.warmup_fraction)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=recipe.lr / 100 if warmup else recipe.lr,
            decay_steps=max(1, total - warmup),
            alpha=0.01,
            warmup_target=recipe.lr if warmup else None,
            warmup_steps=warmup,
        )
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=recipe.momentum)
    if recipe.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


def parse_phases(text: str) -> list[tuple[int, int]]:
    """Parse '96:9,160:1' into [(96, 9), (160, 1)]."""
    phases = []
    for part in text.split(","):
        size, _, epochs = part.partition(":")
        phases.append((int(size), int(epochs or 1)))
    return phases


def schedule(
    recipe: Recipe, phases: str | None, epochs: int | None, size: int | None
) -> list[tuple[int, int]]:
    """Return the (side, epochs) phases to run.

    ``--phases`` is taken as given; ``--size`` trains every epoch at one side (for ``--epochs``
    or the preset's total); ``--epochs`` alone scales the preset's phases to that total.
    """
    if phases:
        return parse_phases(phases)
    if size:
        return [(size, epochs or recipe.epochs)]
    if epochs:
        return [(side, max(1, round(n * epochs / recipe.epochs))) for side, n in recipe.phases]
    return list(recipe.phases)


def train(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = PRESETS[args.preset]
    overrides: dict = {"phases": schedule(recipe, args.phases, args.epochs, args.size)}
    for name in ("batch", "lr", "optimizer"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    recipe = Recipe(**{**asdict(recipe), "augmentation": recipe.augmentation, **overrides})
    recipe.eval_size = args.eval_size or recipe.phases[-1][0]

    files = list_labelled(args.data)
    if args.limit:
        files = files.first_per_class(args.limit)
    train_files, val_files = stratified_split(files, args.val_fraction, args.seed)
    n_classes = len(files.class_names)
    binary = n_classes == 2

    def targets(labels: np.ndarray) -> np.ndarray:
        return labels.astype(np.float32)[:, None] if binary else labels

    state: dict = {"epochs_done": 0}
    resume_file = out / "checkpoint.keras"
    if args.resume and resume_file.exists():
        state = json.loads((out / "state.json").read_text())
        model = keras.saving.load_model(resume_file, safe_mode=True)
        print(f"resuming {out} after epoch {state['epochs_done']}")
    else:
        if (out / "history.csv").exists():
            (out / "history.csv").unlink()
        model = build_classifier(args.arch, n_classes, recipe.dropout, recipe.bn_momentum)
        if args.init_from:
            model.set_weights(keras.saving.load_model(args.init_from, safe_mode=True).get_weights())
        steps = max(1, len(train_files) // recipe.batch)
        loss = (
            keras.losses.BinaryCrossentropy(label_smoothing=recipe.label_smoothing)
            if binary
            else keras.losses.SparseCategoricalCrossentropy()
        )
        model.compile(
            optimizer=make_optimizer(recipe, steps),
            loss=loss,
            metrics=["accuracy"],
            jit_compile=False,
        )
        state.update(
            arch=args.arch,
            preset=args.preset,
            data=str(Path(args.data).resolve()),
            class_names=list(files.class_names),
            n_train=len(train_files),
            n_val=len(val_files),
            seed=args.seed,
            recipe={**asdict(recipe), "augmentation": asdict(recipe.augmentation)},
        )
    state["_t"] = time.time()
    write_state(out, state)
    verbose = 1 if sys.stdout.isatty() else 2
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        SaveState(out, state),
    ]
    if args.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=args.early_stopping, restore_best_weights=True
            )
        )
    if args.reduce_lr and not recipe.cosine:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=args.reduce_lr))

    first_epoch = 0
    for size, n_epochs in recipe.phases:
        last_epoch = first_epoch + n_epochs
        if state["epochs_done"] >= last_epoch:
            first_epoch = last_epoch
            continue
        t0 = time.time()
        x_train = load_images(train_files, size, args.cache_dir)
        x_val = load_images(val_files, size, args.cache_dir).astype(np.float32)
        print(
            f"phase {size}px: {len(x_train)} train / {len(x_val)} val photos ready in "
            f"{time.time() - t0:.0f}s; epochs {first_epoch + 1}..{last_epoch}",
            flush=True,
        )
        batches = Batches(
            x_train,
            targets(train_files.labels),
            recipe.batch,
            recipe.augmentation,
            seed=args.seed + state["epochs_done"],
        )
        model.fit(
            batches,
            validation_data=(x_val, targets(val_files.labels)),
            validation_batch_size=recipe.batch,
            epochs=last_epoch,
            initial_epoch=state["epochs_done"],
            callbacks=callbacks,
            verbose=verbose,
        )
        first_epoch = last_epoch
        if any(getattr(cb, "stopped_epoch", 0) for cb in callbacks):
            print("early stopping")
            break

    name = args.name or Path(out).name
    model_path = save_for_inference(model, out / "model.keras")
    side = recipe.eval_size
    card = ModelCard(
        name=name,
        architecture=args.arch,
        class_names=list(files.class_names),
        preprocessing=Preprocessing(input_size=(side, side), channels=3),
        history="history.csv",
        training={
            "command": "python -m training.train " + " ".join(sys.argv[1:]),
            "preset": args.preset,
            "recipe": state["recipe"],
            "data": state["data"],
            "n_train": state["n_train"],
            "n_val": state["n_val"],
            "seed": args.seed,
            "epochs": state["epochs_done"],
            "seconds": round(state.get("seconds", 0.0)),
            "best_val_accuracy": state.get("best_val_accuracy"),
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
        },
    )
    card.save(out / "model.json")
    print(f"wrote {model_path} and {out / 'model.json'}")
    return model_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--arch", default="resnet50", choices=["resnet50", "resnet101", "resnet152", "small_cnn"]
    )
    parser.add_argument("--data", required=True, help="folder of class subfolders or cat.N.jpg files")
    parser.add_argument("--out", required=True, help="run folder (checkpoint, history, card)")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--phases", help="resolution schedule, e.g. '96:9,160:1' (side:epochs)")
    parser.add_argument("--epochs", type=int, help="total epochs (preset schedule scaled)")
    parser.add_argument("--size", type=int, help="one resolution for every epoch")
    parser.add_argument("--eval-size", type=int, help="input size the card declares")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--optimizer", choices=["sgd", "adamw"])
    parser.add_argument("--val-fraction", type=float, default=0.125)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="at most this many photos per class")
    parser.add_argument("--cache-dir", default=os.environ.get("CVD_CACHE", ".cache/images"))
    parser.add_argument("--resume", action="store_true", help="go on from the run's checkpoint")
    parser.add_argument("--init-from", help="start from these weights (e.g. a shipped model)")
    parser.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    parser.add_argument(
        "--reduce-lr",
        type=int,
        metavar="PATIENCE",
        help="ReduceLROnPlateau patience (constant-LR recipes only)",
    )
    parser.add_argument("--name", help="model name in its card (default: run folder name)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
