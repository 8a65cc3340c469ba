# make demo / make test: each creates .venv if it is missing, installs, then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Real audio: $SPIKETRUM_DATA, else ../shared/data when it exists (see README).
SPIKETRUM_DATA ?= $(abspath ../shared/data)
export SPIKETRUM_DATA
# CPU-only torch. A local wheel (pip's find-links) is used when present; otherwise the CPU index,
# so pip never pulls the multi-GB CUDA build.
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
OUT ?= out

.PHONY: demo test bench install clean
.DEFAULT_GOAL := help

help:
	@echo "make demo   - set up .venv and run the demo on real audio (writes $(OUT)/demo)"
	@echo "make test   - set up .venv and run the tests"
	@echo "make bench  - speed against peers, side by side (benchmarks/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	@if $(BIN)/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$(TORCH)'.split('==')[1])" 2>/dev/null; then \
	  echo "torch already installed"; \
	elif $(BIN)/python -m pip install -q --no-index --no-deps "$(TORCH)" 2>/dev/null; then \
	  $(BIN)/python -m pip install -q "$(TORCH)"; \
	else \
	  $(BIN)/python -m pip install -q "$(TORCH)" --index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple; \
	fi
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps $(NIR_PEERS)
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m spiketrum.app.demo --out $(OUT)/demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# SNN peers for the side-by-side benchmark only: --no-deps, so they never replace the CPU torch.
PEERS ?= spikingjelly==2.0.0 snntorch==1.0.0 loguru
# NIR round trip (tests and benchmarks/nir_roundtrip.py): Norse's NIR import; pinned, as NIR readers change
# between releases. --no-deps: both declare torch.
NIR_PEERS ?= nirtorch==2.6 norse==1.1.0

bench: $(VENV)/.installed
	$(BIN)/python -m pip install -q --no-deps $(PEERS)
	$(BIN)/python benchmarks/bench_cochlea.py
	$(BIN)/python benchmarks/bench_encoder.py
	$(BIN)/python benchmarks/bench_corpus.py
	$(BIN)/python benchmarks/bench_snn.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis
