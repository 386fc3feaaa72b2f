# pushbutton — two commands on a fresh machine: `make demo` and `make test`.
# Both bootstrap .venv (uv from PyPI when it installs, else pip), idempotently.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pushbutton-installed

.PHONY: venv demo test test-unit test-integration test-e2e lint bench lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -m pip install -q uv >/dev/null 2>&1 && $(BIN)/python -m uv --version >/dev/null 2>&1; then \
	  echo "bootstrap: installing with uv"; \
	  $(BIN)/python -m uv pip install -q -p $(BIN)/python -r requirements.lock -e . ; \
	else \
	  echo "bootstrap: uv unavailable, installing with pip"; \
	  $(BIN)/python -m pip install -q -r requirements.lock -e . ; \
	fi
	@touch $(STAMP)

demo: venv
	$(BIN)/python -m pushbutton.demo $(DEMO_ARGS)

test: venv
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv
	$(BIN)/python -m pytest tests/integration -m integration $(PYTEST_ARGS)

test-e2e: venv
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

lock:
	uv pip compile requirements.txt requirements-dev.txt --python-version 3.11 --no-header -o requirements.lock

clean:
	rm -rf $(VENV) .pushbutton dags/models .pytest_cache .ruff_cache
