"""Cached computations behind Inspect's method comparison, its trust checks and the
leaderboard page: any method's map, each map's scores on one photo, the sanity checks, and
the shipped leaderboards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import streamlit as st

from ui.state import LoadedModel, Photo


def _key(loaded: LoadedModel) -> str:
    return f"{loaded.name}:{id(loaded.explainer)}"


@st.cache_data(show_spinner=False, max_entries=128)
def _method_map(
    model_key: str, digest: str, method: str, layer: str | None, target: int, _loaded, _photo
) -> np.ndarray:
    from explain.methods import method_map

    explainer = _loaded.explainer
    return method_map(explainer, method, explainer.prepare([_photo.rgb]), layer, [target])[0]


def method_map_of(loaded: LoadedModel, photo: Photo, method: str, layer: str, target: int) -> np.ndarray:
    """Return one photo's map of any method at ``layer`` for class ``target`` (cached by
    model, photo, method, layer and class)."""
    from explain.methods import METHODS

    # A method without a layer (saliency, SmoothGrad, IG) is cached once for every layer.
    where = layer if METHODS[method].uses_layer else None
    return _method_map(_key(loaded), photo.digest, method, where, int(target), loaded, photo)


@st.cache_data(show_spinner=False, max_entries=64)
def _scores(
    model_key: str, digest: str, layer: str, target: int, keys: tuple[str, ...], _loaded, _photo, _maps
):
    from explain.map_scores import score_maps

    explainer = _loaded.explainer
    return score_maps(explainer, explainer.prepare([_photo.rgb])[0], target, _maps)


def photo_scores(
    loaded: LoadedModel, photo: Photo, layer: str, target: int, maps: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """Return deletion, insertion, ROAD and confidence figures of each map on this photo, all
    perturbed images in one batched run (cached by model, photo, layer, class and methods)."""
    return _scores(_key(loaded), photo.digest, layer, int(target), tuple(maps), loaded, photo, maps)


@st.cache_data(show_spinner=False, max_entries=16)
def _independent(model_key: str, digest: str, layer: str, target: int, method: str, _loaded, _photo):
    from explain.sanity import independent_randomisation

    explainer = _loaded.explainer
    return independent_randomisation(explainer, explainer.prepare([_photo.rgb]), layer, target, method)


def independent_of(loaded: LoadedModel, photo: Photo, layer: str, target: int, method: str):
    """Return the independent per-block randomisation steps for one photo and layer (cached)."""
    return _independent(_key(loaded), photo.digest, layer, int(target), method, loaded, photo)


@st.cache_data(show_spinner=False, max_entries=16)
def _random_logit(model_key: str, digest: str, layer: str, target: int, method: str, _loaded, _photo):
    from explain.sanity import random_logit

    explainer = _loaded.explainer
    return random_logit(explainer, explainer.prepare([_photo.rgb]), layer, target, method)


def random_logit_of(loaded: LoadedModel, photo: Photo, layer: str, target: int, method: str):
    """Return the random-logit test (this class's map against another class's) (cached)."""
    return _random_logit(_key(loaded), photo.digest, layer, int(target), method, loaded, photo)


def board_path(model_path: str | Path, name: str) -> Path:
    """Return where a model's leaderboard lives: ``leaderboard_NAME.json`` beside its file."""
    return Path(model_path).parent / f"leaderboard_{name}.json"


@st.cache_data(show_spinner=False, max_entries=16)
def _read_board(path: str, mtime: float) -> dict | None:
    try:
        board = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return board if isinstance(board, dict) and isinstance(board.get("rows"), list) else None


def board_for(model_path: str | Path, name: str) -> dict | None:
    """Return the leaderboard of a model (None when there is none, or it cannot be read)."""
    path = board_path(model_path, name)
    if not path.is_file():
        return None
    return _read_board(str(path), path.stat().st_mtime)
