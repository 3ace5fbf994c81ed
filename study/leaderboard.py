"""Which map to trust: every method at the stage-end blocks of one model, scored on labelled
photos with masks of the animal, ranked per metric.

    python -m study.leaderboard --model resnet50 --data ../shared/data/oxford_pets \
        --limit 40 --out models/shipped/leaderboard_resnet50.json

Per photo (the labelled class is explained), every method of ``explain.methods`` at every
stage-end block (the last block is one; saliency, SmoothGrad and Integrated Gradients have no
layer) gives one map, scored by:

- deletion / insertion areas (Petsiuk et al. 2018; lower / higher is better),
- ROAD, LeRF minus MoRF probability (Rong et al. 2022; higher is better),
- Average Drop / Increase in Confidence (Chattopadhay et al. 2018; lower / higher),
- pointing game and energy share on the animal (higher; chance is the animal's share),
- randomisation similarity: rank correlation and SSIM of the map with the same method's map
  on the model with every weight re-initialised (Adebayo et al. 2018; the mean of their
  absolute values over the photos, nearer 0 is better),
- seconds to make the map on this machine, the median over the photos (one-pass CAMs share
  one pass: its time).

Photos go in a seeded order that alternates the classes, so any prefix is balanced. Each
finished photo is appended to ``OUT.photos.jsonl``; a rerun with the same settings skips the
photos (and method x layer cells) already there, so a stopped run resumes, and the board is
written from whatever is finished (``--aggregate-only`` writes it without computing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

#: Metric -> (label, which way is better). The board ranks every one of them.
METRICS: dict[str, tuple[str, str]] = {
    "deletion": ("deletion area", "lower"),
    "insertion": ("insertion area", "higher"),
    "road": ("ROAD (LeRF - MoRF)", "higher"),
    "average_drop": ("Average Drop %", "lower"),
    "increase": ("Increase in Confidence %", "higher"),
    "pointing": ("pointing game", "higher"),
    "energy": ("energy on the animal", "higher"),
    "random_spearman": ("randomisation |rank correlation|", "lower"),
    "random_ssim": ("randomisation |SSIM|", "lower"),
    "seconds": ("seconds per photo", "lower"),
}
#: Metrics averaged over the photos as absolute values (closest to 0 is best).
UNSIGNED = ("random_spearman", "random_ssim")
#: Figures kept per cell without a rank (context for the ranked ones).
EXTRA = ("road_morf", "road_lerf", "chance")


def photo_order(labels: np.ndarray, seed: int = 0) -> list[int]:
    """Return photo indices in a seeded random order that takes the classes in turn (cat,
    dog, cat, ...), so any prefix is balanced between them."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    rank = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = shuffled[labels[shuffled] == label]
        rank[members] = np.arange(len(members))
    return np.lexsort((labels, rank)).tolist()


def randomised(explainer, seed: int = 0):
    """Return an explainer of a copy of the model with every weighted layer re-initialised
    (the last step of the cascading randomisation test); the original is not touched."""
    from explain.sanity import _copy_of, _layer_at, cascade_groups, reinitialise

    clone, copy = _copy_of(explainer)
    rng = np.random.default_rng(seed)
    for _name, paths in cascade_groups(copy):
        for path in paths:
            reinitialise(_layer_at(clone, path), rng)
    return copy


