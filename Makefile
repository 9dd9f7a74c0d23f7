# Every target creates .venv and installs the project itself: a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench dev emulate clean

STRIPE_AEP_DEV_EMULATORS ?= 1

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/stripe-aep demo

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/convert.py
	$(BIN)/python bench/upload.py

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
	rm -rf $(VENV) data .dagster_home build *.egg-info
