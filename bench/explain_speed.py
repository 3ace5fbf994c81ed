"""How fast are explanations? Every figure against a floor measured in the same run.

    pip install -r bench/requirements.txt
    python3 bench/explain_speed.py [--reps 5] [--quick] [--out bench/results/speed.json]

For ResNet-50 and ResNet-101 at 224 px, batch 1 and 8 (median of --reps after warm-up):
  a  prediction alone                        (engine)
  b  Grad-CAM at one layer                   (engine)
  c  Grad-CAM at every residual block, plus the feature maps of the chosen layer (engine)
  d  the floor: one compiled forward+backward pass to all block outputs, written plainly
  e  the Keras Grad-CAM example recipe, looped over the blocks
  f  tf-keras-vis Gradcam, looped over the blocks
Then: cold start (new process to first finished explanation), peak resident memory over 200
successive explanations of different photos and its growth from the 20th to the 200th, and
the Layer-depth page (warm, new photo) against the engine's c for both models.
Prints one JSON object and a table. Uses the shipped models when present, else random weights.

    python3 bench/explain_speed.py --methods [--size 224] [--random-weights] [--memory-count 200]

``--quick-compile`` (either run) first switches off Grappler's graph rewriting as the app's
warm-up does (ui.warmup.compile_quickly); run with and without it to compare.

measures instead every explanation method (explain.methods) on ResNet-50, batch 1, each
against the same floor d measured in the same run: all the one-pass CAMs together at every
block against Grad-CAM alone at every block (target: at most +15 %), Integrated Gradients
with 32 steps (target: at most 40 floors), SmoothGrad with 16 samples (at most 20), saliency,
Guided Grad-CAM, and the cost per channel of Score-CAM and Ablation-CAM (64 channels of the
last block); then resident memory after the 20th and the last of --memory-count photos for
every method (target: flat, under 5 % growth).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import warnings  # noqa: E402

# The plain recipes call Functional models with a tensor where Keras expects {"image": ...}.
warnings.filterwarnings("ignore", message="The structure of `inputs`")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from explain.device import describe_device  # noqa: E402
from explain.explainer import Explainer  # noqa: E402
from explain.feature_maps import feature_grid, top_channels  # noqa: E402
from explain.images import decode_image  # noqa: E402
from models.build import build_resnet  # noqa: E402
from models.card import ModelCard, Preprocessing  # noqa: E402

SIZE = 224  # --size changes it (the methods run)
TEST = ROOT.parent / "shared" / "data" / "cats_vs_dogs" / "test"


def photos(n: int, seed: int = 0) -> list[np.ndarray]:
    """Real test photos where ../shared/data exists, else smooth generated pictures."""
    files = sorted(TEST.glob("*/*.jpg")) if TEST.is_dir() else []
    if files:
        rng = np.random.default_rng(seed)
        return [decode_image(files[i].read_bytes()) for i in rng.choice(len(files), n, replace=False)]
    import cv2

    rng = np.random.default_rng(seed)
    return [cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (500, 375)) for _ in range(n)]


def median_time(fn, reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def model_for(arch: str, folder: Path) -> tuple[keras.Model, Path, str]:
    shipped = ROOT / "models" / "shipped" / f"{arch}.keras"
    if shipped.is_file():
        from models.registry import load_model

        return load_model(shipped), shipped, "shipped"
    keras.utils.set_random_seed(0)
    model = build_resnet(arch, input_size=None)
    path = folder / f"bench_{arch}.keras"
    model.save(path)
    ModelCard(f"bench_{arch}", arch, ["cat", "dog"], Preprocessing((SIZE, SIZE))).save(
        path.with_suffix(".json")
    )
    return model, path, "random weights"


# -- d: the floor, written plainly ----------------------------------------------------------
def floor_pass(model: keras.Model, blocks: list[str]):
    grad_model = keras.Model(model.inputs, [model.get_layer(b).output for b in blocks] + [model.output])

    @tf.function(input_signature=[tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32)])
    def step(x):
        with tf.GradientTape() as tape:
            *activations, output = grad_model(x, training=False)
            score = tf.reduce_sum(output)
        return activations, tape.gradient(score, activations)

    return step


# -- e: the Keras example recipe (rebuilds the sub-model every call) ----------------------
def keras_example(model: keras.Model, batch: np.ndarray, layer: str) -> np.ndarray:
    grad_model = keras.models.Model(model.inputs, [model.get_layer(layer).output, model.output])
    with tf.GradientTape() as tape:
        conv_output, preds = grad_model(batch)
        class_channel = preds[:, 0]
    grads = tape.gradient(class_channel, conv_output)
    pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = tf.squeeze(conv_output[0] @ pooled[..., tf.newaxis])
    return (tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)).numpy()


def run_engine(explainer: Explainer, batch: np.ndarray, chosen: str) -> None:
    result = explainer.explain(batch, "blocks", keep=chosen)
    feature_grid(result.kept_activations[0], top_channels(result.kept_activations[0], 16))


def measure_model(arch: str, folder: Path, reps: int, quick: bool, loops: bool = True) -> dict:
    model, path, source = model_for(arch, folder)
    explainer = Explainer(model, ["cat", "dog"], (SIZE, SIZE))
    blocks = [b.path for b in explainer.layers.blocks]
    chosen = explainer.layers.last.path
    floor = floor_pass(model, blocks)
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import BinaryScore

        vis = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    except ImportError:
        vis = None
    out: dict = {
        "model": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name,
        "weights": source,
        "blocks": len(blocks),
    }
    pics = photos(8, seed=1)
    for n in (1, 8):
        batch = explainer.prepare(pics[:n])
        row = {
            "a_predict": median_time(lambda: explainer.predict(batch), reps),
            "b_one_layer": median_time(lambda: explainer.explain(batch, [chosen]), reps),
            "c_all_blocks_and_features": median_time(lambda: run_engine(explainer, batch, chosen), reps),
            "d_floor": median_time(lambda: floor(tf.constant(batch)), reps),
        }
        loop_reps = 1 if (quick or n > 1) else 2
        if not loops:
            row["c/d"] = row["c_all_blocks_and_features"] / row["d_floor"]
            out[f"batch{n}"] = row
            print(
                f"  {arch} batch {n}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), file=sys.stderr
            )
            continue
        keras_example(model, batch, blocks[-1])  # warm-up
        row["e_keras_example_loop"] = median_time(
            lambda: [keras_example(model, batch, b) for b in blocks], loop_reps, warmup=0
        )
        if vis is not None:
            score = BinaryScore([1.0] * n)
            vis(score, batch, penultimate_layer=blocks[-1])  # warm-up
            row["f_tf_keras_vis_loop"] = median_time(
                lambda: [vis(score, batch, penultimate_layer=b) for b in blocks], loop_reps, warmup=0
            )
        row["c/d"] = row["c_all_blocks_and_features"] / row["d_floor"]
        row["e/c"] = row["e_keras_example_loop"] / row["c_all_blocks_and_features"]
        if "f_tf_keras_vis_loop" in row:
            row["f/c"] = row["f_tf_keras_vis_loop"] / row["c_all_blocks_and_features"]
        out[f"batch{n}"] = row
        print(f"  {arch} batch {n}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), file=sys.stderr)
    out["traces"] = explainer.traces
    return out


def interleaved(fns: dict, reps: int, warmup: int = 1) -> dict[str, float]:
    """Return the median seconds of each function, running one rep of each in turn."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in times.items()}


