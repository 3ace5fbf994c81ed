"""Classification figures from predicted probabilities and true labels."""

from __future__ import annotations

import numpy as np


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probabilities.argmax(axis=1) == labels)) if len(labels) else float("nan")


def log_loss(probabilities: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    """Mean cross-entropy (binary cross-entropy for two classes)."""
    if not len(labels):
        return float("nan")
    p = np.clip(probabilities[np.arange(len(labels)), labels], eps, 1.0)
    return float(-np.mean(np.log(p)))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Return counts[true, predicted]."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (false positive rate, true positive rate), from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order].astype(bool)
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(positive)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = max(positive.sum(), 1), max((~positive).sum(), 1)
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (NaN when one class is absent)."""
    positive = positive.astype(bool)
    if positive.all() or not positive.any():
        return float("nan")
    fpr, tpr = roc_curve(scores, positive)
    return float(np.trapezoid(tpr, fpr))


DEGENERATE_CAUSES = (
    "usual causes: a softmax or log-softmax as the last layer while the loss applies its own "
    "(from_logits=True, or PyTorch's CrossEntropyLoss after LogSoftmax); a frozen or untrained "
    "head; training labels that are all one class; a learning rate so high the network died"
)


def degenerate_warning(
    probabilities: np.ndarray, class_names: list[str], share: float = 0.95, band: float = 0.05
) -> str | None:
    """Return a warning when a model answers (nearly) the same class for every image, or its
    probabilities never leave a narrow band; None when it looks like a working classifier."""
    n = len(probabilities)
    if n < 10:
        return None
    predicted = probabilities.argmax(axis=1)
    counts = np.bincount(predicted, minlength=probabilities.shape[1])
    top = int(counts.argmax())
    name = class_names[top] if top < len(class_names) else str(top)
    problems = []
    if counts[top] / n >= share:
        problems.append(f"it answers “{name}” for {counts[top] / n:.0%} of the {n} photos")
    spread = probabilities.max(axis=0) - probabilities.min(axis=0)
    if float(spread.max()) < band:
        low, high = probabilities[:, top].min(), probabilities[:, top].max()
        problems.append(f"its probabilities never leave a narrow band ({name}: {low:.3f}–{high:.3f})")
    if not problems:
        return None
    return (
        "This model looks degenerate: "
        + "; and ".join(problems)
        + ". "
        + DEGENERATE_CAUSES.capitalize()
        + "."
    )
