# The two commands: `make run` and `make test`. Each does all set-up on a fresh machine.
# Python 3.11 is found (or named: make PYTHON=/path/to/python3.11) by deploy/local/ensure-python.sh.
export PYTHON
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The PATH before .venv/bin is put first: .venv must be built by an interpreter outside it.
OUTER_PATH := $(PATH)
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test install services migrate seed lint bench-intake clean

# A .venv without its pip is half-made (an earlier failure): it is made again. A .venv made here is
# removed again if any step fails, so a failed set-up never leaves one behind.
$(STAMP): pyproject.toml
	@python=$$(PATH='$(OUTER_PATH)' deploy/local/ensure-python.sh) || exit 1; \
	[ -x $(BIN)/pip ] || rm -rf $(VENV); \
	fresh=; [ -d $(VENV) ] || fresh=1; \
	echo "setting up $(VENV) with $$python"; \
	if ! { "$$python" -m venv $(VENV) \
	    && $(BIN)/pip install --quiet --upgrade 'pip==25.3' 'setuptools<82' wheel \
	    && $(BIN)/pip install --quiet -e '.[dev]'; }; then \
	    if [ -n "$$fresh" ]; then rm -rf $(VENV); fi; \
	    echo "setting up $(VENV) failed (see above)" >&2; exit 1; \
	fi
	touch $(STAMP)

install: $(STAMP)

# RabbitMQ (and PostgreSQL for the test suite) must answer; start them where they are installed.
services: install
	deploy/local/ensure-system-packages.sh run
	deploy/local/ensure-broker.sh

migrate: services
	$(BIN)/lianhu migrate

seed: migrate
	$(BIN)/lianhu seed --demo
	$(BIN)/lianhu topology

run: seed
	$(BIN)/honcho start

test: services
	deploy/local/ensure-system-packages.sh
	deploy/local/ensure-postgres.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -p tests.support.green tests/integration
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-intake: seed
	$(BIN)/python bench/intake.py --seconds 10

clean:
	rm -rf var
