# Every target creates .venv and installs the project itself: a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test chaos lint format bench bench-full bench-idle screenshots dev emulate clean

STRIPE_AEP_DEV_EMULATORS ?= 1

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/stripe-aep demo

# The end-to-end tests (stripe_aep_tests/e2e: real `dagster dev`, PostgreSQL, Chromium) mostly wait
# on the Dagster daemon (about 15 % of one core), so they run beside the rest of the suite, not after
# it; their output follows the suite's. Either failing fails the target.
test: $(STAMP)
	@$(BIN)/pytest -q -p no:cacheprovider stripe_aep_tests/e2e > .pytest-e2e.log 2>&1 & e2e=$$!; \
	$(BIN)/pytest -q --durations=15 --ignore=stripe_aep_tests/e2e; rest=$$?; \
	wait $$e2e; e2e_rc=$$?; \
	echo "--- end-to-end tests (stripe_aep_tests/e2e), exit $$e2e_rc ---"; cat .pytest-e2e.log; \
	test $$rest -eq 0 && test $$e2e_rc -eq 0

# The chaos test with 20 seeds instead of the 2 that `make test` runs (see stripe_aep_tests/chaos).
chaos: $(STAMP)
	STRIPE_AEP_CHAOS_SEEDS=20 $(BIN)/pytest -q stripe_aep_tests/chaos

bench: $(STAMP)
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/idle_reads.py
	$(BIN)/python bench/full_load.py
	$(BIN)/python bench/convert.py
	$(BIN)/python bench/upload.py

# Stripe reads of the default schedules on an idle account: per tick, per day, per 30 days (<= 10,000).
bench-idle: $(STAMP)
	$(BIN)/python bench/idle_reads.py

# The full-load benchmark side by side with Singer tap-stripe 3.3.0 and Airbyte source-stripe 5.14.1
# (each in its own virtualenv; Airbyte's takes a few minutes to install) and its PNG plot.
TAP_VENV := .bench-venvs/tap-stripe
AIRBYTE_VENV := .bench-venvs/airbyte-source-stripe
bench-full: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	test -x $(TAP_VENV)/bin/python || ($(PYTHON) -m venv $(TAP_VENV) && $(TAP_VENV)/bin/pip install --quiet tap-stripe==3.3.0)
	test -x $(AIRBYTE_VENV)/bin/source-stripe || ($(PYTHON) -m venv $(AIRBYTE_VENV) && $(AIRBYTE_VENV)/bin/pip install --quiet airbyte-source-stripe==5.14.1)
	$(BIN)/python bench/full_load.py --days 10 --charges-per-day 39000 \
		--tap-python $(TAP_VENV)/bin/python --airbyte-python $(AIRBYTE_VENV)/bin/python \
		--peer-seconds 120 --png docs/benchmarks-full-load.png

# Regenerate the README's screenshots (docs/img) with the browser test on a real `dagster dev`.
screenshots: $(STAMP)
	STRIPE_AEP_SCREENSHOTS_DIR=$(CURDIR)/docs/img $(BIN)/pytest -q stripe_aep_tests/e2e/test_dagster_dev.py

emulate: $(STAMP)
	$(BIN)/stripe-aep emulate

# One command: the emulators (Stripe :12111, AEP :12112), `stripe-aep setup`, and the Dagster UI on
# http://127.0.0.1:3000 with a persistent instance in .dagster_home (see stripe_aep/automation/dev.py).
# Against real Stripe and AEP: `make dev STRIPE_AEP_DEV_EMULATORS=0` (only the UI, your environment).
dev: $(STAMP)
	STRIPE_AEP_DEV_EMULATORS=$(STRIPE_AEP_DEV_EMULATORS) $(BIN)/python -m stripe_aep.automation.dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) data .dagster_home build *.egg-info .bench-venvs
