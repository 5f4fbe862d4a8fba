# Quick start: `make demo` (smoke suite on the bundled digits data, offline) and `make test`.
# Each target creates the virtual environment it needs in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test lint typecheck benchmark clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,slurm,dask,onnx]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/bench run suites/smoke.toml

# Two pytest workers (pytest-xdist), a test file's tests on one worker: 1.35x faster on 2 cores, where much of a
# test is single-threaded Python; OMP_WAIT_POLICY=PASSIVE so that the workers' idle OpenMP threads do not spin.
TEST_WORKERS ?= 2
test: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check cascade bench tests benchmarks
	$(BIN)/ruff format --check cascade bench tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

benchmark: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_chunking.py
	$(BIN)/python benchmarks/bench_roofline_segments.py
	$(BIN)/python -m pytest benchmarks -q -s

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .tox
