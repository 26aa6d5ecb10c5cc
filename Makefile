# MooMarkets Ingest task runner. The two commands users need:
#   make run    set up everything, start Airflow locally, run the example job group (make stop ends it)
#   make test   run the whole test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run stop status test install bench constraints clean chromium redis scale-demo

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m moomarkets.dev.stack up

stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m moomarkets.dev.stack down; fi

status: $(STAMP)
	$(BIN)/python -m moomarkets.dev.stack status

# Browser tests drive Debian's chromium (never a downloaded browser); install it when we can.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed and cannot install it here: browser tests will be skipped"; fi; }

# The CeleryExecutor scale-out test and `make scale-demo` need Debian's redis-server as the broker.
redis:
	@command -v redis-server >/dev/null 2>&1 || test -x /usr/bin/redis-server || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian redis-server (Celery broker) for the scale-out test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } \
	      || echo "could not install redis-server: the scale-out test will be skipped"; \
	  else echo "redis-server not installed and cannot install it here: the scale-out test will be skipped"; fi; }

# Real scale-out on this machine: Redis, Airflow's components, two Celery workers; prints a table.
scale-demo: $(STAMP) redis
	$(BIN)/python bench/scale_out.py

test: $(STAMP) chromium redis
	$(BIN)/pytest -q --timeout=600 tests

bench: $(STAMP)
	$(BIN)/python bench/parse.py
	$(BIN)/python bench/jquants_requests.py
	$(BIN)/python bench/ratelimit.py
	$(BIN)/python bench/checks.py
	$(BIN)/python bench/history.py

constraints: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | grep -v moomarkets > constraints.txt.new && mv constraints.txt.new constraints.txt

clean: stop
	rm -rf .local
