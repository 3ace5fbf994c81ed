"""A study run from start to files: list the photos, skip those already done, send batches to
an engine, write each finished batch, then compact everything into the study's files."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.data import LabelledFiles, list_labelled
from study.atlas import channel_atlas
from study.batch import StudyOptions
from study.embedding import pca
from study.photos import PhotoItem, photo_ids, read_items
from study.progress import Progress
from study.store import (
    _atomic,
    done_photos,
    next_part_number,
    read_arrays,
    read_parts,
    write_json,
    write_part,
    write_table,
)
from study.summary import summarise

#: Components of the penultimate features kept per photo (float16).
FEATURE_COMPONENTS = 64
#: What must match for a run to resume another in the same folder.
RESUME_KEYS = ("models", "data", "methods", "labelled_class", "deletion", "masks", "features", "atlas_photos")


@dataclass
class StudyConfig:
    """A study's settings, as the command line takes them."""

    models: list[str]
    data: str
    out: str
    methods: list[str] = field(default_factory=lambda: ["gradcam"])
    masks: bool | None = None  # None: use the masks where the folder has them
    limit: int | None = None
    engine: str = "local"
    address: str | None = None
    workers: int | None = None
    threads: int | None = None
    labelled_class: bool = False
    deletion: bool = False
    features: bool = True
    atlas_photos: int | None = 300
    batch_size: int = 8

    def options(self) -> StudyOptions:
        return StudyOptions(
            methods=tuple(self.methods),
            labelled_class=self.labelled_class,
            deletion=self.deletion,
            features=self.features,
            atlas_photos=self.atlas_photos,
        )


class StudyError(ValueError):
    """A study that cannot run as asked; the message says why in one line."""


def model_files(names: list[str]) -> tuple[dict[str, str], list[str] | None]:
    """Return (name -> model file, class names of the first model's card) for registry names
    or file paths."""
    from models.registry import ModelLoadError, find

    paths: dict[str, str] = {}
    class_names = None
    for name in names:
        try:
            entry = find(name)
        except ModelLoadError as err:
            raise StudyError(str(err)) from None
        paths[entry.name] = str(entry.path.resolve())
        if class_names is None and entry.card.class_names:
            class_names = list(entry.card.class_names)
    return paths, class_names


def interleaved(labels: np.ndarray) -> np.ndarray:
    """Return photo indices taking the classes in turn (first cat, first dog, second cat ...),
    so any prefix (a --limit, a run stopped early) holds every class."""
    labels = np.asarray(labels)
    rank = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    return np.lexsort((labels, rank))


def list_photos(
    config: StudyConfig, class_names: list[str] | None
) -> tuple[LabelledFiles, list[str], list[int]]:
    """Return the labelled files, their ids, and the indices to study in order (limit applied)."""
    try:
        files = list_labelled(config.data, class_names)
    except (FileNotFoundError, ValueError) as err:
        raise StudyError(str(err)) from None
    if config.masks and files.masks is None:
        raise StudyError(f"{config.data} has no masks (a labels.csv with a trimap column); drop --masks")
    if config.masks is False and files.masks is not None:
        files = LabelledFiles(files.paths, files.labels, files.class_names, None)
    order = interleaved(files.labels).tolist()
    if config.limit is not None:
        order = order[: config.limit]
    return files, photo_ids(files, config.data), order


def settings_of(config: StudyConfig, paths: dict[str, str], files: LabelledFiles) -> dict:
    return {
        "models": list(paths),
        "model_files": paths,
        "data": str(Path(config.data)),
        "data_resolved": str(Path(config.data).resolve()),
        "methods": list(config.methods),
        "labelled_class": config.labelled_class,
        "deletion": config.deletion,
        "masks": files.masks is not None,
        "features": config.features,
        "atlas_photos": config.atlas_photos,
        "class_names": list(files.class_names),
        "photos_in_folder": len(files),
    }


def check_resume(out: Path, settings: dict) -> None:
    path = out / "run.json"
    if not path.is_file():
        return
    before = json.loads(path.read_text())
    differ = [k for k in RESUME_KEYS if k in before and before[k] != settings.get(k)]
    if differ:
        raise StudyError(
            f"{out} holds a study with other settings ({', '.join(differ)}); choose another --out "
            "or delete that folder"
        )


def batches(
    files: LabelledFiles, ids: list[str], todo: list[int], positions: list[int], size: int
) -> Iterator[list[PhotoItem]]:
    """Yield the photos to do, ``size`` at a time, read on demand."""
    for start in range(0, len(todo), size):
        yield read_items(files, ids, todo[start : start + size], positions[start : start + size])


