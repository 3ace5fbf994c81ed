"""One batch of photos through every model: the rows of the study table, the penultimate
features and the stage-end responses. The local engine and every Ray actor run this same
function, so both give the same table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explain.explainer import Explainer
from explain.faithfulness import faithfulness
from explain.images import ImageError
from explain.localisation import at_size, localisation
from explain.sanity import spearman
from study.activations import ActivationProbe
from study.photos import PhotoItem, decode_item

#: Maps are compared with the last block's on this common grid (rank correlation).
AGREEMENT_GRID = (32, 32)
#: Spread is measured on the map upsampled to the photo's shape with this longest side.
SPREAD_SIDE = 160


def spread_size(shape: tuple[int, int]) -> tuple[int, int]:
    """Return the photo's (height, width) scaled so the longest side is ``SPREAD_SIDE``."""
    height, width = shape
    factor = SPREAD_SIDE / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


@dataclass(frozen=True)
class StudyOptions:
    """What to compute per photo, besides the predicted-class maps at every block."""

    methods: tuple[str, ...] = ("gradcam",)
    labelled_class: bool = False  # also the maps of the labelled class, where the answer is wrong
    deletion: bool = False  # deletion and insertion areas of every map (many forward passes)
    deletion_steps: int = 10
    features: bool = True  # penultimate features and stage-end responses (embedding, atlas)
    atlas_photos: int | None = None  # the atlas's forward pass on the first N photos only


@dataclass
class StudyModel:
    """A loaded model ready for the study: its explainer, its blocks, its probe."""

    name: str
    explainer: Explainer
    probe: ActivationProbe

    @property
    def blocks(self) -> list[str]:
        return [info.path for info in (self.explainer.layers.blocks or [self.explainer.layers.last])]


def load_study_models(paths: dict[str, str]) -> list[StudyModel]:
    """Return the models (name -> model file) loaded in safe mode, each with its explainer."""
    from models.registry import completed_card, entry_for, load_model

    out = []
    for name, path in paths.items():
        entry = entry_for(Path(path))
        model = load_model(entry.path)
        explainer = Explainer.from_card(model, completed_card(entry, model))
        out.append(StudyModel(name, explainer, ActivationProbe(explainer)))
    return out


@dataclass
class BatchOutput:
    """What one batch gives: table rows (columns of lists) and per-model arrays."""

    photos: list[str]
    rows: dict[str, list] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (n, D) float16
    maxima: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # model -> layer -> (n, C)
    where: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    grids: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # layer (h, w)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (photo, why)
    atlas_photos: list[str] = field(default_factory=list)  # the photos ``maxima`` rows are of

    def add(self, row: dict) -> None:
        for key, value in row.items():
            self.rows.setdefault(key, []).append(value)


def process_batch(models: list[StudyModel], items: list[PhotoItem], options: StudyOptions) -> BatchOutput:
    """Return the study rows of ``items`` for every model, block, method and target."""
    decoded, kept = [], []
    out = BatchOutput(photos=[])
    for item in items:
        try:
            decoded.append(decode_item(item))
            kept.append(item)
        except ImageError as err:
            out.skipped.append((item.photo, str(err)))
    out.photos = [item.photo for item in kept]
    if not kept:
        return out
    labels = np.array([item.label for item in kept], dtype=np.int32)
    for model in models:
        _one_model(model, kept, decoded, labels, options, out)
    return out


