# The two commands of the README: `make run` and `make test`. Both build their own venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean postgres lock fuzz chromium

# constraints.txt pins every dependency (the Docker image installs from it too); packages
# it does not list are installed unpinned. `make lock` rewrites it from a fresh venv.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip
	.venv-lock/bin/pip install -q -e '.[test]'
	{ echo "# pinned by 'make lock' from a fresh venv of pyproject.toml [test]; edit pyproject.toml, then run make lock"; \
	  .venv-lock/bin/pip freeze --exclude-editable --all | grep -v -E '^(pip|setuptools|wheel)=='; } > constraints.txt
	rm -rf .venv-lock

run: $(STAMP)
	$(BIN)/gateway serve

postgres:
	@if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true; \
	  for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi

# the console's browser tests drive Debian's Chromium (Playwright, no browser download)
chromium:
	@command -v chromium >/dev/null || { \
	  DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends \
	    chromium >/dev/null; }

test: $(STAMP) postgres chromium
	$(BIN)/ruff check gateway tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -q -x --durations=15

# The fuzz tests of the suite with fifty times the examples (tests/conftest.py, profile
# "fuzz"): minutes, not seconds. Failures print the seed to keep as an @example.
fuzz: $(STAMP) postgres
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q -x tests/fuzz tests/hl7/test_parser_properties.py

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/parse.py

clean:
	rm -rf $(VENV) var .pytest_cache
