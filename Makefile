# Two commands on a fresh machine:  make demo  |  make test
# Both create the virtualenv $(VENV) on first use (CPU PyTorch pin first, then the package).
PYTHON ?= python3
VENV ?= .venv
# A CPU wheel keeps set-up small; on a GPU machine use e.g. `make setup TORCH=torch`.
TORCH ?= torch==2.13.0
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: setup demo test lint smoke bench-gpu gpu-wheels gpu-check clean-demo

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,cluster,bench,bioimageio]"
	touch $@

setup: $(BIN)/.installed

# The whole pipeline on the bundled ISBI 2012 stack (config/config.yaml), local executor.
demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml --rerun-incomplete
	@echo; echo "Test-slice scores, ISBI 2012 challenge definitions (results/scores.md):"; cat results/scores.md
	@echo; echo "Cell segmentation (OME-Zarr label image; napari: napari --plugin napari-ome-zarr"; \
	  echo "PATH, or neuroglancer / Fiji MoBIE):"; ls -d results/*/segmentation.zarr

lint: setup
	$(BIN)/ruff check unet scripts tests bench
	$(BIN)/ruff format --check unet scripts tests bench
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint --configfile config/config.yaml -n >/dev/null
	$(BIN)/mypy unet

# Lint, then every test that needs no GPU (the real Snakemake and SLURM runs included), on
# $(TEST_WORKERS) pytest-xdist workers (TEST_WORKERS=0: one process).
TEST_WORKERS ?= 2
test: setup lint
	$(BIN)/pytest -m "not gpu" -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# The GPU check end to end on the CPU with tiny sizes (< 2 min; CI runs it after make test).
smoke: setup
	$(BIN)/python bench/gpu_check.py --smoke --out bench/out/gpu-smoke

# Every GPU figure in one command on a fresh GPU node whose python3 has CUDA PyTorch:
#   here:  make gpu-wheels        (bench/gpu-wheels.txt at the .venv's versions -> .whl/, ~14 MB)
#   there: make gpu-check GPU_OUT=DIR   (<= 9 min; DIR/gpu_check.json and .log; bench/README.md)
GPU_PYTHON ?= python3
GPU_OUT ?= bench/out/gpu-check
gpu-wheels: setup
	$(BIN)/python bench/gpu_wheels.py --dest .whl

gpu-check:
	$(GPU_PYTHON) bench/gpu_check.py --wheels .whl --out $(GPU_OUT)

# The separate GPU benchmarks (more modes than gpu-check), in a CUDA .venv: make bench-gpu TORCH=torch
bench-gpu: setup
	$(BIN)/python bench/predict_gpu.py --compile
	$(BIN)/python bench/train_gpu.py

clean-demo:
	rm -rf results work logs .snakemake
