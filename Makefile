# Two commands do everything on a fresh clone: `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# The request-path modules compiled with mypyc (data_plane/native.py); setup.py is run whenever a
# data_plane source changes (an extension older than its .py would run the old code) and recompiles
# only the generated C files that changed (setup.py's object cache, build/objects).
NATIVE := $(VENV)/.native-built

.PHONY: install up test lint unit integration bench clean browser

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	TOLLGATE_PURE_PYTHON=1 $(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

$(NATIVE): $(STAMP) setup.py $(wildcard data_plane/*.py data_plane/*/*.py)
	# The stamp takes the time the build started: a source edited during the build is rebuilt next time.
	touch $@.start
	$(BIN)/python setup.py --quiet build_ext --inplace
	mv $@.start $@

install: $(STAMP) $(NATIVE)

up: install
	$(BIN)/tollgate up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Debian's Chromium for the browser tests (Playwright drives it; no browser download). Installed
# when missing and we may (root); otherwise those tests skip (and fail under CI=true, see .ci/run).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" -eq 0 ] && apt-get update -qq && apt-get install -y -qq chromium; } \
		|| echo "chromium is not installed: the browser tests will skip"

# Two pytest processes (one per core): a test file stays in one process (--dist loadfile), so its
# module-scoped clusters start once.  PYTEST_PROCS=1 runs it in one process.
PYTEST_PROCS ?= 2
XDIST := $(if $(filter 1,$(PYTEST_PROCS)),,-n $(PYTEST_PROCS) --dist loadfile)

test: lint browser
	TOLLGATE_PURE_PYTHON=1 $(BIN)/python -m pytest -q $(XDIST) tests/unit  # the same code uncompiled (data_plane/native.py)
	$(BIN)/python -m pytest $(XDIST) tests

# The unit tests on the .py sources: no mypyc build needed (data_plane/native.py:prefer_source).
unit: $(STAMP)
	TOLLGATE_PURE_PYTHON=1 $(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

bench: install
	$(BIN)/python bench/proxy.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tollgate .pytest_cache .mypy_cache .ruff_cache build
	rm -f *__mypyc*.so
	find data_plane -name "*.so" -delete