def run_study(
    config: StudyConfig,
    report: Callable[[int, int, str], None] | None = None,
    compact_after: bool = True,
) -> dict:
    """Run (or resume) a study and return its summary; photos already done are skipped."""
    from study.engines import make_engine

    paths, class_names = model_files(config.models)
    files, ids, order = list_photos(config, class_names)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_of(config, paths, files)
    check_resume(out, settings)
    write_json(out / "run.json", settings)
    done = done_photos(out)
    todo = [(position, i) for position, i in enumerate(order) if ids[i] not in done]
    positions, todo = [p for p, _ in todo], [i for _, i in todo]
    if todo:
        engine = make_engine(
            config.engine, paths, config.options(), config.workers, config.address, config.threads
        )
        progress = Progress(len(todo), report, already=len(order) - len(todo))
        number = next_part_number(out)
        try:
            for output in engine.map(batches(files, ids, todo, positions, config.batch_size)):
                write_part(out, number, output)
                number += 1
                for photo, why in output.skipped:
                    print(f"\nskipped {photo}: {why}")
                progress.update(len(output.photos) + len(output.skipped))
        finally:
            progress.close()
            engine.close()
    return compact(out) if compact_after else {}


def compact(out: str | Path, atlas_channels: int = 8, atlas_patches: int = 6) -> dict:
    """Write the study's table, embedding, features, atlas and summary from its parts; return
    the summary."""
    out = Path(out)
    settings = json.loads((out / "run.json").read_text())
    table = read_parts(out)
    if table.empty:
        raise StudyError(f"{out} holds no finished photo yet")
    write_table(out, table)
    arrays = read_arrays(out)
    summary = summarise(table)
    summary["run"] = settings
    if arrays:
        summary["embedding"] = write_embedding(out, table, arrays)
        summary["atlas"] = write_atlas(out, table, arrays, atlas_channels, atlas_patches)
    write_json(out / "summary.json", summary, compact=True)
    return summary


def write_embedding(out: Path, table: pd.DataFrame, arrays: dict[str, dict]) -> dict:
    """Write embedding.parquet (2-D) and features.npz (PCA components, float16); return sizes."""
    answers = table[(table["target"] == "predicted") & (table["block_index"] == table["n_blocks"] - 1)]
    answers = answers.drop_duplicates(["model", "photo"]).set_index(["model", "photo"])
    frames, saved, info = [], {}, {}
    for model, entry in arrays.items():
        features = entry["features"].astype(np.float32)
        if not len(features) or features.shape[1] == 0:
            continue
        fitted = pca(features, FEATURE_COMPONENTS)
        coords = fitted.transform(features)
        photos = entry["photos"]
        two = np.zeros((len(photos), 2))
        two[:, : min(2, coords.shape[1])] = coords[:, :2]
        frame = pd.DataFrame({"model": model, "photo": photos, "x": two[:, 0], "y": two[:, 1]})
        known = answers.loc[model] if model in answers.index.get_level_values(0) else None
        if known is not None:
            columns = ["label_name", "predicted_name", "correct", "probability"]
            frame = frame.join(known[columns], on="photo")
        frames.append(frame)
        saved[f"{model}|photos"] = np.array(photos, dtype=str)
        saved[f"{model}|pca"] = coords.astype(np.float16)
        saved[f"{model}|explained"] = fitted.explained.astype(np.float32)
        info[model] = {
            "dimensions": int(features.shape[1]),
            "components": int(coords.shape[1]),
            "explained_2d": float(fitted.explained[:2].sum()),
            "explained_kept": float(fitted.explained.sum()),
        }
    if frames:
        embedding = pd.concat(frames, ignore_index=True)
        _atomic(out / "embedding.parquet", lambda p: embedding.to_parquet(p, index=False, compression="zstd"))

        def save(path: Path) -> None:
            with open(path, "wb") as handle:
                np.savez_compressed(handle, **saved)

        _atomic(out / "features.npz", save)
    return info


def write_atlas(out: Path, table: pd.DataFrame, arrays: dict[str, dict], channels: int, patches: int) -> dict:
    """Write atlas.parquet: per model and stage end, its strongest channels' top patches."""
    stage_of = table.drop_duplicates(["model", "layer"]).set_index(["model", "layer"])["stage"].astype(str)
    depth_of = table.drop_duplicates(["model", "layer"]).set_index(["model", "layer"])["rel_depth"]
    frames = []
    for model, entry in arrays.items():
        for layer, maxima in entry["maxima"].items():
            frame = channel_atlas(
                entry["atlas_photos"], maxima, entry["where"][layer], entry["grid"][layer], channels, patches
            )
            frame.insert(0, "layer", layer)
            frame.insert(0, "model", model)
            frame.insert(2, "stage", stage_of.get((model, layer), ""))
            frame.insert(3, "rel_depth", float(depth_of.get((model, layer), math.nan)))
            frame.insert(4, "channels_in_layer", maxima.shape[1])
            frames.append(frame)
    if not frames:
        return {}
    atlas = pd.concat(frames, ignore_index=True)
    _atomic(out / "atlas.parquet", lambda p: atlas.to_parquet(p, index=False, compression="zstd"))
    return {"channels_per_stage": channels, "patches_per_channel": patches}
