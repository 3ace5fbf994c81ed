"""What a model file is and whether we will touch it, read as data before any loader sees it.

A model file from a stranger is untrusted: a legacy HDF5 ``Lambda`` layer carries marshalled
Python bytecode that old loaders run, a ``TFOpLambda`` names any TensorFlow function (file
writes included), a SavedModel is a program, and an HDF5 file can declare terabytes in a few
bytes or point at other files on disk. Here the bytes decide the format (not the extension),
h5py reads attributes and dataset *headers* only, protobufs are parsed as messages, and the
architecture config is walked for every class it names: anything but a built-in Keras layer
(or initializer, regularizer, constraint) is refused with a one-line reason. Nothing here
imports tf-keras at module level.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"

MAX_CONFIG_BYTES = 32 * 2**20  # an architecture JSON; ResNet-152's is under 1 MB
MAX_DATASET_BYTES = 2 * 2**30  # one weight array (VGG-16's largest is 411 MB)
MAX_DECLARED_BYTES = 4 * 2**30  # all arrays of one file together
MAX_OBJECTS = 200_000  # groups and datasets in one HDF5 file
MAX_PROTO_BYTES = 512 * 2**20  # saved_model.pb / keras_metadata.pb

# Built-in classes that run code or load other programs: never accepted, whatever the file says.
CODE_CARRIERS = {
    "Lambda": "a Lambda layer (it carries Python code, marshalled bytecode in old files)",
    "TFOpLambda": "a TFOpLambda layer (it calls any TensorFlow function the file names)",
    "SlicingOpLambda": "a SlicingOpLambda layer (it calls TensorFlow functions the file names)",
    "TensorFlowOpLayer": "a TensorFlowOpLayer (it runs a TensorFlow graph the file carries)",
    "TFSMLayer": "a TFSMLayer (it loads and runs a SavedModel program)",
    "TorchModuleWrapper": "a TorchModuleWrapper (it runs pickled PyTorch code)",
    "JaxLayer": "a JaxLayer (it runs a Python function)",
    "FlaxLayer": "a FlaxLayer (it runs a Python module)",
}
# Plain data that configs spell as objects (shapes, tuples, dtype policies, input specs).
DATA_CLASSES = {
    "__tuple__",
    "TensorShape",
    "InputSpec",
    "Policy",
    "PolicyV1",
    "DTypePolicy",
    "FloatDTypePolicy",
    "__keras_tensor__",
    "__ellipsis__",
}
MODEL_CLASSES = {"Sequential", "Functional", "Model"}
# The TensorFlow functions a TFOpLambda may call: arithmetic with a constant, which is what
# ``keras.applications.*.preprocess_input`` called inside a model leaves (x / 127.5 - 1).
SCALAR_OPS = {"math.truediv", "math.multiply", "math.subtract", "math.add", "__operators__.add"}
# And what caffe-style preprocess_input (ResNet, VGG) leaves: RGB -> BGR by slicing, then the
# ImageNet means subtracted by bias_add.
CAFFE_OPS = {("SlicingOpLambda", "__operators__.getitem"), ("TFOpLambda", "nn.bias_add")}
TRUSTED_MODULE_ROOTS = {"keras", "tf_keras", "tensorflow"}


def _error(message: str) -> Exception:
    # Imported here: models.registry imports this module (the error class lives there).
    from models.registry import ModelLoadError

    return ModelLoadError(message)


@dataclass
class ModelFile:
    """A model file as read as data: its format, what wrote it and its checked architecture."""

    path: Path
    kind: str  # "keras3", "hdf5-model", "hdf5-weights", "keras3-weights", "savedmodel", "json", "zip"
    source_format: str  # for people: "HDF5", "SavedModel", "architecture JSON", ...
    saved_by: str = ""  # "Keras 2.2.4", "TensorFlow 2.12", "" when the file does not say
    keras_version: str = ""
    config: dict[str, Any] | None = None  # {"class_name": ..., "config": ...}, already checked
    notes: list[str] = field(default_factory=list)

    @property
    def keras3(self) -> bool:
        """True when Keras 3 wrote it (its config is Keras 3's, not tf-keras')."""
        return self.keras_version.startswith("3")


def sniff(path: str | Path) -> str:
    """Return what the bytes say a path is: "savedmodel", "hdf5", "zip", "json" or "unknown"."""
    path = Path(path)
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() else "unknown"
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            rest = head + fh.read(56)
    except OSError:
        return "unknown"
    if head == HDF5_SIGNATURE:
        return "hdf5"
    if head[:4] == ZIP_SIGNATURE:
        return "zip"
    if rest.lstrip()[:1] == b"{":
        return "json"
    return "unknown"


# --------------------------------------------------------------------------- the config walk


@lru_cache(maxsize=1)
def built_in_classes() -> frozenset[str]:
    """Return the class names a config may use: Keras 3's own layers, initializers, regularizers,
    constraints and models, less the layers that carry code."""
    import keras

    names: set[str] = set(MODEL_CLASSES) | DATA_CLASSES
    for module, base in (
        (keras.layers, keras.layers.Layer),
        (keras.initializers, keras.initializers.Initializer),
        (keras.regularizers, keras.regularizers.Regularizer),
        (keras.constraints, keras.constraints.Constraint),
    ):
        for name in dir(module):
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, base):
                names.add(name)
    return frozenset(names - set(CODE_CARRIERS) - {"Layer", "Wrapper"})


def check_config(config: Any, what: str = "the model") -> None:
    """Raise ModelLoadError when a config names code or a class that is not built into Keras.

    Every nested object is walked (a Sequential in a Sequential, a functional backbone, a
    wrapped layer, initializers), so a custom class cannot hide inside a built-in one.
    """
    allowed = built_in_classes()
    stack: list[Any] = [config]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > 2_000_000:
            raise _error(f"{what}: the architecture config is absurdly large")
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if "function_type" in node or node.get("class_name") == "__lambda__":
            raise _error(
                f"{what}: refused: it carries Python code (a Lambda function), which is never run here"
            )
        name = node.get("class_name")
        if isinstance(name, str):
            if name in ("TFOpLambda", "SlicingOpLambda") and _rebuildable_op(name, node):
                pass  # preprocess_input's arithmetic: rebuilt from Keras layers (models.convert)
            elif name in CODE_CARRIERS:
                called = (
                    (node.get("config") or {}).get("function")
                    if isinstance(node.get("config"), dict)
                    else None
                )
                also = (
                    f" (here tf.{called[:40]}, as preprocess_input inside a model makes)"
                    if isinstance(called, str)
                    else ""
                )
                raise _error(
                    f"{what}: refused: it holds {CODE_CARRIERS[name]}{also}, which is never run here"
                )
            elif name == "function":  # Keras 3 spells a built-in activation this way
                if not isinstance(node.get("config"), str) or not _built_in_activation(node["config"]):
                    raise _error(
                        f"{what}: refused: it names a function that is not a built-in Keras activation"
                    )
            elif name not in allowed and name not in ("TFOpLambda", "SlicingOpLambda"):
                raise _error(
                    f"{what}: refused: it uses the class {name[:60]!r}, which is not a built-in Keras layer "
                    "(custom code is never imported or run here)"
                )
            module = node.get("module")
            if isinstance(module, str) and module.split(".")[0] not in TRUSTED_MODULE_ROOTS:
                raise _error(
                    f"{what}: refused: it asks for the Python module {module[:60]!r}, which is never imported"
                )
            registered = node.get("registered_name")
            if isinstance(registered, str) and registered not in (name, "") and registered not in allowed:
                if not (name == "function" and _built_in_activation(registered)):
                    raise _error(
                        f"{what}: refused: it uses the registered class {registered[:60]!r} (not built in)"
                    )
        for key, value in node.items():
            if isinstance(value, str) and isinstance(key, str):
                _check_named_function(key, value, what)
        stack.extend(node.values())


_NAMED_OBJECT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,60}")


def _rebuildable_op(name: str, node: dict[str, Any]) -> bool:
    config = node.get("config")
    if not isinstance(config, dict):
        return False
    function = config.get("function")
    return (name == "TFOpLambda" and function in SCALAR_OPS) or (name, function) in CAFFE_OPS


def _check_named_function(key: str, value: str, what: str) -> None:
    """Refuse a function named by a string that is not Keras' own (loaders look names up)."""
    if key in ("activation", "recurrent_activation"):
        if not _built_in_activation(value):
            raise _error(f"{what}: refused: the activation {value[:40]!r} is not a built-in Keras activation")
    elif key.endswith(("_initializer", "_regularizer", "_constraint")) and not _NAMED_OBJECT.fullmatch(value):
        raise _error(f"{what}: refused: {key} names {value[:40]!r}, which is not a Keras object")


