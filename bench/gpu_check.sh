#!/usr/bin/env bash
# The GPU check (issue #20): CUDA tests, warp and MCM benchmarks, short paper-profile trainings, each
# under its own time limit, 9 minutes in all, into ONE JSON report. Arguments go to bench/gpu_check.py
# (--help). Python: $PYTHON, else .venv/bin/python, else python3 (the GPU machine's own, holding torch).
# Examples:
#   bench/gpu_check.sh                                  # report: bench/results/gpu_check.json on CUDA
#   AU_GIT_COMMIT=$(git rev-parse --short=10 HEAD) bench/gpu_check.sh --out "$OUT/gpu_check.json"
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" bench/gpu_check.py "$@"
