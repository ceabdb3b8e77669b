#!/usr/bin/env bash
# bench_gpu.py on a lent GPU machine that reaches no package registry (the device tool's).
#
# That machine has Python 3.12 with PyTorch, transformers, onnx, tokenizers and CUDA 13's
# libraries (PyTorch's nvidia-* wheels), but onnxruntime's CPU build and none of this project's
# model packages. benchmarks/lent_gpu/bundle.sh packs onnxruntime-gpu and MiniLM's package into
# .gpu/bundle.tar.xz, split in pieces small enough to travel one a call; each call but the last
# appends its piece to $BUNDLE, and the last runs this script with the sha256 of the whole:
#
#     bash benchmarks/lent_gpu/run.sh SHA256
#
# It unpacks the bundle into /tmp/site, puts PyTorch's CUDA libraries on LD_LIBRARY_PATH (for
# onnxruntime's CUDA provider), and runs the benchmark, its log and JSON written under $OUT.
set -euo pipefail
BUNDLE=${BUNDLE:-/tmp/bundle.tar.xz}
OUT=${OUT:-/tmp/out}
expected=${1:?usage: run.sh SHA256-of-the-bundle}
actual=$(sha256sum "$BUNDLE" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then
    echo "bundle $BUNDLE: sha256 $actual, expected $expected (a piece missing or twice?)" >&2
    exit 1
fi
rm -rf /tmp/site && mkdir -p /tmp/site "$OUT"
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall("/tmp/site", filter="data")' "$BUNDLE"
# First without LD_LIBRARY_PATH: what a `tokenweave[gpu]` install relies on (not fatal).
PYTHONPATH=/tmp/site python3 benchmarks/lent_gpu/preload_check.py 2>&1 | tail -3 | tee "$OUT/preload.log" || true
site=$(python3 -c 'import site; print(site.getsitepackages()[0])')
cuda_libs=$( (find "$site/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null || true) | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENWEAVE_MODEL_CACHE=/tmp/tokenweave-models PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
python3 benchmarks/bench_gpu.py --json "$OUT/bench_gpu.json" "${@:2}" 2>&1 | tee "$OUT/bench_gpu.log"
