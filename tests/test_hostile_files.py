"""Hostile model files: each refused in one line that says why, nothing in them run, nothing
written outside our folders. Payloads write a marker file if they ever run; where cheap, a test
first shows that an unguarded loader does run them."""

from __future__ import annotations

import json
import shutil
import stat
import zipfile

import h5py
import numpy as np
import pytest

from models.convert import convert_to_keras3
from models.registry import ModelLoadError, load_model, scan


def refused(path, match: str, tmp_path, weights=None) -> str:
    """Assert convert_to_keras3 and the registry refuse ``path`` in one line; return the line."""
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match=match) as caught:
        convert_to_keras3(path, weights, cache_dir=cache)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300
    assert not list(cache.rglob("*.keras")), "a refused file left a converted model behind"
    return message


def tiny_tf_keras(tfk, extra=None):
    inputs = tfk.Input((8, 8, 3))
    x = inputs if extra is None else extra(x=inputs)
    x = tfk.layers.Conv2D(2, 3)(x)
    x = tfk.layers.GlobalAveragePooling2D()(x)
    return tfk.Model(inputs, tfk.layers.Dense(2, activation="softmax")(x))


@pytest.fixture(scope="session")
def hostile(tmp_path_factory):
    """The hostile files, made once: their folder and the marker each payload would write."""
    import tensorflow as tf
    import tf_keras

    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / "MARKER-payload-ran"
    files = {}

    def write_marker():
        with tf.control_dependencies([tf.io.write_file(str(marker), "ran")]):
            return tf.constant(1)

    # 1. An HDF5 model whose Lambda layer writes the marker (its bytecode is marshalled in the file).
    payload = eval(f"lambda t: (open({str(marker)!r}, 'w').write('ran'), t)[1]")  # noqa: S307
    lam = tiny_tf_keras(tf_keras, lambda x: tf_keras.layers.Lambda(payload)(x))
    lam.save(folder / "lambda.h5", save_format="h5")
    # 2. A SavedModel that is a program: its function writes the marker; no Keras config.
    module = tf.Module()
    module.f = tf.function(write_marker, input_signature=[])
    tf.saved_model.save(module, str(folder / "program"))
    # 3. A Keras SavedModel of built-in layers with a function attached that writes the marker.
    keras_sm = tiny_tf_keras(tf_keras)
    keras_sm.evil = tf.function(write_marker, input_signature=[])
    keras_sm.save(folder / "keras_with_function", save_format="tf")
    # 4. A plain model, to tamper with.
    plain = tiny_tf_keras(tf_keras)
    plain.save(folder / "plain.h5", save_format="h5")
    files["x"] = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    files["y"] = plain(files["x"]).numpy()
    if marker.exists():  # building the Lambda model calls it once, here, on purpose
        marker.unlink()
    return folder, marker


def test_lambda_bytecode_in_hdf5_is_refused_without_running(hostile, tmp_path):
    folder, marker = hostile
    message = refused(folder / "lambda.h5", "Lambda", tmp_path)
    assert "never run" in message
    disguised = tmp_path / "model.keras"  # the bytes decide, not the name
    shutil.copyfile(folder / "lambda.h5", disguised)
    with pytest.raises(ModelLoadError, match="Lambda"):
        load_model(disguised)
    assert not marker.exists()
    # The payload is real: an unguarded loader runs it.
    import tf_keras

    tf_keras.models.load_model(folder / "lambda.h5", compile=False, safe_mode=False)
    assert marker.exists()
    marker.unlink()


def test_savedmodel_program_is_refused_and_never_called(hostile, tmp_path):
    folder, marker = hostile
    refused(folder / "program", "no Keras config", tmp_path)
    with pytest.raises(ModelLoadError, match="no Keras config"):
        load_model(folder / "program")
    assert not marker.exists()


def test_keras_savedmodel_is_rebuilt_and_its_functions_never_called(hostile, tmp_path):
    folder, marker = hostile
    conversion = convert_to_keras3(folder / "keras_with_function", cache_dir=tmp_path / "cache")
    import keras

    model = keras.saving.load_model(conversion.keras_path, safe_mode=True)
    assert model.output_shape == (None, 2)
    assert not marker.exists()
    # The payload is real: loading the SavedModel as TensorFlow does and calling it writes the marker.
    import tensorflow as tf

    tf.saved_model.load(str(folder / "keras_with_function")).evil()
    assert marker.exists()
    marker.unlink()


def tampered(source, target, edit):
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        edit(config)
        h5.attrs["model_config"] = json.dumps(config)
    return target


def test_custom_and_code_classes_are_refused_wherever_they_hide(hostile, tmp_path):
    folder, _ = hostile

    def nest_custom(config):
        # A Sequential inside the model, holding a class that is not built in.
        dense = config["config"]["layers"][-1]
        dense["class_name"] = "Sequential"
        dense["config"] = {"name": "inner", "layers": [{"class_name": "EvilDense", "config": {"units": 2}}]}

    path = tampered(folder / "plain.h5", tmp_path / "custom.h5", nest_custom)
    assert "'EvilDense'" in refused(path, "not a built-in Keras layer", tmp_path)

    def module_import(config):
        config["config"]["layers"][1]["module"] = "antigravity"

    refused(tampered(folder / "plain.h5", tmp_path / "module.h5", module_import), "antigravity", tmp_path)

    def tf_op(config):
        config["config"]["layers"][1]["class_name"] = "TFOpLambda"
        config["config"]["layers"][1]["config"] = {"name": "x", "function": "io.write_file"}

    refused(tampered(folder / "plain.h5", tmp_path / "tfop.h5", tf_op), "TFOpLambda", tmp_path)

    def named_function(config):
        config["config"]["layers"][-1]["config"]["activation"] = "exec"

    refused(
        tampered(folder / "plain.h5", tmp_path / "act.h5", named_function),
        "not a built-in Keras activation",
        tmp_path,
    )