def _built_in_activation(name: str) -> bool:
    import keras

    try:
        keras.activations.get(name)
    except (ValueError, TypeError):
        return False
    return True


def parse_architecture(text: str | bytes, what: str) -> tuple[dict[str, Any], str]:
    """Return ``({"class_name", "config"}, keras_version)`` from ``model.to_json()`` text, checked."""
    if len(text) > MAX_CONFIG_BYTES:
        raise _error(f"{what}: the architecture is over {MAX_CONFIG_BYTES // 2**20} MB; refused")
    try:
        data = json.loads(text, object_hook=_plain_tuples)
    except (ValueError, UnicodeDecodeError) as err:
        raise _error(f"{what}: the architecture is not valid JSON ({str(err)[:80]})") from None
    if not isinstance(data, dict) or "class_name" not in data or "config" not in data:
        raise _error(f"{what}: not a Keras architecture (model.to_json() writes class_name and config)")
    check_config(data, what)
    return data, str(data.get("keras_version", ""))


# --------------------------------------------------------------------------- HDF5


def _open_hdf5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        text = " ".join(str(err).split())
        raise _error(f"{path.name}: the file is damaged or truncated ({text[:120]})") from None


def check_hdf5_contents(h5, what: str) -> None:
    """Raise ModelLoadError for an HDF5 file whose *declared* contents are unsafe to read.

    Headers only: no array is read. Refused: a dataset or the whole file declaring more than
    the limits, or far more than the file stores (a tiny file claiming terabytes), datasets
    that are not plain numbers, external storage, virtual datasets and external links (they
    point at other files on this disk).
    """
    import h5py
    import numpy as np

    problems: list[str] = []
    totals = {"declared": 0, "objects": 0}

    def visit(name: str, link) -> None:
        totals["objects"] += 1
        if totals["objects"] > MAX_OBJECTS:
            problems.append(f"holds more than {MAX_OBJECTS} objects")
            return
        if isinstance(link, (h5py.ExternalLink,)):
            problems.append(f"links to another file ({name[:60]})")
            return
        if isinstance(link, h5py.SoftLink):
            return
        obj = h5[name]
        for attr in obj.attrs:
            if _attr_bytes(obj.attrs, attr) > MAX_CONFIG_BYTES:
                problems.append(
                    f"has an attribute over {MAX_CONFIG_BYTES // 2**20} MB ({name[:40]}/{attr[:20]})"
                )
                return
        if not isinstance(obj, h5py.Dataset):
            return
        if obj.dtype.kind not in "fiub":
            problems.append(f"holds a dataset that is not numbers ({name[:60]}: {obj.dtype})")
            return
        if obj.is_virtual or obj.external:
            problems.append(f"holds a dataset stored in other files ({name[:60]})")
            return
        declared = (
            int(np.prod(obj.shape, dtype=np.float64)) * obj.dtype.itemsize
            if obj.shape
            else obj.dtype.itemsize
        )
        stored = obj.id.get_storage_size()
        totals["declared"] += declared
        if declared > MAX_DATASET_BYTES:
            problems.append(f"declares a {declared / 2**30:.1f} GB array ({name[:60]}); the limit is 2 GB")
        elif declared > 16 * 2**20 and stored * 64 < declared and obj.compression is None:
            problems.append(
                f"declares a {declared / 2**20:.0f} MB array ({name[:60]}) but stores {stored} bytes"
            )

    try:
        h5.visititems_links(visit) if hasattr(h5, "visititems_links") else h5.visititems(visit)
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        raise _error(
            f"{what}: the file is damaged or truncated ({' '.join(str(err).split())[:120]})"
        ) from None
    if not problems and totals["declared"] > MAX_DECLARED_BYTES:
        problems.append(f"declares {totals['declared'] / 2**30:.1f} GB of arrays; the limit is 4 GB")
    if problems:
        raise _error(f"{what}: refused: the HDF5 file {problems[0]}")


