"""A deployment as a user runs it: both emulators, `stripe-aep setup`, then `dagster dev` on an instance.

One deployment per test module (module-scoped): starting `dagster dev` and loading the code location
costs tens of seconds, so the tests of a module share it and are written to run in file order
(each leaves the datasets in a state the next one accounts for).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.settings import AepSettings
from stripe_aep.catalog import EVENTS
from stripe_aep.config import selected_resources
from stripe_aep.emulators.aep_api import AepEmulator, AepFaults
from stripe_aep.emulators.stripe_account import StripeAccount
from stripe_aep.emulators.stripe_api import StripeEmulator
from stripe_aep.stripe.rawstore import day_bounds
from stripe_aep_tests.aep.conftest import env_for
from stripe_aep_tests.assets.test_chain import DeliveredRow, read_back_rows
from stripe_aep_tests.conftest import TEST_KEY
from stripe_aep_tests.e2e.harness import DagsterDev

#: Days the UI backfill covers: the five days before today. The account holds one more day before
#: them (the spare day, left for the sensor tests) and today (its last, growing, day).
PAST_DAYS = 5
#: Every asset of the code location (what the UI's "Materialize all" selects): the events, then the
#: three layers of each resource.
#: The resources the `dagster dev` of these tests moves: STRIPE_AEP_RESOURCES of the test process
#: (inherited by `dagster dev`), default every resource of the catalog.
RESOURCES = selected_resources()
ALL_ASSET_PATHS = [["stripe", EVENTS]] + [
    [layer, r] for layer in ("stripe", "xdm", "aep") for r in RESOURCES
]


@dataclass
class Deployment:
    stripe: StripeEmulator
    aep: AepEmulator
    dagster: DagsterDev
    account: StripeAccount
    datasets: dict[str, str]
    lake_root: Path
    past_days: list[dt.date]
    spare_day: dt.date
    today: dt.date

    def aep_client(self) -> AepClient:
        return AepClient(AepSettings.from_env(env_for(self.aep)))

    def delivered_rows(self) -> dict[str, list[DeliveredRow]]:
        """Every record in each resource's dataset, read back through Catalog and Data Access."""
        client = self.aep_client()
        try:
            return {r: read_back_rows(client, self.datasets[r]) for r in RESOURCES}
        finally:
            client.close()

    def delivered_ids(self) -> dict[str, list[str]]:
        """The Stripe ids of each dataset's listing rows (one per object listed), after checking
        that no record (`_id`) was delivered twice. The account lives: objects change while the
        tests run, and each change is a version record of its own (docs/change-capture.md)."""
        out = {}
        for resource, rows in self.delivered_rows().items():
            record_ids = [row.record_id for row in rows]
            assert len(record_ids) == len(set(record_ids)), f"{resource}: a record came twice"
            out[resource] = [row.stripe_id for row in rows if row.source == "list"]
        return out

    def truth(self, resource: str, days: list[dt.date]) -> set[str]:
        """The ids of the objects of `days` that Stripe lists now."""
        return {i for d in days for i in self.account.ids(resource, *day_bounds(d))}

    def deleted(self, resource: str, days: list[dt.date]) -> set[str]:
        """The ids of the objects of `days` deleted by now (listed before, perhaps)."""
        return {i for d in days for i in self.account.deleted_ids(resource, *day_bounds(d))}

    def assert_listed_once(self, resource: str, ids: list[str], days: list[dt.date]) -> None:
        """Each object of `days` Stripe lists now was delivered (its listing row) exactly once;
        the only others are objects deleted since (the account lives while the tests run)."""
        assert len(ids) == len(set(ids)), f"{resource}: an object was listed twice"
        truth = self.truth(resource, days)
        assert truth, f"the account has no {resource} in the window: the test proves nothing"
        assert truth <= set(ids) <= truth | self.deleted(resource, days), (
            resource,
            len(set(ids)),
            len(truth),
        )


def _setup(env: dict[str, str]) -> dict[str, str]:
    """`stripe-aep setup`, as a user runs it; returns the dataset id of each resource it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "stripe_aep.cli", "setup"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    datasets = dict(re.findall(r"^\s+(\w+)\s+(\S+)\s+\(AEP_DATASET_", done.stdout, re.M))
    assert set(datasets) == set(RESOURCES), done.stdout
    return datasets


@contextmanager
def deployment(
    home: Path,
    instance_yaml: Path,
    extra_env: dict[str, str] | None = None,
    charges_per_day: int = 60,
):
    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=PAST_DAYS + 1)
    # live=True: today's objects appear as the clock passes their `created`, as in a real account.
    account = StripeAccount(
        seed=23, start=first, days=PAST_DAYS + 2, charges_per_day=charges_per_day, live=True
    )
    lake_root = home / "lake"
    with (
        # Stripe's published limits for a test key (a sandbox): 25 requests/s for the account and
        # for each endpoint, and the concurrency limiters. The client runs with its defaults (no
        # STRIPE_MAX_RPS): the deployment meets Stripe as a new user's would.
        StripeEmulator(account) as stripe,
        AepEmulator(faults=AepFaults(processing_delay_s=0.2)) as aep,
    ):
        env = {
            **env_for(aep),
            "STRIPE_API_KEY": TEST_KEY,
            "STRIPE_API_BASE": stripe.url,
            "STRIPE_VISIBILITY_LAG_SECONDS": "0",
            "STRIPE_START_DATE": first.isoformat(),
            "STRIPE_AEP_DATA_DIR": str(lake_root),
            # One process per run, not per step: 18 Python starts per run dominate these tests'
            # time on a 2-core CI machine. The default multiprocess executor runs the UI-style
            # backfill of test_ui_backfill.py (daemon-launched runs of the real definitions).
            "STRIPE_AEP_EXECUTOR": "in_process",
            **(extra_env or {}),
        }
        datasets = _setup(env)
        with DagsterDev(home / "dagster_home", instance_yaml, env) as dagster:
            yield Deployment(
                stripe=stripe,
                aep=aep,
                dagster=dagster,
                account=account,
                datasets=datasets,
                lake_root=lake_root,
                past_days=[first + dt.timedelta(days=i) for i in range(1, PAST_DAYS + 1)],
                spare_day=first,
                today=today,
            )


def require_binary(path: str, install: str) -> None:
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not found: install it with `{install}` (.ci/run does)")


@pytest.fixture(scope="module")
def pg():
    """A real PostgreSQL server of the module's own (its `dagster` database for the instance)."""
    from stripe_aep_tests.pg import NO_POSTGRES, postgres_binaries, postgres_server

    if postgres_binaries() is None:
        pytest.skip(NO_POSTGRES)
    with postgres_server() as settings:
        yield settings
