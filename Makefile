# veilmatch — every target bootstraps .venv itself and is quick when already installed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.veilmatch-installed

.PHONY: demo test lint bench install clean browser-deps softhsm2

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing pinned dependencies into $(VENV) (first run only)"
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	# opa-golib-python-bindings embeds the real OPA 1.x Go evaluator. Its metadata
	# claims Requires-Python >= 3.14, but the ctypes c-shared library works on 3.11
	# (verified on these machines), so it gets its own pinned pip call where
	# --ignore-requires-python applies to this one package only.
	$(PIP) install -q --no-deps --ignore-requires-python opa-golib-python-bindings==0.4.4
	@touch $@

demo: $(STAMP)
	$(PY) -m veilmatch.demo

# The console's browser tests drive Debian's system Chromium (Playwright never downloads one).
browser-deps:
	command -v chromium || (apt-get update && apt-get install -y chromium)

# The PKCS#11 key tests initialise fresh tokens in Debian's SoftHSM2 (a software HSM).
softhsm2:
	command -v softhsm2-util || (apt-get update && apt-get install -y softhsm2)

test: $(STAMP) lint browser-deps softhsm2
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	@mkdir -p var/bench
	$(PY) -m bench.run_all > var/bench/results.jsonl; status=$$?; \
	cat var/bench/results.jsonl; \
	$(PY) -m bench.report var/bench/results.jsonl && exit $$status

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
