"""Explain photos with a model from the registry (or any file the app loads), headless.

    python -m models.explain photo.jpg [more.jpg ...] --model resnet50 --layers last --out maps/

The same arguments as the engine's ``python -m explain`` (see ``explain/__main__.py``), but
``--model`` may be a registry name (``resnet50``, a card's name or a file stem in the models
folders) or any model file the app loads; its card is completed from the model as the app
does. It sits above both ``models/`` and ``explain/`` so the engine imports nothing from here.
"""

from __future__ import annotations

import sys

from explain.__main__ import parse_args, run


def main(argv: list[str] | None = None) -> int:
    """Load ``--model`` through the registry and run the engine's command line; return the status."""
    args = parse_args(argv)
    from explain.explainer import Explainer
    from models.registry import ModelLoadError, completed_card, find, load_model

    try:
        entry = find(args.model)
        model = load_model(entry.path)
        card = completed_card(entry, model)
        if args.card:
            from models.card import ModelCard

            card = ModelCard.load(args.card)
        explainer = Explainer.from_card(model, card)
    except (ModelLoadError, ValueError, KeyError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return run(explainer, args, entry.name)


if __name__ == "__main__":
    raise SystemExit(main())
