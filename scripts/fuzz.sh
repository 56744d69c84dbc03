#!/usr/bin/env bash
# A long fuzz session: the CI fuzz suite with every case count multiplied.
#   scripts/fuzz.sh            # x20 (about 14,000 cases; tens of minutes on 2 cores)
#   scripts/fuzz.sh 100        # x100
# Counts and failures are printed at the end ("fuzz inspect/tflite: 3000 cases, 0 failures").
# The cases are derandomized per scale: a different scale explores different inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-20}
PYTHON=${PYTHON:-.venv/bin/python}
EDGEPACK_FUZZ_SCALE=$scale EDGEPACK_KILL_CASES=$((10 * scale)) \
  exec "$PYTHON" -m pytest tests/hardening -q -p no:cacheprovider "${@:2}"
