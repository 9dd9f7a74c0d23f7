"""Idle-reads benchmark: what the default schedules cost in Stripe reads on an account where nothing happens.

Stripe allocates reads (about 500 per transaction over 30 days, at least 10,000 a month), and a
quiet account has few transactions: the fresh-data schedule (every 15 minutes) plus the daily
close-out must stay within 10,000 reads in 30 days when nothing happens.

How: the Stripe emulator (in this process) serves an account whose objects all lie in the three days
before the simulated day D, and an AEP emulator receives the deliveries. The default schedules'
selection (every asset of the code location: stripe/events and the raw, XDM and AEP asset of each
resource `STRIPE_AEP_RESOURCES` selects) runs in-process with
`dg.materialize` at simulated times (the raw assets' clock, `stripe_aep.assets.raw._now`, and the
account's clock are one fake clock):

1. a warm-up: the close-out of D−1 and the first tick of D (they fetch the account's history and
   the one-off account-id lookup);
2. `--ticks` fresh-data ticks of D, spread over the day (an idle tick costs the same whatever the
   time since the last one: one empty events page, whatever the selection (AEP's six ask their
   20 types, all eight list unfiltered: `events_listing`), and one empty balance-transactions
   page);
3. the close-out of D at 00:30 on D+1 (lists the whole day once: one request per list pass).

Reads are counted where Stripe would count them: the emulator's arrival log. Prints reads per idle
tick, per day (96 ticks + one close-out) and per 30 days, and fails (exit 1) if 30 days exceed
10,000. One more measure, the freshness run-time part: the wall time of one fresh tick of the whole
chain. Usage:

    .venv/bin/python bench/idle_reads.py [--ticks 6]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections import Counter

import dagster as dg

import stripe_aep.assets.raw as raw_module
from stripe_aep.aep.client import AepClient
from stripe_aep.aep.settings import AepSettings
from stripe_aep.aep.setup import run_setup
from stripe_aep.definitions import RESOURCES, resources_from_env, selected_assets
from stripe_aep.emulators.aep_api import AepEmulator
from stripe_aep.emulators.stripe_account import StripeAccount
from stripe_aep.emulators.stripe_api import StripeEmulator
from stripe_aep.resources import LakeResource, StripeResource, XdmResource
from stripe_aep.xdm import schema_registry_payloads

KEY = "sk_test_" + "idle_reads_bench_0000000"
TENANT = "stripeaep"
TICKS_PER_DAY = 96  # */15 * * * *
ALLOCATION_30D = 10_000
ALL_ASSETS = selected_assets(RESOURCES)


def _bounds(day: dt.date) -> tuple[int, int]:
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    return start, start + 86400


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=6, help="idle fresh-data ticks to measure")
    args = parser.parse_args(argv)

    # D = yesterday (a partition Dagster accepts as past), simulated from its midnight on.
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    clock = FakeClock(midnight)
    raw_module._now = clock  # the raw assets' and stripe/events' clock
    account = StripeAccount(
        start=day - dt.timedelta(days=3), days=3, charges_per_day=40, clock=clock
    )
    root = tempfile.mkdtemp(prefix="idle-reads-")
    with StripeEmulator(account, rate_limit_rps=0) as stripe, AepEmulator() as aep:
        env = aep.client_environment(TENANT)
        os.environ.update(env)
        client = AepClient(AepSettings.from_env(env))
        payloads = {r: schema_registry_payloads(r, TENANT) for r in RESOURCES}
        run_setup(client, tenant=TENANT, payloads=payloads, environ={})
        client.close()
        resources = {
            "stripe": StripeResource(api_key=KEY, api_base=stripe.url, max_rps=100),
            "lake": LakeResource(root=root),
            "xdm": XdmResource(tenant=TENANT),
            "aep": resources_from_env()["aep"],  # the AEP_* variables, as deployed
        }
        poll = {
            "ops": {f"aep__{r}": {"config": {"poll_interval_seconds": 0.05}} for r in RESOURCES}
        }

        def run(partition: dt.date, at: float, meta: dict | None = None) -> tuple[Counter, float]:
            clock.now = at
            before = len(stripe.log)
            started = time.monotonic()
            result = dg.materialize(
                ALL_ASSETS,
                resources=resources,
                partition_key=partition.isoformat(),
                instance=instance,
                run_config=poll,
            )
            seconds = time.monotonic() - started
            if not result.success:
                raise SystemExit(f"the run of {partition} at {at} failed")
            if meta is not None:
                for event in result.get_asset_materialization_events():
                    meta[event.asset_key.to_user_string()] = event.materialization.metadata
            paths = Counter(r.path for r in stripe.log[before:] if r.path.startswith("/v1/"))
            return paths, seconds

        with dg.instance_for_test() as instance:
            warm, _ = run(day - dt.timedelta(days=1), midnight + 1800)  # close-out of D-1
            first, _ = run(day, midnight + 900)  # first tick of D
            print(
                f"warm-up: close-out of D-1 {sum(warm.values())} reads, first tick of D "
                f"{sum(first.values())} reads (history and the one-off account lookup)"
            )
            step = (86400 - 1800) // max(1, args.ticks)
            per_tick, seconds = [], []
            for i in range(args.ticks):
                at = midnight + 1800 + i * step
                paths, took = run(day, at)
                per_tick.append(sum(paths.values()))
                seconds.append(took)
                print(
                    f"idle tick at {dt.datetime.fromtimestamp(at, dt.UTC):%H:%M}: "
                    f"{sum(paths.values())} reads {dict(paths)} ({took:.1f} s)"
                )
            # Freshness, the run-time part: a change (a refund: a new refunds object and an
            # update of its charge) lands just before a tick; the tick's wall time is the time
            # from its start to the row confirmed in AEP (the aep steps watch their batches).
            change_at = midnight + 86400 - 1200
            clock.now = change_at
            charge = next(
                c
                for c in account.objects("charges", *_bounds(day - dt.timedelta(days=1)))
                if c["status"] == "succeeded" and not c["refunded"] and c["captured"]
            )
            account.mutate("charges", charge["id"], "refund")
            lag = int(resources["stripe"].settings().visibility_lag_seconds)
            meta: dict = {}
            changed, change_seconds = run(day, change_at + lag + 60, meta)
            delivered = meta["aep/refunds"]["run_rows_confirmed"].value
            print(
                f"tick after a refund: {sum(changed.values())} reads {dict(changed)}, "
                f"{delivered} refund row(s) confirmed in AEP, run {change_seconds:.1f} s"
            )
            close, took = run(day, midnight + 86400 + 1800)
            print(f"close-out of D at 00:30: {sum(close.values())} reads {dict(close)}")
    tick = max(per_tick)
    delivered = int(delivered)
    per_day = TICKS_PER_DAY * tick + sum(close.values())
    per_30 = 30 * per_day
    print()
    print(f"reads per idle tick: {tick} (each of {args.ticks} ticks: {per_tick})")
    print(
        f"reads per idle day:  {per_day} = {TICKS_PER_DAY} ticks x {tick} + close-out "
        f"{sum(close.values())}"
    )
    print(f"reads per 30 days:   {per_30} (allocation floor {ALLOCATION_30D:,})")
    print(
        f"one fresh tick of the whole chain (19 assets, in-process): idle median "
        f"{sorted(seconds)[len(seconds) // 2]:.1f} s, max {max(seconds):.1f} s; with a change "
        f"{change_seconds:.1f} s (freshness worst case = 15 min + visibility lag + this)"
    )
    return 0 if per_30 <= ALLOCATION_30D and tick <= 2 and delivered >= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
