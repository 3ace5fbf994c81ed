"""Shared fixtures: tiny models saved and reloaded the way a user's file is, and photos."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Scripts the tests start (bash scripts that call python3, streamlit) use the interpreter running
# the tests, i.e. the checkout's .venv, not whatever python3 comes first on the machine's PATH.
os.environ["PATH"] = os.path.dirname(os.path.abspath(sys.executable)) + os.pathsep + os.environ["PATH"]

import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CATS_VS_DOGS = SHARED_DATA / "cats_vs_dogs"
needs_shared_data = pytest.mark.skipif(
    not (CATS_VS_DOGS / "test").is_dir(),
    reason="../shared/data/cats_vs_dogs is not beside this checkout (real-photo tests skipped)",
)


def save_and_reload(model: keras.Model, folder: Path, name: str = "model") -> keras.Model:
    """Save ``model`` as .keras and load it back in safe mode, as the app does with user files."""
    from models.registry import load_model

    path = folder / f"{name}.keras"
    model.save(path)
    return load_model(path)


def random_photo(seed: int, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    """A smooth random RGB uint8 picture (blobs, not white noise)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def real_photo(kind: str = "cats", index: int = 4001) -> np.ndarray | None:
    path = CATS_VS_DOGS / "test" / kind / f"{kind[:-1]}.{index}.jpg"
    if not path.is_file():
        return None
    from explain.images import decode_image

    return decode_image(path.read_bytes())


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real cat photo where ../shared/data exists, else a generated picture."""
    found = real_photo()
    return found if found is not None else random_photo(0, (375, 500))


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory) -> Path:
    """A models folder holding one small CNN with its card and a training history."""
    from models.build import build_small_cnn
    from models.card import ModelCard, Preprocessing

    folder = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(1)
    model = build_small_cnn(input_size=64)
    model.save(folder / "tiny.keras")
    (folder / "tiny.history.csv").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n"
        "0,0.55,0.69,0.52,0.70\n1,0.61,0.65,0.58,0.67\n2,0.66,0.61,0.60,0.66\n"
    )
    ModelCard(
        name="tiny",
        architecture="small_cnn",
        class_names=["cat", "dog"],
        preprocessing=Preprocessing(input_size=(64, 64)),
        history="tiny.history.csv",
        test={"accuracy": 0.6, "loss": 0.66, "n": 40},
    ).save(folder / "tiny.json")
    return folder


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh --test installs it)"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class AppServer:
    url: str
    pid: int
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(small_model_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = {**os.environ, "CVD_MODELS_DIR": str(small_model_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "app.py"),
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"streamlit did not start: {log.read_text()[-2000:]}")
    yield AppServer(url, process.pid, log)
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
