# The two commands: `make run` and `make test`. Each does all set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test install services migrate seed lint bench-intake clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip==25.3' 'setuptools<82' wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# RabbitMQ (and PostgreSQL for the test suite) must answer; start them where they are installed.
services: install
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
