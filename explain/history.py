"""Training histories as people have them, their summary, and TensorBoard's smoothing.

Read: a Keras ``CSVLogger`` file, ``pandas.DataFrame(history.history).to_csv()`` (its unnamed
first column is the index), ``history.history`` as JSON (also ragged, or as pandas'
``to_json()``), the progress log ``model.fit`` printed (Keras 2 and 3, with or without the
progress bars), and TensorBoard event files (one file, or a log folder with ``train/`` and
``validation/`` runs). Every extra numeric column (learning rate, F1, AUC ...) is kept.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_HISTORY_BYTES = 5 * 1024 * 1024
# A TensorBoard log folder is walked this deep and for at most this many event files.
_MAX_EVENT_FILES = 64
_MAX_EVENT_DEPTH = 4
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
LEARNING_RATE = "learning_rate"
# pandas writes its index as an unnamed first column ("" in the file, "Unnamed: 0" once re-read
# and written again); CSVLogger writes "epoch". None of them is a metric.
_INDEX_COLUMNS = re.compile(r"^(|epoch|index|unnamed: ?\d+)$", re.IGNORECASE)
_TEXT_SUFFIXES = (".csv", ".json", ".txt", ".log")


class HistoryError(ValueError):
    """A history file we cannot read; the message says why in one line."""


@dataclass
class History:
    """One training run's per-epoch figures."""

    name: str
    epochs: np.ndarray  # 1-based epoch numbers (TensorBoard steps when x_label is "step")
    metrics: dict[str, np.ndarray]  # accuracy, loss, val_accuracy, val_loss, ...
    warnings: list[str] = field(default_factory=list)
    x_label: str = "epoch"

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

    def extra_metrics(self) -> list[str]:
        """Return the other metrics' names (F1, AUC ...), without ``val_`` and the learning rate."""
        names: list[str] = []
        for key in self.metrics:
            base = key[4:] if key.startswith("val_") else key
            if base in ("accuracy", "loss", LEARNING_RATE) or base in names:
                continue
            names.append(base)
        return names


