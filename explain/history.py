"""Training histories: Keras CSVLogger files and ``history.history`` JSON, and their summary."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

MAX_HISTORY_BYTES = 5 * 1024 * 1024
_ALIASES = {
    "acc": "accuracy",
    "binary_accuracy": "accuracy",
    "categorical_accuracy": "accuracy",
    "sparse_categorical_accuracy": "accuracy",
    "val_acc": "val_accuracy",
    "val_binary_accuracy": "val_accuracy",
    "val_categorical_accuracy": "val_accuracy",
    "val_sparse_categorical_accuracy": "val_accuracy",
    "lr": "learning_rate",
}
CURVES = ("accuracy", "loss", "val_accuracy", "val_loss")


class HistoryError(ValueError):
    """A history file we cannot read; the message says why in one line."""


@dataclass
class History:
    """One training run's per-epoch figures."""

    name: str
    epochs: np.ndarray  # 1-based epoch numbers
    metrics: dict[str, np.ndarray]  # accuracy, loss, val_accuracy, val_loss, ...
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | None]:
        """Return the figures a researcher reports, with the epoch each was reached at."""
        out: dict[str, float | int | None] = {"run": self.name, "epochs": len(self.epochs)}
        for key, label, pick in (
            ("accuracy", "max train accuracy", np.nanargmax),
            ("loss", "min train loss", np.nanargmin),
            ("val_accuracy", "max val accuracy", np.nanargmax),
            ("val_loss", "min val loss", np.nanargmin),
        ):
            values = self.metrics.get(key)
            if values is None or not np.isfinite(values).any():
                out[label] = None
                out[label + " epoch"] = None
                continue
            finite = np.where(np.isfinite(values), values, np.nan)
            index = int(pick(finite))
            out[label] = float(finite[index])
            out[label + " epoch"] = int(self.epochs[index])
        return out


def _canonical(name: str) -> str:
    name = name.strip()
    return _ALIASES.get(name, name)


def _from_columns(name: str, columns: dict[str, list]) -> History:
    warnings: list[str] = []
    metrics: dict[str, np.ndarray] = {}
    length = None
    for raw_key, raw_values in columns.items():
        key = _canonical(str(raw_key))
        if key == "epoch":
            continue
        try:
            values = np.array([_number(v) for v in raw_values], dtype=np.float64)
        except (TypeError, ValueError):
            warnings.append(f"column {raw_key!r} is not numeric and was left out")
            continue
        length = len(values) if length is None else length
        if len(values) != length:
            raise HistoryError(f"column {raw_key!r} has {len(values)} values, others {length}")
        bad = int((~np.isfinite(values)).sum())
        if bad:
            warnings.append(f"{key}: {bad} NaN or infinite value(s), shown as gaps")
        metrics[key] = values
    if not any(k in metrics for k in CURVES):
        raise HistoryError(
            "no accuracy or loss column found (expected Keras names such as accuracy, loss, "
            "val_accuracy, val_loss)"
        )
    if not length:
        raise HistoryError("the history has no epochs")
    return History(name, np.arange(1, length + 1), metrics, warnings)


def _number(value) -> float:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    if isinstance(value, bool):
        raise ValueError("boolean")
    return float(value)


def parse_history(data: bytes, name: str, filename: str = "") -> History:
    """Return the :class:`History` in a CSVLogger CSV or a ``history.history`` JSON file."""
    if len(data) > MAX_HISTORY_BYTES:
        raise HistoryError(
            f"the file is {len(data) / 2**20:.1f} MB; a training history is far smaller "
            f"(limit {MAX_HISTORY_BYTES / 2**20:.0f} MB)"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HistoryError("the file is not UTF-8 text (expected CSV or JSON)") from None
    if not text.strip():
        raise HistoryError("the file is empty")
    looks_json = filename.lower().endswith(".json") or text.lstrip()[:1] in "{["
    return _parse_json(text, name) if looks_json else _parse_csv(text, name)


def _parse_json(text: str, name: str) -> History:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise HistoryError(f"malformed JSON (line {err.lineno}: {err.msg})") from None
    if isinstance(payload, dict) and isinstance(payload.get("history"), dict):
        payload = payload["history"]
    if isinstance(payload, list) and payload and all(isinstance(r, dict) for r in payload):
        keys = list(dict.fromkeys(k for row in payload for k in row))
        payload = {k: [row.get(k) for row in payload] for k in keys}
    if not isinstance(payload, dict) or not all(isinstance(v, list) for v in payload.values()):
        raise HistoryError(
            'the JSON is not a Keras history: expected {"loss": [...], "accuracy": [...], ...}'
        )
    return _from_columns(name, payload)


def _parse_csv(text: str, name: str) -> History:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as err:
        raise HistoryError(f"malformed CSV ({err})") from None
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise HistoryError("the CSV has a header but no epochs")
    header = rows[0]
    if any(len(r) != len(header) for r in rows[1:]):
        raise HistoryError("malformed CSV: rows have different numbers of fields")
    columns = {h: [r[i] for r in rows[1:]] for i, h in enumerate(header)}
    return _from_columns(name, columns)


def load_history(path, name: str | None = None) -> History:
    """Read a history file from disk (see :func:`parse_history`)."""
    from pathlib import Path

    path = Path(path)
    size = path.stat().st_size
    if size > MAX_HISTORY_BYTES:
        raise HistoryError(f"{path.name} is {size / 2**20:.1f} MB, over the history size limit")
    return parse_history(path.read_bytes(), name or path.stem, path.name)
