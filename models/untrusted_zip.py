"""A zip of a model from a stranger, unpacked only into our folder, under names we make.

An archive may hold a SavedModel folder, an architecture JSON with its weights, or one HDF5
model. No name inside the archive ever becomes a path here: the members we recognise are
written under fixed names (``saved_model.pb``, ``variables/variables.index``, ``model.json``,
``weights.h5`` ...) inside a folder the caller owns, and everything else is skipped. The
whole archive is refused, in one line, when it has ``..`` or absolute member names, symlinks,
encrypted members, too many members, too deep paths, or unpacks to too much (counted while
reading, not taken from the headers).
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_MEMBERS = 10_000
MAX_UNPACKED_BYTES = 2 * 2**30  # a 500 MB upload of float32 weights barely compresses
MAX_DEPTH = 12  # folders in one member name
CHUNK = 2**20

_SHARD = re.compile(r"variables\.data-(\d{5})-of-(\d{5})")


class UnsafeArchive(ValueError):
    """An archive we will not unpack; the message says why, in one line."""


@dataclass
class Unpacked:
    """What was unpacked and where: ``kind`` is "savedmodel", "json" or "hdf5"."""

    folder: Path
    kind: str
    model: Path  # the SavedModel folder, the architecture JSON or the HDF5 model
    weights: Path | None = None  # beside an architecture JSON


def _check_members(archive: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise UnsafeArchive(f"{name}: the archive holds {len(members)} entries; the limit is {MAX_MEMBERS}")
    for member in members:
        raw = member.filename.replace("\\", "/")
        parts = PurePosixPath(raw).parts
        if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw) or ".." in parts:
            raise UnsafeArchive(
                f"{name}: refused: the archive has a member outside its folder ({raw[:80]!r})"
            )
        if stat.S_ISLNK(member.external_attr >> 16):
            raise UnsafeArchive(f"{name}: refused: the archive holds a symbolic link ({raw[:80]!r})")
        if member.flag_bits & 0x1:
            raise UnsafeArchive(f"{name}: refused: the archive has encrypted members")
        if len(parts) > MAX_DEPTH:
            raise UnsafeArchive(f"{name}: refused: a member is more than {MAX_DEPTH} folders deep")
    if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
        raise UnsafeArchive(f"{name}: the archive unpacks to more than {MAX_UNPACKED_BYTES // 2**30} GB")
    return [m for m in members if not m.is_dir()]


def _plan(members: list[zipfile.ZipInfo], name: str) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    """Return the kind of model inside and {our name: member} for the members to write."""
    by_path = {
        m.filename.replace("\\", "/"): m
        for m in members
        # macOS' Finder adds __MACOSX/ and ._name copies of every file: metadata, not models.
        if not m.filename.startswith("__MACOSX/") and not PurePosixPath(m.filename).name.startswith("._")
    }
    roots = sorted(p[: -len("saved_model.pb")] for p in by_path if PurePosixPath(p).name == "saved_model.pb")
    if len(roots) > 1:
        raise UnsafeArchive(f"{name}: the archive holds {len(roots)} SavedModels; give one at a time")
    if roots:
        root = roots[0]
        plan: dict[str, zipfile.ZipInfo] = {}
        for path, member in by_path.items():
            if not path.startswith(root):
                continue
            rel = path[len(root) :]
            if rel in ("saved_model.pb", "keras_metadata.pb", "fingerprint.pb", "variables/variables.index"):
                plan[rel] = member
            elif rel.startswith("variables/") and _SHARD.fullmatch(rel[len("variables/") :]):
                plan[rel] = member
        return "savedmodel", plan
    json_files = [m for p, m in by_path.items() if p.lower().endswith(".json")]
    h5_files = [m for p, m in by_path.items() if p.lower().endswith((".h5", ".hdf5", ".keras"))]
    if len(h5_files) == 1 and not json_files:
        return "hdf5", {"model.h5": h5_files[0]}
    if len(json_files) == 1 and len(h5_files) == 1:
        return "json", {"model.json": json_files[0], "weights.h5": h5_files[0]}
    if len(h5_files) == 1:
        # A card or labels JSON beside a whole HDF5 model: the model is what counts.
        return "hdf5", {"model.h5": h5_files[0]}
    raise UnsafeArchive(
        f"{name}: the archive holds no model we read (a SavedModel folder, or one architecture JSON "
        "with one weights .h5, or one .h5 model)"
    )


def unpack_model_zip(archive_path: str | Path, dest: str | Path) -> Unpacked:
    """Unpack the model inside a zip into ``dest`` (new or empty); return what is where.

    Raises
    ------
    UnsafeArchive
        With a one-line reason, for an archive that is not a zip, breaks a rule above, or
        holds no model.
    """
    archive_path, dest = Path(archive_path), Path(dest)
    name = archive_path.name
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UnsafeArchive(f"{name}: not a readable zip archive ({str(err)[:80]})") from None
    with archive:
        members = _check_members(archive, name)
        kind, plan = _plan(members, name)
        if dest.exists() and any(dest.iterdir()):
            raise UnsafeArchive(f"{name}: internal: the folder to unpack into is not empty")
        dest.mkdir(parents=True, exist_ok=True)
        budget = MAX_UNPACKED_BYTES
        try:
            for ours, member in plan.items():
                target = dest / ours
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(target, "xb") as out:
                    while chunk := src.read(CHUNK):
                        budget -= len(chunk)
                        if budget < 0:
                            raise UnsafeArchive(
                                f"{name}: the archive unpacks to more than {MAX_UNPACKED_BYTES // 2**30} GB"
                            )
                        out.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:
            shutil.rmtree(dest, ignore_errors=True)
            raise UnsafeArchive(
                f"{name}: the archive is damaged ({' '.join(str(err).split())[:100]})"
            ) from None
        except UnsafeArchive:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    if kind == "savedmodel":
        if "saved_model.pb" not in plan or "variables/variables.index" not in plan:
            raise UnsafeArchive(f"{name}: the SavedModel in the archive has no variables/variables.index")
        return Unpacked(dest, kind, dest)
    if kind == "json":
        return Unpacked(dest, kind, dest / "model.json", dest / "weights.h5")
    return Unpacked(dest, kind, dest / "model.h5")