def make_maps(
    explainer,
    x: np.ndarray,
    target: int,
    methods: Sequence[str],
    layers: Sequence[str],
    slow_channels: int = 64,
) -> tuple[dict[tuple[str, str | None], np.ndarray], dict[tuple[str, str | None], float]]:
    """Return the maps of one model input ``x`` (1, H, W, C) for class ``target``, keyed by
    (method, layer or None for layerless methods), and the seconds each took."""
    from explain import attributions
    from explain.cams import normalize
    from explain.methods import METHODS, ONE_PASS, SLOW_CAM
    from explain.overlay import upsample

    maps: dict[tuple[str, str | None], np.ndarray] = {}
    seconds: dict[tuple[str, str | None], float] = {}
    one_pass = tuple(m for m in methods if METHODS[m].kind == ONE_PASS)
    cam_methods = tuple(dict.fromkeys((*one_pass, "gradcam")))
    start = time.perf_counter()
    result = explainer.explain(x, list(layers), [target], cam_methods)
    shared = time.perf_counter() - start
    for method in one_pass:
        for layer in layers:
            maps[method, layer] = result.cams[method][layer][0]
            seconds[method, layer] = shared
    size = explainer.input_shape[:2]
    for method in methods:
        kind = METHODS[method].kind
        if kind == ONE_PASS:
            continue
        if kind == SLOW_CAM:
            from explain.ablation_cam import ablation_cam
            from explain.score_cam import score_cam

            for layer in layers:
                start = time.perf_counter()
                # The same compiled pass as above (keep is an argument, not part of the trace).
                kept = explainer.explain(x, list(layers), [target], cam_methods, keep=layer)
                acts = kept.kept_activations[0]
                if method == "scorecam":
                    cam = score_cam(explainer, x[0], acts, target, max_channels=slow_channels)
                else:
                    cam = ablation_cam(explainer, x[0], layer, acts, target, max_channels=slow_channels)
                maps[method, layer] = cam
                seconds[method, layer] = time.perf_counter() - start
        elif method == "guided-gradcam":
            # Guided backprop does not depend on the layer: one pass, times each layer's Grad-CAM.
            start = time.perf_counter()
            guided = attributions.magnitude(attributions.guided_backprop(explainer, x, [target]))[0]
            took = time.perf_counter() - start + shared
            for layer in layers:
                maps[method, layer] = guided * upsample(
                    normalize(result.cams["gradcam"][layer][0]).values, size
                )
                seconds[method, layer] = took
        else:
            from explain.methods import method_map

            start = time.perf_counter()
            maps[method, None] = method_map(explainer, method, x, None, [target])[0]
            seconds[method, None] = time.perf_counter() - start
    return maps, seconds


