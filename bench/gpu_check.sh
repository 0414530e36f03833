#!/usr/bin/env bash
# The GPU check: ResNet-50 at 224 px, bf16 + channels_last, through the orchestrator and a bare loop; img/s,
# their ratio and MFU (bench/gpu_check.py). Under 5 minutes on a data-centre GPU; without CUDA it says so and
# exits 0. Run from the project folder: bash bench/gpu_check.sh [--json gpu.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
exec timeout 300 "$PY" -m bench --only gpu --repeats 1 --warmup 0 "$@"
