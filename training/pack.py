"""A photo pack: a labelled folder's train/validation split, resized and JPEG-encoded in one file.

    python -m training.pack --data ../shared/data/cats_vs_dogs/train --out .pack/cvd.npz

A pack is what travels to an accelerator machine, where a call carries at most 64 MiB: the
6,000 training photos at 176 px (validation at 192 px) come to about 53 MiB. The split is
``training.train``'s own (:func:`stratified_split`, same fraction and seed), so a run trained
from a pack holds out the same photos as one trained from the folder. The file is a plain
``.npz`` of numeric and string arrays, read with ``allow_pickle=False``.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.data import LabelledFiles, list_labelled, load_resized, stratified_split


@dataclass(frozen=True)
class Split:
    """JPEG-encoded square photos of one side, with their integer labels."""

    jpegs: list[bytes]
    labels: np.ndarray
    side: int

    def decode(self, workers: int | None = None) -> np.ndarray:
        """Return the photos as one (N, side, side, 3) RGB uint8 array."""
        out = np.empty((len(self.jpegs), self.side, self.side, 3), np.uint8)

        def work(i: int) -> None:
            bgr = cv2.imdecode(np.frombuffer(self.jpegs[i], np.uint8), cv2.IMREAD_COLOR)
            out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

        with ThreadPoolExecutor(workers or os.cpu_count() or 2) as pool:
            list(pool.map(work, range(len(self.jpegs))))
        return out


@dataclass(frozen=True)
class Pack:
    """A train and a validation split of one labelled folder."""

    train: Split
    val: Split
    class_names: tuple[str, ...]
    source: str
    val_fraction: float
    seed: int


def _encode(files: LabelledFiles, side: int, quality: int) -> Split:
    def work(path: str) -> bytes:
        rgb = load_resized(path, side)
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise ValueError(f"could not encode {path}")
        return buf.tobytes()

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        jpegs = list(pool.map(work, files.paths))
    return Split(jpegs, files.labels.astype(np.int32), side)


def write_pack(
    data: str | Path,
    out: str | Path,
    train_side: int = 176,
    val_side: int = 192,
    quality: int = 87,
    val_fraction: float = 0.125,
    seed: int = 0,
    limit: int | None = None,
) -> Path:
    """Write the pack of the labelled folder ``data`` to ``out``; return its path."""
    files = list_labelled(data)
    if limit:
        files = files.first_per_class(limit)
    train_files, val_files = stratified_split(files, val_fraction, seed)
    arrays: dict[str, np.ndarray] = {
        "class_names": np.asarray(files.class_names, dtype=np.str_),
        "source": np.asarray(str(Path(data).resolve()), dtype=np.str_),
        "val_fraction": np.asarray(val_fraction),
        "seed": np.asarray(seed),
    }
    for name, part, side in (("train", train_files, train_side), ("val", val_files, val_side)):
        split = _encode(part, side, quality)
        arrays[f"{name}_bytes"] = np.frombuffer(b"".join(split.jpegs), np.uint8)
        arrays[f"{name}_offsets"] = np.cumsum([0] + [len(j) for j in split.jpegs]).astype(np.int64)
        arrays[f"{name}_labels"] = split.labels
        arrays[f"{name}_side"] = np.asarray(side)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out


def read_pack(path: str | Path) -> Pack:
    """Return the pack stored at ``path``."""
    with np.load(path, allow_pickle=False) as z:

        def split(name: str) -> Split:
            blob, offsets = z[f"{name}_bytes"].tobytes(), z[f"{name}_offsets"]
            jpegs = [blob[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
            return Split(jpegs, z[f"{name}_labels"], int(z[f"{name}_side"]))

        return Pack(
            train=split("train"),
            val=split("val"),
            class_names=tuple(str(c) for c in z["class_names"]),
            source=str(z["source"]),
            val_fraction=float(z["val_fraction"]),
            seed=int(z["seed"]),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.pack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="folder of class subfolders or cat.N.jpg files")
    parser.add_argument("--out", required=True, help="the .npz to write")
    parser.add_argument("--train-side", type=int, default=176)
    parser.add_argument("--val-side", type=int, default=192)
    parser.add_argument("--quality", type=int, default=87, help="JPEG quality")
    parser.add_argument("--val-fraction", type=float, default=0.125)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="at most this many photos per class")
    args = parser.parse_args(argv)
    out = write_pack(
        args.data,
        args.out,
        args.train_side,
        args.val_side,
        args.quality,
        args.val_fraction,
        args.seed,
        args.limit,
    )
    pack = read_pack(out)
    print(
        f"wrote {out}: {len(pack.train.jpegs)} train photos at {pack.train.side} px, "
        f"{len(pack.val.jpegs)} validation at {pack.val.side} px, {out.stat().st_size / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
