"""STRIPE_AEP_LEDGER_URL: validated at start, naming the variable, never showing a password."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stripe_aep.aep.ledger import BatchLedger, PostgresBatchLedger, open_ledger
from stripe_aep.config import (
    ConfigError,
    StripeRateSettings,
    ledger_url_from_env,
    parse_ledger_url,
)
from stripe_aep_tests.paths import REPO_ROOT

PASSWORD = "Tr0ub4dor&3-x/y"  # a URL-encoded password with characters that need it
ENCODED = "Tr0ub4dor%263-x%2Fy"


def test_accepted_forms():
    pg = parse_ledger_url(f"postgresql://aep:{ENCODED}@db.internal:5432/stripe_aep")
    assert pg.is_postgres and pg.password == PASSWORD
    assert pg.shown == "postgresql://aep:***@db.internal:5432/stripe_aep"
    assert PASSWORD not in repr(pg) and ENCODED not in repr(pg)
    assert parse_ledger_url("postgres://aep@db/x").is_postgres  # no password: a .pgpass or trust
    lite = parse_ledger_url("sqlite:////var/lib/stripe-aep/ledger.sqlite")
    assert lite.kind == "sqlite" and lite.path == "/var/lib/stripe-aep/ledger.sqlite"


@pytest.mark.parametrize(
    "value, problem",
    [
        (f"postgresql://aep:{ENCODED}@db:99999/x", "invalid port"),
        (f"postgresql://aep:{ENCODED}@:5432/x", "names no host"),
        (f"postgresql://aep:{ENCODED}@db:5432", "names no database"),
        (f"postgresql://aep:{ENCODED}@db:5432/", "names no database"),
        (f"mysql://aep:{ENCODED}@db/x", "neither a postgresql:// nor a sqlite://"),
        (f"postgresql://aep:{ENCODED}@db/x\n", "trailing newline"),
        (f"postgresql://aep:{ENCODED} @db/x", "space"),
        ("sqlite:///relative.sqlite", "not an absolute SQLite path"),
        ("sqlite:////var/lib/", "does not name a file"),
    ],
)
def test_bad_urls_fail_naming_the_variable_never_the_password(value, problem):
    with pytest.raises(ConfigError) as err:
        ledger_url_from_env({"STRIPE_AEP_LEDGER_URL": value})
    text = str(err.value)
    assert (
        text.startswith("STRIPE_AEP_LEDGER_URL: ") and err.value.variable == "STRIPE_AEP_LEDGER_URL"
    )
    assert problem in text
    assert ENCODED not in text and PASSWORD not in text and "Tr0ub4dor" not in text


def test_unset_is_the_embedded_sqlite_ledger_in_a_local_data_dir(tmp_path):
    assert ledger_url_from_env({"STRIPE_AEP_DATA_DIR": str(tmp_path)}) is None
    ledger = open_ledger(tmp_path, {})
    assert type(ledger) is BatchLedger
    assert ledger.path == tmp_path / "ledger" / "aep_batches.sqlite"
    ledger.close()


def test_a_sqlite_url_puts_the_ledger_where_it_says(tmp_path):
    where = tmp_path / "elsewhere" / "ledger.sqlite"
    ledger = open_ledger(tmp_path / "data", {"STRIPE_AEP_LEDGER_URL": f"sqlite:///{where}"})
    assert type(ledger) is BatchLedger and ledger.path == where and where.exists()
    ledger.close()


def test_an_object_store_lake_without_a_ledger_url_fails_at_start_naming_it():
    with pytest.raises(ConfigError) as err:
        ledger_url_from_env({"STRIPE_AEP_DATA_DIR": "s3://stripe-lake/prod"})
    assert err.value.variable == "STRIPE_AEP_LEDGER_URL"
    assert "run pods share no disk" in str(err.value) and "postgresql://" in str(err.value)
    # the same at the run: the aep step opens the ledger through open_ledger
    with pytest.raises(ConfigError, match="STRIPE_AEP_LEDGER_URL"):
        open_ledger("s3://stripe-lake/prod", {})


def test_the_code_location_refuses_to_load_without_it_for_an_object_store_lake(tmp_path):
    env = {
        **os.environ,
        "STRIPE_AEP_DATA_DIR": "s3://stripe-lake/prod",
        "DAGSTER_HOME": str(tmp_path),
    }
    env.pop("STRIPE_AEP_LEDGER_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", "import stripe_aep.definitions"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert done.returncode != 0
    assert "STRIPE_AEP_LEDGER_URL: it is unset while STRIPE_AEP_DATA_DIR is an object store" in (
        done.stderr
    )


def test_a_postgres_url_reaches_the_stripe_budgets_and_a_sqlite_one_does_not():
    url = f"postgresql://aep:{ENCODED}@db:5432/x"
    assert StripeRateSettings.from_env({"STRIPE_AEP_LEDGER_URL": url}).budget_url == url
    assert PASSWORD not in repr(StripeRateSettings.from_env({"STRIPE_AEP_LEDGER_URL": url}))
    assert (
        StripeRateSettings.from_env({"STRIPE_AEP_LEDGER_URL": "sqlite:////x/l.sqlite"}).budget_url
        is None
    )
    assert StripeRateSettings.from_env({}).budget_url is None


def test_a_postgres_url_opens_the_postgres_ledger(postgres_url):
    ledger = open_ledger("s3://stripe-lake/prod", {"STRIPE_AEP_LEDGER_URL": postgres_url})
    assert isinstance(ledger, PostgresBatchLedger)
    assert ledger.last_event_id() == 0 and ledger.attempts() == []
    ledger.close()
