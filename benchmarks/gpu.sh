#!/usr/bin/env bash
# GoogLeNet on one GPU in at most 8 minutes: benchmarks/results/gpu.md. Runs from a copy of the
# checkout alone, with whatever recent PyTorch the machine's `python3` has (no install of the
# package: src/ on PYTHONPATH). What that machine lacks comes as the wheels that
# benchmarks/gpu_files.sh put in benchmarks/gpu_wheels/ (with the photos in gpu_data/): they are
# installed into a folder of their own ($GPU_SITE) that PYTHONPATH keeps, never into the
# machine's Python. Every argument goes to benchmarks/gpu.py; a rehearsal on a CPU:
#     PYTHON=.venv/bin/python bash benchmarks/gpu.sh --device cpu --quick
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
wheels="${GPU_WHEELS:-benchmarks/gpu_wheels}"
site="${GPU_SITE:-/tmp/goingdeeper-gpu-site}"
if compgen -G "$wheels/*.whl" >/dev/null; then
    "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
        --disable-pip-version-check --upgrade --target "$site" "$wheels"/*.whl
else
    echo "gpu.sh: no wheels in $wheels (benchmarks/gpu_files.sh makes them); shard and" \
        "attribution rows need webdataset and captum" >&2
fi
export PYTHONPATH="$site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 530 "$python" benchmarks/gpu.py --budget 510 "$@"
