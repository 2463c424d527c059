# Two commands do everything on a fresh clone: `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# The request-path modules compiled with mypyc (data_plane/native.py); rebuilt whenever a data_plane
# source changes, since an extension older than its .py would run the old code.
NATIVE := $(VENV)/.native-built

.PHONY: install up test lint unit integration bench clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	TOLLGATE_PURE_PYTHON=1 $(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

$(NATIVE): $(STAMP) setup.py $(wildcard data_plane/*.py data_plane/*/*.py)
	# --force: setuptools skips an extension whose C source did not change, and a mypyc module's
	# shim never does (its code is in the group library), so without it the shim keeps the time of
	# an older build and data_plane/native.py:stale() reports it as older than its source.
	$(BIN)/python setup.py --quiet build_ext --inplace --force
	touch $@

install: $(STAMP) $(NATIVE)

up: install
	$(BIN)/tollgate up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	TOLLGATE_PURE_PYTHON=1 $(BIN)/python -m pytest -q tests/unit  # the same code uncompiled (data_plane/native.py)
	$(BIN)/python -m pytest tests

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

bench: install
	$(BIN)/python bench/proxy.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tollgate .pytest_cache .mypy_cache .ruff_cache build
	rm -f *__mypyc*.so
	find data_plane -name "*.so" -delete
