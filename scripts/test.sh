#!/usr/bin/env bash
# The whole test suite: set up, then unit tests (tests/) and nbval regression tests of the committed
# notebooks (notebooks/*.ipynb re-executed at smoke size; cells marked NBVAL_CHECK_OUTPUT compared).
# Extra arguments go to pytest (e.g. -m "not slow", -k jacobian).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest tests notebooks --nbval-lax --durations=15 "$@"
