"""The study's summary: every metric by block, by stage and by relative depth, for all photos,
right and wrong answers and each labelled class, with bootstrap 95 % intervals over photos and
the chance level where masks exist."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Metrics summarised, with what they mean (the page shows these words).
METRICS: dict[str, str] = {
    "pointing": "pointing game: share of photos whose map peaks on the animal",
    "energy": "energy share: the map's mass on the animal",
    "entropy": "spread: the map's normalised entropy (1 = even)",
    "above_half": "spread: share of the photo at or above half the map's peak",
    "agreement": "agreement with the last block's map (Spearman)",
    "deletion_auc": "deletion area (lower: the map finds what the model uses)",
    "insertion_auc": "insertion area (higher: the map finds what the model uses)",
}
#: Metrics compared with the animal's share of the photo.
AGAINST_CHANCE = ("pointing", "energy")
DEPTH_BINS = 10


def bootstrap_interval(
    values: np.ndarray, rng: np.random.Generator, resamples: int = 1000, level: float = 0.95
) -> tuple[float, float, float]:
    """Return (mean, low, high): the mean and its percentile bootstrap interval (NaN dropped)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    if len(values) == 1:
        return float(values[0]), float(values[0]), float(values[0])
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high)


def depth_bin(rel_depth: pd.Series | np.ndarray) -> np.ndarray:
    """Return the centre of each relative depth's bin (ten bins over 0..1)."""
    index = np.minimum((np.asarray(rel_depth, np.float64) * DEPTH_BINS).astype(int), DEPTH_BINS - 1)
    return (index + 0.5) / DEPTH_BINS


def splits(photos: pd.DataFrame) -> dict[str, np.ndarray]:
    """Return boolean row selections of a per-photo table: all, right, wrong, and per class."""
    out = {"all": np.ones(len(photos), bool)}
    out["right"] = photos["correct"].to_numpy(bool)
    out["wrong"] = ~out["right"]
    for name in sorted(photos["label_name"].astype(str).unique()):
        out[name] = (photos["label_name"].astype(str) == name).to_numpy()
    return out


def summarise(table: pd.DataFrame, seed: int = 0, resamples: int = 1000) -> dict:
    """Return the summary of a study table (see the module docstring) as plain JSON data."""
    rng = np.random.default_rng(seed)
    table = table.copy()
    for column in ("photo", "model", "method", "target", "layer", "stage", "label_name"):
        if column in table:
            table[column] = table[column].astype(str)
    table["depth_bin"] = depth_bin(table["rel_depth"])
    metrics = [m for m in METRICS if m in table and table[m].notna().any()]
    has_masks = bool(table["chance"].notna().any()) if "chance" in table else False
    curves: list[dict] = []
    models: dict[str, dict] = {}
    for (model, method, target), part in table.groupby(["model", "method", "target"], sort=True):
        photos = part.drop_duplicates("photo").set_index("photo").sort_index()
        if target == "predicted" and method == part["method"].iloc[0]:
            models.setdefault(
                model,
                {
                    "photos": int(len(photos)),
                    "accuracy": float(photos["correct"].mean()),
                    "blocks": part.drop_duplicates("block_index")
                    .sort_values("block_index")[["layer", "stage", "depth", "rel_depth"]]
                    .to_dict("records"),
                    "chance": float(photos["chance"].mean()) if has_masks else None,
                },
            )
        chosen = splits(photos)
        for by, key in (("block", "block_index"), ("stage", "stage"), ("depth", "depth_bin")):
            for metric in metrics:
                # One value per photo and group: blocks of a stage or bin are averaged first.
                per_photo = part.groupby([key, "photo"], sort=True)[metric].mean().unstack(key)
                per_photo = per_photo.reindex(photos.index)
                chance = photos["chance"] if has_masks else None
                for group in per_photo.columns:
                    column = per_photo[group].to_numpy()
                    for split, selected in chosen.items():
                        if not selected.any():
                            continue
                        n = int(np.isfinite(column[selected]).sum())
                        if not n:
                            continue  # e.g. energy where every map of the group is zero
                        mean, low, high = bootstrap_interval(column[selected], rng, resamples)
                        record = {
                            "model": model,
                            "method": method,
                            "target": target,
                            "metric": metric,
                            "by": by,
                            "group": group.item() if hasattr(group, "item") else group,
                            "split": split,
                            "mean": round(mean, 5),
                            "low": round(low, 5),
                            "high": round(high, 5),
                            "n": n,
                        }
                        if has_masks and metric in AGAINST_CHANCE:
                            record["chance"] = round(float(np.nanmean(chance.to_numpy()[selected])), 5)
                        curves.append(record)
    stages = {}
    for model, part in table.groupby("model"):
        order = part.drop_duplicates("stage").sort_values("block_index")
        stages[model] = order["stage"].tolist()
    return {
        "photos": int(table["photo"].nunique()),
        "has_masks": has_masks,
        "metrics": {m: METRICS[m] for m in metrics},
        "models": models,
        "stages": stages,
        "resamples": resamples,
        "seed": seed,
        "curves": curves,
    }
