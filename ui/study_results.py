"""Cached reading of study results for the Study page (files keyed by path and change time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from study import explore


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.is_file() else 0.0


@st.cache_data(show_spinner=False, max_entries=8)
def _summary(path: str, mtime: float) -> dict:
    return explore.read_summary(Path(path))


def summary(folder: Path) -> dict:
    """Return a study's summary.json (cached until the file changes)."""
    return _summary(str(folder), _mtime(folder / "summary.json"))


@st.cache_data(show_spinner=False, max_entries=8)
def _curves(path: str, mtime: float) -> pd.DataFrame:
    return explore.curve_table(explore.read_summary(Path(path)))


def curves(folder: Path) -> pd.DataFrame:
    """Return the study's curves with relative depth per block (cached)."""
    return _curves(str(folder), _mtime(folder / "summary.json"))


@st.cache_data(show_spinner=False, max_entries=16)
def _parquet(path: str, mtime: float) -> pd.DataFrame | None:
    if not Path(path).is_file():
        return None
    frame = pd.read_parquet(path)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    return frame


def table(folder: Path, name: str = "study.parquet") -> pd.DataFrame | None:
    """Return one of the study's Parquet files (cached), or None when it is not there."""
    path = folder / name
    return _parquet(str(path), _mtime(path))


@st.cache_data(show_spinner=False, max_entries=256)
def marked_photo(path: str, peak_y: float, peak_x: float, mask: str | None) -> np.ndarray:
    return explore.marked_photo(Path(path), (peak_y, peak_x), Path(mask) if mask else None)


@st.cache_data(show_spinner=False, max_entries=512)
def crop(path: str, box: tuple[float, float, float, float]) -> np.ndarray:
    return explore.crop(Path(path), box)


def with_outline(rgb: np.ndarray, mask: str | None) -> np.ndarray:
    """Return the picture with the animal's outline drawn from its trimap (when there is one)."""
    return explore.draw_outline(rgb, Path(mask) if mask else None)
