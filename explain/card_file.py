"""The engine's own reader of a model card (the JSON beside a model file), as plain data.

The full card (``models.card.ModelCard``) lives in the layer above; the engine's command line
only needs the class names and how to feed the model, and must not import from ``models/``.
It reads the same JSON: ``class_names`` and ``preprocessing`` (``input_size``, ``channels``,
``scaling`` or ``scale``/``offset``/``rescale_inside_model``, ``channel_order``, ``resize``,
``grey``). Unknown keys are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from explain.preprocess import Feeding


@dataclass(frozen=True)
class CardData:
    """What the engine needs from a model card."""

    name: str
    class_names: list[str]
    feeding: Feeding | None  # None: no card; the model's own input size, raw pixels


def feeding_of(preprocessing: dict, channels: int | None = None) -> Feeding:
    """Return the :class:`Feeding` a card's ``preprocessing`` dict describes."""
    size = preprocessing.get("input_size", (224, 224))
    scaling = str(preprocessing.get("scaling") or "")
    inside = bool(preprocessing.get("rescale_inside_model", scaling in ("", "raw")))
    if inside:
        scaling = "raw"  # the model rescales itself
    elif not scaling:
        scaling = "affine"  # an older card: x * scale + offset
    return Feeding(
        size=(int(size[0]), int(size[1])),
        channels=int(channels or preprocessing.get("channels", 3)),
        scaling=scaling,
        channel_order=str(preprocessing.get("channel_order", "RGB")).upper(),
        resize=str(preprocessing.get("resize", "stretch")),
        grey=bool(preprocessing.get("grey", False)),
        scale=float(preprocessing.get("scale", 1.0)),
        offset=float(preprocessing.get("offset", 0.0)),
    )


def read_card(path: str | Path, channels: int | None = None) -> CardData:
    """Return the card at ``path``; raise ValueError with the reason when it cannot be used."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path.name}: not a readable card ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: a card is a JSON object")
    names = data.get("class_names") or []
    if not isinstance(names, list):
        raise ValueError(f"{path.name}: class_names is not a list")
    prep = data.get("preprocessing") or {}
    if not isinstance(prep, dict):
        raise ValueError(f"{path.name}: preprocessing is not an object")
    try:
        feeding = feeding_of(prep, channels)
    except (TypeError, ValueError, IndexError) as err:
        raise ValueError(f"{path.name}: {err}") from None
    return CardData(str(data.get("name") or path.stem), [str(n) for n in names], feeding)
