#!/usr/bin/env bash
# Fill benchmarks/gpu_data/ (git-ignored) with the photos benchmarks/gpu.py reads, so that a
# copy of the checkout holds them without ../shared beside it: 64 ImageNet photos (~8 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
source="${GOINGDEEPER_DATA:-../shared/data}/imagenet-sample"
[ -d "$source" ] || { echo "gpu_files: no photos at $source (set GOINGDEEPER_DATA)" >&2; exit 1; }
mkdir -p benchmarks/gpu_data
find "$source" -name '*.JPEG' | sort | head -n 64 | xargs -I{} cp {} benchmarks/gpu_data/
echo "gpu_files: $(ls benchmarks/gpu_data | wc -l) photos in benchmarks/gpu_data"