def smooth(values, weight: float) -> np.ndarray:
    """Return TensorBoard's smoothed curve: its debiased exponential moving average.

    The same as TensorBoard's scalar charts (``classicSmoothing``): ``last = last * weight +
    (1 - weight) * value`` from ``last = 0``, divided by ``1 - weight ** n`` after the n-th
    finite value so the start is not pulled towards zero; NaN and infinite values stay as they
    are and do not count; a constant series is returned unchanged.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    if values.size == 0 or np.all(values == values[0]):
        return out
    last, count = 0.0, 0
    for i, value in enumerate(values):
        if not math.isfinite(value):
            continue
        last = last * weight + (1.0 - weight) * value
        count += 1
        out[i] = last / (1.0 - weight**count)
    return out


def _canonical(name: str) -> str:
    name = name.strip()
    return _ALIASES.get(name, name)


def _from_columns(name: str, columns: dict[str, list]) -> History:
    warnings: list[str] = []
    metrics: dict[str, np.ndarray] = {}
    for raw_key, raw_values in columns.items():
        key = _canonical(str(raw_key))
        if _INDEX_COLUMNS.match(key):
            continue
        try:
            values = np.array([_number(v) for v in raw_values], dtype=np.float64)
        except (TypeError, ValueError):
            warnings.append(f"column {raw_key!r} is not numeric and was left out")
            continue
        if values.ndim != 1:
            warnings.append(f"column {raw_key!r} is not one number per epoch and was left out")
            continue
        bad = int((~np.isfinite(values)).sum())
        if bad:
            warnings.append(f"{key}: {bad} NaN or infinite value(s), shown as gaps")
        if key in metrics:
            warnings.append(f"{raw_key!r} repeats {key!r}; the first was kept")
            continue
        metrics[key] = values
    if not any(k in metrics for k in CURVES):
        raise HistoryError(
            "no accuracy or loss column found (expected Keras names such as accuracy, loss, "
            "val_accuracy, val_loss)"
        )
    lengths = {k: len(v) for k, v in metrics.items()}
    length = max(lengths.values())
    if not length:
        raise HistoryError("the history has no epochs")
    if len(set(lengths.values())) > 1:
        # A history appended from several fits, or a metric added half-way: show what is there.
        short = ", ".join(f"{k} {n}" for k, n in lengths.items() if n < length)
        warnings.append(
            f"columns have different lengths ({length} epochs; {short}): "
            "the shorter ones are shown up to where they end, the rest as gaps"
        )
        metrics = {k: np.concatenate([v, np.full(length - len(v), np.nan)]) for k, v in metrics.items()}
    return History(name, np.arange(1, length + 1), metrics, warnings)


def _number(value) -> float:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    if isinstance(value, bool):
        raise ValueError("boolean")
    return float(value)


def parse_history(data: bytes, name: str, filename: str = "", role: str | None = None) -> History:
    """Return the :class:`History` in one history file's bytes, whichever format it is in.

    ``role`` ("train" or "val") says which run a TensorBoard event file belongs to when its
    folder is not known (an upload); without it a file of Keras' validation writer is
    recognised by its ``evaluation_*`` scalars and any other file counts as training.
    """
    if len(data) > MAX_HISTORY_BYTES:
        raise HistoryError(
            f"the file is {len(data) / 2**20:.1f} MB; a training history is far smaller "
            f"(limit {MAX_HISTORY_BYTES / 2**20:.0f} MB)"
        )
    if is_event_file(filename, data):
        with tempfile.TemporaryDirectory(prefix="cvd-history-") as folder:
            # TensorBoard's reader opens files by path: the bytes go under a name we make.
            path = Path(folder) / "events.out.tfevents.upload"
            path.write_bytes(data)
            if role is None and not Path(filename).name.startswith("events.out.tfevents."):
                role = _role_of(re.split(r"[^a-z]+", Path(filename).name.lower()))  # val.tfevents
            return _history_from_events(name, [(path, role)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HistoryError(
            "the file is not UTF-8 text (expected CSV, JSON, a Keras log or a TensorBoard "
            "events.out.tfevents.* file)"
        ) from None
    if not text.strip():
        raise HistoryError("the file is empty")
    if filename.lower().endswith(".json") or text.lstrip()[:1] in "{[":
        return _parse_json(text, name)
    if _EPOCH_LINE.search(re.sub(r"[\r\x08]", "\n", text)):
        return _parse_log(text, name)
    if filename.lower().endswith((".txt", ".log")) and "," not in text.split("\n", 1)[0]:
        raise HistoryError("no 'Epoch N/M' lines found: not a Keras training log")
    return _parse_csv(text, name)


def is_event_file(filename: str, data: bytes = b"") -> bool:
    """Return whether a file is a TensorBoard event file, by its name or its first record."""
    # The first record of every event file is Event(file_version="brain.Event:N").
    return "tfevents" in Path(filename).name or b"brain.Event:" in data[:64]


def is_history_name(filename: str) -> bool:
    """Return whether a file name is one a history may have (csv, json, txt, log, tfevents)."""
    return filename.lower().endswith(_TEXT_SUFFIXES) or "tfevents" in Path(filename).name


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
    if isinstance(payload, dict) and payload and all(isinstance(v, dict) for v in payload.values()):
        # pandas' DataFrame.to_json(): {"loss": {"0": 0.69, "1": 0.52}, ...}
        payload = {k: _indexed_values(v) for k, v in payload.items()}
    if not isinstance(payload, dict) or not all(isinstance(v, list) for v in payload.values()):
        raise HistoryError(
            'the JSON is not a Keras history: expected {"loss": [...], "accuracy": [...], ...}'
        )
    return _from_columns(name, payload)


def _indexed_values(column: dict) -> list:
    try:
        return [column[k] for k in sorted(column, key=int)]
    except (TypeError, ValueError):
        return list(column.values())


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


# --- the log model.fit printed ------------------------------------------------------------

_EPOCH_LINE = re.compile(r"^[ \t]*Epoch[ \t]+(\d+)[ \t]*/[ \t]*(\d+)[ \t]*$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# " - loss: 0.5213" (Keras prints every figure after " - ", or a pasted line may start with
# one); "ETA: 1:23" is left out below.
_FIGURE = re.compile(
    r"(?:^\s*|\s-\s+)([A-Za-z_][\w.]*)\s*:\s*"
    r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf))(?=\s|$)",
    re.IGNORECASE,
)
_STEP_COUNTER = re.compile(r"^\s*(\d+)/(\d+|Unknown)\b")


def _parse_log(text: str, name: str) -> History:
    # Progress bars redraw themselves with \r (Keras 3) or runs of \b (Keras 2); both, like the
    # newlines, end one printed state of the line. Colours (Keras 3 in a terminal) go.
    text = _ANSI.sub(" ", text)
    blocks: list[tuple[int, list[str]]] = []
    for segment in re.split(r"[\r\n\x08]+", text):
        header = _EPOCH_LINE.match(segment)
        if header:
            blocks.append((int(header.group(1)), []))
        elif blocks and any(k.endswith("loss") for k, _ in _FIGURE.findall(segment)):
            # Every line fit() prints has a loss; other lines (callbacks, prints) are not figures.
            blocks[-1][1].append(segment)
    warnings: list[str] = []
    numbers: list[int] = []
    rows: list[dict[str, float]] = []
    for i, (number, segments) in enumerate(blocks):
        line = _final_line(segments, last=i == len(blocks) - 1)
        if line is None:
            warnings.append(f"epoch {number} has no end-of-epoch figures in the log; left out")
            continue
        figures = {_canonical(k): float(v) for k, v in _FIGURE.findall(line) if k.upper() != "ETA"}
        numbers.append(number)
        rows.append(figures)
    if not rows:
        raise HistoryError("the log has 'Epoch N/M' lines but no figures such as '- loss: 0.5213'")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    history = _from_columns(name, {k: [row.get(k) for row in rows] for k in keys})
    if all(b > a for a, b in zip(numbers, numbers[1:])):
        history.epochs = np.array(numbers)
    else:
        warnings.append(
            "epoch numbers start again part-way (several fit() calls in one log); "
            "the epochs are numbered in the order they were printed"
        )
    history.warnings = warnings + history.warnings
    return history


def _final_line(segments: list[str], last: bool) -> str | None:
    """Return the printed state of an epoch's line that holds its end-of-epoch figures."""

    def finished(segment: str) -> bool:
        if "ETA" in segment:
            return False
        counter = _STEP_COUNTER.match(segment)
        return counter is None or counter.group(1) == counter.group(2) or "val_" in segment

    done = [s for s in segments if finished(s)]
    if done:
        return done[-1]
    # The next epoch began, so this one ended; a last epoch still running has no final figures.
    return segments[-1] if segments and not last else None


