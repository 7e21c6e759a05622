# Two commands for a newcomer:  `make demo`  (install, prepare, train, index, serve)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: install system-deps demo test lint typecheck pytest bench bench-quality bench-prepare bench-train bench-index bench-serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch: a plain `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	# offline: the training stack (prepare, train, evaluate), which the slim serve image leaves out
	$(BIN)/pip install --quiet -e '.[offline,dev,spark]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/install_system_deps.sh

demo: install
	$(BIN)/m2grl demo --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy --explicit-package-bases app index model core offline cli benchmarks

pytest: install system-deps
	$(BIN)/pytest -q

test: lint typecheck pytest

bench-quality: install
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/quality.py --exclude-seen

bench-prepare: install
	$(BIN)/python benchmarks/prepare_throughput.py

bench-train: install
	$(BIN)/python benchmarks/train_throughput.py

bench-index: install
	$(BIN)/python benchmarks/index_search.py

bench-serve: install system-deps
	$(BIN)/python benchmarks/serve.py

bench: bench-prepare bench-train bench-index bench-serve bench-quality

clean:
	rm -rf artifacts .pytest_cache .mypy_cache .ruff_cache
