"""The study's two questions answered from a summary, as Markdown tables.

    python -m study.findings study/results/oxford_pets [--method gradcam]

1. Do deeper blocks look at more varied places? Spread (share of the photo above half the
   map's peak, and normalised entropy) by stage, with its bootstrap 95 % interval.
2. Do wrong answers look away from the animal? Pointing game and energy share by stage, right
   against wrong answers, with the chance level (the animal's share of the photo).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def cell(row: pd.Series | None, percent: bool = False) -> str:
    """Return 'mean [low, high]' (in % with ``percent``), or a dash where there is no value."""
    if row is None:
        return "–"
    if percent:
        return f"{row['mean'] * 100:.0f} [{row['low'] * 100:.0f}, {row['high'] * 100:.0f}]"
    return f"{row['mean']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"


def pick(curves: pd.DataFrame, model: str, metric: str, by: str, group, split: str) -> pd.Series | None:
    rows = curves[
        (curves["model"] == model)
        & (curves["metric"] == metric)
        & (curves["by"] == by)
        & (curves["group"].astype(str) == str(group))
        & (curves["split"] == split)
    ]
    return rows.iloc[0] if len(rows) else None


def tables(summary: dict, method: str = "gradcam") -> str:
    """Return the findings of one study summary as Markdown."""
    curves = pd.DataFrame(summary["curves"])
    curves = curves[(curves["method"] == method) & (curves["target"] == "predicted")]
    lines = []
    masks = summary["has_masks"]
    for model, info in summary["models"].items():
        wrong = round(info["photos"] * (1 - info["accuracy"]))
        lines.append(
            f"\n**{model}** ({info['photos']} photos, {info['accuracy']:.1%} right, {wrong} wrong)\n"
        )
        header = "| stage | above half of peak | entropy |"
        rule = "|---|---|---|"
        if masks:
            header += " pointing, right (%) | pointing, wrong (%) | energy, right | energy, wrong | chance |"
            rule += "---|---|---|---|---|"
        lines += [header, rule]
        stages = summary["stages"][model]
        blocks = info["blocks"]
        first_last = [("first block", 0), ("last block", len(blocks) - 1)]
        groups = [(s, "stage", s) for s in stages] + [(n, "block", i) for n, i in first_last]
        for name, by, group in groups:
            row = f"| {name} | {cell(pick(curves, model, 'above_half', by, group, 'all'))} | "
            row += f"{cell(pick(curves, model, 'entropy', by, group, 'all'))} |"
            if masks:
                for metric, percent in (("pointing", True), ("energy", False)):
                    for split in ("right", "wrong"):
                        row += f" {cell(pick(curves, model, metric, by, group, split), percent)} |"
                row += f" {info['chance']:.2f} |"
            lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", help="a study folder (with summary.json)")
    p.add_argument("--method", default="gradcam")
    args = p.parse_args(argv)
    path = Path(args.study) / "summary.json"
    if not path.is_file():
        print(f"no summary.json in {args.study}", file=sys.stderr)
        return 2
    print(tables(json.loads(path.read_text()), args.method))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