def _attr_bytes(attrs, name: str) -> int:
    try:
        return attrs.get_id(name).get_storage_size()
    except RuntimeError:  # HDF5 reports an empty attribute (a layer without weights) as an error
        return 0


def _attr_text(h5, name: str, what: str) -> str | None:
    if name not in h5.attrs:
        return None
    if _attr_bytes(h5.attrs, name) > MAX_CONFIG_BYTES:
        raise _error(f"{what}: its {name} attribute is over {MAX_CONFIG_BYTES // 2**20} MB; refused")
    value = h5.attrs[name]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def read_hdf5(path: str | Path) -> ModelFile:
    """Return an HDF5 model or weights file read as data; raise ModelLoadError to refuse it."""
    path = Path(path)
    what = path.name
    h5 = _open_hdf5(path)
    with h5:
        check_hdf5_contents(h5, what)
        try:
            config_text = _attr_text(h5, "model_config", what)
            version = _attr_text(h5, "keras_version", what) or ""
            backend = _attr_text(h5, "backend", what) or ""
            has_layer_names = "layer_names" in h5.attrs or (
                "model_weights" in h5 and "layer_names" in h5["model_weights"].attrs
            )
            keras3_weights = "layers" in h5 or "_layer_checkpoint_dependencies" in h5
        except (OSError, RuntimeError, KeyError) as err:
            raise _error(
                f"{what}: the file is damaged or truncated ({' '.join(str(err).split())[:120]})"
            ) from None
    saved_by = f"Keras {version}" if version else ""
    if backend and backend != "tensorflow":
        saved_by += f" ({backend} backend)"
    if config_text is not None:
        config, _ = parse_architecture(config_text, what)
        return ModelFile(path, "hdf5-model", "HDF5", saved_by, version, config)
    if has_layer_names:
        return ModelFile(path, "hdf5-weights", "HDF5 weights", saved_by, version)
    if keras3_weights:
        return ModelFile(path, "keras3-weights", "Keras 3 weights", "Keras 3", "3")
    raise _error(f"{what}: an HDF5 file, but neither a Keras model nor Keras weights")


