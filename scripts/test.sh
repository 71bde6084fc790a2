#!/usr/bin/env bash
# Install everything the test suite needs, then run it. The README's test command and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install torch==2.13.0
pip install -e ".[test]"
pip install --no-deps torchattacks==3.5.1   # test-only; --no-deps keeps the CPU torch
# Headless Chromium for the report test (Debian's package).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python -m pytest -q "$@"
