"""A study's files: part files written as batches finish (what makes a run resumable), then
compacted into one table, the embedding, the channel atlas and the summary.

    OUT/parts/part-00012.parquet   rows of one batch (written last: its presence marks the
                                   batch done)
    OUT/parts/part-00012.npz       that batch's penultimate features and stage-end responses
    OUT/study.parquet              every row, long format: photo x model x block x method x target
    OUT/embedding.parquet          per photo and model: 2-D PCA of the penultimate features
    OUT/features.npz               per model: the features' first PCA components (float16)
    OUT/atlas.parquet              per stage end: strongest channels and their top photo patches
    OUT/summary.json               by block, stage and depth; right/wrong, cat/dog; intervals
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from study.batch import BatchOutput

#: Columns stored as dictionaries (few distinct values, many rows).
CATEGORIES = (
    "photo",
    "label_name",
    "model",
    "predicted_name",
    "target",
    "method",
    "layer",
    "stage",
    "status",
)
#: Columns stored in 32-bit floats (figures, not identities).
FLOATS32 = (
    "probability",
    "p_label",
    "depth",
    "rel_depth",
    "peak_y",
    "peak_x",
    "entropy",
    "above_half",
    "agreement",
    "pointing",
    "energy",
    "chance",
    "deletion_auc",
    "insertion_auc",
)
#: The order rows are stored in: the same whatever the batches or the engine were.
SORT = ["photo", "model", "method", "target", "block_index"]


def parts_dir(out: str | Path) -> Path:
    return Path(out) / "parts"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def frame_of(rows: dict[str, list]) -> pd.DataFrame:
    """Return the rows as a DataFrame with the study's column types."""
    frame = pd.DataFrame(rows)
    for column in FLOATS32:
        if column in frame:
            frame[column] = frame[column].astype(np.float32)
    return frame


def write_part(out: str | Path, number: int, batch: BatchOutput) -> None:
    """Write one finished batch: its arrays first, then its rows (which mark it done)."""
    folder = parts_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"part-{number:05d}"
    arrays: dict[str, np.ndarray] = {
        "photos": np.array(batch.photos, dtype=str),
        "skipped": np.array([p for p, _ in batch.skipped], dtype=str),
        "atlas_photos": np.array(batch.atlas_photos, dtype=str),
    }
    for model, features in batch.features.items():
        arrays[f"{model}|features"] = features
        for layer, grid in batch.grids[model].items():
            arrays[f"{model}|grid|{layer}"] = np.array(grid, dtype=np.int32)
        for layer, values in batch.maxima.get(model, {}).items():
            arrays[f"{model}|maxima|{layer}"] = values
            arrays[f"{model}|where|{layer}"] = batch.where[model][layer]

    def save(path: Path) -> None:
        with open(path, "wb") as handle:  # a handle: savez would append ".npz" to a name
            np.savez(handle, **arrays)

    _atomic(stem.with_suffix(".npz"), save)
    frame = frame_of(batch.rows) if batch.rows else pd.DataFrame({"photo": pd.Series([], dtype=str)})
    _atomic(stem.with_suffix(".parquet"), lambda p: frame.to_parquet(p, index=False))


def finished_parts(out: str | Path) -> list[Path]:
    """Return the part tables written so far, in order."""
    folder = parts_dir(out)
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def done_photos(out: str | Path) -> set[str]:
    """Return the photos already in the parts (skipped bad files included)."""
    done: set[str] = set()
    for part in finished_parts(out):
        with np.load(part.with_suffix(".npz"), allow_pickle=False) as arrays:
            done.update(arrays["photos"].tolist())
            done.update(arrays["skipped"].tolist())
    return done


def next_part_number(out: str | Path) -> int:
    parts = finished_parts(out)
    return int(parts[-1].stem.split("-")[1]) + 1 if parts else 0


def read_parts(out: str | Path) -> pd.DataFrame:
    """Return every row of the parts as one table in the study's order."""
    frames = [pd.read_parquet(p) for p in finished_parts(out)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(SORT, kind="stable").reset_index(drop=True)


def read_arrays(out: str | Path) -> dict[str, dict]:
    """Return per model: photos and features (N, D); atlas_photos and per layer maxima and
    where (M, C) for the photos the atlas pass saw; each sorted by photo."""
    per_model: dict[str, dict] = {}
    for part in finished_parts(out):
        with np.load(part.with_suffix(".npz"), allow_pickle=False) as arrays:
            photos = arrays["photos"].tolist()
            atlas_photos = arrays["atlas_photos"].tolist() if "atlas_photos" in arrays.files else photos
            models = sorted({key.split("|")[0] for key in arrays.files if "|" in key})
            for model in models:
                entry = per_model.setdefault(
                    model,
                    {"photos": [], "features": [], "atlas_photos": [], "maxima": {}, "where": {}, "grid": {}},
                )
                entry["photos"].extend(photos)
                entry["features"].append(arrays[f"{model}|features"])
                has_atlas = False
                for key in arrays.files:
                    name, _, rest = key.partition("|")
                    kind, _, layer = rest.partition("|")
                    if name != model:
                        continue
                    if kind == "grid":
                        entry["grid"][layer] = tuple(int(v) for v in arrays[key])
                    elif kind in ("maxima", "where"):
                        entry[kind].setdefault(layer, []).append(arrays[key])
                        has_atlas = True
                if has_atlas:
                    entry["atlas_photos"].extend(atlas_photos)
    for entry in per_model.values():
        order = np.argsort(np.array(entry["photos"], dtype=str), kind="stable")
        entry["photos"] = [entry["photos"][i] for i in order]
        entry["features"] = np.concatenate(entry["features"])[order]
        order = np.argsort(np.array(entry["atlas_photos"], dtype=str), kind="stable")
        entry["atlas_photos"] = [entry["atlas_photos"][i] for i in order]
        for kind in ("maxima", "where"):
            entry[kind] = {layer: np.concatenate(v)[order] for layer, v in entry[kind].items()}
    return per_model


def write_table(out: str | Path, table: pd.DataFrame) -> Path:
    """Write the compacted study table (dictionary-encoded, zstd) and return its path."""
    table = table.copy()
    for column in CATEGORIES:
        if column in table:
            table[column] = table[column].astype("category")
    path = Path(out) / "study.parquet"
    _atomic(path, lambda p: table.to_parquet(p, index=False, compression="zstd"))
    return path


def write_json(path: Path, data: dict, compact: bool = False) -> None:
    """Write ``data`` as JSON (NaN as NaN, as Python and pandas read it); ``compact``: one line."""
    text = json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=1)
    _atomic(path, lambda p: p.write_text(text + "\n"))
