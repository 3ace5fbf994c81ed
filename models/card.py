"""The model card: the JSON that travels beside every model file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Preprocessing:
    """How a decoded RGB uint8 photo becomes the model's input.

    ``scale`` and ``offset`` are applied as ``x * scale + offset`` *outside* the model;
    models built by this project rescale inside themselves, so both stay at 1 and 0.
    """

    input_size: tuple[int, int] = (224, 224)
    channels: int = 3
    scale: float = 1.0
    offset: float = 0.0
    rescale_inside_model: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        size = data.get("input_size", (224, 224))
        return cls(
            input_size=(int(size[0]), int(size[1])),
            channels=int(data.get("channels", 3)),
            scale=float(data.get("scale", 1.0)),
            offset=float(data.get("offset", 0.0)),
            rescale_inside_model=bool(data.get("rescale_inside_model", True)),
        )


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
