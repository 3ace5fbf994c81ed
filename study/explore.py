"""Reading a finished study: its curves as a table, the photos best and worst localised at a
block, where a photo and its mask are on this machine, crops for the channel atlas."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from explain.images import decode_image

ROOT = Path(__file__).resolve().parents[1]
#: The studies shipped with the checkout.
RESULTS_DIR = ROOT / "study" / "results"
#: Studies started from the dashboard.
USER_STUDIES_DIR = ROOT / ".cache" / "studies"


def study_folders(*extra: str | Path | None) -> dict[str, Path]:
    """Return name -> folder for every finished study (a folder with a summary.json)."""
    found: dict[str, Path] = {}
    for base in (RESULTS_DIR, USER_STUDIES_DIR):
        if base.is_dir():
            for folder in sorted(base.iterdir()):
                if (folder / "summary.json").is_file():
                    found[folder.name if base == RESULTS_DIR else f"{folder.name} (dashboard)"] = folder
    for folder in extra:
        if folder and (Path(folder) / "summary.json").is_file():
            found[str(folder)] = Path(folder)
    return found


def read_summary(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "summary.json").read_text())


def curve_table(summary: dict) -> pd.DataFrame:
    """Return the summary's curves with each block's relative depth and layer name added."""
    curves = pd.DataFrame(summary["curves"])
    if curves.empty:
        return curves
    curves["x"] = np.nan
    curves["layer"] = ""
    for model, info in summary["models"].items():
        blocks = info["blocks"]
        mine = (curves["model"] == model) & (curves["by"] == "block")
        index = curves.loc[mine, "group"].astype(int)
        curves.loc[mine, "x"] = [blocks[i]["rel_depth"] for i in index]
        curves.loc[mine, "layer"] = [blocks[i]["layer"] for i in index]
        depth = (curves["model"] == model) & (curves["by"] == "depth")
        curves.loc[depth, "x"] = curves.loc[depth, "group"].astype(float)
    return curves


def best_and_worst(
    table: pd.DataFrame, model: str, layer: str, method: str, k: int = 6
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Return (best, worst, by what): the ``k`` photos best and worst localised at a block.

    With masks, by energy share on the animal (then the pointing game); without, by how
    concentrated the map is (share of the photo above half its peak, smallest best).
    """
    rows = table[
        (table["model"] == model)
        & (table["layer"] == layer)
        & (table["method"] == method)
        & (table["target"] == "predicted")
    ]
    if rows["energy"].notna().any():
        ranked = rows.dropna(subset=["energy"]).sort_values(["energy", "pointing"], ascending=False)
        how = "energy share on the animal"
    else:
        ranked = rows.dropna(subset=["above_half"]).sort_values("above_half")
        how = "concentration (share of the photo above half the map's peak, smallest first)"
    best = ranked.head(k)
    worst = ranked.iloc[::-1].head(k)
    return best, worst, how


def photo_file(settings: dict, photo: str) -> Path | None:
    """Return where a study's photo is on this machine, or None (the data folder is absent)."""
    for base in (ROOT / settings.get("data", ""), Path(settings.get("data_resolved", ""))):
        path = base / photo
        if path.is_file():
            return path
    return None


def model_file(settings: dict, name: str) -> Path | None:
    """Return the model file a study used, or the registry's model of that name on this
    machine (a fresh clone elsewhere), or None."""
    from models.registry import ModelLoadError, find

    recorded = settings.get("model_files", {}).get(name)
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    try:
        return find(name).path
    except ModelLoadError:
        return None


@lru_cache(maxsize=8)
def _masks_of(data: str) -> dict[str, str]:
    from models.data import list_labelled
    from study.photos import photo_ids

    try:
        files = list_labelled(data)
    except (FileNotFoundError, ValueError):
        return {}
    if files.masks is None:
        return {}
    return {i: m for i, m in zip(photo_ids(files, data), files.masks) if m}


def mask_file(settings: dict, photo: str) -> Path | None:
    """Return the trimap of a study's photo on this machine, or None."""
    for base in (ROOT / settings.get("data", ""), Path(settings.get("data_resolved", ""))):
        if base.is_dir():
            found = _masks_of(str(base)).get(photo)
            return Path(found) if found else None
    return None


def draw_outline(rgb: np.ndarray, mask: Path | None) -> np.ndarray:
    """Return a copy of the picture with the animal's outline (green) from its trimap."""
    from study.photos import decode_mask

    picture = np.array(rgb, copy=True)
    if mask is not None:
        animal = decode_mask(mask.read_bytes(), picture.shape[:2]).astype(np.uint8)
        contours, _ = cv2.findContours(animal, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(picture, contours, -1, (0, 255, 0), 2)
    return picture


def marked_photo(
    path: Path, peak: tuple[float, float], mask: Path | None = None, side: int = 320
) -> np.ndarray:
    """Return the photo (longest side ``side``) with the animal's outline (green) and the
    map's peak (a red ring) drawn on it."""
    from explain.images import fit_within

    small = draw_outline(fit_within(decode_image(path.read_bytes()), side), mask)
    y, x = peak
    if np.isfinite(y) and np.isfinite(x):
        centre = (int(x * small.shape[1]), int(y * small.shape[0]))
        cv2.circle(small, centre, max(6, side // 24), (255, 0, 0), 3)
    return small


def crop(path: Path, box: tuple[float, float, float, float], side: int = 96) -> np.ndarray:
    """Return the part of the photo inside ``box`` (y0, x0, y1, x1 as fractions), ``side`` px."""
    rgb = decode_image(path.read_bytes())
    h, w = rgb.shape[:2]
    y0, x0, y1, x1 = box
    part = rgb[
        int(y0 * h) : max(int(y1 * h), int(y0 * h) + 1), int(x0 * w) : max(int(x1 * w), int(x0 * w) + 1)
    ]
    return cv2.resize(part, (side, side), interpolation=cv2.INTER_AREA)