# --------------------------------------------------------------------------- SavedModel


def _read_proto(path: Path, message, what: str):
    size = path.stat().st_size
    if size > MAX_PROTO_BYTES:
        raise _error(f"{what}: {path.name} is over {MAX_PROTO_BYTES // 2**20} MB; refused")
    try:
        message.ParseFromString(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and friends: all mean damaged
        raise _error(f"{what}: {path.name} is damaged ({type(err).__name__})") from None
    return message


def _plain_tuples(obj: dict[str, Any]) -> Any:
    # Keras configs spell tuples, shapes and `...` as objects; they are plain data.
    if obj.get("class_name") in ("__tuple__", "TensorShape") and isinstance(obj.get("items"), list):
        return obj["items"]
    if obj == {"class_name": "__ellipsis__"}:  # x[..., ::-1] in a slicing layer's arguments
        return Ellipsis
    return obj


def read_savedmodel(folder: str | Path) -> ModelFile:
    """Return a SavedModel folder's Keras architecture, read from its protobufs as data.

    The Keras config is ``keras_metadata.pb``'s root node (TF 2.5+) or, in TF 2.2-2.4, the
    metadata of the root object inside ``saved_model.pb``. A SavedModel with neither is a
    program, not a Keras model: refused. Its functions are never loaded, let alone called.
    """
    folder = Path(folder)
    what = folder.name or str(folder)
    from tensorflow.core.protobuf import saved_model_pb2

    saved = _read_proto(folder / "saved_model.pb", saved_model_pb2.SavedModel(), what)
    if not saved.meta_graphs:
        raise _error(f"{what}: saved_model.pb holds no graph; not a SavedModel")
    graph = saved.meta_graphs[0]
    tf_version = graph.meta_info_def.tensorflow_version
    metadata = ""
    identifier = ""
    meta_file = folder / "keras_metadata.pb"
    if meta_file.is_file():
        from tf_keras.protobuf import saved_metadata_pb2

        meta = _read_proto(meta_file, saved_metadata_pb2.SavedMetadata(), what)
        for node in meta.nodes:
            if node.node_path == "root":
                metadata, identifier = node.metadata, node.identifier
                break
    elif graph.object_graph_def.nodes:
        root = graph.object_graph_def.nodes[0]
        if root.WhichOneof("kind") == "user_object":
            metadata, identifier = root.user_object.metadata, root.user_object.identifier
    if not metadata or not identifier.startswith("_tf_keras"):
        raise _error(
            f"{what}: refused: this SavedModel has no Keras config (a SavedModel is a program; "
            "only Keras models are rebuilt here, and their functions are never run)"
        )
    try:
        data = json.loads(metadata, object_hook=_plain_tuples)
    except ValueError:
        raise _error(f"{what}: its Keras metadata is not valid JSON") from None
    if not isinstance(data, dict) or "config" not in data or "class_name" not in data:
        name = data.get("class_name", "?") if isinstance(data, dict) else "?"
        raise _error(
            f"{what}: refused: a subclassed Keras model ({str(name)[:60]}) has its architecture in Python "
            "code, not in a config"
        )
    config = {"class_name": data["class_name"], "config": data["config"]}
    check_config(config, what)
    if not (folder / "variables" / "variables.index").is_file():
        raise _error(f"{what}: the SavedModel has no variables/variables.index (its weights)")
    version = str(data.get("keras_version", "")) or ""
    saved_by = f"TensorFlow {tf_version}" if tf_version else ""
    if version and version != tf_version:
        saved_by += f" / Keras {version}" if saved_by else f"Keras {version}"
    return ModelFile(folder, "savedmodel", "SavedModel", saved_by, version, config)


def read_model_file(path: str | Path) -> ModelFile:
    """Return any model file or folder read as data; the bytes, not the name, decide its kind."""
    path = Path(path)
    kind = sniff(path)
    if kind == "savedmodel":
        return read_savedmodel(path)
    if kind == "hdf5":
        return read_hdf5(path)
    if kind == "json":
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise _error(f"{path.name}: the architecture is over {MAX_CONFIG_BYTES // 2**20} MB; refused")
        config, version = parse_architecture(path.read_bytes(), path.name)
        saved_by = f"Keras {version}" if version else ""
        return ModelFile(path, "json", "architecture JSON", saved_by, version, config)
    if kind == "zip":
        if path.suffix.lower() == ".keras":
            return ModelFile(path, "keras3", "Keras 3", "Keras 3", "3")
        return ModelFile(path, "zip", "zip archive")
    if path.is_dir():
        raise _error(f"{path.name}: a folder without saved_model.pb; not a SavedModel")
    if not path.exists():
        raise _error(f"{path.name}: no such file")
    raise _error(f"{path.name}: not a model file this app reads (HDF5, Keras zip, SavedModel or JSON)")
