"""Labelled photo folders: listing, splitting, a decoded-and-resized cache, augmentation."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from explain.images import ImageError, decode_image, resize_to

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
_KAGGLE_NAME = re.compile(r"^(?P<label>[a-z]+)\.\d+\.(jpe?g|png)$", re.IGNORECASE)


@dataclass(frozen=True)
class LabelledFiles:
    """Photo paths with integer labels and the class names they index."""

    paths: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    masks: tuple[str, ...] | None = None  # a pixel mask (trimap) per photo, where the folder has them

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: np.ndarray) -> LabelledFiles:
        masks = None if self.masks is None else tuple(self.masks[i] for i in index)
        return LabelledFiles(tuple(self.paths[i] for i in index), self.labels[index], self.class_names, masks)

    def first_per_class(self, n: int) -> LabelledFiles:
        """Return the first ``n`` photos of each class (in listing order): a fixed slice."""
        keep = np.concatenate([np.flatnonzero(self.labels == c)[:n] for c in range(len(self.class_names))])
        return self.subset(keep)


def singular(name: str) -> str:
    """Return 'cat' for a folder called 'cats' (class names read better singular)."""
    return name[:-1] if name.endswith("s") and len(name) > 3 else name


def list_labelled(folder: str | Path, class_names: list[str] | None = None) -> LabelledFiles:
    """Return the labelled photos under ``folder``.

    Three layouts are understood: one subfolder per class (``cats/``, ``dogs/``), Kaggle's
    flat ``cat.N.jpg`` / ``dog.N.jpg``, and a ``labels.csv`` with an ``image`` column and a
    ``species`` (or ``label``) column, plus an optional ``trimap`` column of pixel masks, as
    Oxford-IIIT Pet's folder here has. Class order is alphabetical unless ``class_names`` is
    given (folder names match singular or plural).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    if (folder / "labels.csv").is_file():
        return _list_from_csv(folder, class_names)
    groups: dict[str, list[str]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(str(f) for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if files:
            groups[singular(sub.name.lower())] = files
    if not groups:
        for f in sorted(folder.iterdir()):
            match = _KAGGLE_NAME.match(f.name)
            if match and f.is_file():
                groups.setdefault(match["label"].lower(), []).append(str(f))
    if not groups:
        raise ValueError(f"{folder} has neither class subfolders of photos nor Kaggle-style cat.N.jpg files")
    return _grouped(folder, {name: [(p, None) for p in files] for name, files in groups.items()}, class_names)


def _grouped(
    folder: Path, groups: dict[str, list[tuple[str, str | None]]], class_names: list[str] | None
) -> LabelledFiles:
    names = sorted(groups) if class_names is None else [singular(c.lower()) for c in class_names]
    missing = [n for n in groups if n not in names]
    if missing:
        raise ValueError(f"{folder} has classes {missing} that the model does not know ({names})")
    paths: list[str] = []
    masks: list[str | None] = []
    labels: list[int] = []
    for index, name in enumerate(names):
        for path, mask in groups.get(name, []):
            paths.append(path)
            masks.append(mask)
            labels.append(index)
    has_masks = any(m is not None for m in masks)
    return LabelledFiles(
        tuple(paths), np.asarray(labels, dtype=np.int32), tuple(names), tuple(masks) if has_masks else None
    )


def _list_from_csv(folder: Path, class_names: list[str] | None) -> LabelledFiles:
    """Read ``labels.csv``: ``image`` and ``species`` (or ``label``/``class``), optional ``trimap``."""
    with open(folder / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0]) if rows else set()
    label_column = next((c for c in ("species", "label", "class") if c in columns), None)
    if "image" not in columns or label_column is None:
        raise ValueError(f"{folder}/labels.csv needs an 'image' column and a 'species' or 'label' column")
    root = folder.resolve()
    groups: dict[str, list[tuple[str, str | None]]] = {}
    for row in rows:
        image = (folder / row["image"]).resolve()
        if not image.is_relative_to(root) or not image.is_file():
            continue  # a listed photo that is missing, or a path that leaves the folder
        mask = None
        if row.get("trimap"):
            mask_path = (folder / row["trimap"]).resolve()
            mask = str(mask_path) if mask_path.is_relative_to(root) and mask_path.is_file() else None
        groups.setdefault(singular(row[label_column].strip().lower()), []).append((str(image), mask))
    if not groups:
        raise ValueError(f"{folder}/labels.csv lists no photo that is in the folder")
    return _grouped(folder, groups, class_names)


def stratified_split(
    files: LabelledFiles, fraction: float, seed: int = 0
) -> tuple[LabelledFiles, LabelledFiles]:
    """Return (train, validation): ``fraction`` of each class, chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    val_index: list[int] = []
    for label in np.unique(files.labels):
        members = np.flatnonzero(files.labels == label)
        rng.shuffle(members)
        val_index.extend(members[: int(round(len(members) * fraction))].tolist())
    val = np.zeros(len(files), dtype=bool)
    val[val_index] = True
    return files.subset(np.flatnonzero(~val)), files.subset(np.flatnonzero(val))


def load_resized(path: str, size: int) -> np.ndarray:
    """Return the photo at ``path`` decoded and resized to (size, size, 3) uint8."""
    with open(path, "rb") as fh:
        rgb = decode_image(fh.read(), max_side=max(4 * size, 512))
    return resize_to(rgb, (size, size))


def load_images(
    files: LabelledFiles, size: int, cache_dir: str | Path | None = None, workers: int | None = None
) -> np.ndarray:
    """Return every photo decoded and resized to (size, size, 3) uint8.

    With ``cache_dir`` the array is kept as an ``.npy`` named by a hash of the file list and
    size, so later epochs and later runs skip JPEG decoding. Unreadable files become black
    images and are reported once.
    """
    cache_file = None
    if cache_dir is not None:
        digest = hashlib.sha1(("\n".join(files.paths) + f"|{size}").encode()).hexdigest()[:16]
        cache_file = Path(cache_dir) / f"images-{size}px-{len(files)}-{digest}.npy"
        if cache_file.exists():
            return np.load(cache_file, mmap_mode="r")
    out = np.zeros((len(files), size, size, 3), dtype=np.uint8)
    bad: list[str] = []

    def work(i: int) -> None:
        try:
            out[i] = load_resized(files.paths[i], size)
        except (ImageError, OSError) as err:
            bad.append(f"{files.paths[i]}: {err}")

    with ThreadPoolExecutor(workers or os.cpu_count() or 2) as pool:
        list(pool.map(work, range(len(files))))
    if bad:
        print(f"warning: {len(bad)} unreadable photos left black, e.g. {bad[0]}")
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(cache_file)
    return out


@dataclass(frozen=True)
class Augmentation:
    """Random affine augmentation in the spirit of Keras' ImageDataGenerator.

    ``rotation`` and ``shear`` are in degrees (as ImageDataGenerator reads them), ``zoom`` a
    relative range (0.2 gives 0.8..1.2), ``shift`` a fraction of the side.
    """

    rotation: float = 0.0
    shear: float = 0.0
    zoom: float = 0.0
    shift: float = 0.0
    flip: bool = False

    def matrix(self, size: int, rng: np.random.Generator) -> np.ndarray:
        angle = math.radians(rng.uniform(-self.rotation, self.rotation))
        shear = math.radians(rng.uniform(-self.shear, self.shear))
        zx, zy = rng.uniform(1 - self.zoom, 1 + self.zoom, size=2)
        tx, ty = rng.uniform(-self.shift, self.shift, size=2) * size
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        shr = np.array([[1.0, -math.sin(shear)], [0.0, math.cos(shear)]])
        linear = rot @ shr @ np.diag([1 / zx, 1 / zy])
        centre = np.array([size / 2 - 0.5, size / 2 - 0.5])
        offset = centre - linear @ centre + np.array([tx, ty])
        return np.hstack([linear, offset[:, None]]).astype(np.float32)

    def apply(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return an augmented copy of a (N, S, S, 3) uint8 batch."""
        out = np.empty_like(images)
        size = images.shape[1]
        plain = self.rotation == 0 and self.shear == 0 and self.zoom == 0 and self.shift == 0
        for i, image in enumerate(images):
            if plain:
                warped = np.array(image)
            else:
                warped = cv2.warpAffine(
                    np.ascontiguousarray(image),
                    self.matrix(size, rng),
                    (size, size),
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT_101,
                )
            if self.flip and rng.random() < 0.5:
                warped = warped[:, ::-1]
            out[i] = warped
        return out


MAX_ZIP_MEMBERS = 5000
MAX_ZIP_BYTES = 500 * 1024 * 1024


def _safe_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80]


def extract_labelled_zip(data: bytes, dest: str | Path) -> Path:
    """Extract the photos of a zip of class folders into ``dest``; return the folder to list.

    Only image files are written, under names we make (``dest/<class>/<n>_<name>``): no path
    inside the archive ever becomes a path here. Raises ValueError for a bad or huge archive.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError("the upload is not a zip archive") from None
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > MAX_ZIP_MEMBERS:
        raise ValueError(f"the archive holds {len(members)} files; the limit is {MAX_ZIP_MEMBERS}")
    if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
        raise ValueError(f"the archive unpacks to more than {MAX_ZIP_BYTES // 2**20} MB")
    dest = Path(dest)
    written = 0
    for index, member in enumerate(members):
        parts = [p for p in member.filename.replace("\\", "/").split("/") if p and p not in (".", "..")]
        if len(parts) < 2 or Path(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        label = _safe_part(parts[-2]) or "unlabelled"
        target = dest / label / f"{index}_{_safe_part(parts[-1])}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src:
            target.write_bytes(src.read(MAX_ZIP_BYTES))
        written += 1
    if not written:
        raise ValueError("the archive has no photos inside class folders (e.g. cats/x.jpg, dogs/y.jpg)")
    return dest
