#!/usr/bin/env bash
# Install what the project needs on a fresh machine. With --test, also what the tests need:
# pytest, hypothesis, Playwright (the Python driver only) and Debian's headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -r requirements.txt
if [ "${1:-}" = "--test" ]; then
  python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "note: chromium is not installed and this is not root; the browser test will be skipped" >&2
    fi
  fi
fi
