"""The check on labelled photos: which pixel scaling, channel order, resize and class order
make a model right most often.

A model file does not say how its pixels were scaled or which output is which class. Run
the model on N labelled photos under every candidate recipe and every class order, and the
one it was trained with stands out -- unless nothing beats guessing, which is said plainly.

Cost: one forward pass over the N photos per (resize, scaling, channel order); class
orders only relabel the same outputs, and each photo is decoded once and resized once per
resize mode.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explain.images import ImageError, decode_image
from explain.preprocess import CHANNEL_ORDERS, RESIZES, SCALINGS, Feeding
from models.card import ModelCard, Preprocessing
from models.data import LabelledFiles, list_labelled, singular

#: Scalings tried by default (every named one; "affine" needs numbers a person gives).
CANDIDATE_SCALINGS = tuple(s for s in SCALINGS if s != "affine")
DEFAULT_LIMIT = 48
#: Every class order is tried while there are at most this many; beyond, the best assignment.
MAX_ORDERS = 720
#: A best result is "better than chance" when its corrected one-sided p-value is below this.
ALPHA = 0.05
BATCH = 32

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Candidate:
    """One way of feeding the model, and how often it was right."""

    scaling: str
    channel_order: str
    resize: str
    class_order: tuple[int, ...]  # the model output of each labelled class, in labelled order
    correct: int
    n: int
    confidence: float  # mean probability the model gives the true class

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


@dataclass
class FeedingCheck:
    """Every candidate's accuracy on the same photos, best first, and the verdict."""

    rows: list[Candidate]
    labelled_names: list[str]  # the photos' classes, in the folder's order
    output_names: list[str]  # the model's class names before the check ("class i" where unknown)
    size: tuple[int, int]
    channels: int
    n: int
    chance: float  # accuracy of always answering the most common class
    p_value: float  # of the best, one-sided binomial against chance, times the ways tried
    tried: int  # ways tried (feedings x class orders): the correction's factor
    folder: str = ""
    skipped: list[str] = field(default_factory=list)  # photos that could not be decoded

    @property
    def best(self) -> Candidate:
        return self.rows[0]

    @property
    def beats_chance(self) -> bool:
        return self.p_value < ALPHA

    def feeding(self, candidate: Candidate | None = None) -> Feeding:
        """Return the engine's recipe of ``candidate`` (default: the best)."""
        c = candidate or self.best
        return Feeding(self.size, self.channels, c.scaling, c.channel_order, c.resize)

    def class_names(self, candidate: Candidate | None = None) -> list[str]:
        """Return a name for every model output: the labelled class it answers, else as before."""
        c = candidate or self.best
        names = list(self.output_names)
        taken = {singular(n.lower()) for n in self.labelled_names}
        for i, name in enumerate(names):
            if singular(name.lower()) in taken and i not in c.class_order:
                names[i] = f"class {i}"  # its name now belongs to the output the check found
        for label, output in enumerate(c.class_order):
            names[output] = self.labelled_names[label]
        return names

    def order_label(self, candidate: Candidate) -> str:
        """Return e.g. 'dog, cat': the class of each model output under this candidate."""
        return ", ".join(self.class_names(candidate))

    def verdict(self) -> str:
        """Return one plain sentence: the best recipe, or that nothing beats chance."""
        b = self.best
        figures = f"{b.correct}/{b.n} right ({b.accuracy:.0%})"
        if len(self.labelled_names) < len(self.output_names):
            figures += f", scoring only the outputs for {', '.join(self.labelled_names)}"
        if self.beats_chance:
            return (
                f"Best: {self.feeding().describe()}, classes {self.order_label(b)}: {figures}, "
                f"above chance ({self.chance:.0%}; p = {self.p_value:.2g} after {self.tried} ways tried)."
            )
        return (
            f"Nothing beats chance: the best way, {self.feeding().describe()} with classes "
            f"{self.order_label(b)}, gets {figures}, no better than always answering the commonest "
            f"class ({self.chance:.0%}; p = {self.p_value:.2g} after {self.tried} ways tried). The model "
            "may not tell these classes apart, or was trained on other photos."
        )

    def table(self, limit: int | None = None) -> list[dict[str, object]]:
        """Return rows for a table, best first: scaling, channels, resize, classes, accuracy."""
        out = []
        for c in self.rows[:limit]:
            out.append(
                {
                    "scaling": SCALINGS[c.scaling],
                    "channels": "grey" if self.channels == 1 else c.channel_order,
                    "resize": c.resize,
                    "classes (output 0, 1, …)": self.order_label(c),
                    "accuracy": round(c.accuracy, 4),
                    "right": f"{c.correct}/{c.n}",
                    "mean p(true class)": round(c.confidence, 4),
                }
            )
        return out

    def summary(self) -> dict[str, object]:
        """Return the figures kept on the card (``evaluations``)."""
        return {
            "accuracy": round(self.best.accuracy, 4),
            "n": self.n,
            "tta": False,
            "chance": round(self.chance, 4),
            "p_value": float(f"{self.p_value:.3g}"),
            "beats_chance": self.beats_chance,
            "ways_tried": self.tried,
            "folder": self.folder,
        }

    def apply(self, card: ModelCard) -> ModelCard:
        """Write the best recipe and class names into ``card`` (changed in place and returned)."""
        card.preprocessing = Preprocessing.of_feeding(self.feeding())
        card.class_names = self.class_names()
        card.evaluations[f"feeding check: {Path(self.folder).name or 'photos'}"] = self.summary()
        note = f"Fed as the check on {self.n} labelled photos chose: {self.feeding().describe()}."
        if not self.beats_chance:
            note = "The check on labelled photos found nothing better than chance; " + note
        card.notes = note
        return card


