"""Write a model as a compact, self-contained ``.keras`` file (weights stored in float16)."""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np

WEIGHTS_MEMBER = "model.weights.h5"


def _halve_h5(src: bytes) -> bytes:
    buf_in, buf_out = io.BytesIO(src), io.BytesIO()
    with h5py.File(buf_in, "r") as fin, h5py.File(buf_out, "w") as fout:

        def copy(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                if isinstance(data, np.ndarray) and data.dtype == np.float32:
                    data = data.astype(np.float16)
                fout.create_dataset(name, data=data)
                for key, value in obj.attrs.items():
                    fout[name].attrs[key] = value
            else:
                group = fout.require_group(name)
                for key, value in obj.attrs.items():
                    group.attrs[key] = value

        for key, value in fin.attrs.items():
            fout.attrs[key] = value
        fin.visititems(copy)
    return buf_out.getvalue()


def save_for_inference(model: keras.Model, path: str | Path, half: bool = True) -> Path:
    """Save ``model`` without optimizer state; with ``half`` its weights are stored as float16.

    The model's own dtype stays float32, so loading gives a float32 model on every device;
    only the file is halved (Keras casts the stored arrays into the float32 variables).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bare = keras.Model.from_config(model.get_config())
    bare.set_weights(model.get_weights())
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "model.keras"
        bare.save(plain)
        if not half:
            shutil.copyfile(plain, path)
            return path
        out = Path(tmp) / "half.keras"
        with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
            for item in zin.infolist():
                data = zin.read(item.filename)
                if item.filename == WEIGHTS_MEMBER:
                    data = _halve_h5(data)
                zout.writestr(item, data)
        shutil.copyfile(out, path)
    return path
