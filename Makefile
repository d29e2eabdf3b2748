# cachekit: `make test` and `make lint` work on a fresh clone (they build .venv themselves).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint format bench sync redis-server clean demo examples-test faults

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Tests start their own redis-server processes on free loopback ports; install the binary
# when it is missing (CI runs as root; otherwise sudo is tried).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

test: $(STAMP) redis-server
	$(BIN)/python scripts/gen_sync.py --check
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/gen_sync.py --check

format: $(STAMP)
	$(BIN)/python scripts/gen_sync.py
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

sync: $(STAMP)
	$(BIN)/python scripts/gen_sync.py

bench: $(STAMP) redis-server
	$(BIN)/python bench/run.py

# The example shops side by side: Django on :8000, FastAPI on :8001 (DJANGO_PORT, FASTAPI_PORT),
# SQLite and the in-process cache (REDIS_URL=redis://... to use Redis). Ctrl-C stops both.
demo: $(STAMP)
	$(BIN)/python example_projects/demo.py

examples-test: $(STAMP) redis-server
	$(BIN)/pytest tests/examples $(PYTEST_ARGS)

# The fault suite alone (it also runs in `make test`): both example shops under load while their
# Redis is killed, frozen and slowed down; prints its figures at the end (about 75 s).
faults: $(STAMP) redis-server
	$(BIN)/pytest tests/faults -s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
