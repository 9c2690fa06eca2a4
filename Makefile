# Every target installs what it needs into .venv, so a fresh clone needs only `make demo` / `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg requirements/*.txt 2>/dev/null | cksum | cut -d' ' -f1)

.PHONY: help install demo serve test lint types pytest services browser migrations-check bench messages docs matrix clean

help:
	@echo "make demo   - install into .venv and stop scheduled messages at the bundled simulator"
	@echo "make test   - install, then lint, type-check and run the whole suite on real services"
	@echo "make serve  - the example admin on http://127.0.0.1:8000 (user demo / demo)"
	@echo "make bench  - benchmarks (see benchmarks/README.md)"

$(STAMP):
	rm -f $(VENV)/.installed-*
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[celery,dev,lint,redis,docs]'
	touch $@

install: $(STAMP)

demo: install
	$(PY) example_project/manage.py clickatell_demo

serve: install
	./scripts/serve.sh

services:
	@./scripts/ensure-services.sh

browser:
	@./scripts/ensure-browser.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

types: install
	$(BIN)/mypy django_clickatell tests example_project benchmarks

migrations-check: install services
	PYTHONPATH=. $(PY) -m django makemigrations django_clickatell --check --dry-run --settings=tests.settings

# The whole suite on PostgreSQL, Redis, real workers and Chromium; then the cancel flow on SQLite.
SQLITE_TESTS := tests/test_cancellation.py tests/test_admin.py tests/test_commands.py tests/test_secrets.py tests/test_project.py tests/test_campaign_stop.py

# Then the tests whose outcome rests on the broker's semantics (marked `broker`: late acks, a
# killed worker's redelivery, duplicate deliveries, purged queues, countdowns held unacked)
# again on RabbitMQ.
# Its own vhost, if you share the server: rabbitmqctl add_vhost NAME, then set_permissions.
CLICKATELL_TEST_AMQP_BROKER ?= amqp://guest:guest@127.0.0.1:5672//

# CI starts from a new test database (a kept one may hold another branch's migrations);
# a developer keeps theirs between runs (--reuse-db in setup.cfg).
FRESH_DB := $(if $(filter true 1 yes,$(CI)),--create-db,)

pytest: install services browser
	$(BIN)/pytest $(FRESH_DB)
	CLICKATELL_TEST_DB=sqlite $(BIN)/pytest -m "not worker" -k "not two_threads" $(SQLITE_TESTS)
	CLICKATELL_TEST_BROKER=$(CLICKATELL_TEST_AMQP_BROKER) $(BIN)/pytest -m broker

test: lint types migrations-check docs pytest

bench: install services
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	$(PY) benchmarks/run.py

# Re-extract translatable strings (django.pot) and recompile the catalogues.
messages: install
	@command -v msgfmt >/dev/null || { echo "msgfmt missing: apt-get install gettext" >&2; exit 1; }
	cd django_clickatell && PYTHONPATH=.. ../$(PY) -m django makemessages -a --keep-pot --no-obsolete --no-location --settings=tests.settings
	cd django_clickatell && PYTHONPATH=.. ../$(PY) -m django compilemessages --settings=tests.settings

# The Django/Python compatibility matrix (tox), over every corner this machine has.
matrix: install services browser
	$(PY) -m pip install --quiet "tox>=4.14"
	./scripts/matrix.sh

# Sphinx with warnings as errors; the link check stays offline (external URLs are not fetched).
docs: install
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	$(BIN)/sphinx-build -W --keep-going -q -b linkcheck docs docs/_build/linkcheck

# Retake the admin screenshots the docs show, with the real browser test.
screenshots: install services browser
	CLICKATELL_SCREENSHOT_DIR=docs/_static $(BIN)/pytest tests/test_browser.py -k operator_cancels

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