# -- the methods run (--methods) ----------------------------------------------------------
def methods_run(
    size: int, random_weights: bool, reps: int, memory_count: int, slow_count: int, memory_size: int
) -> dict:
    """Every method of explain.methods on ResNet-50, batch 1, against the floor of this run."""
    from explain import attributions
    from explain.ablation_cam import ablation_cam
    from explain.methods import METHODS, ONE_PASS, method_map, names
    from explain.score_cam import score_cam

    folder = Path(tempfile.mkdtemp(prefix="bench-methods-"))
    shipped = ROOT / "models" / "shipped" / "resnet50.keras"
    if random_weights or not shipped.is_file():
        keras.utils.set_random_seed(0)
        model, source = build_resnet("resnet50", input_size=None), "random weights"
    else:
        model, source = model_for("resnet50", folder)[0], "shipped"
    explainer = Explainer(model, ["cat", "dog"], (size, size))
    blocks = [b.path for b in explainer.layers.blocks]
    last = explainer.layers.last.path
    floor = floor_pass(model, blocks)
    batch = explainer.prepare(photos(1, seed=1))
    one_pass = tuple(names(ONE_PASS))
    kept = explainer.explain(batch, [last], keep=last)
    acts, target = kept.kept_activations[0], int(kept.targets[0])
    channels = 64
    gradient_cams = tuple(m for m in one_pass if m != "eigencam")
    # Interleaved (one rep of each in turn), so a burst of load from elsewhere hits all alike.
    fast = interleaved(
        {
            "floor": lambda: floor(tf.constant(batch)),
            "gradcam": lambda: explainer.explain(batch, "blocks", methods=("gradcam",)),
            "all": lambda: explainer.explain(batch, "blocks", methods=one_pass),
            "gradient_cams": lambda: explainer.explain(batch, "blocks", methods=gradient_cams),
            "saliency": lambda: attributions.saliency(explainer, batch),
            "guided": lambda: attributions.guided_grad_cam(explainer, batch, last),
        },
        reps,
    )
    slow = interleaved(
        {
            "floor": lambda: floor(tf.constant(batch)),
            "ig": lambda: attributions.integrated_gradients(explainer, batch, steps=32),
            "smooth": lambda: attributions.smoothgrad(explainer, batch, samples=16),
            "score": lambda: score_cam(explainer, batch[0], acts, target, channels),
            "ablation": lambda: ablation_cam(explainer, batch[0], last, acts, target, channels),
        },
        max(1, reps // 2),
    )
    d, gradcam_all, all_cams, without_eigen = (
        fast["floor"],
        fast["gradcam"],
        fast["all"],
        fast["gradient_cams"],
    )
    sal, guided, ig, smooth = fast["saliency"], fast["guided"], slow["ig"], slow["smooth"]
    score, ablation = slow["score"], slow["ablation"]
    d_slow = slow["floor"]
    row = {
        "d_floor_s": d,
        "gradcam_all_blocks_s": gradcam_all,
        "all_one_pass_cams_all_blocks_s": all_cams,
        "all_cams / gradcam": all_cams / gradcam_all,
        "all_but_eigencam / gradcam": without_eigen / gradcam_all,
        "gradcam_all_blocks / floor": gradcam_all / d,
        "d_floor_beside_slow_s": d_slow,
        "ig_32_steps / floor": ig / d_slow,
        "smoothgrad_16 / floor": smooth / d_slow,
        "saliency / floor": sal / d,
        "guided_gradcam / floor": guided / d,
        "scorecam_per_channel / floor": score / channels / d_slow,
        "ablationcam_per_channel / floor": ablation / channels / d_slow,
        "scorecam_per_channel_s": score / channels,
        "ablationcam_per_channel_s": ablation / channels,
    }
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), file=sys.stderr)
    memory = {}
    pics = photos(min(max(memory_count, slow_count), 200), seed=2)
    sized = explainer if memory_size == size else Explainer(model, ["cat", "dog"], (memory_size, memory_size))
    for name in METHODS if memory_count else ():
        count = memory_count if METHODS[name].one_pass else slow_count
        at = {}
        for i in range(count):
            one = sized.prepare([pics[i % len(pics)]])
            if METHODS[name].one_pass:
                sized.explain(one, "blocks", methods=(name,))
            else:
                method_map(sized, name, one, sized.layers.last.path)
            if i + 1 in (min(20, count), count):
                at[i + 1] = rss_mb()
        first, end = at[min(20, count)], at[count]
        memory[name] = {
            "photos": count,
            "rss_20th_mb": first,
            "rss_last_mb": end,
            "growth": (end - first) / first,
        }
        print(f"  memory {name}: {first:.0f} -> {end:.0f} MB over {count} photos", file=sys.stderr)
    ig_check = attributions.integrated_gradients(explainer, batch, steps=32)
    return {
        "model": "resnet50",
        "weights": source,
        "input": size,
        "batch": 1,
        "blocks": len(blocks),
        "one_pass_cams": list(one_pass),
        "times": row,
        "ig_completeness_relative_error": float(ig_check.relative_error[0]),
        "memory_input": memory_size,
        "memory": memory,
        "traces": explainer.traces,
        "targets": {
            "all one-pass CAMs <= 1.15 x Grad-CAM": row["all_cams / gradcam"] <= 1.15,
            "IG 32 steps <= 40 x floor": row["ig_32_steps / floor"] <= 40,
            "SmoothGrad 16 <= 20 x floor": row["smoothgrad_16 / floor"] <= 20,
            "memory growth < 5 % (every method)": (
                all(m["growth"] < 0.05 for m in memory.values()) if memory else None
            ),
        },
    }


