#!/usr/bin/env bash
# Run here, on the machine with the network, before a GPU call. Fills two git-ignored folders
# that travel with the checkout (`carry`: benchmarks/gpu_data, benchmarks/gpu_wheels; ~9 MB of
# the 64 MiB a call may take):
#   benchmarks/gpu_data/    64 ImageNet photos (~8 MB) that benchmarks/gpu.py reads;
#   benchmarks/gpu_wheels/  pure-Python wheels of what the GPU machine lacks (webdataset,
#                           braceexpand, captum; ~0.6 MB), at the versions installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
source="${GOINGDEEPER_DATA:-../shared/data}/imagenet-sample"
[ -d "$source" ] || { echo "gpu_files: no photos at $source (set GOINGDEEPER_DATA)" >&2; exit 1; }
mkdir -p benchmarks/gpu_data
find "$source" -name '*.JPEG' | sort | head -n 64 | xargs -I{} cp {} benchmarks/gpu_data/
echo "gpu_files: $(ls benchmarks/gpu_data | wc -l) photos in benchmarks/gpu_data"

# the version installed here where there is one (what the tests ran with), else the newest
wanted=()
for name in webdataset braceexpand captum; do
    version=$("$python" -c "import importlib.metadata as m; print(m.version('$name'))" \
        2>/dev/null || true)
    wanted+=("$name${version:+==$version}")
done
rm -rf benchmarks/gpu_wheels
"$python" -m pip download --quiet --no-deps --only-binary=:all: --implementation py \
    --platform any --python-version 3.12 -d benchmarks/gpu_wheels "${wanted[@]}"
echo "gpu_files: $(ls benchmarks/gpu_wheels | tr '\n' ' ')in benchmarks/gpu_wheels" \
    "($(du -sh benchmarks/gpu_wheels | cut -f1))"
