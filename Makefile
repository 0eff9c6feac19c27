# Two entry points: `make run` and `make test`. Each sets itself up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check

.PHONY: run test test-fast check lint setup-run setup-test clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Installs are stamped by pyproject.toml so a re-run with nothing changed costs nothing.
$(VENV)/.run-stamp: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install --quiet -e ".[local]"
	touch $@

$(VENV)/.test-stamp: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[dev,train]"
	@# System tools some tests drive for real (the HTML report in Chromium, the Redis cache, PostgreSQL for the annotation
	@# store, CJK and emoji fonts for its screenshots); tests skip without them.
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$$missing fonts-noto-cjk"; \
	fc-list 2>/dev/null | grep -qi "color emoji" || missing="$$missing fonts-noto-color-emoji"; \
	if [ -n "$$missing" ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) \
	  || echo "warning: could not install$$missing; the tests that need them will be skipped"; \
	fi
	touch $@

setup-run: $(VENV)/.run-stamp
setup-test: $(VENV)/.test-stamp

run: setup-run
	$(VENV)/bin/redtrans models pull qwen2.5-coder-1.5b
	$(VENV)/bin/redtrans examples --path examples/posts.jsonl

# Quality gates first (as httpx's scripts/check and sacrebleu's `make test`), then the whole suite.
test: check
	$(PY) -m pytest -q

# The fast tier for local runs: everything but the tests that load a real GGUF model.
test-fast: check
	$(PY) -m pytest -q -m "not model"

check: lint
	$(VENV)/bin/mypy

lint: setup-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
