"""Shared fixtures: the Stripe emulator on a free port, a fixed synthetic account, a lake folder."""

import datetime as dt

import pytest

from stripe_aep.catalog import STRIPE_RESOURCES
from stripe_aep.config import RESOURCES_VARIABLE, StripeSettings

#: A fixed past window: every object of the account is visible and every day is closed.
ACCOUNT_START = dt.date(2026, 11, 10)
ACCOUNT_DAYS = 3
TEST_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"

#: The resources of AEP's own Stripe source. Whole-pipeline tests against the Stripe emulator that
#: are not about the selection pin `STRIPE_AEP_RESOURCES` to these (`aep_source_selection`): fewer
#: resources keep them fast, and until the emulator generates disputes and invoices and the XDM
#: layer maps them, the default selection cannot run against it.
AEP_SOURCE_RESOURCES = tuple(r.name for r in STRIPE_RESOURCES if r.in_aep_stripe_source)


def only(assets, resources=AEP_SOURCE_RESOURCES):
    """The assets of `assets` whose resource (the key's last part) is one of `resources`."""
    return [a for a in assets if a.key.path[-1] in resources]


@pytest.fixture
def aep_source_selection(monkeypatch):
    """`STRIPE_AEP_RESOURCES` set to AEP's six for the test; yields the names."""
    monkeypatch.setenv(RESOURCES_VARIABLE, ",".join(AEP_SOURCE_RESOURCES))
    return AEP_SOURCE_RESOURCES


@pytest.fixture(scope="session")
def stripe_account():
    from stripe_aep.emulators.stripe_account import StripeAccount

    return StripeAccount(seed=11, start=ACCOUNT_START, days=ACCOUNT_DAYS, charges_per_day=400)


@pytest.fixture
def stripe_emulator(stripe_account):
    """A fresh emulator (own log, no faults, no rate limit) over the shared account."""
    from stripe_aep.emulators.stripe_api import StripeEmulator

    with StripeEmulator(stripe_account, rate_limit_rps=0) as emulator:
        yield emulator


@pytest.fixture
def stripe_settings(stripe_emulator):
    return StripeSettings.build(
        api_key=TEST_KEY, api_base=stripe_emulator.url, max_rps="500", visibility_lag_seconds="0"
    )


@pytest.fixture
def external_stripe_emulator():
    """Start the Stripe emulator in its own process (as Stripe is remote: no shared GIL with the
    client, whose parsing would otherwise delay the server's arrival stamps). Yields a starter
    taking `stripe-aep emulate` options; returns the base URL."""
    import os
    import re
    import signal
    import subprocess
    import sys

    procs = []

    def start(*options: str) -> str:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stripe_aep.cli",
                "emulate",
                "--no-aep",
                "--stripe-port",
                "0",
                *options,
            ],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        procs.append(proc)
        for line in proc.stdout:
            match = re.search(r"Stripe emulator listening on (http://\S+)", line)
            if match:
                return match.group(1)
        raise RuntimeError("the Stripe emulator did not start")

    yield start
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def postgres_server_settings():
    """One real PostgreSQL server for the session (stripe_aep_tests/pg.py); skipped without initdb."""
    from stripe_aep_tests.pg import NO_POSTGRES, postgres_binaries, postgres_server

    if postgres_binaries() is None:
        pytest.skip(NO_POSTGRES)
    with postgres_server(db_name="stripe_aep_tests") as settings:
        yield settings


@pytest.fixture
def postgres_url(postgres_server_settings):
    """A `postgresql://…` URL of a new, empty database of its own for each test."""
    import uuid

    from stripe_aep_tests.pg import create_database

    return create_database(postgres_server_settings, f"t_{uuid.uuid4().hex[:12]}")


#: The tenant of the tests that set up the AEP emulator through `aep_setup`.
AEP_TEST_TENANT = "stripeaep"


@pytest.fixture
def aep_emulator():
    """The AEP emulator on a free port, with a short batch-processing delay."""
    from stripe_aep.emulators.aep_api import AepEmulator, AepFaults

    with AepEmulator(faults=AepFaults(processing_delay_s=0.05)) as emulator:
        yield emulator


@pytest.fixture
def aep_setup(aep_emulator, monkeypatch):
    """`stripe-aep setup` run against the AEP emulator (schemas, datasets of AEP's six
    resources), with the AEP variables set for the test: yields (client, datasets)."""
    from stripe_aep.aep.client import AepClient
    from stripe_aep.aep.settings import AepSettings
    from stripe_aep.aep.setup import run_setup
    from stripe_aep.xdm import schema_registry_payloads
    from stripe_aep_tests.aep.conftest import env_for

    env = env_for(aep_emulator)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(RESOURCES_VARIABLE, ",".join(AEP_SOURCE_RESOURCES))
    client = AepClient(AepSettings.from_env(env))
    payloads = {r: schema_registry_payloads(r, AEP_TEST_TENANT) for r in AEP_SOURCE_RESOURCES}
    datasets = run_setup(client, tenant=AEP_TEST_TENANT, payloads=payloads, environ={})
    yield client, datasets
    client.close()