def measure_photo(
    explainer,
    random_explainer,
    rgb: np.ndarray,
    mask: np.ndarray | None,
    label: int,
    methods: Sequence[str],
    layers: Sequence[str],
    settings: dict,
) -> dict:
    """Return one photo's record: prediction and, per (method, layer), every figure."""
    import cv2

    from explain.localisation import localisation
    from explain.map_scores import score_maps
    from explain.sanity import map_similarity

    x = explainer.prepare([rgb])
    size = explainer.input_shape[:2]
    probabilities = explainer.predict(x)[0]
    clock = time.perf_counter()
    maps, seconds = make_maps(explainer, x, label, methods, layers, settings["slow_channels"])
    timing = {"maps": time.perf_counter() - clock}
    clock = time.perf_counter()
    scores = score_maps(
        explainer,
        x[0],
        label,
        {f"{m}|{layer}": cam for (m, layer), cam in maps.items()},
        steps=settings["steps"],
        road_fractions=settings["road_fractions"],
    )
    if mask is not None:
        mask = cv2.resize(mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0
    timing["scores"] = time.perf_counter() - clock
    random_maps = {}
    if random_explainer is not None:
        clock = time.perf_counter()
        again = [m for m in methods if m in settings["random_methods"]]
        random_maps, _ = make_maps(random_explainer, x, label, again, layers, settings["slow_channels"])
        timing["randomised"] = time.perf_counter() - clock
    cells = []
    for (method, layer), cam in maps.items():
        figures = scores[f"{method}|{layer}"]
        cell = {
            "method": method,
            "layer": layer,
            "seconds": seconds[method, layer],
            **{k: figures[k] for k in ("deletion", "insertion", "road", "road_morf", "road_lerf")},
            "average_drop": 100.0 * figures["drop"],
            "increase": 100.0 * figures["increase"],
        }
        if mask is not None:
            place = localisation(cam, mask)
            cell.update(pointing=float(place["pointing"]), energy=place["energy"], chance=place["chance"])
        if (method, layer) in random_maps:
            similar = map_similarity(cam, random_maps[method, layer], size)
            cell.update(random_spearman=similar.spearman, random_ssim=similar.ssim)
        cells.append(cell)
    return {
        "label": int(label),
        "predicted": int(probabilities.argmax()),
        "probability": float(probabilities[label]),
        "cells": cells,
        "timing": timing,
    }


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _median(values: list[float]) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def rank(values: Sequence[float], better: str) -> list[int | None]:
    """Return competition ranks (1 = best, ties share the best rank; NaN gets None)."""
    values = np.asarray(values, dtype=np.float64)
    signed = values if better == "lower" else -values
    out: list[int | None] = []
    for v in signed:
        out.append(None if not np.isfinite(v) else int(np.sum(signed[np.isfinite(signed)] < v)) + 1)
    return out


def aggregate(records: list[dict], meta: dict) -> dict:
    """Return the board: one row per (method, layer) with the mean (and sd) of every figure
    over the photos, its rank per metric among all rows and among the rows at its layer
    (layerless methods compete at every layer)."""
    from explain.methods import METHODS

    cells: dict[tuple[str, str | None], dict[str, list[float]]] = {}
    for record in records:
        for cell in record["cells"]:
            key = (cell["method"], cell["layer"])
            bucket = cells.setdefault(key, {})
            for name in (*METRICS, *EXTRA):
                if name in cell:
                    value = cell[name]
                    if name in UNSIGNED and value is not None:
                        # A map inverted by the randomisation depends on the weights as much as
                        # an unchanged one: the mean of |similarity|, as Adebayo et al.'s
                        # "absolute" variant (a mean of signed values could cancel to 0).
                        value = abs(value)
                    bucket.setdefault(name, []).append(value)
    order = {m: i for i, m in enumerate(METHODS)}
    layers = meta["layers"]
    keys = sorted(cells, key=lambda k: (layers.index(k[1]) if k[1] in layers else -1, order.get(k[0], 99)))
    rows = []
    for method, layer in keys:
        bucket = cells[method, layer]
        row = {
            "method": method,
            "label": METHODS[method].label if method in METHODS else method,
            "layer": layer,
            "n": max((len(v) for v in bucket.values()), default=0),
        }
        for name in (*METRICS, *EXTRA):
            if name in bucket:
                # Seconds: the median, as the first photo also pays for tracing the passes.
                row[name] = _median(bucket[name]) if name == "seconds" else _mean(bucket[name])
                if name in METRICS:
                    finite = [v for v in bucket[name] if v is not None and np.isfinite(v)]
                    row[name + "_sd"] = float(np.std(finite)) if finite else float("nan")
        rows.append(row)
    for row in rows:
        row["rank"], row["rank_at_layer"] = {}, {}
    for name, (_label, better) in METRICS.items():
        # Randomisation: the rows hold the mean |similarity| (see above), ranked as it is.
        def value(row: dict, name: str = name) -> float:
            return row.get(name, np.nan)

        for row, r in zip(rows, rank([value(row) for row in rows], better)):
            row["rank"][name] = r
        for layer in layers:
            group = [row for row in rows if row["layer"] in (layer, None)]
            for row, r in zip(group, rank([value(row) for row in group], better)):
                row["rank_at_layer"].setdefault(layer or "", {})[name] = r
    labels = [r["label"] for r in records]
    return {
        **meta,
        "photos": len(records),
        "per_class": {
            name: int(sum(1 for label in labels if label == i)) for i, name in enumerate(meta["class_names"])
        },
        "accuracy": float(np.mean([r["predicted"] == r["label"] for r in records])) if records else None,
        "metrics": {name: {"label": label, "better": better} for name, (label, better) in METRICS.items()},
        "rows": rows,
    }


def standing(board: dict, method: str, layer: str | None) -> dict | None:
    """Return how ``method`` at ``layer`` ranked on a board: {"row": the row, "at_layer":
    {metric: (rank, of)}, "overall": {metric: (rank, of)}}; None when the board lacks it.

    A layerless method (saliency, ...) is found at any layer."""
    rows = board.get("rows", [])
    row = next((r for r in rows if r["method"] == method and r["layer"] in (layer, None)), None)
    if row is None:
        return None
    at_layer_rows = [r for r in rows if r["layer"] in (layer, None)]
    at_layer = {}
    for name in METRICS:
        r = row.get("rank_at_layer", {}).get(layer or "", {}).get(name)
        ranked = sum(
            1 for other in at_layer_rows if other.get("rank_at_layer", {}).get(layer or "", {}).get(name)
        )
        if r is not None:
            at_layer[name] = (r, ranked)
    overall = {}
    for name in METRICS:
        r = row.get("rank", {}).get(name)
        if r is not None:
            overall[name] = (r, sum(1 for other in rows if other.get("rank", {}).get(name)))
    return {"row": row, "at_layer": at_layer, "overall": overall}


def ordinal(n: int) -> str:
    """Return 1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


#: Below this many photos a board's ranks are called a hint, not a verdict.
FEW_PHOTOS = 20
#: What Inspect says beside a map, in this order: localisation first, then faithfulness.
SHOWN = ("pointing", "energy", "deletion", "insertion", "road", "average_drop", "random_spearman")


def standing_sentence(
    board: dict, method: str, layer: str | None, metrics: Sequence[str] = SHOWN
) -> str | None:
    """Return e.g. "On 40 oxford_pets photos, among the 13 maps at this layer: 2nd for
    pointing game, 5th for deletion area, ..."; None when the board lacks this method here."""
    found = standing(board, method, layer)
    if found is None:
        return None
    parts = []
    for name in metrics:
        if name in found["at_layer"]:
            r, of = found["at_layer"][name]
            parts.append(f"{ordinal(r)} of {of} for {METRICS[name][0]}")
    if not parts:
        return None
    where = (
        "at this layer" if found["row"]["layer"] is not None else "at this layer (this method has no layer)"
    )
    n = board.get("photos", 0)
    caveat = f" With {n} photos this is a hint, not a verdict." if n < FEW_PHOTOS else ""
    return f"On {n} {board.get('data', '')} photos, {where}: " + ", ".join(parts) + "." + caveat


def read_records(path: Path, settings: dict) -> list[dict]:
    """Return the photo records of ``path`` made with ``settings`` (others are ignored)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a stopped run
        if record.get("settings") == settings:
            records.append(record)
    return records


def run(
    explainer,
    files,
    out: Path,
    model_name: str,
    data: str,
    limit: int | None,
    methods: Sequence[str],
    layers: Sequence[str],
    settings: dict,
    seed: int = 0,
    compute: bool = True,
    log=print,
) -> dict:
    """Compute (or resume) the per-photo records of ``files`` and return the board."""
    from explain.images import decode_image
    from explain.localisation import animal_mask

    work = out.with_name(out.name + ".photos.jsonl")
    stored = read_records(work, settings)
    done = {(r["photo"]) for r in stored}
    order = photo_order(files.labels, seed)
    if limit is not None:
        order = order[:limit]
    wanted = [Path(files.paths[i]).name for i in order]
    random_explainer = randomised(explainer, seed) if compute and settings["randomisation"] else None
    if compute:
        for count, i in enumerate(order, 1):
            name = Path(files.paths[i]).name
            if name in done:
                continue
            start = time.perf_counter()
            rgb = decode_image(Path(files.paths[i]).read_bytes())
            mask = None
            if files.masks is not None and files.masks[i]:
                import cv2

                trimap = cv2.imread(files.masks[i], cv2.IMREAD_UNCHANGED)
                if trimap is not None:
                    mask = cv2.resize(
                        animal_mask(trimap).astype(np.uint8),
                        (rgb.shape[1], rgb.shape[0]),
                        interpolation=cv2.INTER_NEAREST,
                    )
            label = int(files.labels[i])
            record = measure_photo(explainer, random_explainer, rgb, mask, label, methods, layers, settings)
            record.update(photo=name, settings=settings)
            with open(work, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            stored.append(record)
            parts = ", ".join(f"{k} {v:.0f} s" for k, v in record["timing"].items())
            log(
                f"{model_name}: photo {count}/{len(order)} {name} "
                f"in {time.perf_counter() - start:.0f} s ({parts})"
            )
    by_name = {r["photo"]: r for r in stored}
    records = [by_name[n] for n in wanted if n in by_name]
    meta = {
        "model": model_name,
        "data": data,
        "class_names": list(explainer.class_names),
        "input_size": list(explainer.input_shape[:2]),
        "layers": list(layers),
        "methods": list(methods),
        "settings": settings,
        "seed": seed,
        "photo_names": [r["photo"] for r in records],
    }
    return aggregate(records, meta)


def board_layers(explainer, spec: Sequence[str] | None = None) -> list[str]:
    """Return the stage-end blocks and the last block (or the layers named in ``spec``)."""
    catalog = explainer.layers
    if spec:
        return catalog.resolve(list(spec))
    return catalog.resolve(["stages", "last"])


def parser() -> argparse.ArgumentParser:
    from explain.methods import METHODS

    p = argparse.ArgumentParser(
        prog="python -m study.leaderboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="a shipped model's name or a .keras path")
    p.add_argument("--data", required=True, help="labelled photos (a labels.csv with trimaps for masks)")
    p.add_argument("--limit", type=int, default=None, help="photos (classes alternate; default all)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--layers", nargs="+", default=None, help="default: stage-end blocks and the last")
    p.add_argument("--steps", type=int, default=4, help="deletion/insertion points - 1 (default 4)")
    p.add_argument("--road", type=float, nargs="+", default=[0.25, 0.75], help="ROAD removal fractions")
    p.add_argument("--slow-channels", type=int, default=64, help="channels for Score-CAM/Ablation-CAM")
    p.add_argument("--no-randomisation", action="store_true", help="skip the randomised-model maps")
    p.add_argument(
        "--random-methods",
        nargs="+",
        default=None,
        help="methods whose maps are made again on the randomised model (default: all)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--aggregate-only", action="store_true", help="write the board from finished photos")
    p.add_argument("--out", required=True, help="the board (JSON); OUT.photos.jsonl holds each photo")
    return p


def layers_in(records: list[dict]) -> list[str]:
    """Return the layers the records' cells were made at, in the order first seen."""
    return list(dict.fromkeys(c["layer"] for r in records for c in r["cells"] if c["layer"] is not None))


def plain(value):
    """Return ``value`` with NaN and infinities as None (strict JSON)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from types import SimpleNamespace

    from explain.explainer import Explainer
    from models.data import list_labelled
    from models.registry import completed_card, find, load_model

    settings = {
        "steps": args.steps,
        "road_fractions": list(args.road),
        "slow_channels": args.slow_channels,
        "randomisation": not args.no_randomisation,
        "random_methods": list(args.random_methods or args.methods),
        "seed": args.seed,
    }
    out = Path(args.out)
    try:
        entry = find(args.model)
        if args.aggregate_only:
            # No model to load: the card has the classes and the size, the records the layers.
            prep = entry.card.preprocessing
            explainer = SimpleNamespace(
                class_names=list(entry.card.class_names), input_shape=(*prep.input_size, 3)
            )
            layers = args.layers or layers_in(
                read_records(out.with_name(out.name + ".photos.jsonl"), settings)
            )
        else:
            model = load_model(entry.path)
            explainer = Explainer.from_card(model, completed_card(entry, model))
            layers = board_layers(explainer, args.layers)
        files = list_labelled(args.data, explainer.class_names)
    except (FileNotFoundError, KeyError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    board = run(
        explainer,
        files,
        out,
        entry.name,
        Path(args.data).name,
        args.limit,
        args.methods,
        layers,
        settings,
        args.seed,
        compute=not args.aggregate_only,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    out.write_text(json.dumps(plain(board), indent=1) + "\n")
    print(f"wrote {out}: {board['photos']} photos, {len(board['rows'])} method x layer cells")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