# --- TensorBoard event files ---------------------------------------------------------------

_TRAIN_WORDS = {"train", "training"}
_VAL_WORDS = {"validation", "val", "valid", "eval", "evaluation"}


def _role_of(parts) -> str | None:
    for part in reversed([p.lower() for p in parts]):
        if part in _TRAIN_WORDS:
            return "train"
        if part in _VAL_WORDS:
            return "val"
    return None


def _event_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    stack = [(folder, 0)]
    while stack:
        current, depth = stack.pop()
        for child in sorted(current.iterdir()):
            if child.is_symlink():
                continue  # a log folder is ours to read, not a way out of it
            if child.is_dir() and depth < _MAX_EVENT_DEPTH:
                stack.append((child, depth + 1))
            elif child.is_file() and "tfevents" in child.name:
                found.append(child)
                if len(found) > _MAX_EVENT_FILES:
                    raise HistoryError(f"{folder.name} holds over {_MAX_EVENT_FILES} event files")
    return sorted(found)


def _load_event_folder(folder: Path, name: str) -> History:
    files = _event_files(folder)
    if not files:
        raise HistoryError(f"{folder.name} holds no TensorBoard event files (events.out.tfevents.*)")
    runs: dict[Path, list[tuple[Path, str | None]]] = {}
    for path in files:
        parts = path.parent.relative_to(folder).parts
        role = _role_of(parts)
        # logs/run1/train and logs/run1/validation are one run; logs/run2/... another.
        root = folder.joinpath(*parts[:-1]) if role and parts else path.parent
        runs.setdefault(root, []).append((path, role))
    if len(runs) > 1:
        names = ", ".join(str(r.relative_to(folder)) or "." for r in runs)
        raise HistoryError(f"{folder.name} holds {len(runs)} runs ({names}): point to one of them")
    return _history_from_events(name, next(iter(runs.values())))


