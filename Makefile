# The two commands a newcomer runs: `make demo` and `make test`. Everything else is optional.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# `make demo` needs only the library and the benchmark extra (no test tools, ray, peers,
# pyarrow): about half the size of the dev install. The dev install covers it too.
DEMO_STAMP := $(VENV)/.installed-bench
# The torch extra is installed only by `make torch` (and CI). 2.13.0 is a CPU build where a
# local wheel exists; see docs/user-guide.md.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test lint fuzz bench torch footprint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

$(DEMO_STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[bench]"
	touch $(DEMO_STAMP)

torch: $(STAMP)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"

demo: $(DEMO_STAMP)
	$(BIN)/dashsel demo --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# The property-based fuzz suites (manifests, policy API, journals) under the fixed-seed "fuzz"
# Hypothesis profile (>= 10,000 cases; tests/conftest.py) plus all 24 SIGKILL-and-resume
# points. `make test` runs a small profile of the same tests. At most 10 minutes.
fuzz: $(STAMP)
	DASHSEL_FUZZ=full timeout 600 $(BIN)/python -m pytest -q -n 2 \
		$(wildcard tests/test_*fuzz*.py) tests/test_kill_resume.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/journal_cost.py
	$(BIN)/python benchmarks/parallel.py
	$(BIN)/python benchmarks/engine_study.py --out docs/benchmarks/engine
	$(BIN)/python benchmarks/run_all.py
	$(BIN)/python benchmarks/studies.py all --runs 10
	$(BIN)/python benchmarks/engine_targets.py

# Install sizes (library alone, demo, dev) measured in fresh venvs under /tmp; writes
# docs/benchmarks/footprint.md. Needs the network (pip) and a few minutes.
footprint: $(STAMP)
	$(BIN)/python benchmarks/install_footprint.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
