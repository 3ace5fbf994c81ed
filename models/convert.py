"""Legacy Keras files (HDF5, SavedModel, JSON + weights) converted once into Keras 3 ``.keras``.

The file is first read as data by :mod:`models.model_files` (Lambda layers, classes that are
not built-in, damaged files and absurd datasets are refused there); only then does tf-keras
build the model from that checked config and read the weights as data. A Keras 3 model is
rebuilt from an equivalent config, the weights copied layer by layer, its outputs compared
with tf-keras' on the same input, and the result saved as ``<sha256>.keras`` in a folder the
app owns. tf-keras is imported inside functions, so the app does not pay for it at start.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE_ENV = "CVD_CACHE_DIR"  # the app's cache root (as models.evaluate); conversions go in converted/


def default_cache_dir() -> Path:
    """Return the folder for converted models: ``$CVD_CACHE_DIR/converted``, else ``.cache/converted``."""
    return Path(os.environ.get(CACHE_ENV, ROOT / ".cache")) / "converted"


@dataclass
class Conversion:
    """What one conversion made and from what: enough for a card to say where a model came from."""

    keras_path: Path  # the Keras 3 .keras file in the cache
    source_format: str  # "HDF5", "SavedModel", "JSON + HDF5 weights", "JSON + Keras 3 weights", "Keras 3"
    saved_by: str  # e.g. "Keras 2.2.4" or "TensorFlow 2.12 / Keras 2.12.0"; "" when unknown
    digest: str  # SHA-256 of the source (for a folder or a pair: of its files, in a fixed order)
    notes: list[str]  # what the conversion changed or dropped, for the card
    # Largest output difference from the tf-keras original on a random batch (relative to the
    # output's scale); None where there was no original to compare with (Keras 3 sources).
    max_difference: float | None = None

    def describe(self) -> str:
        """Return one line for the card: 'converted from HDF5 written by Keras 2.2.4'."""
        by = f" written by {self.saved_by}" if self.saved_by else ""
        return f"converted from {self.source_format}{by}"


def convert_to_keras3(path: Path, weights: Path | None = None, cache_dir: Path | None = None) -> Conversion:
    """Return the Keras 3 conversion of a legacy model file, converting it on first use.

    Parameters
    ----------
    path
        A legacy HDF5 model (any name: the bytes decide), a SavedModel folder, a ``.zip``
        holding a SavedModel or an architecture JSON with its weights, an architecture JSON
        (``model.to_json()``, weights beside it under the same stem or given), or a
        weights-only HDF5 with its architecture JSON beside it under the same stem.
    weights
        The weights of an architecture JSON: a ``save_weights`` HDF5 or a Keras 3
        ``.weights.h5``.
    cache_dir
        Where converted files go (default :func:`default_cache_dir`); keyed by the source's
        SHA-256, so a second call with the same file is a lookup.

    Raises
    ------
    models.registry.ModelLoadError
        With a one-line reason, for any file refused by the safety check or that cannot be
        converted faithfully (outputs differing by more than 1e-4).
    """
    from models.registry import ModelLoadError

    path = Path(path)
    try:
        return _convert_any(path, Path(weights) if weights else None, cache_dir)
    except ModelLoadError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever a strange file trips, the app gets one line
        raise _error(f"{path.name}: cannot be converted ({type(err).__name__}: {_short(err)})") from None


def _convert_any(path: Path, weights: Path | None, cache_dir: Path | None) -> Conversion:
    from models.model_files import sniff

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not path.exists():
        raise _error(f"{path.name}: no such file")
    kind = sniff(path)
    if kind == "zip" and path.suffix.lower() == ".keras":
        return Conversion(path, "Keras 3", "Keras 3", sha256_of([path]), [])
    if kind == "zip":
        return _convert_zip(path, cache)
    model_path, weights_path = _pair(path, weights, kind)
    sources = [model_path] if weights_path is None else [model_path, weights_path]
    digest = sha256_of(sources)
    hit = _cached(cache, digest)
    if hit is not None:
        return hit
    return _convert(model_path, weights_path, digest, cache)


# --------------------------------------------------------------------------- sources and cache


def sha256_of(paths: list[Path]) -> str:
    """Return the SHA-256 of files (a folder: its files in sorted order, names included)."""
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if path.is_dir():
                digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            with open(file, "rb") as fh:
                while chunk := fh.read(2**20):
                    digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()


def _error(message: str) -> Exception:
    from models.registry import ModelLoadError

    return ModelLoadError(message)


def _pair(path: Path, weights: Path | None, kind: str) -> tuple[Path, Path | None]:
    """Return (architecture or model, weights or None), finding a partner file by its stem."""
    from models.model_files import read_hdf5, sniff

    if kind == "json":
        if weights is None:
            stem = path.name[: -len(".json")] if path.name.lower().endswith(".json") else path.stem
            candidates = [path.with_name(stem + s) for s in (".weights.h5", ".h5", ".hdf5", "_weights.h5")]
            weights = next((c for c in candidates if c.is_file() and sniff(c) == "hdf5"), None)
        if weights is None:
            raise _error(f"{path.name}: an architecture without weights; give its weights file too")
        return path, weights
    if kind == "hdf5" and weights is None:
        info = read_hdf5(path)
        if info.kind in ("hdf5-weights", "keras3-weights"):
            stem = path.name.split(".")[0]
            arch = next(
                (c for c in (path.with_suffix(".json"), path.with_name(stem + ".json")) if c.is_file()), None
            )
            if arch is None or sniff(arch) != "json" or not _is_architecture(arch):
                raise _error(
                    f"{path.name}: holds only weights, no architecture; give the model's JSON "
                    "(model.to_json()) with it"
                )
            return arch, path
    if kind not in ("hdf5", "savedmodel"):
        raise _error(f"{path.name}: not a model file this app reads (HDF5, Keras zip, SavedModel or JSON)")
    return path, weights


def _is_architecture(path: Path) -> bool:
    try:
        data = json.loads(path.read_text()[: 32 * 2**20])
    except (ValueError, OSError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "class_name" in data and "config" in data


def _cached(cache: Path, digest: str) -> Conversion | None:
    keras_path, meta_path = cache / f"{digest}.keras", cache / f"{digest}.json"
    if not (keras_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        diff = meta.get("max_difference")
        return Conversion(
            keras_path,
            str(meta["source_format"]),
            str(meta["saved_by"]),
            digest,
            list(meta["notes"]),
            float(diff) if diff is not None else None,
        )
    except (ValueError, KeyError, TypeError, OSError):
        return None


def _convert_zip(path: Path, cache: Path) -> Conversion:
    from models.model_files import sniff
    from models.untrusted_zip import UnsafeArchive, unpack_model_zip

    digest = sha256_of([path])
    hit = _cached(cache, digest)
    if hit is not None:
        return hit
    (cache / "unpacked").mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=cache / "unpacked"))  # ours alone, even with two uploads at once
    try:
        try:
            unpacked = unpack_model_zip(path, folder)
        except UnsafeArchive as err:
            raise _error(str(err)) from None
        if unpacked.kind == "hdf5" and sniff(unpacked.model) == "zip":
            # A Keras 3 .keras inside the zip: nothing to convert; Keras loads it in safe mode.
            target = cache / f"{digest}.keras"
            os.replace(unpacked.model, target)
            conversion = Conversion(target, "Keras 3", "Keras 3", digest, [])
        else:
            conversion = _convert(unpacked.model, unpacked.weights, digest, cache, what=path.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    conversion.source_format += " in a zip"
    _write_meta(conversion)
    return conversion


# --------------------------------------------------------------------------- the conversion


def _convert(
    model_path: Path, weights_path: Path | None, digest: str, cache: Path, what: str = ""
) -> Conversion:
    from models.model_files import read_hdf5, read_model_file

    what = what or model_path.name
    info = read_model_file(model_path)  # the safety check: raises before any loader runs
    weights_info = read_hdf5(weights_path) if weights_path is not None else None
    notes: list[str] = []
    source_format = info.source_format
    if weights_info is not None:
        source_format = f"architecture JSON + {weights_info.source_format}"
    if info.kind == "hdf5-model" and info.keras3:
        model = _keras3_hdf5(model_path, what)
        notes.append("a Keras 3 HDF5 file, re-saved in the .keras format")
        return _save(model, cache, digest, source_format, info.saved_by, notes)
    if info.config is None:
        raise _error(f"{what}: no architecture found")
    if _is_keras3_config(info.config):
        model = _keras3_from_config(info.config, weights_path, weights_info, what)
        return _save(model, cache, digest, source_format, info.saved_by or "Keras 3", notes)
    original = _tf_keras_model(info, weights_path, weights_info, what)
    converted = _keras3_twin(original, notes, what)
    if weights_info is not None and weights_info.kind == "keras3-weights":
        _load_keras3_weights(converted, weights_path, what)
        notes.append("weights read by Keras 3; no tf-keras original to compare outputs with")
        difference = None
    else:
        if _copy_weights(original, converted, what) != original.count_params():
            raise _error(f"{what}: the Keras 3 model has other weights than the original; refused")
        difference = _compare(original, converted, what)
    saved_by = info.saved_by or (weights_info.saved_by if weights_info else "")
    conversion = _save(converted, cache, digest, source_format, saved_by, notes)
    conversion.max_difference = difference
    _write_meta(conversion)
    return conversion


def _is_keras3_config(config: dict[str, Any]) -> bool:
    return "module" in config and "registered_name" in config


def _keras3_hdf5(path: Path, what: str):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format  # Keras' own reader; takes an open file

    try:
        with h5py.File(path, "r") as h5:
            return legacy_h5_format.load_model_from_hdf5(h5, compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - many kinds; all mean "unusable"
        raise _error(f"{what}: cannot be loaded ({type(err).__name__}: {_short(err)})") from None


def _keras3_from_config(config, weights_path, weights_info, what):
    import keras

    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as err:  # noqa: BLE001
        raise _error(
            f"{what}: the architecture cannot be built ({type(err).__name__}: {_short(err)})"
        ) from None
    if weights_info is None or weights_info.kind != "keras3-weights":
        raise _error(f"{what}: a Keras 3 architecture needs Keras 3 weights (.weights.h5)")
    _load_keras3_weights(model, weights_path, what)
    return model


def _load_keras3_weights(model, weights_path: Path, what: str) -> None:
    # Keras 3 reads weights only from a name ending in .weights.h5; give it one in a folder we own.
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / "model.weights.h5"
        shutil.copyfile(weights_path, named)
        try:
            model.load_weights(named)
        except Exception as err:  # noqa: BLE001
            raise _error(f"{what}: the weights do not fit the architecture ({_short(err)})") from None


def _tf_keras_model(info, weights_path: Path | None, weights_info, what: str):
    """Return the tf-keras model built from the checked config, its weights read as data."""
    import tf_keras

    try:
        model = tf_keras.models.model_from_config(info.config)
    except Exception as err:  # noqa: BLE001
        raise _error(
            f"{what}: the architecture cannot be built ({type(err).__name__}: {_short(err)})"
        ) from None
    try:
        if info.kind == "savedmodel":
            # The variables are a checkpoint of this very model: read them as data by object
            # path; the SavedModel's functions are never loaded.
            status = model.load_weights(str(info.path / "variables" / "variables"))
            status.assert_existing_objects_matched().expect_partial()
        elif weights_info is not None:
            model.load_weights(str(weights_path))
        else:
            model.load_weights(str(info.path))
    except Exception as err:  # noqa: BLE001
        raise _error(
            f"{what}: the weights do not fit the architecture ({type(err).__name__}: {_short(err)})"
        ) from None
    return model


def _short(err: Exception, n: int = 160) -> str:
    return " ".join(str(err).split())[:n]


# --------------------------------------------------------------------------- tf-keras -> Keras 3

_BASE_KEYS = {"name", "trainable", "dtype"}
_SHAPE_KEYS = {"batch_input_shape", "input_shape", "batch_size", "input_dim", "build_config"}
_TRAINING_ONLY = ("_initializer", "_regularizer", "_constraint")
# Settings Keras 3 renamed (the old name would be dropped, and the model change).
_RENAMED = {("LeakyReLU", "alpha"): "negative_slope"}


def _keras3_twin(original, notes: list[str], what: str):
    """Return a Keras 3 model with the same architecture as a tf-keras model (no weights yet)."""
    import keras

    from models.registry import ModelLoadError

    try:
        config = _k3_entry({"class_name": type(original).__name__, "config": original.get_config()}, notes)
    except ModelLoadError as err:
        raise _error(f"{what}: {err}") from None
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as err:  # noqa: BLE001
        raise _error(
            f"{what}: Keras 3 cannot rebuild this architecture ({type(err).__name__}: {_short(err)})"
        ) from None
    if not isinstance(model, keras.Model):
        raise _error(f"{what}: holds a {type(model).__name__}, not a Keras model")
    return model


def _k3_entry(entry: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    cls = entry["class_name"]
    cfg = dict(entry.get("config") or {})
    if cls in ("TFOpLambda", "SlicingOpLambda"):
        return _k3_tf_op(entry, cfg, notes)
    if cls == "Sequential":
        out = {
            "module": "keras",
            "class_name": "Sequential",
            "config": _k3_sequential(cfg, notes),
            "registered_name": None,
        }
    elif cls in ("Functional", "Model") and "layers" in cfg:
        _renumber_nodes(cfg)
        out = {
            "module": "keras.src.models.functional",  # where Keras 3 itself says Functional lives
            "class_name": "Functional",
            "config": {
                "name": cfg.get("name"),
                "trainable": cfg.get("trainable", True),
                "layers": [_k3_entry(layer, notes) for layer in cfg["layers"]],
                "input_layers": _single(cfg["input_layers"]),
                "output_layers": _single(cfg["output_layers"]),
            },
            "registered_name": "Functional",
        }
    else:
        out = {
            "module": "keras.layers",
            "class_name": cls,
            "config": _k3_layer(cls, cfg, notes),
            "registered_name": None,
        }
    for key in ("name", "inbound_nodes"):  # a layer inside a functional model
        if key in entry:
            out[key] = entry[key]
    return out


def _renumber_nodes(cfg: dict[str, Any]) -> None:
    """Number each layer's calls 0, 1, ... as Keras 3 will create them.

    tf-keras counts a node that a model or a Sequential made for itself when it was built, so
    a backbone or an augmentation Sequential called once inside a functional model is called
    at node 1 in its config; in Keras 3 that call is node 0.
    """
    refs: list[list] = []

    def collect(value: Any) -> None:
        if (
            isinstance(value, list)
            and len(value) >= 3
            and isinstance(value[0], str)
            and isinstance(value[1], int)
        ):
            refs.append(value)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for layer in cfg["layers"]:
        collect(layer.get("inbound_nodes") or [])
    collect(cfg.get("input_layers") or [])
    collect(cfg.get("output_layers") or [])
    used: dict[str, set[int]] = {}
    for ref in refs:
        used.setdefault(ref[0], set()).add(ref[1])
    order = {name: {old: new for new, old in enumerate(sorted(nodes))} for name, nodes in used.items()}
    for ref in refs:
        ref[1] = order[ref[0]][ref[1]]


SCALAR_FUNCTIONS = ("math.truediv", "math.multiply", "math.subtract", "math.add", "__operators__.add")


def _numbers(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def _k3_tf_op(entry: dict[str, Any], cfg: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Return Keras layers for the TensorFlow operations ``preprocess_input`` leaves in a model.

    model_files lets only these through: arithmetic with a constant (-> Rescaling), a channel
    flip ``x[..., ::-1]`` (-> a 1x1 convolution whose kernel is the permutation) and
    ``bias_add`` of a constant (-> Normalization with that mean and variance 1).
    """
    function = cfg.get("function")
    nodes = entry.get("inbound_nodes") or []
    # tf-keras writes a TFOpLambda's one call as [[inbound, node, tensor, {arguments}]].
    call = nodes[0] if len(nodes) == 1 and isinstance(nodes[0], list) else None
    if call and isinstance(call[0], list) and len(call) == 1:
        call = call[0]
    if not call or not isinstance(call[0], str) or len(call) < 4 or not isinstance(call[3], dict):
        raise _error(
            f"a TensorFlow operation in the model ({function}) is not called as preprocess_input calls it"
        )
    args = call[3]
    name = entry.get("name", cfg.get("name"))
    layer = {"name": name, "dtype": "float32"}
    if function == "__operators__.getitem":
        spec = args.get("slice_spec")
        flip = spec == [Ellipsis, {"start": None, "stop": None, "step": -1}] or spec == [
            {"class_name": "__ellipsis__"},
            {"start": None, "stop": None, "step": -1},
        ]
        if not flip:
            raise _error(f"a slice in the model ({str(spec)[:60]}) is not preprocess_input's channel flip")
        # RGB <-> BGR as a 1x1 convolution: exact, and a Keras layer Keras 3 saves and loads.
        perm = [[[[1.0 if i + j == 2 else 0.0 for j in range(3)] for i in range(3)]]]
        class_name = "Conv2D"
        layer |= {
            "filters": 3,
            "kernel_size": [1, 1],
            "use_bias": False,
            "kernel_initializer": {"class_name": "Constant", "config": {"value": perm}},
        }
        _note(notes, "preprocess_input's RGB-to-BGR flip inside the model rebuilt as a 1x1 convolution")
    elif function == "nn.bias_add":
        bias = args.get("bias")
        if not _numbers(bias):
            raise _error("a bias_add in the model does not add constants")
        class_name = "Normalization"
        layer |= {"axis": -1, "mean": [-float(b) for b in bias], "variance": [1.0] * len(bias)}
        _note(notes, "preprocess_input's mean subtraction inside the model rebuilt as a Normalization layer")
    elif _numbers(args.get("y")) and all(args["y"]) and function in SCALAR_FUNCTIONS:
        # Per-channel constants (torch-style preprocess_input: x / std): a Normalization with
        # mean m and variance v computes (x - m) / sqrt(v).
        y = [float(v) for v in args["y"]]
        zero, one = [0.0] * len(y), [1.0] * len(y)
        mean, variance = {
            "math.truediv": (zero, [v * v for v in y]),
            "math.multiply": (zero, [1.0 / (v * v) for v in y]),
            "math.subtract": (y, one),
            "math.add": ([-v for v in y], one),
            "__operators__.add": ([-v for v in y], one),
        }[function]
        if function in ("math.multiply", "math.truediv") and any(v < 0 for v in y):
            raise _error(
                f"a TensorFlow operation in the model ({function}) scales a channel by a negative number"
            )
        class_name = "Normalization"
        layer |= {"axis": -1, "mean": mean, "variance": variance}
        _note(
            notes, "preprocess_input's per-channel scaling inside the model rebuilt as a Normalization layer"
        )
    else:
        y = args.get("y")
        if not isinstance(y, (int, float)) or isinstance(y, bool) or (function == "math.truediv" and y == 0):
            raise _error(
                f"a TensorFlow operation in the model ({function}) is not arithmetic with a constant"
            )
        scale, offset = {
            "math.truediv": (1.0 / y, 0.0),
            "math.multiply": (float(y), 0.0),
            "math.subtract": (1.0, -float(y)),
            "math.add": (1.0, float(y)),
            "__operators__.add": (1.0, float(y)),
        }[function]
        class_name = "Rescaling"
        layer |= {"scale": scale, "offset": offset}
        _note(notes, "TensorFlow arithmetic inside the model (preprocess_input) rebuilt as Rescaling layers")
    return {
        "module": "keras.layers",
        "class_name": class_name,
        "config": layer,
        "registered_name": None,
        "name": name,
        "inbound_nodes": [[[call[0], call[1], call[2], {}]]],
    }


