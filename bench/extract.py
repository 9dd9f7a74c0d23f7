"""Extraction benchmark: one endpoint, stripe-aep's concurrent extractor vs a sequential paginator.

Starts the Stripe emulator in its own process (so it has its own core) with live mode's limits
(`--profile live`: 100 requests/s per account, 25 per endpoint, 250–450 ms per request, 1 % 500s),
then measures:

1. a plain sequential `starting_after` paginator (what most connectors do) on the same endpoint, for a
   bounded number of objects;
2. stripe-aep's `PartitionExtractor` with its default settings filling every day partition of charges
   from an empty lake.

One endpoint alone is bound by its own limit: the bound is `pages / 25` seconds, pages being the fewest
list requests the day windows allow. Prints objects/s for both, the ratio to the bound, requests per
minimum, 429s by reason and peak RSS. Not a test: figures depend on the machine. Usage:

    .venv/bin/python bench/extract.py [--days 11] [--charges-per-day 20000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time

import requests

from stripe_aep.config import StripeSettings
from stripe_aep.lake import Lake
from stripe_aep.stripe.client import StripeClient
from stripe_aep.stripe.extract import PartitionExtractor
from stripe_aep.stripe.rawstore import day_bounds

KEY = "sk_live_" + "benchmark_000000000000"  # built at run time: no live-looking literal


def start_emulator(args: argparse.Namespace, start: dt.date) -> tuple[subprocess.Popen, str]:
    cmd = [
        sys.executable,
        "-m",
        "stripe_aep.cli",
        "emulate",
        "--no-aep",
        "--stripe-port",
        "0",
        "--days",
        str(args.days),
        "--charges-per-day",
        str(args.charges_per_day),
        "--profile",
        "live",
    ]
    if args.latency_ms:
        cmd += ["--latency-ms", args.latency_ms]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    for line in proc.stdout:
        m = re.search(r"Stripe emulator listening on (http://\S+)", line)
        if m:
            return proc, m.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit("the emulator did not start")


def sequential(url: str, gte: int, lt: int, max_objects: int) -> tuple[int, float]:
    """The baseline: one thread, one request at a time, `starting_after` paging."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"
    params = {"limit": 100, "created[gte]": gte, "created[lt]": lt}
    count, started = 0, time.perf_counter()
    while count < max_objects:
        body = session.get(f"{url}/v1/charges", params=params, timeout=60).json()
        count += len(body["data"])
        if not body["has_more"]:
            break
        params["starting_after"] = body["data"][-1]["id"]
    return count, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--days", type=int, default=11, help="days of history; all but today are extracted"
    )
    parser.add_argument("--charges-per-day", type=int, default=20000)
    parser.add_argument("--latency-ms", default="", help="override the live profile's 250-450")
    parser.add_argument("--sequential-objects", type=int, default=3000)
    args = parser.parse_args()

    today = dt.datetime.now(dt.UTC).date()
    start = today - dt.timedelta(days=args.days - 1)
    t0 = time.perf_counter()
    proc, url = start_emulator(args, start)
    print(f"emulator ready on {url} in {time.perf_counter() - t0:.1f} s")
    days = [start + dt.timedelta(days=i) for i in range(args.days - 1)]  # closed days only
    try:
        seq_count, seq_seconds = sequential(
            url, day_bounds(days[0])[0], day_bounds(days[-1])[1], args.sequential_objects
        )
        seq_rate = seq_count / seq_seconds
        time.sleep(1.5)  # let the emulator's one-second rate windows drain
        with tempfile.TemporaryDirectory() as tmp:
            settings = StripeSettings.build(api_key=KEY, api_base=url, visibility_lag_seconds="0")
            client = StripeClient(settings)
            extractor = PartitionExtractor(
                client,
                Lake(tmp),
                "charges",
                concurrency=settings.concurrency,
                visibility_lag_seconds=0,
                account_id="acct_1EmulatorLocal00",
            )
            result = extractor.run(days)
            stats = result.request_stats
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    bound = result.objects / (result.min_requests / 25)  # objects/s at the endpoint's limit
    ours = result.objects_per_second
    print(f"live-mode limits, bound {bound:.0f} objects/s (25 pages/s)")
    print(
        f"sequential paginator : {seq_count:>8} objects in {seq_seconds:6.1f} s = "
        f"{seq_rate:8.0f} objects/s  ({seq_rate / bound:.2f} of bound)"
    )
    print(
        f"stripe-aep extractor : {result.objects:>8} objects in {result.seconds:6.1f} s = "
        f"{ours:8.0f} objects/s  ({ours / bound:.2f} of bound)"
    )
    by_reason = {k: int(v) for k, v in stats.items() if k.startswith("rate_limited_429[") and v}
    print(
        f"requests {int(stats['requests'])} / fewest {result.min_requests} = "
        f"{stats['requests'] / result.min_requests:.3f}, retries {int(stats['retries'])}, "
        f"429s {int(stats['rate_limited_429'])} {by_reason}, files {len(result.files)}, "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    print(f"ratio to bound: {ours / bound:.3f} (target >= 0.90)")
    print(f"ratio to sequential: {ours / seq_rate:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