def _history_from_events(name: str, files: list[tuple[Path, str | None]]) -> History:
    """Return the history in event files, each with its run's role (train, val or unknown)."""
    series: dict[str, dict[int, float]] = {}
    skipped: set[str] = set()
    for path, role in files:
        scalars = _read_scalars(path)
        if role is None and any(t.startswith("evaluation_") for t in scalars):
            role = "val"  # Keras' validation writer also logs evaluation_*_vs_iterations
        for tag, points in scalars.items():
            metric = _metric_of(tag, role)
            if metric is None:
                skipped.add(tag.split("_", 1)[0])
                continue
            series.setdefault(metric, {}).update(points)
    if not series:
        raise HistoryError("the event files hold no per-epoch scalars (such as epoch_loss)")
    steps = sorted(set().union(*series.values()))
    columns = {k: [v.get(s) for s in steps] for k, v in series.items()}
    history = _from_columns(name, columns)
    if steps == list(range(len(steps))):
        history.epochs = np.arange(1, len(steps) + 1)  # Keras logs epoch n at step n - 1
    else:
        history.epochs, history.x_label = np.array(steps), "step"
    if "batch" in skipped:
        history.warnings.append("per-batch scalars (batch_*) left out: the curves are per epoch")
    return history


def _metric_of(tag: str, role: str | None) -> str | None:
    parts = [p for p in tag.split("/") if p]
    tag_role = _role_of(parts)
    words = [p for p in parts if p.lower() not in _TRAIN_WORDS | _VAL_WORDS]
    metric = "_".join(words) if words else tag
    if metric.startswith(("batch_", "evaluation_")):
        return None  # per-batch figures, and Keras' validation-at-iteration duplicates
    metric = _canonical(metric.removeprefix("epoch_"))
    if (tag_role or role) == "val" and not metric.startswith("val_"):
        metric = _canonical("val_" + metric)
    return metric


def _read_scalars(path: Path) -> dict[str, dict[int, float]]:
    try:
        from google.protobuf.message import DecodeError
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:
        raise HistoryError(
            "reading TensorBoard event files needs the tensorboard package (pip install tensorboard)"
        ) from None

    size = path.stat().st_size
    if size > MAX_HISTORY_BYTES:
        raise HistoryError(f"{path.name} is {size / 2**20:.1f} MB, over the history size limit")
    plugin: dict[str, str] = {}  # the metadata comes with a tag's first value only
    scalars: dict[str, dict[int, float]] = {}
    events = 0
    try:
        for event in EventFileLoader(str(path)).Load():
            events += 1
            for value in event.summary.value:
                if value.HasField("metadata") and value.tag not in plugin:
                    plugin[value.tag] = value.metadata.plugin_data.plugin_name
                if plugin.get(value.tag) != "scalars" or not value.HasField("tensor"):
                    continue
                array = tensor_util.make_ndarray(value.tensor)
                if array.size != 1 or array.dtype.kind not in "fiu":
                    continue
                scalars.setdefault(value.tag, {})[int(event.step)] = float(array.reshape(-1)[0])
    except (DecodeError, ValueError, TypeError) as err:
        raise HistoryError(f"{path.name} is not a readable TensorBoard event file ({err})") from None
    if events == 0:
        raise HistoryError(f"{path.name} is not a TensorBoard event file (no records could be read)")
    return scalars


