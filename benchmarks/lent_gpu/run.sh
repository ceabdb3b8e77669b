#!/usr/bin/env bash
# bench_gpu.py on a lent GPU machine that reaches no package registry (the device tool's).
#
# That machine has Python 3.12 with PyTorch, transformers, onnx, tokenizers and CUDA 13's
# libraries (PyTorch's nvidia-* wheels), but onnxruntime's CPU build and none of this project's
# model packages. benchmarks/lent_gpu/bundle.sh packs those into archives under .gpu/, split in
# pieces small enough to travel one a call; each call appends its piece to its archive in /tmp
# (`cat .gpu/bundle.00 >> /tmp/bundle.tar.xz`, ...), and the last one runs
#
#     bash benchmarks/lent_gpu/run.sh [bench_gpu.py options]
#     bash benchmarks/lent_gpu/run.sh --end-to-end [bench_embed.py options]
#
# with .gpu/bundles.sha256 (the archives' hashes) carried too. It checks and unpacks the
# archives that arrived into /tmp/site (bench_gpu.py needs bundle, and llm with --llm; the
# end-to-end run needs bundle and cluster), puts PyTorch's CUDA libraries on LD_LIBRARY_PATH (for
# onnxruntime's CUDA provider), and runs the benchmark, its log and JSON written under $OUT.
# --end-to-end runs benchmarks/bench_embed.py --gpu 0: a coordinator and one node on the GPU,
# as processes on loopback, against the bare GPU session (tokenweave itself goes to /tmp/tw,
# laid out as its install would be).
set -euo pipefail
OUT=${OUT:-/tmp/out}
end_to_end=0
if [ "${1:-}" = "--end-to-end" ]; then
    end_to_end=1
    shift
fi
needed="/tmp/bundle.tar.xz"
[ "$end_to_end" = 1 ] && needed="$needed /tmp/cluster.tar.xz"
[[ " $* " == *" --llm "* || " $* " == *" --only-llm "* ]] && needed="$needed /tmp/llm.tar"
for archive in $needed; do
    grep -F "  $archive" .gpu/bundles.sha256 | sha256sum -c - || {
        echo "$archive is incomplete (a piece missing or sent twice?)" >&2
        exit 1
    }
done
rm -rf /tmp/site && mkdir -p /tmp/site "$OUT"
for archive in $needed; do
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall("/tmp/site", filter="data")' "$archive"
done
# First without LD_LIBRARY_PATH: what a `tokenweave[gpu]` install relies on (not fatal).
PYTHONPATH=/tmp/site python3 benchmarks/lent_gpu/preload_check.py 2>&1 | tail -3 | tee "$OUT/preload.log" || true
site=$(python3 -c 'import site; print(site.getsitepackages()[0])')
cuda_libs=$( (find "$site/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null || true) | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENWEAVE_MODEL_CACHE=/tmp/tokenweave-models PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
if [ "$end_to_end" = 1 ]; then
    rm -rf /tmp/tw && mkdir -p /tmp/tw && cp -r tokenweave /tmp/tw/
    for part in coordinator node contracts storage; do cp -r "$part" "/tmp/tw/tokenweave/$part"; done
    export PYTHONPATH="/tmp/tw:/tmp/site"
    python3 benchmarks/bench_embed.py --gpu 0 "$@" 2>&1 | tee "$OUT/bench_embed_gpu.log"
    exit
fi
python3 benchmarks/bench_gpu.py --json "$OUT/bench_gpu.json" "$@" 2>&1 | tee "$OUT/bench_gpu.log"