def test_truncated_hdf5(hostile, tmp_path):
    folder, _ = hostile
    data = (folder / "plain.h5").read_bytes()
    for n, cut in enumerate((len(data) // 2, 4096, 100)):
        path = tmp_path / f"cut{n}.h5"
        path.write_bytes(data[:cut])
        refused(path, "damaged or truncated", tmp_path)


def test_hdf5_declaring_huge_or_borrowed_data(hostile, tmp_path):
    folder, _ = hostile
    huge = tmp_path / "huge.h5"
    shutil.copyfile(folder / "plain.h5", huge)
    with h5py.File(huge, "r+") as h5:  # 4 TB declared, nothing stored
        h5["model_weights"].create_dataset("bomb", shape=(2**40,), dtype="f4", chunks=(1024,))
    assert huge.stat().st_size < 200_000
    assert "declares" in refused(huge, "declares", tmp_path)
    sparse = tmp_path / "sparse.h5"
    shutil.copyfile(folder / "plain.h5", sparse)
    with h5py.File(sparse, "r+") as h5:  # 400 MB declared, within the limit, but nothing behind it
        h5["model_weights"].create_dataset("hollow", shape=(10**8,), dtype="f4", chunks=(4096,))
    refused(sparse, "but stores", tmp_path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not weights" * 10)
    borrowed = tmp_path / "borrowed.h5"
    shutil.copyfile(folder / "plain.h5", borrowed)
    with h5py.File(borrowed, "r+") as h5:
        h5["model_weights"].create_dataset("ext", shape=(16,), dtype="u1", external=[(str(secret), 0, 16)])
    refused(borrowed, "other files", tmp_path)
    linked = tmp_path / "linked.h5"
    shutil.copyfile(folder / "plain.h5", linked)
    with h5py.File(linked, "r+") as h5:
        h5["model_weights"]["elsewhere"] = h5py.ExternalLink(str(secret), "/")
    refused(linked, "links to another file", tmp_path)


def make_zip(path, members: dict[str, bytes], symlink: str | None = None):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_zips_that_reach_outside_are_refused_and_write_nothing(hostile, tmp_path):
    folder, _ = hostile
    model = (folder / "plain.h5").read_bytes()
    escape = make_zip(tmp_path / "escape.zip", {"model.h5": model, "../../escaped.h5": model})
    assert "outside its folder" in refused(escape, "outside", tmp_path)
    link = make_zip(tmp_path / "link.zip", {"model.h5": model}, symlink="weights.h5")
    refused(link, "symbolic link", tmp_path)
    absolute = make_zip(tmp_path / "absolute.zip", {"/tmp/model.h5": model})
    refused(absolute, "outside", tmp_path)
    deep = make_zip(tmp_path / "deep.zip", {"a/" * 20 + "model.h5": model})
    refused(deep, "folders deep", tmp_path)
    assert not (tmp_path.parent / "escaped.h5").exists() and not (tmp_path / "escaped.h5").exists()
    assert not (tmp_path / "cache" / "unpacked").exists() or not any(
        (tmp_path / "cache" / "unpacked").iterdir()
    )


def test_zip_limits_and_names_we_make(hostile, tmp_path, monkeypatch):
    import models.untrusted_zip as untrusted_zip

    folder, _ = hostile
    model = (folder / "plain.h5").read_bytes()
    monkeypatch.setattr(untrusted_zip, "MAX_MEMBERS", 3)
    many = make_zip(tmp_path / "many.zip", {f"{i}.txt": b"x" for i in range(5)})
    refused(many, "entries; the limit is 3", tmp_path)
    monkeypatch.setattr(untrusted_zip, "MAX_UNPACKED_BYTES", 1000)
    big = make_zip(tmp_path / "big.zip", {"model.h5": model})
    refused(big, "unpacks to more than", tmp_path)
    monkeypatch.undo()
    # A good zip: the member's own name ("weird name;rm -rf.h5") never becomes a path here.
    good = make_zip(
        tmp_path / "good.zip",
        {"dir/weird name;rm -rf.h5": model, "labels.txt": b"0 a\n1 b\n", "__MACOSX/dir/._weird.h5": b"mac"},
    )
    unpacked = untrusted_zip.unpack_model_zip(good, tmp_path / "ours")
    assert sorted(p.name for p in (tmp_path / "ours").rglob("*")) == ["model.h5"]
    assert unpacked.model == tmp_path / "ours" / "model.h5"


def test_registry_lists_hostile_files_and_keeps_serving(hostile, tmp_path, monkeypatch):
    folder, marker = hostile
    user = tmp_path / "user"
    user.mkdir()
    shutil.copyfile(folder / "lambda.h5", user / "evil.h5")
    shutil.copyfile(folder / "plain.h5", user / "good.h5")
    shutil.copytree(folder / "program", user / "program")
    monkeypatch.setenv("CVD_MODELS_DIR", str(user))
    monkeypatch.setenv("CVD_CACHE_DIR", str(tmp_path / "cache"))
    entries = {e.name: e for e in scan() if e.source == "user"}
    assert set(entries) == {"evil", "good", "program"}
    for name in ("evil", "program"):
        with pytest.raises(ModelLoadError):
            load_model(entries[name].path)
    assert load_model(entries["good"].path).output_shape == (None, 2)
    assert not marker.exists()
    assert sorted(p.name for p in user.iterdir()) == ["evil.h5", "good.h5", "program"]
