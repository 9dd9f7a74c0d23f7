"""Stripe budgets shared through PostgreSQL (STRIPE_AEP_LEDGER_URL) by processes that share nothing
else: each has its own temp folder (so its own budget *file*), as run pods on different machines do.
Stripe's view is the emulator's arrival log, audited over every one-second window; the emulator
enforces live mode's limits in its own process."""

import datetime as dt
import os
import subprocess
import sys

from stripe_aep.stripe.ratelimit import RateBudget
from stripe_aep_tests.stripe.test_rate_model import (
    _audit,
    _days,
    _start,
    launch_one_resource,
)
from stripe_aep_tests.stripe.test_ratelimit import FakeClock

#: one resource's days in a process, its rate settings from the environment (as StripeResource does)
ONE_RESOURCE = """
import datetime as dt, sys
from stripe_aep.config import StripeRateSettings, StripeSettings
from stripe_aep.lake import Lake
from stripe_aep.stripe.client import StripeClient
from stripe_aep.stripe.extract import PartitionExtractor
key, url, root, resource, first, n = sys.argv[1:7]
s = StripeSettings.build(api_key=key, api_base=url, visibility_lag_seconds="0",
                         rates=StripeRateSettings.from_env())
assert s.rates.budget_url, "STRIPE_AEP_LEDGER_URL did not reach the rate settings"
days = [dt.date.fromisoformat(first) + dt.timedelta(days=i) for i in range(int(n))]
PartitionExtractor(StripeClient(s), Lake(root), resource, concurrency=s.concurrency,
                   visibility_lag_seconds=0).run(days)
"""


def _alone(tmp_path, name: str, ledger_url: str) -> dict[str, str]:
    """An environment whose only link to the other processes is the database."""
    private = tmp_path / f"tmp-{name}"
    private.mkdir()
    return {**os.environ, "TMPDIR": str(private), "STRIPE_AEP_LEDGER_URL": ledger_url}


def test_processes_sharing_only_the_database_stay_within_every_limit(
    external_stripe_emulator, tmp_path, postgres_url
):
    """Six processes on different partitions (two of them on `GET /v1/charges`, different days):
    together they want up to 150 requests/s, 50 of them on one endpoint; the account allows 100, an
    endpoint 25. Without the shared budget each process would send at its own full rate."""
    url = _start(external_stripe_emulator, charges_per_day=5000)
    first, _ = _days()
    # (resource, first day offset, days): two runs of charges on different days, as two partitions
    runs = [
        ("charges", 0, 2),
        ("charges", 2, 1),
        ("balance_transactions", 0, 3),
        ("customers", 0, 3),
        ("refunds", 0, 3),
        ("subscriptions", 0, 3),
    ]
    procs = [
        launch_one_resource(
            ONE_RESOURCE,
            url,
            tmp_path / f"lake{i}",
            resource,
            first + dt.timedelta(days=offset),
            days,
            env=_alone(tmp_path, str(i), postgres_url),
        )
        for i, (resource, offset, days) in enumerate(runs)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0] * len(runs)
    # nothing was shared through files: every process kept its budget file in its own folder
    for i in range(len(runs)):
        assert not list((tmp_path / f"tmp-{i}").glob("stripe-aep-ratelimit-*"))
    log, per_endpoint, account, limited = _audit(url)
    assert len(log) > 300, (per_endpoint, account)
    charges = [r for r in log if r["endpoint"] == "GET /v1/charges"]
    assert len(charges) > 50  # both charge runs sent enough to exceed 25/s had they not shared
    print("worst one-second windows:", per_endpoint, "account:", account, "requests:", len(log))
    assert max(per_endpoint.values()) <= 25, per_endpoint
    assert account <= 100, account
    assert len(limited) < 0.01 * len(log), [r["limited_by"] for r in limited]


def test_a_429_cut_is_seen_by_every_process_sharing_the_database(tmp_path, postgres_url):
    clock = FakeClock()
    a = RateBudget(
        100,
        path=str(tmp_path / "a" / "budget"),
        shared_url=postgres_url,
        clock=clock,
        sleep=clock.sleep,
    )
    b = RateBudget(
        100,
        path=str(tmp_path / "b" / "budget"),
        shared_url=postgres_url,
        clock=clock,
        sleep=clock.sleep,
    )
    assert b.current_rates("GET /v1/charges") == (100, 25)
    assert a.penalize("global-rate", "GET /v1/charges")
    assert a.penalize("endpoint-rate", "GET /v1/refunds")
    acct, _ = b.current_rates("GET /v1/charges")
    assert acct == 70  # DECREASE applied once, seen by the other budget object
    assert b.current_rates("GET /v1/refunds")[1] < 25
    assert not b.penalize("global-rate")  # at most one cut a second, across processes too
    clock.now += 60
    assert b.current_rates("GET /v1/charges") == (100, 25)
    # no file was written: the state is in the database
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    a.close()
    b.close()


def test_in_flight_cap_is_shared_through_the_database(tmp_path, postgres_url):
    code = """
import sys, time
from stripe_aep.stripe.ratelimit import RateBudget
b = RateBudget(100, max_in_flight=2, path=sys.argv[1], shared_url=sys.argv[3])
with b.in_flight():
    print("in", flush=True)
    time.sleep(float(sys.argv[2]))
"""

    def start(name, hold):
        # a different folder per process: only the database is shared
        path = str(tmp_path / name / "budget")
        return subprocess.Popen(
            [sys.executable, "-c", code, path, hold, postgres_url],
            stdout=subprocess.PIPE,
            text=True,
        )

    holders = [start("h0", "30"), start("h1", "30")]
    for p in holders:
        assert p.stdout.readline().strip() == "in"
    third = start("h2", "0")
    try:
        third.wait(timeout=1.5)
        raise AssertionError("a third request got in flight past a cap of two")
    except subprocess.TimeoutExpired:
        pass
    holders[0].kill()  # SIGKILL: the server ends its session and frees its slot
    assert third.stdout.readline().strip() == "in"
    assert third.wait(timeout=20) == 0
    holders[1].kill()
    holders[1].wait(timeout=10)


def test_one_round_trip_takes_exactly_one_free_slot(postgres_url):
    from stripe_aep.stripe.ratelimit_pg import PgSlotLocks

    mine, other = PgSlotLocks(postgres_url, "k"), PgSlotLocks(postgres_url, "k")
    assert mine.try_lock_any([0, 1, 2, 3]) == 0
    assert other.try_lock_any([0, 1, 2, 3]) == 1  # 0 is taken by another session
    assert mine.try_lock_any([2, 3]) == 2
    held = mine._conn.execute(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    ).fetchone()["n"]
    assert held == 2  # slots 0 and 2: trying stopped at the first lock it got
    assert other.try_lock_any([0, 2]) is None
    mine.unlock(0)
    assert other.try_lock_any([0, 2]) == 0
    mine.close()
    other.close()
