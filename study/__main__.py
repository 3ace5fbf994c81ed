"""Where every block of each model looks, over a labelled folder.

    python -m study --models resnet50 resnet101 --data ../shared/data/oxford_pets --masks \
        --out study/results/oxford_pets [--methods gradcam layercam] [--limit N] \
        [--engine local|ray] [--address ADDR] [--labelled-class] [--deletion]

Writes OUT/study.parquet (photo x model x block x method x target), OUT/summary.json (by
block, stage and relative depth; right/wrong, per class; bootstrap 95 % intervals; chance
level), OUT/embedding.parquet, OUT/features.npz and OUT/atlas.parquet. Run it again to resume:
photos already done are skipped. ``--compact-only`` rewrites the files from the parts.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--models", nargs="+", default=["resnet50", "resnet101"], help="registry names or .keras files"
    )
    p.add_argument("--data", help="class folders, Kaggle's flat cat.N.jpg, or a labels.csv folder")
    p.add_argument("--out", required=True, help="folder for the study's files (resumed when it exists)")
    p.add_argument(
        "--masks",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score maps against the trimaps (default: where the folder has them; --masks requires them)",
    )
    p.add_argument("--methods", nargs="+", default=["gradcam"], help="CAM methods of the engine")
    p.add_argument("--limit", type=int, default=None, help="study the first N photos (classes taken in turn)")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--address", default=None, help="a Ray cluster to join (with --engine ray)")
    p.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per CPU)")
    p.add_argument("--threads", type=int, default=None, help="TensorFlow intra-op threads per worker")
    p.add_argument(
        "--labelled-class", action="store_true", help="also the maps of the labelled class (wrong answers)"
    )
    p.add_argument("--deletion", action="store_true", help="deletion and insertion areas of every map (slow)")
    p.add_argument(
        "--no-features", action="store_true", help="skip the penultimate features and the channel atlas"
    )
    p.add_argument(
        "--atlas-photos",
        type=int,
        default=300,
        help="the channel atlas's forward pass on the first N photos (0: all)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--compact-only", action="store_true", help="only rewrite the study files from the parts")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from study.run import StudyConfig, StudyError, compact, run_study

    if not args.data and not args.compact_only:
        print("--data is needed (a labelled folder)", file=sys.stderr)
        return 2
    if args.address and args.engine != "ray":
        print("--address needs --engine ray", file=sys.stderr)
        return 2
    unknown = _unknown_methods(args.methods)
    if unknown:
        print(unknown, file=sys.stderr)
        return 2
    config = StudyConfig(
        models=args.models,
        data=args.data,
        out=args.out,
        methods=args.methods,
        masks=args.masks,
        limit=args.limit,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        threads=args.threads,
        labelled_class=args.labelled_class,
        deletion=args.deletion,
        features=not args.no_features,
        atlas_photos=args.atlas_photos or None,
        batch_size=args.batch_size,
    )
    try:
        summary = compact(args.out) if args.compact_only else run_study(config)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{summary['photos']} photos; wrote {args.out}/study.parquet and summary.json")
    return 0


def _unknown_methods(methods: list[str]) -> str | None:
    from explain.cams import METHODS

    unknown = [m for m in methods if m not in METHODS]
    return f"unknown method {unknown[0]!r}; the engine has {sorted(METHODS)}" if unknown else None


if __name__ == "__main__":
    raise SystemExit(main())
