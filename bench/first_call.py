"""What does Grappler's graph rewriting cost a new process, and what does it buy afterwards?

    python bench/first_call.py [--models resnet50 resnet101] [--rounds 2]

Each measurement is a new process that loads a shipped model and times its load, and for the
engine's pass to every block (Grad-CAM, one photo): its trace, its first call, and the median
of later calls with batch 1 and 8. Processes with Grappler on ("as they come", TensorFlow's
default) and off ("as the app", ``ui.warmup.compile_quickly``) alternate, round by round, so
a machine that speeds up or slows down hurts both alike. Prints one line per process and the
medians with their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, os, statistics, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"; sys.path.insert(0, {root!r})
if {app}:
    from ui.warmup import compile_quickly; compile_quickly()
import numpy as np
from explain.explainer import Explainer
from explain.keras_file import read_keras_model
from models.registry import completed_card, find
entry = find({model!r})
t = time.perf_counter(); model = read_keras_model(entry.path); load = time.perf_counter() - t
explainer = Explainer.from_card(model, completed_card(entry, model))
one = explainer.prepare([np.full((*explainer.input_shape[:2], 3), 127, np.uint8)])
eight = np.repeat(one, 8, axis=0)
paths = [b.path for b in explainer.layers.blocks]
fn = explainer._pass_for(tuple(paths), ("gradcam",))
t = time.perf_counter(); fn.get_concrete_function(); trace = time.perf_counter() - t
t = time.perf_counter(); explainer.explain(one, paths); first = time.perf_counter() - t
def median(batch, reps):
    explainer.explain(batch, paths)
    times = []
    for _ in range(reps):
        t = time.perf_counter(); explainer.explain(batch, paths); times.append(time.perf_counter() - t)
    return statistics.median(times)
figures = {{"load": load, "trace": trace, "first": first}}
print(json.dumps({{**figures, "batch1": median(one, 7), "batch8": median(eight, 3)}}))
"""


def measure(model: str, app: bool) -> dict:
    code = CHILD.format(root=str(ROOT), app=app, model=model)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "resnet101"])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for model in args.models:
        runs: dict[str, list[dict]] = {"as they come": [], "as the app": []}
        for _ in range(args.rounds):
            for name in runs:
                row = measure(model, app=name == "as the app")
                runs[name].append(row)
                figures = ", ".join(f"{k} {v:.3f} s" for k, v in row.items())
                print(f"{model} {name:12s} {figures}", flush=True)
        medians = {n: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for n, rows in runs.items()}
        on, off = medians["as they come"], medians["as the app"]
        ratios = ", ".join(f"{k} {off[k]:.3f}/{on[k]:.3f} = {off[k] / on[k]:.2f}" for k in on)
        print(f"{model} medians, app / as they come: {ratios}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
