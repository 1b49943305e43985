# Two commands matter: `make serve` and `make test`. Both set up .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The benchmark's load generator (bench/loadgen.mjs) needs Node and the `ws` package.
NODE_STAMP := bench/node_modules/.installed

.PHONY: serve test lint bench clean chromium

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,speed]"
	touch $(STAMP)

$(NODE_STAMP): bench/package.json bench/package-lock.json
	npm ci --prefix bench --no-audit --no-fund
	touch $(NODE_STAMP)

serve: $(STAMP)
	$(BIN)/flowbus serve

# The console's tests run in Debian's chromium (through Playwright, a dev dependency). Installed
# here when missing and apt-get can (root); otherwise those tests say they are skipped, and why.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	  || echo "no chromium, and it could not be installed: the console's browser tests will be skipped"

# Lint, formatting and types are checked before the suite runs. mypy checks bench/ in a run of its
# own: its scripts import `flowbench` as a sibling module while the tests import `bench.flowbench`,
# and one run refuses a file under two module names.
test: $(STAMP) $(NODE_STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy bench
	PYTHONASYNCIODEBUG=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# make bench ARGS="--scenarios S1,S2 --seconds 5": any options of bench/run.py (see its --help)
bench: $(STAMP) $(NODE_STAMP)
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache bench/node_modules
