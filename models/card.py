"""The model card: the JSON that travels beside every model file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from explain.preprocess import Feeding


@dataclass
class Preprocessing:
    """How a decoded RGB uint8 photo becomes the model's input.

    ``scaling`` names the pixel scaling (see ``explain.preprocess.SCALINGS``: "unit" x/255,
    "symmetric" x/127.5 - 1, "raw", "caffe", "torch", or "affine": ``x * scale + offset``);
    ``channel_order`` is RGB or BGR, ``resize`` "stretch" or "crop" (centre crop, as Teachable
    Machine does), ``grey`` feeds colour photos as grey. Models built by this project rescale
    inside themselves (``rescale_inside_model``): they are fed raw pixels. Cards written before
    ``scaling`` existed carry only ``scale`` and ``offset``; they read as before.
    """

    input_size: tuple[int, int] = (224, 224)
    channels: int = 3
    scale: float = 1.0
    offset: float = 0.0
    rescale_inside_model: bool = True
    scaling: str = ""  # "" = read from scale/offset/rescale_inside_model (older cards)
    channel_order: str = "RGB"
    resize: str = "stretch"
    grey: bool = False

    def __post_init__(self) -> None:
        if not self.scaling:
            self.scaling = _scaling_of(self.scale, self.offset, self.rescale_inside_model)
        elif self.scaling in _AFFINE:  # keep scale/offset saying the same, for older readers
            self.scale, self.offset = _AFFINE[self.scaling]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        size = data.get("input_size", (224, 224))
        scaling = str(data.get("scaling") or "")
        return cls(
            input_size=(int(size[0]), int(size[1])),
            channels=int(data.get("channels", 3)),
            scale=float(data.get("scale", 1.0)),
            offset=float(data.get("offset", 0.0)),
            rescale_inside_model=bool(data.get("rescale_inside_model", scaling in ("", "raw"))),
            scaling=scaling,
            channel_order=str(data.get("channel_order", "RGB")).upper(),
            resize=str(data.get("resize", "stretch")),
            grey=bool(data.get("grey", False)),
        )

    @classmethod
    def of_feeding(cls, feeding: Feeding) -> Preprocessing:
        """Return the card's preprocessing for an engine-side :class:`Feeding`."""
        return cls(
            input_size=tuple(feeding.size),
            channels=feeding.channels,
            scale=feeding.scale,
            offset=feeding.offset,
            rescale_inside_model=False,
            scaling=feeding.scaling,
            channel_order=feeding.channel_order,
            resize=feeding.resize,
            grey=feeding.grey,
        )

    def feeding(self, channels: int | None = None) -> Feeding:
        """Return the engine's :class:`explain.preprocess.Feeding` for this card.

        ``channels`` is what the model takes, where known (it wins over the card's).
        Raises ValueError for a scaling, channel order or resize the engine does not know.
        """
        from explain.preprocess import Feeding

        scaling = "raw" if self.rescale_inside_model else self.scaling
        return Feeding(
            size=(int(self.input_size[0]), int(self.input_size[1])),
            channels=int(channels or self.channels),
            scaling=scaling,
            channel_order=self.channel_order,
            resize=self.resize,
            grey=self.grey,
            scale=self.scale,
            offset=self.offset,
        )

    def describe(self) -> str:
        """Return the recipe in a few words (see ``Feeding.describe``)."""
        text = self.feeding().describe()
        return text + " (the model rescales itself)" if self.rescale_inside_model else text


# Named scalings that are one ``x * scale + offset``: older cards store them so.
_AFFINE = {"unit": (1 / 255, 0.0), "symmetric": (1 / 127.5, -1.0), "raw": (1.0, 0.0)}


def _scaling_of(scale: float, offset: float, inside: bool) -> str:
    if inside:
        return "raw"
    for name, (s, o) in _AFFINE.items():
        if abs(scale - s) < 1e-9 and abs(offset - o) < 1e-9:
            return name
    return "affine"


def read_labels_txt(text: str) -> list[str]:
    """Return class names from a ``labels.txt``: ``0 dog`` lines (Teachable Machine) or one name a line.

    Raises ValueError when the text names no class or an index is repeated.
    """
    indexed: dict[int, str] = {}
    plain: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        if head.isdigit() and rest.strip():
            if int(head) in indexed:
                raise ValueError(f"labels.txt gives index {head} twice")
            indexed[int(head)] = rest.strip()
        else:
            plain.append(line)
    if indexed and plain:
        raise ValueError("labels.txt mixes 'N name' lines and bare names")
    names = [indexed[i] for i in sorted(indexed)] if indexed else plain
    if not names:
        raise ValueError("labels.txt names no class")
    return names


@dataclass
class ModelCard:
    """Everything the app needs to know about one model besides its weights."""

    name: str
    architecture: str = "unknown"
    class_names: list[str] = field(default_factory=lambda: ["cat", "dog"])
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    history: str | None = None  # path relative to the card's folder
    training: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    # Figures on named test sets, e.g. {"cats_vs_dogs/test": {...}, "oxford_pets": {...}}: each
    # with at least "accuracy" and "n" (photos), and "tta" (flip test-time augmentation used).
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: str = ""
    # A user's file adopted here (models.adopt): what it was converted from ("format",
    # "saved_by", "digest", "file", "notes"). Empty for models made by this project.
    converted_from: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocessing"]["input_size"] = list(self.preprocessing.input_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if not isinstance(data, dict) or "name" not in data:
            raise ValueError("a model card is a JSON object with at least a 'name'")
        return cls(
            name=str(data["name"]),
            architecture=str(data.get("architecture", "unknown")),
            class_names=[str(c) for c in data.get("class_names", ["cat", "dog"])],
            preprocessing=Preprocessing.from_dict(data.get("preprocessing", {})),
            history=data.get("history"),
            training=dict(data.get("training", {})),
            test=dict(data.get("test", {})),
            evaluations={str(k): dict(v) for k, v in dict(data.get("evaluations", {})).items()},
            notes=str(data.get("notes", "")),
            converted_from=dict(data.get("converted_from") or {}),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        return cls.from_dict(json.loads(Path(path).read_text()))


def card_path_for(model_path: str | Path) -> Path:
    """Return where the card of a model file lives: same folder, same stem, ``.json``."""
    model_path = Path(model_path)
    return model_path.with_suffix(".json")
