"""The photos of a study: labelled files read as bytes on the driver, decoded where they are used.

Bytes travel to the workers (a Ray actor on another machine needs no shared disk); each
worker decodes the photo and its trimap itself.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from explain.images import ImageError, decode_image
from explain.localisation import animal_mask
from models.data import LabelledFiles


@dataclass(frozen=True)
class PhotoItem:
    """One photo of a study: its id (path under the data folder), label, and file contents."""

    photo: str
    label: int
    data: bytes
    mask: bytes | None = None
    position: int = 0  # place in the study's order (the atlas uses the first photos)


def photo_ids(files: LabelledFiles, root: str | Path) -> list[str]:
    """Return each photo's path relative to the data folder (posix), its id in the tables."""
    root = Path(root).resolve()
    out = []
    for path in files.paths:
        resolved = Path(path).resolve()
        out.append(resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved))
    return out


def read_items(
    files: LabelledFiles, ids: list[str], index: list[int], positions: list[int] | None = None
) -> list[PhotoItem]:
    """Return the photos at ``index`` of ``files`` with their bytes (and their trimaps' bytes)."""
    items = []
    positions = positions if positions is not None else list(range(len(index)))
    for i, position in zip(index, positions):
        mask = None
        if files.masks is not None and files.masks[i]:
            mask = Path(files.masks[i]).read_bytes()
        data = Path(files.paths[i]).read_bytes()
        items.append(PhotoItem(ids[i], int(files.labels[i]), data, mask, position))
    return items


def decode_mask(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Return the animal mask (bool, at ``shape``) of a trimap PNG's bytes.

    A trimap of another size than the decoded photo (a photo shrunk on decode) is resized
    with nearest neighbours, so its classes stay 1, 2 and 3.
    """
    try:
        trimap = Image.open(io.BytesIO(data))
        if trimap.size != (shape[1], shape[0]):
            trimap = trimap.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
        return animal_mask(np.asarray(trimap))
    except (OSError, ValueError) as err:
        raise ImageError(f"the trimap cannot be read ({type(err).__name__})") from None


def decode_item(item: PhotoItem) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (RGB photo, animal mask or None) of one item; ImageError for a bad file."""
    rgb = decode_image(item.data)
    mask = decode_mask(item.mask, rgb.shape[:2]) if item.mask is not None else None
    return rgb, mask
