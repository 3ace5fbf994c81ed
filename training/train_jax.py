"""Train on an accelerator: Keras on JAX, photos and augmentation on the device, a time budget.

    python -m training.pack --data ../shared/data/cats_vs_dogs/train --out .pack/cvd.npz
    python -m training.train_jax --pack .pack/cvd.npz --arch resnet50 --out runs/jax50 --minutes 5
    python -m training.publish --weights runs/jax50 --name resnet50 --test ../shared/data/cats_vs_dogs/test

Made for the machine the device tool lends (JAX and PyTorch there, no TensorFlow); it runs on
a CPU too, slowly. The training photos sit on the device as one uint8 array; each step
gathers a batch, augments it there (random resized crop, small rotation, flip, brightness,
contrast and saturation) and runs one compiled SGD step (Nesterov momentum, weight decay on
kernels, label smoothing), in bfloat16 mixed precision on a GPU. The learning rate warms up
and then follows a cosine over the *time* budget, so a run ends on time on any device.

At the end, batch-norm statistics are re-estimated on whole (uncropped) training photos at
each candidate input side, validation picks the side the card declares, and the weights are
written int8 per output channel (``training.quantized``), after measuring on validation what
that costs. The run folder gets ``history.csv`` (Keras CSVLogger columns), ``run.json`` and
``weights.npz``; ``python -m training.publish --weights`` turns them into a ``.keras`` file
and its card under TensorFlow.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from models.build import build_classifier  # noqa: E402
from training.pack import read_pack  # noqa: E402
from training.quantized import dequantize, quantize, save_quantized  # noqa: E402


@dataclass
class JaxRecipe:
    """What a run does; stored in ``run.json`` and the model card."""

    side: int = 160  # training crops are this many pixels square
    batch: int = 128
    lr: float = 0.1  # peak learning rate (SGD, Nesterov momentum)
    momentum: float = 0.9
    weight_decay: float = 5e-4  # on kernels only
    warmup: float = 0.04  # fraction of the budget
    label_smoothing: float = 0.1
    dropout: float = 0.2
    min_area: float = 0.25  # random resized crop: smallest fraction of the photo kept
    rotation: float = 15.0  # degrees either way
    jitter: float = 0.2  # brightness, contrast and saturation, relative
    eval_sides: tuple[int, ...] = (160, 192)
    recalibration_batches: int = 40


def augment(images: jax.Array, key: jax.Array, side: int, recipe: JaxRecipe) -> jax.Array:
    """Return a float32 (B, side, side, 3) batch of random crops of the uint8 ``images``.

    Each output pixel is sampled bilinearly from a rotated, possibly mirrored crop whose area
    is ``min_area``..1 of the source and whose aspect ratio is 3/4..4/3.
    """
    n, src = images.shape[0], images.shape[1]
    keys = jax.random.split(key, 8)
    area = jax.random.uniform(keys[0], (n,), minval=recipe.min_area, maxval=1.0)
    ratio = jnp.exp(jax.random.uniform(keys[1], (n,), minval=math.log(3 / 4), maxval=math.log(4 / 3)))
    width = jnp.minimum(jnp.sqrt(area * ratio), 1.0) * src
    height = jnp.minimum(jnp.sqrt(area / ratio), 1.0) * src
    cx = width / 2 + jax.random.uniform(keys[2], (n,)) * (src - width)
    cy = height / 2 + jax.random.uniform(keys[3], (n,)) * (src - height)
    angle = jnp.deg2rad(jax.random.uniform(keys[4], (n,), minval=-recipe.rotation, maxval=recipe.rotation))
    mirror = jnp.where(jax.random.bernoulli(keys[5], 0.5, (n,)), -1.0, 1.0)

    grid = (jnp.arange(side, dtype=jnp.float32) + 0.5) / side - 0.5
    col = lambda a: a[:, None, None]  # noqa: E731 - per-image values over the pixel grid
    dx = grid[None, None, :] * col(width * mirror)
    dy = grid[None, :, None] * col(height)
    cos, sin = col(jnp.cos(angle)), col(jnp.sin(angle))
    x = col(cx) + cos * dx - sin * dy - 0.5
    y = col(cy) + sin * dx + cos * dy - 0.5

    x0, y0 = jnp.floor(x), jnp.floor(y)
    wx, wy = (x - x0)[..., None], (y - y0)[..., None]
    xi = [jnp.clip(x0 + d, 0, src - 1).astype(jnp.int32) for d in (0, 1)]
    yi = [jnp.clip(y0 + d, 0, src - 1).astype(jnp.int32) for d in (0, 1)]
    b = jnp.arange(n)[:, None, None]
    pick = lambda yy, xx: images[b, yy, xx].astype(jnp.float32)  # noqa: E731
    top = pick(yi[0], xi[0]) * (1 - wx) + pick(yi[0], xi[1]) * wx
    bottom = pick(yi[1], xi[0]) * (1 - wx) + pick(yi[1], xi[1]) * wx
    out = top * (1 - wy) + bottom * wy

    j = recipe.jitter
    factors = jax.random.uniform(keys[6], (3, n), minval=1 - j, maxval=1 + j)
    bright, contrast, saturation = (f[:, None, None, None] for f in factors)
    out = out * bright
    grey = out @ jnp.asarray([0.299, 0.587, 0.114], jnp.float32)
    out = grey[..., None] + (out - grey[..., None]) * saturation
    mean = grey.mean(axis=(1, 2))[:, None, None, None]
    out = mean + (out - mean) * contrast
    return jnp.clip(out, 0.0, 255.0)


def resize(images: jax.Array, side: int) -> jax.Array:
    """Return ``images`` (N, S, S, 3) resized to ``side`` as float32, antialiased."""
    if images.shape[1] == side:
        return images.astype(jnp.float32)
    shape = (images.shape[0], side, side, images.shape[3])
    return jax.image.resize(images.astype(jnp.float32), shape, "linear", antialias=True)


def cross_entropy(probs: jax.Array, labels: jax.Array, n_classes: int, smoothing: float) -> jax.Array:
    """Return the per-example cross-entropy of predicted probabilities (sigmoid or softmax)."""
    probs = jnp.clip(probs.astype(jnp.float32), 1e-7, 1 - 1e-7)
    if n_classes == 2:
        target = labels.astype(jnp.float32) * (1 - smoothing) + 0.5 * smoothing
        p = probs[:, 0]
        return -(target * jnp.log(p) + (1 - target) * jnp.log(1 - p))
    target = jax.nn.one_hot(labels, n_classes) * (1 - smoothing) + smoothing / n_classes
    return -(target * jnp.log(probs)).sum(axis=-1)


def predicted(probs: jax.Array, n_classes: int) -> jax.Array:
    """Return the predicted class per example."""
    return (probs[:, 0] > 0.5).astype(jnp.int32) if n_classes == 2 else probs.argmax(axis=-1)


def learning_rate(progress: float, recipe: JaxRecipe) -> float:
    """Return the learning rate at ``progress`` (0..1) of the budget: warm-up, then cosine."""
    if progress < recipe.warmup:
        return recipe.lr * max(progress / recipe.warmup, 0.01)
    rest = (progress - recipe.warmup) / max(1e-9, 1 - recipe.warmup)
    return recipe.lr * (0.005 + 0.995 * 0.5 * (1 + math.cos(math.pi * min(rest, 1.0))))


class Trainer:
    """A Keras model's compiled train, evaluation and recalibration steps, run statelessly."""

    def __init__(self, model: keras.Model, n_classes: int, recipe: JaxRecipe):
        self.model, self.n_classes, self.recipe = model, n_classes, recipe
        self.trainable = [v.value for v in model.trainable_variables]
        self.non_trainable = [v.value for v in model.non_trainable_variables]
        self.momentum = [jnp.zeros_like(v) for v in self.trainable]
        self._decay = [v.ndim >= 2 for v in self.trainable]
        self.train_step = jax.jit(self._train_step, donate_argnums=(0,))
        self.eval_step = jax.jit(self._eval_step)
        self.recalibration_step = None

    def _loss(self, trainable, non_trainable, x, y):
        probs, non_trainable = self.model.stateless_call(trainable, non_trainable, x, training=True)
        loss = cross_entropy(probs, y, self.n_classes, self.recipe.label_smoothing).mean()
        return loss, (probs, non_trainable)

    def _train_step(self, state, images, labels, index, key, lr):
        trainable, non_trainable, momentum = state
        r = self.recipe
        x = augment(images[index], key, r.side, r)
        y = labels[index]
        (loss, (probs, non_trainable)), grads = jax.value_and_grad(self._loss, has_aux=True)(
            trainable, non_trainable, x, y
        )
        new_params, new_momentum = [], []
        for p, g, m, decay in zip(trainable, grads, momentum, self._decay):
            g = g + r.weight_decay * p if decay else g
            m = r.momentum * m + g
            new_params.append(p - lr * (g + r.momentum * m))
            new_momentum.append(m)
        correct = (predicted(probs, self.n_classes) == y).mean()
        return (new_params, non_trainable, new_momentum), loss, correct

    def _eval_step(self, trainable, non_trainable, x, y, mask):
        probs, _ = self.model.stateless_call(trainable, non_trainable, x, training=False)
        loss = cross_entropy(probs, y, self.n_classes, 0.0)
        correct = predicted(probs, self.n_classes) == y
        return (loss * mask).sum(), (correct * mask).sum()

    def evaluate(self, images: jax.Array, labels: jax.Array, batch: int = 250, weights=None) -> dict:
        """Return validation accuracy and loss of ``images`` (already at the input side)."""
        trainable, non_trainable = weights or (self.trainable, self.non_trainable)
        n = images.shape[0]
        pad = (-n) % batch
        mask = jnp.concatenate([jnp.ones(n), jnp.zeros(pad)])
        if pad:
            images = jnp.concatenate([images, jnp.zeros((pad, *images.shape[1:]), images.dtype)])
            labels = jnp.concatenate([labels, jnp.zeros(pad, labels.dtype)])
        loss = correct = 0.0
        for i in range(0, n + pad, batch):
            sl = slice(i, i + batch)
            batch_loss, batch_correct = self.eval_step(
                trainable, non_trainable, images[sl], labels[sl], mask[sl]
            )
            loss, correct = loss + batch_loss, correct + batch_correct
        return {"accuracy": float(correct) / n, "loss": float(loss) / n}

    def _recalibration(self, trainable, non_trainable, x):
        return self.model.stateless_call(trainable, non_trainable, x, training=True)[1]

    def compile(self, images: jax.Array, labels: jax.Array, sides: tuple[int, ...], eval_batch: int = 250):
        """Compile every step the run will take, so the time budget is spent training only.

        The train step is compiled ahead of time; evaluation and recalibration at each side
        are run once on zeros, which leaves them in ``jax.jit``'s cache.
        """
        batch = min(self.recipe.batch, images.shape[0])
        state = (self.trainable, self.non_trainable, self.momentum)
        self.train_step = self.train_step.lower(
            state, images, labels, jnp.arange(batch), jax.random.key(0), jnp.float32(0)
        ).compile()
        # Traced after the train step, so only recalibration sees this momentum: 40 batches
        # then weigh the statistics they started from 0.9**40 = 1.5 %.
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
        self.recalibration_step = jax.jit(self._recalibration)
        for side in sides:
            x = jnp.zeros((eval_batch, side, side, 3), jnp.float32)
            y, mask = jnp.zeros(eval_batch, labels.dtype), jnp.zeros(eval_batch)
            jax.block_until_ready(self.eval_step(self.trainable, self.non_trainable, x, y, mask))
            x = jnp.zeros((batch, side, side, 3), jnp.float32)
            jax.block_until_ready(self.recalibration_step(self.trainable, self.non_trainable, x))

    def recalibrated(self, images: jax.Array, side: int, key: jax.Array) -> list:
        """Return batch-norm statistics re-estimated on whole ``images`` resized to ``side``."""
        if self.recalibration_step is None:
            raise RuntimeError("call compile() first")
        non_trainable = list(self.non_trainable)
        batch = min(self.recipe.batch, images.shape[0])
        for _ in range(self.recipe.recalibration_batches):
            key, pick = jax.random.split(key)
            index = jax.random.choice(pick, images.shape[0], (batch,), replace=False)
            non_trainable = self.recalibration_step(
                self.trainable, non_trainable, resize(images[index], side)
            )
        return non_trainable

    def weights(self, non_trainable: list | None = None) -> list[np.ndarray]:
        """Return the model's weights (``model.get_weights()`` order) as float32 arrays."""
        for var, value in zip(self.model.trainable_variables, self.trainable):
            var.assign(value)
        for var, value in zip(self.model.non_trainable_variables, non_trainable or self.non_trainable):
            var.assign(value)
        return [np.asarray(w, dtype=np.float32) for w in self.model.get_weights()]

    def stateless(self, weights: list[np.ndarray]) -> tuple[list, list]:
        """Return (trainable, non-trainable) values for a ``get_weights()`` list."""
        self.model.set_weights(weights)
        return (
            [v.value for v in self.model.trainable_variables],
            [v.value for v in self.model.non_trainable_variables],
        )


