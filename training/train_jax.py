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

The same command uses every device it is given (``training.data_parallel``: Keras'
``DataParallel``, the global ``--batch`` split over the devices, weights replicated; across
hosts with ``--coordinator``, ``--num-processes``, ``--process-id``). ``--batch`` and ``--lr``
are the global batch and its peak learning rate whatever the device count, so a recipe
means the same on one GPU or eight; ``run.json`` states both, with images/s and, given
``--peak-tflops``, the model FLOPs utilisation.

Options for a better model, off by default: ``--ema 0.999`` (validation then also tries the
moving average of the weights and keeps whichever is better), ``--mixup 0.2`` / ``--cutmix
1.0`` (one or the other per batch where both are on), ``--teacher FILE --distill 0.5``
(the teacher's probabilities on each augmented batch make half the targets).
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
from training.data_parallel import Placement, initialize_hosts, to_host  # noqa: E402
from training.pack import read_pack  # noqa: E402
from training.quantized import dequantize, load_quantized, quantize, save_quantized  # noqa: E402


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
    # Options for a better model, off by default (see the module docstring).
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0: none
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0: none
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix; 0: none
    distill: float = 0.0  # share of the teacher's probabilities in the targets; 0: no teacher
    teacher: str = ""  # the teacher's file or run folder


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


def soft_targets(labels: jax.Array, n_classes: int, smoothing: float) -> jax.Array:
    """Return label-smoothed targets: (B,) probability of class 1 for two classes, else (B, C)."""
    if n_classes == 2:
        return labels.astype(jnp.float32) * (1 - smoothing) + 0.5 * smoothing
    return jax.nn.one_hot(labels, n_classes) * (1 - smoothing) + smoothing / n_classes


def soft_cross_entropy(probs: jax.Array, target: jax.Array, n_classes: int) -> jax.Array:
    """Return the per-example cross-entropy of predicted probabilities against soft targets."""
    probs = jnp.clip(probs.astype(jnp.float32), 1e-7, 1 - 1e-7)
    if n_classes == 2:
        p = probs[:, 0]
        return -(target * jnp.log(p) + (1 - target) * jnp.log(1 - p))
    return -(target * jnp.log(probs)).sum(axis=-1)


def cross_entropy(probs: jax.Array, labels: jax.Array, n_classes: int, smoothing: float) -> jax.Array:
    """Return the per-example cross-entropy of predicted probabilities (sigmoid or softmax)."""
    return soft_cross_entropy(probs, soft_targets(labels, n_classes, smoothing), n_classes)


def as_target(probs: jax.Array, n_classes: int) -> jax.Array:
    """Return a model's probabilities in the form of :func:`soft_targets`."""
    probs = probs.astype(jnp.float32)
    return probs[:, 0] if n_classes == 2 else probs


def mix(x: jax.Array, target: jax.Array, key: jax.Array, recipe: JaxRecipe) -> tuple[jax.Array, jax.Array]:
    """Return the batch mixed with its reverse by mixup or CutMix, and the targets mixed alike.

    One mixing ratio ``lam ~ Beta(alpha, alpha)`` per batch (as in the mixup and CutMix papers
    and timm); where both are on, each batch uses one of the two, with even odds. CutMix pastes
    a box of area about ``1 - lam`` from the partner photo, and the targets mix by the box's
    actual area.
    """
    k_which, k_lam, k_y, k_x = jax.random.split(key, 4)
    if recipe.mixup > 0 and recipe.cutmix > 0:
        use_cutmix = jax.random.bernoulli(k_which, 0.5)
        alpha = jnp.where(use_cutmix, recipe.cutmix, recipe.mixup)
    else:
        use_cutmix = jnp.asarray(recipe.cutmix > 0)
        alpha = jnp.float32(recipe.cutmix if recipe.cutmix > 0 else recipe.mixup)
    lam = jax.random.beta(k_lam, alpha, alpha)
    partner, partner_target = x[::-1], target[::-1]

    side_h, side_w = x.shape[1], x.shape[2]
    cut = jnp.sqrt(1.0 - lam)
    cy = jax.random.uniform(k_y) * side_h
    cx = jax.random.uniform(k_x) * side_w
    y0, y1 = jnp.clip(cy - cut * side_h / 2, 0, side_h), jnp.clip(cy + cut * side_h / 2, 0, side_h)
    x0, x1 = jnp.clip(cx - cut * side_w / 2, 0, side_w), jnp.clip(cx + cut * side_w / 2, 0, side_w)
    rows = (jnp.arange(side_h) + 0.5)[:, None]
    cols = (jnp.arange(side_w) + 0.5)[None, :]
    box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    kept = jnp.where(use_cutmix, 1.0 - box.mean(), lam)
    mixed = jnp.where(use_cutmix, jnp.where(box[None, :, :, None], partner, x), lam * x + (1 - lam) * partner)
    return mixed, kept * target + (1 - kept) * partner_target


def predicted(probs: jax.Array, n_classes: int) -> jax.Array:
    """Return the predicted class per example."""
    return (probs[:, 0] > 0.5).astype(jnp.int32) if n_classes == 2 else probs.argmax(axis=-1)


def learning_rate(progress: float, recipe: JaxRecipe) -> float:
    """Return the learning rate at ``progress`` (0..1) of the budget: warm-up, then cosine."""
    if progress < recipe.warmup:
        return recipe.lr * max(progress / recipe.warmup, 0.01)
    rest = (progress - recipe.warmup) / max(1e-9, 1 - recipe.warmup)
    return recipe.lr * (0.005 + 0.995 * 0.5 * (1 + math.cos(math.pi * min(rest, 1.0))))


def ema_decay(step: jax.Array, decay: float) -> jax.Array:
    """Return the EMA decay at ``step``: ``decay``, ramped up from 0.1 so early weights fade fast."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


class Trainer:
    """A Keras model's compiled train, evaluation and recalibration steps, run statelessly.

    Arrays live where ``placement`` says (see :mod:`training.data_parallel`): each step's batch
    split over the devices, weights, optimiser state and photos replicated. ``teacher`` (a
    Keras model with the same classes), where given, is run on each augmented batch and its
    probabilities make ``recipe.distill`` of the targets.
    """

    def __init__(
        self,
        model: keras.Model,
        n_classes: int,
        recipe: JaxRecipe,
        placement: Placement | None = None,
        teacher: keras.Model | None = None,
        seed: int = 0,
    ):
        self.model, self.n_classes, self.recipe = model, n_classes, recipe
        self.placement = placement or Placement.over(1)
        self.teacher = teacher
        self.trainable = [v.value for v in model.trainable_variables]
        self.non_trainable = [v.value for v in model.non_trainable_variables]
        zeros = self.placement.replicated_sharding
        self.momentum = [jnp.zeros(v.shape, v.dtype, device=zeros) for v in self.trainable]
        # Copies, not the same buffers: the step donates its whole state.
        self.ema = jax.jit(lambda ts: [t * 1 for t in ts])(self.trainable) if recipe.ema > 0 else []
        self.teacher_weights = (
            (
                [v.value for v in teacher.trainable_variables],
                [v.value for v in teacher.non_trainable_variables],
            )
            if teacher is not None
            else ()
        )
        self._decay = [v.ndim >= 2 for v in self.trainable]
        self.train_step = jax.jit(self._train_step, donate_argnums=(0,))
        self.eval_step = jax.jit(self._eval_step)
        self.recalibration_step = None
        # Each step's augmentation and mixing keys are folded from this and the step number.
        self.base_key = self.placement.replicate(jax.random.key_data(jax.random.key(seed)))

    @property
    def state(self) -> tuple:
        return (self.trainable, self.non_trainable, self.momentum, self.ema)

    @state.setter
    def state(self, value: tuple) -> None:
        self.trainable, self.non_trainable, self.momentum, self.ema = value

    def _loss(self, trainable, non_trainable, x, target):
        probs, non_trainable = self.model.stateless_call(trainable, non_trainable, x, training=True)
        loss = soft_cross_entropy(probs, target, self.n_classes).mean()
        return loss, (probs, non_trainable)

    def _train_step(self, state, teacher, images, labels, index, base_key, scalars):
        trainable, non_trainable, momentum, ema = state
        r = self.recipe
        lr, step = scalars[0], scalars[1]
        key = jax.random.fold_in(jax.random.wrap_key_data(base_key), step.astype(jnp.int32))
        augment_key, mix_key = jax.random.split(key)
        index = self.placement.constrain(index)
        x = self.placement.constrain(augment(images[index], augment_key, r.side, r))
        y = labels[index]
        target = soft_targets(y, self.n_classes, r.label_smoothing)
        if r.mixup > 0 or r.cutmix > 0:
            x, target = mix(x, target, mix_key, r)
            x = self.placement.constrain(x)
        if teacher:
            teacher_probs, _ = self.teacher.stateless_call(*teacher, x, training=False)
            target = (1 - r.distill) * target + r.distill * as_target(teacher_probs, self.n_classes)
        (loss, (probs, non_trainable)), grads = jax.value_and_grad(self._loss, has_aux=True)(
            trainable, non_trainable, x, target
        )
        new_params, new_momentum = [], []
        for p, g, m, decay in zip(trainable, grads, momentum, self._decay):
            g = g + r.weight_decay * p if decay else g
            m = r.momentum * m + g
            new_params.append(p - lr * (g + r.momentum * m))
            new_momentum.append(m)
        if ema:
            d = ema_decay(step, r.ema)
            ema = [d * e + (1 - d) * p for e, p in zip(ema, new_params)]
        correct = (predicted(probs, self.n_classes) == y).mean()
        return (new_params, non_trainable, new_momentum, ema), loss, correct

    def step(self, images: jax.Array, labels: jax.Array, index: np.ndarray, lr: float, step: int):
        """Run one train step on the photos at ``index`` (host array); return (loss, accuracy) arrays."""
        scalars = self.placement.replicate(np.asarray([lr, step], np.float32))
        self.state, loss, correct = self.train_step(
            self.state,
            self.teacher_weights,
            images,
            labels,
            self.placement.split(index),
            self.base_key,
            scalars,
        )
        return loss, correct

    def _eval_step(self, trainable, non_trainable, x, y, mask):
        x = self.placement.constrain(x)
        probs, _ = self.model.stateless_call(trainable, non_trainable, x, training=False)
        loss = cross_entropy(probs, y, self.n_classes, 0.0)
        correct = predicted(probs, self.n_classes) == y
        return (loss * mask).sum(), (correct * mask).sum()

    def eval_batch(self, batch: int = 250) -> int:
        """Return ``batch`` rounded up to a multiple of the devices (each takes an equal share)."""
        n = self.placement.n_devices
        return -(-batch // n) * n

    def evaluate(self, images: jax.Array, labels: jax.Array, batch: int = 250, weights=None) -> dict:
        """Return validation accuracy and loss of ``images`` (already at the input side)."""
        trainable, non_trainable = weights or (self.trainable, self.non_trainable)
        batch = self.eval_batch(batch)
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
        return {"accuracy": float(to_host(correct)) / n, "loss": float(to_host(loss)) / n}

    def _recalibration(self, trainable, non_trainable, x):
        x = self.placement.constrain(x)
        return self.model.stateless_call(trainable, non_trainable, x, training=True)[1]

    def compile(self, images: jax.Array, labels: jax.Array, sides: tuple[int, ...], eval_batch: int = 250):
        """Compile every step the run will take, so the time budget is spent training only.

        The train step is compiled ahead of time; evaluation and recalibration at each side
        are run once on zeros, which leaves them in ``jax.jit``'s cache.
        """
        batch = min(self.recipe.batch, images.shape[0])
        self.placement.check_batch(batch, "the global batch")
        scalars = self.placement.replicate(np.zeros(2, np.float32))
        index = self.placement.split(np.arange(batch))
        self.train_step = self.train_step.lower(
            self.state, self.teacher_weights, images, labels, index, self.base_key, scalars
        ).compile()
        # Traced after the train step, so only recalibration sees this momentum: 40 batches
        # then weigh the statistics they started from 0.9**40 = 1.5 %.
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
        self.recalibration_step = jax.jit(self._recalibration)
        eval_batch = self.eval_batch(eval_batch)
        for side in sides:
            x = jnp.zeros((eval_batch, side, side, 3), jnp.float32)
            y, mask = jnp.zeros(eval_batch, labels.dtype), jnp.zeros(eval_batch)
            jax.block_until_ready(self.eval_step(self.trainable, self.non_trainable, x, y, mask))
            x = jnp.zeros((batch, side, side, 3), jnp.float32)
            jax.block_until_ready(self.recalibration_step(self.trainable, self.non_trainable, x))

    def recalibrated(self, images: jax.Array, side: int, key: jax.Array, trainable=None) -> list:
        """Return batch-norm statistics re-estimated on whole ``images`` resized to ``side``."""
        if self.recalibration_step is None:
            raise RuntimeError("call compile() first")
        trainable = trainable or self.trainable
        non_trainable = list(self.non_trainable)
        batch = min(self.recipe.batch, images.shape[0])
        for _ in range(self.recipe.recalibration_batches):
            key, pick = jax.random.split(key)
            index = jax.random.choice(pick, images.shape[0], (batch,), replace=False)
            non_trainable = self.recalibration_step(trainable, non_trainable, resize(images[index], side))
        return non_trainable

    def weights(self, non_trainable: list | None = None, trainable: list | None = None) -> list[np.ndarray]:
        """Return the model's weights (``model.get_weights()`` order) as float32 host arrays."""
        values = {
            id(var): value
            for var, value in [
                *zip(self.model.trainable_variables, trainable or self.trainable),
                *zip(self.model.non_trainable_variables, non_trainable or self.non_trainable),
            ]
        }
        return [to_host(values[id(var)]).astype(np.float32) for var in self.model.weights]

    def stateless(self, weights: list[np.ndarray]) -> tuple[list, list]:
        """Return (trainable, non-trainable) values for a ``get_weights()`` list."""
        self.model.set_weights(weights)
        return (
            [v.value for v in self.model.trainable_variables],
            [v.value for v in self.model.non_trainable_variables],
        )


def forward_flops(model: keras.Model, side: int) -> float | None:
    """Return the floating-point operations of one forward pass of one ``side``-square photo.

    Counted by XLA's cost analysis of the lowered forward pass (convolutions and matrix
    products dominate); None where the backend does not say.
    """
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(t, nt, x):
        return model.stateless_call(t, nt, x, training=False)[0]

    x = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
    for stage in ("lowered", "compiled"):  # the lowered module's count where there is one
        try:
            lowered = jax.jit(forward).lower(trainable, non_trainable, x)
            cost = (lowered if stage == "lowered" else lowered.compile()).cost_analysis()
        except Exception:  # noqa: BLE001 - an estimate; some backends have none
            continue
        if isinstance(cost, list | tuple):
            cost = cost[0] if cost else None
        flops = (cost or {}).get("flops")
        if flops:
            return float(flops)
    return None


def throughput(
    images_per_second: float, train_flops_per_image: float | None, peak_tflops: float | None, n_devices: int
) -> dict:
    """Return images/s, achieved TFLOP/s and model FLOPs utilisation (MFU) of a run.

    MFU = achieved model FLOP/s / (peak FLOP/s per device x devices), with the model's FLOPs
    per training image taken as 3x its forward pass (forward, and backward twice as costly),
    the usual convention; ``peak_tflops`` is the device's dense peak in the run's precision
    (e.g. 989 for an H100/H200 SXM in bfloat16).
    """
    out: dict = {"images_per_second": round(images_per_second, 1), "devices": n_devices}
    if train_flops_per_image:
        achieved = images_per_second * train_flops_per_image / 1e12
        out["train_gflops_per_image"] = round(train_flops_per_image / 1e9, 3)
        out["achieved_tflops"] = round(achieved, 2)
        if peak_tflops:
            out["peak_tflops_per_device"] = peak_tflops
            out["mfu"] = round(achieved / (peak_tflops * n_devices), 4)
    return out


def build(arch: str, n_classes: int, recipe: JaxRecipe) -> keras.Model:
    """Return the model to train: a ResNet (zero-initialised last batch norm in each block)."""
    mixed = keras.config.dtype_policy().name == "mixed_bfloat16"
    model = build_classifier(arch, n_classes, recipe.dropout, head_dtype="float32" if mixed else None)
    # Each residual block then starts as the identity: deep nets from scratch train sooner.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name.endswith("_3_bn"):
            layer.gamma.assign(np.zeros(layer.gamma.shape, np.float32))
    return model


def load_teacher(path: str | Path, n_classes: int) -> keras.Model:
    """Return the teacher for distillation: a ``.keras`` file this project wrote, or a run folder.

    A run folder is a ``training.train_jax`` one (``run.json`` and ``weights.npz``). Raises
    ValueError when it is neither or its classes differ. ``.keras`` files load in Keras' safe
    mode, which refuses code carried in the file (Lambda layers).
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "run.json").is_file() or not (path / "weights.npz").is_file():
            raise ValueError(f"{path} is not a training.train_jax run folder (run.json, weights.npz)")
        report = json.loads((path / "run.json").read_text())
        model = build_classifier(
            report["arch"], len(report["class_names"]), report["recipe"].get("dropout", 0.0)
        )
        model.set_weights(load_quantized(path / "weights.npz"))
    elif path.suffix == ".keras" and path.is_file():
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    else:
        raise ValueError(f"no teacher at {path} (a .keras file or a training.train_jax run folder)")
    units = model.output_shape[-1]
    if (1 if n_classes == 2 else n_classes) != units:
        raise ValueError(f"the teacher {path} has {units} output units; the pack has {n_classes} classes")
    return model


def write_history(path: Path, rows: list[dict]) -> None:
    keys = ["epoch", "accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class RunResult:
    """What :func:`train` leaves behind: the run folder and the chosen float32 weights."""

    out: Path
    weights: list[np.ndarray]
    report: dict


def train(args: argparse.Namespace) -> RunResult:
    t_start = time.time()
    out = Path(args.out)
    placement = Placement.over(args.devices)
    lead = jax.process_index() == 0  # one process writes the run folder and prints
    say = (lambda text: print(text, flush=True)) if lead else (lambda text: None)
    if lead:
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
        ema=args.ema,
        mixup=args.mixup,
        cutmix=args.cutmix,
        distill=args.distill if args.teacher else 0.0,
        teacher=str(args.teacher or ""),
    )
    keras.utils.set_random_seed(args.seed)

    pack = read_pack(args.pack)
    n_classes = len(pack.class_names)
    train_images = placement.replicate(pack.train.decode())
    train_labels = placement.replicate(pack.train.labels)
    val_images = placement.replicate(pack.val.decode())
    val_labels = placement.replicate(pack.val.labels)
    n = train_images.shape[0]
    batch = min(recipe.batch, n)
    steps_per_epoch = n // batch
    say(
        f"{args.arch} on {placement.n_devices} x {device.device_kind} ({precision}, "
        f"{jax.process_count()} process(es)): {n} train / {val_images.shape[0]} val photos, "
        f"global batch {batch} ({batch // placement.n_devices} per device)"
    )

    model = build(args.arch, n_classes, recipe)
    teacher = load_teacher(args.teacher, n_classes) if args.teacher else None
    trainer = Trainer(model, n_classes, recipe, placement, teacher, seed=args.seed)
    key = jax.random.key(args.seed)
    rng = np.random.default_rng(args.seed)
    val_at_side = resize(val_images, recipe.side)
    train_flops = forward_flops(model, recipe.side)
    if train_flops and teacher is not None:
        teacher_flops = forward_flops(teacher, recipe.side) or 0.0
        train_flops = 3 * train_flops + teacher_flops
    elif train_flops:
        train_flops = 3 * train_flops

    t0 = time.time()
    trainer.compile(train_images, train_labels, tuple(sorted({recipe.side, *recipe.eval_sides})))
    compile_seconds = time.time() - t0
    say(f"compiled the train, evaluation and recalibration steps in {compile_seconds:.0f}s")

    budget = args.minutes * 60
    if args.until:
        budget = min(budget, args.until - time.time())
    total_steps = args.epochs * steps_per_epoch if args.epochs else None
    t_train = time.time()
    step_seconds = 0.0  # time in train steps only (not validation), for images/s and MFU
    rows: list[dict] = []
    step = 0
    progress = 0.0
    lr = learning_rate(0.0, recipe)
    while progress < 1.0:
        order = rng.permutation(n)
        losses, corrects = [], []
        t_epoch = time.time()
        for i in range(steps_per_epoch):
            progress = (time.time() - t_train) / budget
            if total_steps:
                progress = max(progress, step / total_steps)
            if progress >= 1.0:
                break
            lr = learning_rate(progress, recipe)
            loss, correct = trainer.step(
                train_images, train_labels, order[i * batch : (i + 1) * batch], lr, step
            )
            losses.append(loss)
            corrects.append(correct)
            step += 1
        jax.block_until_ready(trainer.trainable)
        step_seconds += time.time() - t_epoch
        if len(losses) < steps_per_epoch:
            break  # a partial epoch at the deadline is trained on but not logged
        val = trainer.evaluate(val_at_side, val_labels)
        rows.append(
            {
                "epoch": len(rows),
                "accuracy": float(np.mean([to_host(c) for c in corrects])),
                "learning_rate": lr,
                "loss": float(np.mean([to_host(v) for v in losses])),
                "val_accuracy": val["accuracy"],
                "val_loss": val["loss"],
            }
        )
        if lead:
            write_history(out / "history.csv", rows)
        say(
            f"epoch {len(rows)}: loss {rows[-1]['loss']:.4f} acc {rows[-1]['accuracy']:.4f} "
            f"val_loss {val['loss']:.4f} val_acc {val['accuracy']:.4f} lr {lr:.4f} "
            f"[{time.time() - t_train:.0f}s]"
        )
    train_seconds = time.time() - t_train

    # Candidates: the last weights, and their moving average where EMA is on; each side's
    # batch-norm statistics re-estimated; validation picks.
    candidates = {"last": trainer.trainable}
    if trainer.ema:
        candidates["ema"] = trainer.ema
    by_side: dict[str, dict] = {}
    statistics: dict[tuple[str, int], list] = {}
    name = lambda which, side: str(side) if which == "last" else f"{side} {which}"  # noqa: E731
    for which, trainable in candidates.items():
        for side in recipe.eval_sides:
            key, sub = jax.random.split(key)
            statistics[which, side] = trainer.recalibrated(train_images, side, sub, trainable)
            by_side[name(which, side)] = trainer.evaluate(
                resize(val_images, side), val_labels, weights=(trainable, statistics[which, side])
            )
            figures = by_side[name(which, side)]
            say(f"validation at {side}px, {which} weights (statistics re-estimated): {figures}")
    chosen_which, chosen = max(
        statistics, key=lambda ws: (by_side[name(*ws)]["accuracy"], -by_side[name(*ws)]["loss"])
    )
    weights = trainer.weights(statistics[chosen_which, chosen], candidates[chosen_which])
    arrays = quantize(weights)
    as_int8 = trainer.evaluate(
        resize(val_images, chosen), val_labels, weights=trainer.stateless(dequantize(arrays))
    )
    say(f"declared {chosen}px, {chosen_which} weights; int8 weights: {as_int8}")
    speed = throughput(
        step * batch / max(step_seconds, 1e-9), train_flops, args.peak_tflops, placement.n_devices
    )
    say(
        f"throughput: {speed['images_per_second']:.0f} images/s on {placement.n_devices} device(s)"
        + (
            f", {speed['train_gflops_per_image']} GFLOPs per training image at {recipe.side}px, "
            f"{speed['achieved_tflops']} TFLOP/s"
            if "achieved_tflops" in speed
            else ""
        )
        + (f", MFU {speed['mfu']:.1%} of {args.peak_tflops} TFLOP/s per device" if "mfu" in speed else "")
    )

    report = {
        "arch": args.arch,
        "class_names": list(pack.class_names),
        "data": pack.source,
        "n_train": n,
        "n_val": int(val_images.shape[0]),
        "val_fraction": pack.val_fraction,
        "seed": args.seed,
        "recipe": asdict(recipe),
        "global_batch": batch,
        "peak_learning_rate": recipe.lr,
        "epochs": len(rows),
        "steps": step,
        "seconds": round(train_seconds),
        "compile_seconds": round(compile_seconds),
        "images_per_second": round(step * batch / max(train_seconds, 1e-9)),
        "throughput": speed,
        "device": device.device_kind,
        "devices": placement.n_devices,
        "processes": jax.process_count(),
        "precision": precision,
        "backend": "jax",
        "keras": keras.__version__,
        "jax": jax.__version__,
        "validation_by_side": by_side,
        "input_size": chosen,
        "weights_from": chosen_which,
        "validation_int8": as_int8,
        "best_val_accuracy": max((r["val_accuracy"] for r in rows), default=None),
        "command": "python -m training.train_jax " + " ".join(sys.argv[1:]),
        "wall_seconds": round(time.time() - t_start),
    }
    if lead:
        save_quantized(weights, out / "weights.npz")
        (out / "run.json").write_text(json.dumps(report, indent=2) + "\n")
    say(f"wrote {out}/weights.npz, history.csv, run.json in {time.time() - t_start:.0f}s")
    return RunResult(out, weights, report)


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
    parser.add_argument(
        "--batch", type=int, default=defaults.batch, help="global batch, split over the devices"
    )
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    parser.add_argument("--min-area", type=float, default=defaults.min_area)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_bfloat16"])
    parser.add_argument("--seed", type=int, default=0)
    recipe = parser.add_argument_group("recipe options (off by default)")
    recipe.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights, e.g. 0.999")
    recipe.add_argument("--mixup", type=float, default=0.0, help="mixup alpha, e.g. 0.2")
    recipe.add_argument("--cutmix", type=float, default=0.0, help="CutMix alpha, e.g. 1.0")
    recipe.add_argument("--teacher", help="distil from this .keras file or train_jax run folder")
    recipe.add_argument("--distill", type=float, default=0.5, help="teacher's share of the targets")
    devices = parser.add_argument_group("devices and hosts (the same command on one device or many)")
    devices.add_argument("--devices", type=int, help="use the first N devices (default: all)")
    devices.add_argument("--coordinator", help="HOST:PORT of process 0, for a run across hosts")
    devices.add_argument("--num-processes", type=int, help="processes in a run across hosts")
    devices.add_argument("--process-id", type=int, help="this process' index in a run across hosts")
    devices.add_argument(
        "--peak-tflops", type=float, help="a device's peak TFLOP/s in the run's precision, to print MFU"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.pack).is_file():
        print(f"error: no photo pack at {args.pack} (make one with python -m training.pack)", file=sys.stderr)
        return 2
    if args.teacher and not Path(args.teacher).exists():
        print(f"error: no teacher at {args.teacher}", file=sys.stderr)
        return 2
    initialize_hosts(args.coordinator, args.num_processes, args.process_id)
    try:
        train(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