def _single(refs: Any) -> Any:
    # tf-keras lists even one input or output ([[name, node, tensor]]); Keras 3 reads a list of
    # one as a list-valued output, and a Sequential around it then sees two tensors.
    if isinstance(refs, list) and len(refs) == 1 and isinstance(refs[0], list):
        return refs[0]
    return refs


def _k3_sequential(cfg: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    layers = list(cfg["layers"]) if isinstance(cfg, dict) else list(cfg)
    if layers and layers[0]["class_name"] != "InputLayer":
        first = layers[0].get("config", {})
        shape = first.get("batch_input_shape") or first.get("batch_shape")
        if shape is None and isinstance(cfg, dict):
            shape = cfg.get("build_input_shape")
        if shape is not None:
            layers.insert(
                0,
                {
                    "class_name": "InputLayer",
                    "config": {"batch_input_shape": list(shape), "dtype": "float32"},
                },
            )
    return {
        "name": cfg.get("name") if isinstance(cfg, dict) else None,
        "trainable": cfg.get("trainable", True) if isinstance(cfg, dict) else True,
        "layers": [_k3_entry(layer, notes) for layer in layers],
    }


def _k3_layer(cls: str, cfg: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Return a layer config Keras 3's class accepts: same meaning, Keras 2-only keys dropped."""
    import keras

    if cls == "InputLayer":
        shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
        return {
            "batch_shape": list(shape) if shape else None,
            "dtype": _dtype(cfg.get("dtype")),
            "name": cfg.get("name"),
        }
    klass = getattr(keras.layers, cls)
    params = inspect.signature(klass.__init__).parameters
    accepts = {p for p in params if p not in ("self", "kwargs", "args")} | _BASE_KEYS
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        key = _RENAMED.get((cls, key), key)
        if key in _SHAPE_KEYS or key.endswith(_TRAINING_ONLY):
            continue
        if key not in accepts:
            if not (key == "groups" and value == 1) and key != "rng_type":
                _note(notes, f"{cls}: dropped the Keras 2 setting {key}={value!r}")
            continue
        if key in ("layer", "backward_layer", "cell") and isinstance(value, dict) and "class_name" in value:
            value = _k3_entry(value, notes)
        out[key] = value
    if "dtype" in out:
        out["dtype"] = _dtype(out["dtype"])
    if cls == "BatchNormalization" and isinstance(out.get("axis"), list) and len(out["axis"]) == 1:
        out["axis"] = out["axis"][0]
    return out


def _dtype(value: Any) -> str:
    if isinstance(value, dict):  # a dtype policy object
        value = (value.get("config") or {}).get("name", "float32")
    if not isinstance(value, str) or value.startswith("mixed"):
        return "float32"  # mixed precision keeps float32 weights; explain in float32
    return value


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def _is_model(layer) -> bool:
    return hasattr(layer, "layers") and isinstance(getattr(layer, "layers", None), list)


def _copy_weights(src, dst, what: str) -> int:
    """Copy every layer's weights from the tf-keras model into its Keras 3 twin, by name;
    return how many numbers were copied."""
    by_name = {layer.name: layer for layer in dst.layers}
    copied = 0
    for layer in src.layers:
        target = by_name.get(layer.name)
        if target is None:
            if layer.weights:
                raise _error(f"{what}: layer {layer.name} has no counterpart in the Keras 3 model")
            continue
        if _is_model(layer) and _is_model(target):
            copied += _copy_weights(layer, target, what)
            continue
        values = layer.get_weights()
        if not values:
            continue  # e.g. preprocess_input's channel flip: its Keras 3 kernel is built in
        if len(values) != len(target.weights):
            raise _error(
                f"{what}: layer {layer.name} holds {len(values)} arrays but Keras 3's {target.name} "
                f"takes {len(target.weights)}"
            )
        try:
            target.set_weights(values)
        except ValueError as err:
            raise _error(f"{what}: layer {layer.name}: {_short(err)}") from None
        copied += sum(int(v.size) for v in values)
    return copied


TOLERANCE = 1e-4


def _compare(original, converted, what: str) -> float:
    """Raise ModelLoadError unless both models give the same outputs on the same input."""
    import numpy as np

    shapes = converted.input_shape if isinstance(converted.input_shape, list) else [converted.input_shape]
    rng = np.random.default_rng(0)
    inputs = []
    for shape in shapes:
        dims = [2] + [d if d else 64 for d in shape[1:]]
        # Pixels as models were fed them: [0, 1], [-1, 1] and raw [0, 255]; a model trained on
        # one scale saturates on another, so all three are compared.
        parts = [rng.uniform(lo, hi, dims) for lo, hi in ((0, 1), (-1, 1), (0, 255))]
        inputs.append(np.concatenate(parts).astype("float32"))
    feed = inputs if len(inputs) > 1 else inputs[0]
    want = [np.asarray(t) for t in _as_list(original(feed, training=False))]
    got = [np.asarray(t) for t in _as_list(converted(feed, training=False))]
    if len(want) != len(got) or any(a.shape != b.shape for a, b in zip(want, got)):
        raise _error(f"{what}: the converted model's outputs have other shapes than the original's")
    worst = max(float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(a)))) for a, b in zip(want, got))
    if not np.isfinite(worst) or worst > TOLERANCE:
        raise _error(
            f"{what}: refused: the converted model's outputs differ from the original's by {worst:.2g}"
        )
    return worst


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _save(model, cache: Path, digest: str, source_format: str, saved_by: str, notes: list[str]) -> Conversion:
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{digest}.keras"
    # Write under a temporary name and rename, so a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    conversion = Conversion(target, source_format, saved_by, digest, notes)
    _write_meta(conversion)
    return conversion


def _write_meta(conversion: Conversion) -> None:
    meta = {k: v for k, v in asdict(conversion).items() if k not in ("keras_path", "digest")}
    path = conversion.keras_path.with_suffix(".json")
    path.write_text(json.dumps(meta, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Convert one legacy file from the command line; print what it was and where it went."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m models.convert", description=main.__doc__)
    parser.add_argument("path", type=Path, help="HDF5 model, SavedModel folder, zip, or architecture JSON")
    parser.add_argument("--weights", type=Path, help="the weights of an architecture JSON")
    parser.add_argument("--cache", type=Path, help="folder for converted files (default .cache/converted)")
    args = parser.parse_args(argv)
    from models.registry import ModelLoadError

    try:
        conversion = convert_to_keras3(args.path, args.weights, args.cache)
    except ModelLoadError as err:
        print(err)
        return 1
    diff = "" if conversion.max_difference is None else f"; outputs within {conversion.max_difference:.1e}"
    print(f"{args.path.name}: {conversion.describe()}{diff} -> {conversion.keras_path}")
    for note in conversion.notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
