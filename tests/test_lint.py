"""ruff, as configured in pyproject.toml, finds nothing."""

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None, reason="ruff is not installed (requirements-dev.txt)"
)
@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    # The ruff of this interpreter's environment (.venv), not whichever is first on PATH.
    done = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