def _one_model(model, items, decoded, labels, options, out: BatchOutput) -> None:
    explainer = model.explainer
    batch = explainer.prepare([rgb for rgb, _ in decoded])
    blocks = model.blocks
    keep = blocks[-1] if options.features and model.probe.pooled else None
    result = explainer.explain(batch, blocks, None, options.methods, keep=keep)
    probabilities = result.probabilities
    predicted = result.predicted
    runs = [("predicted", result, np.arange(len(items)))]
    if options.labelled_class:
        wrong = np.flatnonzero(predicted != labels)
        if len(wrong):
            runs.append(
                ("labelled", explainer.explain(batch[wrong], blocks, labels[wrong], options.methods), wrong)
            )
    names = explainer.class_names
    n_blocks = len(blocks)
    infos = [explainer.layers[path] for path in blocks]
    for target_kind, res, index in runs:
        for j, i in enumerate(index):
            rgb, mask = decoded[i]
            size = rgb.shape[:2]
            photo_part = {
                "photo": items[i].photo,
                "label": int(labels[i]),
                "label_name": names[labels[i]] if labels[i] < len(names) else str(labels[i]),
                "model": model.name,
                "predicted": int(predicted[i]),
                "predicted_name": names[predicted[i]],
                "probability": float(probabilities[i, predicted[i]]),
                "p_label": float(probabilities[i, labels[i]])
                if labels[i] < probabilities.shape[1]
                else np.nan,
                "correct": bool(predicted[i] == labels[i]),
                "target": target_kind,
                "target_class": int(res.targets[j]),
                "height": int(size[0]),
                "width": int(size[1]),
            }
            for method in options.methods:
                last = at_size(res.cam(blocks[-1], j, method), AGREEMENT_GRID)
                for b, (path, info) in enumerate(zip(blocks, infos)):
                    cam = res.cam(path, j, method)
                    figures = localisation(cam, mask, size, spread_size(size))
                    status = (
                        "ok"
                        if np.all(np.isfinite(cam)) and float(np.max(cam)) > 1e-12
                        else ("zero" if np.all(np.isfinite(cam)) else "not finite")
                    )
                    here = at_size(cam, AGREEMENT_GRID)
                    agreement = spearman(here, last) if here is not None and last is not None else np.nan
                    row = {
                        **photo_part,
                        "method": method,
                        "layer": path,
                        "block_index": b,
                        "n_blocks": n_blocks,
                        "stage": info.stage,
                        "depth": float(info.depth),
                        "rel_depth": b / (n_blocks - 1) if n_blocks > 1 else 1.0,
                        "status": status,
                        "peak_y": figures["peak_y"],
                        "peak_x": figures["peak_x"],
                        "entropy": figures["entropy"],
                        "above_half": figures["above_half"],
                        "agreement": float(agreement),
                        "pointing": float(figures["pointing"]) if mask is not None else np.nan,
                        "energy": figures.get("energy", np.nan),
                        "chance": figures.get("chance", np.nan),
                    }
                    if options.deletion:
                        scaled = at_size(cam, batch.shape[1:3])
                        if scaled is None:
                            row["deletion_auc"] = row["insertion_auc"] = np.nan
                        else:
                            curves = faithfulness(
                                explainer, batch[i], scaled, int(res.targets[j]), steps=options.deletion_steps
                            )
                            row["deletion_auc"] = curves.deletion_auc
                            row["insertion_auc"] = curves.insertion_auc
                    out.add(row)
    if not options.features:
        return
    if keep is not None:
        # The head's input is the mean of the last block over its grid: no second pass.
        features = result.kept_activations.mean(axis=(1, 2))
    atlas = np.array([options.atlas_photos is None or item.position < options.atlas_photos for item in items])
    if keep is None or atlas.any():
        chosen = np.arange(len(items)) if keep is None else np.flatnonzero(atlas)
        responses = model.probe(batch[chosen])
        if keep is None:
            features = responses.features
        # float16 holds the responses compactly; clip so a huge activation stays finite.
        out.maxima[model.name] = {
            p: np.clip(m[atlas[chosen]], -65000, 65000).astype(np.float16)
            for p, m in responses.maxima.items()
        }
        out.where[model.name] = {p: w[atlas[chosen]].astype(np.uint16) for p, w in responses.where.items()}
        out.atlas_photos = [items[i].photo for i in np.flatnonzero(atlas)]
    out.features[model.name] = features.astype(np.float16)
    out.grids[model.name] = {p: tuple(model.probe.shapes[p][:2]) for p in model.probe.layers}