COLD = """
import os, sys, time; t0 = time.perf_counter()
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"; sys.path.insert(0, {root!r})
from explain.explainer import Explainer; from explain.images import decode_image
from models.registry import entry_for, load_model, completed_card
t1 = time.perf_counter(); entry = entry_for({path!r}); model = load_model(entry.path)
explainer = Explainer.from_card(model, completed_card(entry, model)); t2 = time.perf_counter()
import numpy as np; rgb = np.full((375, 500, 3), 128, np.uint8)
explainer.explain(explainer.prepare([rgb]), "blocks"); t3 = time.perf_counter()
print({{"imports": t1 - t0, "load": t2 - t1, "first_explanation": t3 - t2}})
"""


def cold_start(path: Path) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", COLD.format(root=str(ROOT), path=str(path))],
        capture_output=True,
        text=True,
        check=True,
    )
    total = time.perf_counter() - t0
    parts = eval(done.stdout.strip().splitlines()[-1])  # our own child's dict of floats
    return {"total_s": total, **{k + "_s": v for k, v in parts.items()}}


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_run(path: Path, count: int = 200) -> dict:
    from models.registry import completed_card, entry_for, load_model

    entry = entry_for(path)
    model = load_model(path)
    explainer = Explainer(model, completed_card(entry, model).class_names, (SIZE, SIZE))
    pics = photos(min(count, 200), seed=2)
    at = {}
    for i in range(count):
        run_engine(explainer, explainer.prepare([pics[i % len(pics)]]), explainer.layers.last.path)
        if i + 1 in (20, count):
            at[i + 1] = rss_mb()
    return {
        "explanations": count,
        "rss_at_20_mb": at[20],
        f"rss_at_{count}_mb": at[count],
        "growth_20_to_end": (at[count] - at[20]) / at[20],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "traces": explainer.traces,
    }


