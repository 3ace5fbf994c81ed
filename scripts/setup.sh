#!/usr/bin/env bash
# Set the project up on a fresh machine, in a virtual environment of its own (.venv), so a stock
# Debian/Ubuntu python3 (PEP 668: no pip outside a venv) works as well as pyenv or conda.
# With --test, also what the tests need: pytest, hypothesis, Playwright's Python driver, the
# reference implementations the tests compare against, and Debian's headless Chromium.
# Quick when nothing changed: the install is skipped while the requirements files, the Python and
# the mode are the ones of the last successful run. PYTHON=/path/to/python3 picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
mode=${1:-run}

if ! command -v "$py" >/dev/null 2>&1; then
  echo "setup: no '$py' here; install Python 3.10 to 3.13 or run with PYTHON=/path/to/python3" >&2
  exit 1
fi
version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$version" in
  3.10|3.11|3.12|3.13) ;;
  *) echo "setup: Python $version is not one TensorFlow supports (3.10 to 3.13); run with PYTHON=python3.12 (or another in that range)" >&2
     exit 1 ;;
esac

if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" != "$version" ]; then
  rm -rf .venv  # made by another Python: start again
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$py" -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    echo "setup: $py cannot make a virtual environment (its venv/ensurepip module is missing); on Debian or Ubuntu: apt-get install python3-venv (or python$version-venv)" >&2
    exit 1
  fi
fi

files="requirements.txt"
[ "$mode" = "--test" ] && files="$files requirements-dev.txt"
stamp=".venv/.setup-${mode#--}"
want=$(cat $files | sha256sum | cut -d' ' -f1)-$version
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  for f in $files; do
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$f"
  done
  echo "$want" > "$stamp"
fi

if [ "$mode" = "--test" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is not installed and this is not root; the browser test will be skipped" >&2
  fi
fi
