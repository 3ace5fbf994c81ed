"""Photos per second of the study on this machine: the local engine, and Ray with 1 and 2
workers, each with one TensorFlow intra-op thread, measured in the same run.

    python bench/study_engines.py [--models resnet50] [--data ../shared/data/oxford_pets] [--photos 24]

Local runs first and again last (the mean of both is the baseline: on a shared machine the
load drifts). Model loading, tracing and Ray's start are left out (each engine first runs one batch per
worker); what is timed is the same photos through ``engine.map``, Ray's own per-batch overhead
(serialising photos and results, scheduling) included. Prints each rate, its ratio to local,
the scaling efficiency of 2 workers, and what N such workers should give.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from study.batch import StudyOptions  # noqa: E402
from study.engines import LocalEngine, RayEngine, start_local_ray  # noqa: E402
from study.run import StudyConfig, batches, list_photos, model_files  # noqa: E402


def timed(engine, work: list, warm: list) -> float:
    """Return photos per second of ``work`` batches after running ``warm`` batches."""
    for _ in engine.map(warm):
        pass
    start = time.perf_counter()
    photos = sum(len(out.photos) for out in engine.map(work))
    return photos / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet50"])
    p.add_argument("--data", default="../shared/data/oxford_pets")
    p.add_argument("--photos", type=int, default=24)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    paths, names = model_files(args.models)
    config = StudyConfig(models=args.models, data=args.data, out="unused", limit=args.photos + 2 * args.batch)
    files, ids, order = list_photos(config, names)
    items = list(batches(files, ids, order, list(range(len(order))), args.batch))
    warm, work = items[:2], items[2:]
    options = StudyOptions(atlas_photos=0)  # features from the kept block; no atlas pass
    load = os.getloadavg()[0]
    print(
        f"{args.photos} photos of {args.data}, models {args.models}, batch {args.batch}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the start"
    )
    rates: dict[str, float] = {}
    local = LocalEngine(paths, options, threads=1)
    rates["local"] = timed(local, work, warm)
    print(f"local, 1 thread: {rates['local']:.3f} photos/s", flush=True)
    # One local Ray for every worker count: starting Ray is not what is measured, and a
    # second start on a loaded machine can time out.
    import ray

    start_local_ray(max(args.workers))
    for n in args.workers:
        engine = RayEngine(paths, options, workers=n, threads=1)
        try:
            rates[f"ray {n}"] = timed(engine, work, warm[:1] * n)
        finally:
            engine.close()
        print(
            f"ray, {n} worker(s) of 1 thread: {rates[f'ray {n}']:.3f} photos/s "
            f"({rates[f'ray {n}'] / rates['local']:.2f}x local)",
            flush=True,
        )
    ray.shutdown()
    # Local once more, the engine still warm: on a shared machine the load drifts, and the
    # two local figures bracket the Ray ones.
    again = timed(local, work, [])
    print(f"local again: {again:.3f} photos/s", flush=True)
    rates["local"] = (rates["local"] + again) / 2
    print(f"load average at the end {os.getloadavg()[0]:.1f}; local = mean of both local runs")
    print("\n| engine | photos/s | ratio to local |\n|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.3f} | {rate / rates['local']:.2f} |")
    if "ray 1" in rates and "ray 2" in rates:
        efficiency = rates["ray 2"] / (2 * rates["ray 1"])
        overhead = 1 - rates["ray 1"] / rates["local"]
        print(
            f"\nRay's overhead with one worker: {overhead:.0%} of local's rate; two workers scale with "
            f"efficiency {efficiency:.2f}."
        )
        print(
            f"N workers of one core each (a cluster, one per core) should give about "
            f"N x {rates['ray 1']:.3f} photos/s (x {efficiency:.2f} where they share a machine's memory "
            f"bandwidth as here): e.g. 16 workers {16 * rates['ray 1']:.2f} photos/s."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