def combine(histories: list[History], name: str) -> History:
    """Return one history holding the curves of several that share their epochs.

    For a TensorBoard run uploaded as its ``train`` and ``validation`` event files.
    """
    if len({h.x_label for h in histories}) != 1:
        raise HistoryError("cannot combine per-epoch and per-step histories")
    epochs = np.array(sorted(set().union(*(h.epochs.tolist() for h in histories))))
    metrics: dict[str, np.ndarray] = {}
    warnings: list[str] = []
    for history in histories:
        where = np.searchsorted(epochs, history.epochs)
        for key, values in history.metrics.items():
            if key in metrics:
                warnings.append(f"{key} appears in more than one file; the first was kept")
                continue
            column = np.full(len(epochs), np.nan)
            column[where] = values
            metrics[key] = column
        warnings.extend(history.warnings)
    return History(name, epochs, metrics, warnings, histories[0].x_label)


def pair_event_uploads(histories: list[tuple[str, History]], suffix: str = "") -> list[History]:
    """Return uploaded event-file histories with each run's train and validation halves joined.

    Files of one run (same host and process in the name) whose metrics do not overlap are
    joined, in name (time) order; the rest stay runs of their own. A joined run is named
    "TensorBoard HOST.PID" and ``suffix``; a file left alone keeps its history's name.
    """
    groups: dict[str, list[History]] = {}
    for filename, history in sorted(histories, key=lambda item: item[0]):
        match = re.search(r"tfevents\.\d+\.(.+?)(?:\.\d+\.v2)?$", filename)
        # Renamed files (train.tfevents, validation.tfevents) may all belong together.
        groups.setdefault(match.group(1) if match else "run", []).append(history)
    out: list[History] = []
    for key, members in groups.items():
        buckets: list[list[History]] = []
        for history in members:
            for bucket in buckets:
                taken = set().union(*(h.metrics for h in bucket))
                if not taken & set(history.metrics) and bucket[0].x_label == history.x_label:
                    bucket.append(history)
                    break
            else:
                buckets.append([history])
        joined = [b for b in buckets if len(b) > 1]
        for bucket in buckets:
            if len(bucket) == 1:
                out.append(bucket[0])
                continue
            number = f" #{joined.index(bucket) + 1}" if len(joined) > 1 else ""
            out.append(combine(bucket, f"TensorBoard {key}{number}{suffix}"))
    return out


def modified(path) -> float:
    """Return when a history file, or the newest event file in a log folder, last changed."""
    path = Path(path)
    if not path.is_dir():
        return path.stat().st_mtime
    try:
        return max((p.stat().st_mtime for p in _event_files(path)), default=path.stat().st_mtime)
    except HistoryError:
        return path.stat().st_mtime


def load_history(path, name: str | None = None) -> History:
    """Read a history from disk: a file (see :func:`parse_history`) or a TensorBoard log folder."""
    path = Path(path)
    if path.is_dir():
        return _load_event_folder(path, name or path.name)
    size = path.stat().st_size
    if size > MAX_HISTORY_BYTES:
        raise HistoryError(f"{path.name} is {size / 2**20:.1f} MB, over the history size limit")
    if is_event_file(path.name):
        # An event file in logs/train or logs/validation says by its folder which run it is.
        return _history_from_events(name or path.stem, [(path, _role_of(path.parent.parts[-1:]))])
    return parse_history(path.read_bytes(), name or path.stem, path.name)
