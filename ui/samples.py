"""Sample photos a user can pick without uploading: what packages and ../shared ship."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SHARED_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cats_vs_dogs" / "test"
DARKNET_DOG = Path("/usr/share/darknet/data/dog.jpg")


def _skimage(name: str) -> Callable[[], bytes]:
    def load() -> bytes:
        import io

        from PIL import Image
        from skimage import data

        buf = io.BytesIO()
        Image.fromarray(getattr(data, name)()).save(buf, format="PNG")
        return buf.getvalue()

    return load


def available_samples() -> dict[str, Callable[[], bytes]]:
    """Return sample name -> loader of the photo's bytes, for samples present here."""
    samples: dict[str, Callable[[], bytes]] = {}
    if SHARED_TEST.is_dir():
        for folder, picks in (("cats", (4001, 4002, 4005)), ("dogs", (4001, 4003, 4004))):
            for n in picks:
                path = SHARED_TEST / folder / f"{folder[:-1]}.{n}.jpg"
                if path.is_file():
                    samples[f"{path.name} (test set)"] = path.read_bytes
    try:
        import skimage.data  # noqa: F401

        samples["chelsea, a cat (scikit-image)"] = _skimage("chelsea")
        samples["coffee, neither (scikit-image)"] = _skimage("coffee")
        samples["astronaut, neither (scikit-image)"] = _skimage("astronaut")
    except ImportError:
        pass
    if DARKNET_DOG.is_file():
        samples["dog with a bicycle (darknet)"] = DARKNET_DOG.read_bytes
    return samples