def build(arch: str, n_classes: int, recipe: JaxRecipe) -> keras.Model:
    """Return the model to train: a ResNet (zero-initialised last batch norm in each block)."""
    mixed = keras.config.dtype_policy().name == "mixed_bfloat16"
    model = build_classifier(arch, n_classes, recipe.dropout, head_dtype="float32" if mixed else None)
    # Each residual block then starts as the identity: deep nets from scratch train sooner.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name.endswith("_3_bn"):
            layer.gamma.assign(np.zeros(layer.gamma.shape, np.float32))
    return model


def write_history(path: Path, rows: list[dict]) -> None:
    keys = ["epoch", "accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def train(args: argparse.Namespace) -> Path:
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    on_gpu = device.platform == "gpu"
    precision = args.precision if args.precision != "auto" else ("mixed_bfloat16" if on_gpu else "float32")
    keras.config.set_dtype_policy(precision)
    recipe = JaxRecipe(
        side=args.side,
        batch=args.batch,
        lr=args.lr,
        eval_sides=tuple(args.eval_sides),
        min_area=args.min_area,
    )
    keras.utils.set_random_seed(args.seed)

    pack = read_pack(args.pack)
    n_classes = len(pack.class_names)
    train_images = jax.device_put(pack.train.decode())
    train_labels = jax.device_put(pack.train.labels)
    val_images = jax.device_put(pack.val.decode())
    val_labels = jax.device_put(pack.val.labels)
    n = train_images.shape[0]
    batch = min(recipe.batch, n)
    steps_per_epoch = n // batch
    print(
        f"{args.arch} on {device.device_kind} ({precision}): {n} train / {val_images.shape[0]} val photos",
        flush=True,
    )

    model = build(args.arch, n_classes, recipe)
    trainer = Trainer(model, n_classes, recipe)
    key = jax.random.key(args.seed)
    rng = np.random.default_rng(args.seed)
    val_at_side = resize(val_images, recipe.side)

    t0 = time.time()
    trainer.compile(train_images, train_labels, tuple(sorted({recipe.side, *recipe.eval_sides})))
    compile_seconds = time.time() - t0
    print(f"compiled the train, evaluation and recalibration steps in {compile_seconds:.0f}s", flush=True)
    state = (trainer.trainable, trainer.non_trainable, trainer.momentum)

    budget = args.minutes * 60
    if args.until:
        budget = min(budget, args.until - time.time())
    total_steps = args.epochs * steps_per_epoch if args.epochs else None
    t_train = time.time()
    rows: list[dict] = []
    step = 0
    progress = 0.0
    while progress < 1.0:
        order = rng.permutation(n)
        losses, corrects = [], []
        for i in range(steps_per_epoch):
            progress = (time.time() - t_train) / budget
            if total_steps:
                progress = max(progress, step / total_steps)
            if progress >= 1.0:
                break
            lr = learning_rate(progress, recipe)
            key, sub = jax.random.split(key)
            index = jnp.asarray(order[i * batch : (i + 1) * batch])
            state, loss, correct = trainer.train_step(
                state, train_images, train_labels, index, sub, jnp.float32(lr)
            )
            losses.append(loss)
            corrects.append(correct)
            step += 1
        if len(losses) < steps_per_epoch:
            break  # a partial epoch at the deadline is trained on but not logged
        trainer.trainable, trainer.non_trainable, trainer.momentum = state
        val = trainer.evaluate(val_at_side, val_labels)
        rows.append(
            {
                "epoch": len(rows),
                "accuracy": float(jnp.stack(corrects).mean()),
                "learning_rate": lr,
                "loss": float(jnp.stack(losses).mean()),
                "val_accuracy": val["accuracy"],
                "val_loss": val["loss"],
            }
        )
        write_history(out / "history.csv", rows)
        print(
            f"epoch {len(rows)}: loss {rows[-1]['loss']:.4f} acc {rows[-1]['accuracy']:.4f} "
            f"val_loss {val['loss']:.4f} val_acc {val['accuracy']:.4f} lr {lr:.4f} "
            f"[{time.time() - t_train:.0f}s]",
            flush=True,
        )
    trainer.trainable, trainer.non_trainable, trainer.momentum = state
    train_seconds = time.time() - t_train

    by_side: dict[int, dict] = {}
    statistics: dict[int, list] = {}
    for side in recipe.eval_sides:
        key, sub = jax.random.split(key)
        statistics[side] = trainer.recalibrated(train_images, side, sub)
        by_side[side] = trainer.evaluate(
            resize(val_images, side), val_labels, weights=(trainer.trainable, statistics[side])
        )
        print(f"validation at {side}px (statistics re-estimated): {by_side[side]}", flush=True)
    chosen = max(by_side, key=lambda s: (by_side[s]["accuracy"], -by_side[s]["loss"]))
    weights = trainer.weights(statistics[chosen])
    arrays = quantize(weights)
    as_int8 = trainer.evaluate(
        resize(val_images, chosen), val_labels, weights=trainer.stateless(dequantize(arrays))
    )
    print(f"declared {chosen}px; int8 weights: {as_int8}", flush=True)
    save_quantized(weights, out / "weights.npz")

    report = {
        "arch": args.arch,
        "class_names": list(pack.class_names),
        "data": pack.source,
        "n_train": n,
        "n_val": int(val_images.shape[0]),
        "val_fraction": pack.val_fraction,
        "seed": args.seed,
        "recipe": asdict(recipe),
        "epochs": len(rows),
        "steps": step,
        "seconds": round(train_seconds),
        "compile_seconds": round(compile_seconds),
        "images_per_second": round(step * batch / max(train_seconds, 1e-9)),
        "device": device.device_kind,
        "precision": precision,
        "backend": "jax",
        "keras": keras.__version__,
        "jax": jax.__version__,
        "validation_by_side": {str(s): v for s, v in by_side.items()},
        "input_size": chosen,
        "validation_int8": as_int8,
        "best_val_accuracy": max((r["val_accuracy"] for r in rows), default=None),
        "command": "python -m training.train_jax " + " ".join(sys.argv[1:]),
        "wall_seconds": round(time.time() - t_start),
    }
    (out / "run.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}/weights.npz, history.csv, run.json in {time.time() - t_start:.0f}s", flush=True)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train_jax",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = JaxRecipe()
    parser.add_argument("--pack", required=True, help="a photo pack (python -m training.pack)")
    parser.add_argument(
        "--arch", default="resnet50", choices=["resnet50", "resnet101", "resnet152", "small_cnn"]
    )
    parser.add_argument("--out", required=True, help="run folder (history.csv, run.json, weights.npz)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time, after compiling")
    parser.add_argument("--until", type=float, help="Unix time by which training must have ended")
    parser.add_argument("--epochs", type=int, help="at most this many epochs (the schedule fits them)")
    parser.add_argument("--side", type=int, default=defaults.side, help="training crop side")
    parser.add_argument("--eval-sides", type=int, nargs="+", default=list(defaults.eval_sides))
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    parser.add_argument("--min-area", type=float, default=defaults.min_area)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_bfloat16"])
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.pack).is_file():
        print(f"error: no photo pack at {args.pack} (make one with python -m training.pack)", file=sys.stderr)
        return 2
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