def layer_depth_page(folder: Path, names: tuple[str, str], reps: int) -> float:
    """Median seconds for the Layer-depth page to answer for a new photo, warm."""
    from streamlit.testing.v1 import AppTest

    os.environ["CVD_MODELS_DIR"] = str(folder)
    at = AppTest.from_file(str(ROOT / "pages" / "2_Layer_depth.py"), default_timeout=600)
    at.session_state["depth_left"], at.session_state["depth_right"] = names
    at.run()
    samples = at.multiselect(key="depth_samples").options
    times = []
    for sample in samples[1 : reps + 1] or samples[:1]:
        t0 = time.perf_counter()
        at.multiselect(key="depth_samples").set_value([sample]).run()
        times.append(time.perf_counter() - t0)
        assert not at.exception, [e.message for e in at.exception]
    return statistics.median(times)


def table(report: dict) -> str:
    keys = [
        "a_predict",
        "b_one_layer",
        "c_all_blocks_and_features",
        "d_floor",
        "e_keras_example_loop",
        "f_tf_keras_vis_loop",
        "c/d",
        "e/c",
        "f/c",
    ]
    lines = ["| model | batch | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for arch, data in report["models"].items():
        for n in (1, 8):
            row = data[f"batch{n}"]
            cells = [f"{row[k]:.3f}" if k in row else "-" for k in keys]
            lines.append(f"| {arch} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    global SIZE
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one repetition of the slow loops (e, f)")
    parser.add_argument("--memory-count", type=int, default=200)
    parser.add_argument("--skip-loops", action="store_true", help="leave out e and f (minutes each)")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--methods", action="store_true", help="the methods run (see above) instead")
    parser.add_argument("--size", type=int, default=SIZE, help="input size in pixels (methods run)")
    parser.add_argument("--random-weights", action="store_true", help="methods run: random ResNet-50")
    parser.add_argument(
        "--quick-compile",
        action="store_true",
        help="switch off Grappler's rewriting first, as the app does (ui.warmup.compile_quickly)",
    )
    parser.add_argument(
        "--slow-memory-count", type=int, help="methods run: photos for the slow CAMs and pixel attributions"
    )
    parser.add_argument("--memory-size", type=int, help="methods run: input size of the memory part")
    args = parser.parse_args()
    if args.quick_compile:
        from ui.warmup import compile_quickly

        compile_quickly()
    if args.methods:
        SIZE = args.size
        report = {
            "device": describe_device(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "photos": "real test photos" if TEST.is_dir() else "generated",
            "reps": args.reps,
            **methods_run(
                args.size,
                args.random_weights,
                args.reps,
                args.memory_count,
                args.slow_memory_count or args.memory_count,
                args.memory_size or args.size,
            ),
        }
        text = json.dumps(report, indent=2)
        print(text)
        print(
            "\nreproduce: python3 bench/explain_speed.py --methods "
            f"--size {args.size} --reps {args.reps} --memory-count {args.memory_count}"
            + (f" --slow-memory-count {args.slow_memory_count}" if args.slow_memory_count else "")
            + (f" --memory-size {args.memory_size}" if args.memory_size else "")
            + (" --random-weights" if args.random_weights else "")
        )
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text + "\n")
        return 0
    folder = Path(tempfile.mkdtemp(prefix="bench-models-"))
    report: dict = {
        "device": describe_device(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "input": SIZE,
        "reps": args.reps,
        "photos": "real test photos" if TEST.is_dir() else "generated",
        "models": {},
    }
    for arch in ("resnet50", "resnet101"):
        report["models"][arch] = measure_model(arch, folder, args.reps, args.quick, not args.skip_loops)
    paths = {arch: model_for(arch, folder)[1] for arch in ("resnet50", "resnet101")}
    report["cold_start"] = {arch: cold_start(p) for arch, p in paths.items()}
    report["memory_resnet50"] = memory_run(paths["resnet50"], args.memory_count)
    names = tuple(
        ModelCard.load(p.with_suffix(".json")).name if p.with_suffix(".json").is_file() else p.stem
        for p in paths.values()
    )
    page = layer_depth_page(folder, names, reps=3)
    engine_c = sum(report["models"][a]["batch1"]["c_all_blocks_and_features"] for a in paths)
    report["layer_depth_page"] = {
        "warm_new_photo_s": page,
        "engine_c_both_s": engine_c,
        "ratio": page / engine_c,
    }
    r101 = report["models"]["resnet101"]["batch1"]
    report["targets"] = {
        "c/d <= 1.3 (all)": all(
            report["models"][a][f"batch{n}"]["c/d"] <= 1.3 for a in paths for n in (1, 8)
        ),
        "e/c >= 30 (resnet101, batch 1)": r101["e/c"] >= 30 if "e/c" in r101 else None,
        "f/c >= 30 (resnet101, batch 1)": r101["f/c"] >= 30 if "f/c" in r101 else None,
        "memory growth 20->200 < 5%": report["memory_resnet50"]["growth_20_to_end"] < 0.05,
        "layer depth page <= 1.5 x c": report["layer_depth_page"]["ratio"] <= 1.5,
    }
    text = json.dumps(report, indent=2)
    print(text)
    print("\n" + table(report))
    print("\nreproduce: pip install -r bench/requirements.txt && python3 bench/explain_speed.py")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
