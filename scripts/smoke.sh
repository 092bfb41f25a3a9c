#!/usr/bin/env bash
# The main job: set up, then run every notebook headlessly at smoke size with papermill.
# Executed notebooks go to build/notebooks/, figures and results to build/smoke/ (the committed
# full-size outputs in figures/ and data/results/ are left alone). Extra arguments go to geom.run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m geom.run --all --smoke "$@"
