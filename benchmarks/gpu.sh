#!/usr/bin/env bash
# GoogLeNet on one GPU in at most 8 minutes: benchmarks/results/gpu.md. Runs from a copy of the
# checkout alone (no install: PYTHONPATH=src, whatever recent PyTorch the machine has); the
# photos come from benchmarks/gpu_data/, which benchmarks/gpu_files.sh fills beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src
timeout 470 python benchmarks/gpu.py --budget 450 "$@"