def candidate_feedings(
    size: tuple[int, int],
    channels: int,
    scalings: Sequence[str] = CANDIDATE_SCALINGS,
    channel_orders: Sequence[str] = CHANNEL_ORDERS,
    resizes: Sequence[str] = tuple(RESIZES),
) -> list[Feeding]:
    """Return every (resize, scaling, channel order) recipe to try; one channel order for grey."""
    orders = ("RGB",) if channels == 1 else tuple(channel_orders)
    return [
        Feeding(size, channels, scaling, order, resize)
        for resize in resizes
        for scaling in scalings
        for order in orders
    ]


def name_order(labelled: Sequence[str], outputs: Sequence[str] | None) -> tuple[int, ...] | None:
    """Return the output index of each labelled class matched by name, or None when one is missing."""
    if not outputs:
        return None
    known = {singular(name.strip().lower()): i for i, name in enumerate(outputs)}
    order = tuple(known.get(singular(name.strip().lower()), -1) for name in labelled)
    return None if -1 in order or len(set(order)) != len(order) else order


def check_feeding(
    model,
    files: LabelledFiles,
    *,
    limit: int = DEFAULT_LIMIT,
    output_names: Sequence[str] | None = None,
    size: tuple[int, int] | None = None,
    feedings: Sequence[Feeding] | None = None,
    folder: str | Path = "",
    progress: Progress | None = None,
) -> FeedingCheck:
    """Return the accuracy of every candidate feeding and class order on ``limit`` labelled photos.

    Parameters
    ----------
    model
        A Keras classifier, or an ``explain.explainer.Explainer`` of one (its compiled
        prediction is reused).
    files
        Labelled photos (``models.data.list_labelled``); the first ``limit // classes`` of
        each class are used.
    output_names
        The model's class names where known (a card, a ``labels.txt``): matching them to the
        photos' classes is one of the class orders tried, and it wins ties.
    size
        The input size when the model leaves it open (default 224×224).
    """
    from explain.explainer import Explainer

    explainer = model if isinstance(model, Explainer) else Explainer(model, None, size)
    height, width, channels = explainer.input_shape
    size = (height, width)
    n_outputs = explainer.head.n_classes
    labelled = list(files.class_names)
    if len(labelled) > n_outputs:
        raise ValueError(
            f"the photos have {len(labelled)} classes ({', '.join(labelled)}) but the model tells "
            f"only {n_outputs} apart"
        )
    if len(labelled) < 2:
        raise ValueError("the labelled photos need at least two classes")
    per_class = max(1, limit // len(labelled))
    files = files.first_per_class(per_class)
    photos, labels, skipped = _decode_all(files, max(size), progress)
    if len(photos) < 2:
        raise ValueError("fewer than two of the labelled photos could be read")
    names = list(output_names or [])
    if len(names) != n_outputs:
        names = [f"class {i}" for i in range(n_outputs)]
    by_name = name_order(labelled, output_names if output_names and len(output_names) == n_outputs else None)
    orders = _orders(n_outputs, len(labelled))
    feedings = list(feedings or candidate_feedings(size, channels))
    # Photos of fewer classes than the model has (cats and dogs for a CIFAR-10 model): a photo
    # counts as right when its class gets the highest score among the photos' classes.
    subset = len(labelled) < n_outputs

    rows: list[Candidate] = []
    resized: dict[str, np.ndarray] = {}
    for step, feeding in enumerate(feedings):
        if progress:
            progress(0.2 + 0.8 * step / len(feedings), f"Trying {feeding.describe()}")
        if feeding.resize not in resized:
            resized = {feeding.resize: np.stack([feeding.resized(p) for p in photos])}
        probabilities = _predict(explainer, feeding, resized[feeding.resize])
        predicted = probabilities.argmax(axis=1)
        trying = (
            orders if orders is not None else [_best_assignment(predicted, labels, len(labelled), n_outputs)]
        )
        if by_name is not None and by_name not in trying:
            trying = [*trying, by_name]
        for order in trying:
            target = np.asarray(order)[labels]
            if subset:  # which of the photos' classes the model rates highest (other outputs aside)
                answer = np.asarray(order)[probabilities[:, list(order)].argmax(axis=1)]
            else:
                answer = predicted
            rows.append(
                Candidate(
                    feeding.scaling,
                    feeding.channel_order,
                    feeding.resize,
                    tuple(int(o) for o in order),
                    int((answer == target).sum()),
                    len(labels),
                    float(probabilities[np.arange(len(labels)), target].mean()),
                )
            )
    if progress:
        progress(1.0, "Done")
    # Best first: right most often, then most confident, then the order the names say.
    rows.sort(key=lambda c: (-c.correct, -c.confidence, c.class_order != by_name))
    counts = np.bincount(labels, minlength=len(labelled))
    chance = float(counts.max() / counts.sum())
    n_orders = len(orders) if orders is not None else math.perm(n_outputs, len(labelled))
    tried = len(feedings) * n_orders
    p_value = min(1.0, _binomial_tail(rows[0].correct, len(labels), chance) * tried)
    return FeedingCheck(
        rows, labelled, names, size, channels, len(labels), chance, p_value, tried, str(folder), skipped
    )


def check_folder(model, folder: str | Path, **kwargs) -> FeedingCheck:
    """Return :func:`check_feeding` on the labelled photos in ``folder`` (any layout list_labelled reads)."""
    return check_feeding(model, list_labelled(folder), folder=str(folder), **kwargs)


def _orders(n_outputs: int, n_labelled: int) -> list[tuple[int, ...]] | None:
    if math.perm(n_outputs, n_labelled) > MAX_ORDERS:
        return None
    return list(itertools.permutations(range(n_outputs), n_labelled))


def _best_assignment(predicted: np.ndarray, labels: np.ndarray, n_labelled: int, n_outputs: int):
    """Return the class order that makes the most predictions right (Hungarian assignment)."""
    from scipy.optimize import linear_sum_assignment

    counts = np.zeros((n_labelled, n_outputs))
    np.add.at(counts, (labels, predicted), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return tuple(int(c) for _, c in sorted(zip(rows, cols)))


def _binomial_tail(k: int, n: int, p: float) -> float:
    """Return P(X >= k) for X ~ Binomial(n, p): the chance of doing this well by guessing."""
    from scipy.stats import binomtest

    return float(binomtest(k, n, p, alternative="greater").pvalue)


def _predict(explainer, feeding: Feeding, resized: np.ndarray) -> np.ndarray:
    out = [explainer.predict(feeding.pixels(resized[i : i + BATCH])) for i in range(0, len(resized), BATCH)]
    return np.concatenate(out)


def _decode_all(
    files: LabelledFiles, side: int, progress: Progress | None
) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Return the decoded photos (bounded size), their labels, and the names of unreadable ones."""
    # Centre crops keep most of a photo's side: decode at up to 4x the input, at least 512.
    max_side = max(4 * side, 512)
    results: list[np.ndarray | None] = [None] * len(files)

    def work(i: int) -> None:
        try:
            with open(files.paths[i], "rb") as fh:
                results[i] = decode_image(fh.read(), max_side=max_side)
        except (ImageError, OSError):
            results[i] = None

    if progress:
        progress(0.0, f"Reading {len(files)} photos")
    with ThreadPoolExecutor(min(8, os.cpu_count() or 2)) as pool:
        list(pool.map(work, range(len(files))))
    keep = [i for i, r in enumerate(results) if r is not None]
    skipped = [Path(files.paths[i]).name for i, r in enumerate(results) if r is None]
    return [results[i] for i in keep], np.asarray(files.labels)[keep].astype(int), skipped
