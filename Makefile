# Two commands on a fresh machine:  make demo  |  make test
# Both create the virtualenv $(VENV) on first use (CPU PyTorch pin first, then the package).
PYTHON ?= python3
VENV ?= .venv
# A CPU wheel keeps set-up small; on a GPU machine use e.g. `make setup TORCH=torch`.
TORCH ?= torch==2.13.0
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench-gpu clean-demo

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,cluster]"
	touch $@

setup: $(BIN)/.installed

# The whole pipeline on the bundled ISBI 2012 stack (config/config.yaml), local executor.
demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml --rerun-incomplete
	@echo; echo "Held-out scores (results/scores.md):"; cat results/scores.md

lint: setup
	$(BIN)/ruff check unet scripts tests bench
	$(BIN)/ruff format --check unet scripts tests bench
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint --configfile config/config.yaml -n >/dev/null
	$(BIN)/mypy unet

# Lint, then every test that needs no GPU (the real Snakemake and SLURM runs included).
test: setup lint
	$(BIN)/pytest -m "not gpu" $(PYTEST_ARGS)

# GPU benchmarks (issue figures), on a GPU node: make bench-gpu TORCH=torch (a fresh .venv).
bench-gpu: setup
	$(BIN)/python bench/predict_gpu.py --compile
	$(BIN)/python bench/train_gpu.py

clean-demo:
	rm -rf results work logs .snakemake
