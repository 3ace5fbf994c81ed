"""scripts/setup.sh as a new user meets it: a fresh clone on Debian's own Python (PEP 668
marked, so pip refuses to install outside a virtual environment) gets the running dashboard
and a green test; and a Python it cannot use is named in one line with the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

DEBIAN_PYTHON = Path("/usr/bin/python3")
SETUP_TIMEOUT = 3600  # the first run on a machine downloads TensorFlow and the rest


def clean_env(**extra: str) -> dict[str, str]:
    """Return this environment without any trace of the checkout's own .venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return {**env, **extra}


def setup_copy(folder: Path) -> Path:
    """Return a throwaway checkout holding only what setup.sh reads (never this one's .venv)."""
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "setup.sh").write_text((ROOT / "scripts" / "setup.sh").read_text())
    for name in ("requirements.txt", "requirements-dev.txt"):
        (folder / name).write_text((ROOT / name).read_text())
    return folder


def fake_python(folder: Path, script: str) -> Path:
    """Put an executable ``python3`` running ``script`` (sh) in ``folder``; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "python3"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return folder


def run_setup(checkout: Path, env: dict[str, str], *args: str, timeout: float = 60):
    return subprocess.run(
        ["bash", str(checkout / "scripts" / "setup.sh"), *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line(done, *words: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    message = done.stderr.strip()
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


def test_a_python_tensorflow_does_not_support_is_named_with_the_fix(tmp_path):
    checkout = setup_copy(tmp_path / "repo")
    fakes = fake_python(tmp_path / "bin", "echo 3.9\n")
    done = run_setup(checkout, clean_env(PATH=f"{fakes}{os.pathsep}/usr/bin:/bin"))
    assert_one_line(done, "Python 3.9", "3.10 to 3.13", "PYTHON=")
    assert not (checkout / ".venv").exists()


def test_a_python_without_venv_is_named_with_the_fix(tmp_path):
    checkout = setup_copy(tmp_path / "repo")
    # Debian's python3 without the python3-venv package: it runs, but `-m venv` fails.
    fakes = fake_python(
        tmp_path / "bin",
        'case "$*" in *"-m venv"*) echo "ensurepip is not available" >&2; exit 1;; esac\necho 3.11\n',
    )
    done = run_setup(checkout, clean_env(PATH=f"{fakes}{os.pathsep}/usr/bin:/bin"))
    assert_one_line(done, "venv", "apt-get install python3-venv")
    assert not (checkout / ".venv").exists()


def test_a_missing_python_is_named(tmp_path):
    checkout = setup_copy(tmp_path / "repo")
    done = run_setup(checkout, clean_env(PYTHON=str(tmp_path / "no-such-python3")))
    assert_one_line(done, "no-such-python3", "PYTHON=")


def debian_python_problem() -> str | None:
    """Return why /usr/bin/python3 cannot stand for a stock Debian/Ubuntu Python here, or None."""
    if not DEBIAN_PYTHON.is_file():
        return "there is no /usr/bin/python3 on this machine"
    probe = (
        "import sys, sysconfig, importlib.util as u; "
        "print('%d.%d' % sys.version_info[:2]); print(sys.base_prefix); print(sysconfig.get_path('stdlib')); "
        "print(bool(u.find_spec('venv') and u.find_spec('ensurepip')))"
    )
    done = subprocess.run([str(DEBIAN_PYTHON), "-c", probe], capture_output=True, text=True, env=clean_env())
    if done.returncode != 0:
        return f"/usr/bin/python3 does not run: {done.stderr.strip()[-200:]}"
    version, prefix, stdlib, has_venv = done.stdout.split()
    if prefix != "/usr" or not (Path(stdlib) / "EXTERNALLY-MANAGED").is_file():
        marker = Path(stdlib) / "EXTERNALLY-MANAGED"
        return f"/usr/bin/python3 is not a PEP 668-marked distribution Python (no {marker})"
    if version not in ("3.10", "3.11", "3.12", "3.13"):
        return f"/usr/bin/python3 is {version}; TensorFlow wheels exist for 3.10 to 3.13"
    if has_venv != "True":
        return "Debian's python3-venv is not installed (apt-get install python3-venv)"
    return None


def wait_healthy(url: str, server: subprocess.Popen, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return True
        except OSError:
            time.sleep(0.5)
    return False


@pytest.mark.slow
def test_a_fresh_clone_on_debian_python_serves_the_app_and_passes_a_test(tmp_path):
    problem = debian_python_problem()
    if problem:
        pytest.skip(problem)
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=600)
    try:
        set_up_serve_and_test(clone, tmp_path)
    finally:
        shutil.rmtree(clone, ignore_errors=True)  # its .venv holds gigabytes


def set_up_serve_and_test(clone: Path, tmp_path: Path) -> None:
    env = clean_env(PYTHON=str(DEBIAN_PYTHON))
    # The README's set-up. pip reuses its cache (~/.cache/pip) or a local wheel mirror where the
    # machine has one: then this takes minutes, mostly unpacking TensorFlow.
    done = run_setup(clone, env, "--test", timeout=SETUP_TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    python = clone / ".venv" / "bin" / "python"
    probe = "import sys; print(sys.prefix != sys.base_prefix, sys.base_prefix)"
    assert subprocess.run([str(python), "-c", probe], capture_output=True, text=True).stdout.split() == [
        "True",
        "/usr",
    ]

    started = time.monotonic()
    again = run_setup(clone, env, "--test", timeout=600)
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - started < 60, "a second set-up with nothing changed should skip the install"

    port = free_port()
    log = tmp_path / "streamlit.log"
    command = [str(clone / ".venv" / "bin" / "streamlit"), "run", "app.py", "--server.headless", "true"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, cwd=clone, env={**env, "CVD_WARMUP": "0"}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        assert wait_healthy(f"http://127.0.0.1:{port}", server, 180), log.read_text()[-3000:]
    finally:
        server.terminate()
        server.wait(timeout=30)

    test = subprocess.run(
        [str(python), "-m", "pytest", "tests/test_images.py", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    assert " passed" in test.stdout
