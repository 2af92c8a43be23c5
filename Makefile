# Gradient Explosion Lab: two commands get you going.
#   make run   - create .venv, install requirements.txt, start the dashboard on http://localhost:8501
#   make test  - install requirements-dev.txt, lint with ruff, run the whole pytest suite
# Installs are skipped when the requirements files have not changed since the last install
# (stamp files inside .venv record that).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
PORT   ?= 8501
CHROMIUM := /usr/bin/chromium

RUNTIME_STAMP := $(VENV)/.stamp-runtime
DEV_STAMP     := $(VENV)/.stamp-dev

.DEFAULT_GOAL := help
.PHONY: help run test lint bench clean distclean venv

help:
	@echo "make run        start the dashboard on http://localhost:$(PORT)"
	@echo "make test       lint (ruff) and run all tests (unit, AppTest, browser)"
	@echo "make lint       ruff check ."
	@echo "make bench      run the training benchmarks (python -m bench)"
	@echo "make clean      remove caches; make distclean also removes $(VENV)"

$(PY):
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found: install python3.11 (or set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PIP) install -r requirements.txt
	@touch $@

$(DEV_STAMP): requirements-dev.txt requirements-ray.txt requirements.txt $(RUNTIME_STAMP)
	$(PIP) install -r requirements-dev.txt
	@touch $@

venv: $(RUNTIME_STAMP)

run: $(RUNTIME_STAMP)
	@echo ""
	@echo "  Gradient Explosion Lab: open http://localhost:$(PORT)  (Ctrl+C to stop)"
	@echo ""
	$(PY) -m streamlit run serve.py --server.port $(PORT)

lint: $(DEV_STAMP)
	$(PY) -m ruff check .

test: $(DEV_STAMP)
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "NOTE: Chromium not found at $(CHROMIUM); browser tests will be skipped."; \
		echo "      Install it with: sudo apt-get install -y chromium"; \
	fi
	$(PY) -m ruff check .
	$(PY) -m pytest

bench: $(RUNTIME_STAMP)
	$(PY) -m bench

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
