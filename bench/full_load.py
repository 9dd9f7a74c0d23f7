"""Full-load benchmark: all six raw resources at once against a Stripe stand-in with live mode's limits.

The Stripe emulator runs in its own process with `--profile live`: 100 requests/s per account, 25 per
endpoint, concurrency caps, 250–450 ms per request and 1 % 500s, answering 429 with
`Stripe-Rate-Limited-Reason` above any limit. Then, on the same data:

1. stripe-aep: six extraction processes at once (one per resource, as Dagster's multiprocess executor
   runs the six raw steps), sharing the machine-wide rate budget, into an empty lake;
2. Singer tap-stripe 3.3.0 in its own virtualenv (`--tap-python`), pointed at the emulator through
   `stripe.api_base` (tap-stripe has no base-URL setting; stripe-python 5.5.0, which it pins,
   reads that module global), syncing charges, customers, subscriptions and balance_transactions,
   cut off after `--peer-seconds` (it is single-threaded: a full load would take many times
   longer; its objects/s is steady);
3. Airbyte `airbyte-source-stripe` 5.14.1 in its own virtualenv (`--airbyte-python`), a declarative
   manifest whose `url_base` is hard-coded to api.stripe.com: the wrapper below loads the installed
   manifest and replaces `definitions.base_requester.url_base` with the emulator's before the source
   is built (peers.md §5.2). It reads the same six streams (full refresh), cut off likewise.

Reports the bound `max(max_r pages_r / 25, Σ_r pages_r / 100)` seconds (pages = the fewest list
requests the day windows allow), stripe-aep's ratio to it, requests / minimum, 429s by reason (from
the emulator's log), the worst one-second window per endpoint and for the account, peak RSS, each
peer's objects/s and stripe-aep's speed-up over it; writes a PNG plot. Not a test: figures depend on
the machine. Usage:

    .venv/bin/python bench/full_load.py --days 4 --charges-per-day 10000 \\
        --tap-python /tmp/tapstripe-venv/bin/python \\
        --airbyte-python /tmp/airbyte-venv/bin/python --png docs/benchmarks-full-load.png
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict

import requests

from stripe_aep.catalog import STRIPE_RESOURCES
from stripe_aep.emulators.stripe_limits import busiest_second

LIVE_KEY = "sk_live_" + "benchmark0000000000000000"  # built at run time: no live-looking literal
#: The resources of AEP's own Stripe source, the ones tap-stripe is compared on.
RESOURCES = tuple(r.name for r in STRIPE_RESOURCES if r.in_aep_stripe_source)
TAP_STREAMS = ("charges", "customers", "subscriptions", "balance_transactions")

EXTRACT_ONE = """
import datetime as dt, json, resource, sys, time
from stripe_aep.config import StripeSettings
from stripe_aep.lake import Lake
from stripe_aep.stripe.client import StripeClient
from stripe_aep.stripe.extract import PartitionExtractor
key, url, root, name, first, n = sys.argv[1:7]
s = StripeSettings.build(api_key=key, api_base=url, visibility_lag_seconds="0")
days = [dt.date.fromisoformat(first) + dt.timedelta(days=i) for i in range(int(n))]
began = time.time()
r = PartitionExtractor(StripeClient(s), Lake(root), name, concurrency=s.concurrency,
                       visibility_lag_seconds=0, account_id="acct_1EmulatorLocal00").run(days)
print(json.dumps({"resource": name, "began": began, "ended": time.time(), "objects": r.objects,
                  "requests": r.request_stats["requests"], "min_requests": r.min_requests,
                  "splits": r.splits, "peak_buffered_mb": r.peak_buffered_bytes / 2**20,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# tap-stripe 3.3.0 has no base-URL setting: set the SDK's module global, skip the per-endpoint timer
# that only matches api.stripe.com, the account lookup (the emulator has no /v1/accounts/{id}) and
# the events pass (a first load is what is compared).
TAP_WRAPPER = """
import sys, stripe, tap_stripe
stripe.api_base = sys.argv[1]
tap_stripe.apply_request_timer_to_client = lambda client: None
tap_stripe.sync_event_updates = lambda *a, **k: None
stripe.Account.retrieve = staticmethod(
    lambda *a, **k: stripe.util.convert_to_stripe_object(
        {"settings": {"dashboard": {"display_name": "bench"}}}))
sys.argv = ["tap-stripe"] + sys.argv[2:]
tap_stripe.main()
"""


# airbyte-source-stripe 5.14.1 has no base-URL setting either: its manifest says
# `url_base: https://api.stripe.com/v1`. Patch the parsed manifest (not the installed file) before
# the declarative source is built from it; everything else runs as shipped.
AIRBYTE_WRAPPER = """
import sys
from airbyte_cdk.sources.declarative.yaml_declarative_source import YamlDeclarativeSource
base = sys.argv[1]
parse = YamlDeclarativeSource._read_and_parse_yaml_file
def with_base(self, path):
    manifest = parse(self, path)
    requester = manifest["definitions"]["base_requester"]
    assert requester["url_base"] == "https://api.stripe.com/v1", requester["url_base"]
    requester["url_base"] = base + "/v1"
    return manifest
YamlDeclarativeSource._read_and_parse_yaml_file = with_base
sys.argv = ["source-stripe"] + sys.argv[2:]
from source_stripe.run import run
run()
"""
_RECORD_STREAM = re.compile(r'"stream":\s*"(\w+)"')


def _as_client() -> None:
    """Clients (ours and the peers alike) yield the CPU to the emulator: Stripe runs on its own
    machines, and a starved emulator stamps queued arrivals together, which Stripe never sees."""
    os.nice(5)


def start_emulator(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    cmd = [
        sys.executable, "-m", "stripe_aep.cli", "emulate", "--no-aep", "--stripe-port", "0",
        "--profile", "live", "--days", str(args.days + 1),
        "--charges-per-day", str(args.charges_per_day),
    ]  # fmt: skip
    if args.latency_ms:
        cmd += ["--latency-ms", args.latency_ms]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stdout:
        match = re.search(r"Stripe emulator listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise SystemExit("the emulator did not start")


def audit(url: str) -> dict:
    log = [r for r in requests.get(f"{url}/_emulator/log", timeout=60).json() if r["path"] != "/"]
    log = [r for r in log if r["path"].startswith("/v1/")]
    by_endpoint: dict[str, list[float]] = defaultdict(list)
    for record in log:
        by_endpoint[record["endpoint"]].append(record["t"])

    return {
        "requests": len(log),
        "429_by_reason": dict(
            Counter(r["limited_by"] or "none" for r in log if r["status"] == 429)
        ),
        "500s": sum(1 for r in log if r["status"] == 500),
        "worst_endpoint_window": max(busiest_second(ts) for ts in by_endpoint.values()),
        "worst_account_window": busiest_second(t for ts in by_endpoint.values() for t in ts),
    }


def run_stripe_aep(url: str, first: dt.date, days: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        began = time.time()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    EXTRACT_ONE,
                    LIVE_KEY,
                    url,
                    root,
                    name,
                    first.isoformat(),
                    str(days),
                ],
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=_as_client,
            )  # fmt: skip
            for name in RESOURCES
        ]
        results = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"an extraction process failed ({proc.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        ended = time.time()
    extraction = max(r["ended"] for r in results) - min(r["began"] for r in results)
    pages = {r["resource"]: r["min_requests"] for r in results}
    bound = max(max(pages.values()) / 25, sum(pages.values()) / 100)
    return {
        "per_resource": results,
        "objects": sum(r["objects"] for r in results),
        "requests": sum(r["requests"] for r in results),
        "min_requests": sum(pages.values()),
        "bound_seconds": bound,
        "extraction_seconds": extraction,
        "wall_seconds": ended - began,
        "ratio_to_bound": bound / extraction,
        "peak_rss_mb": max(r["rss_mb"] for r in results),
        "total_rss_mb": sum(r["rss_mb"] for r in results),
    }


def run_tap_stripe(tap_python: str, url: str, first: dt.date, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "config.json")
        with open(config, "w") as f:
            json.dump(
                {"start_date": f"{first.isoformat()}T00:00:00Z", "account_id": "acct_1EmulatorLocal00",
                 "client_secret": LIVE_KEY, "date_window_size": 30},
                f,
            )  # fmt: skip
        catalog = json.loads(
            subprocess.run(
                [tap_python, "-c", TAP_WRAPPER, url, "--config", config, "--discover"],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout  # fmt: skip
        )
        for stream in catalog["streams"]:
            for entry in stream["metadata"]:
                if entry["breadcrumb"] == []:
                    entry["metadata"]["selected"] = stream["tap_stream_id"] in TAP_STREAMS
        catalog_path = os.path.join(tmp, "catalog.json")
        with open(catalog_path, "w") as f:
            json.dump(catalog, f)
        return _count_records(
            [tap_python, "-c", TAP_WRAPPER, url, "--config", config, "--catalog", catalog_path],
            seconds,
        )


def _count_records(cmd: list[str], seconds: float, cwd: str | None = None) -> dict:
    """Run a peer's sync, count its RECORD messages per stream, stop it after `seconds`.

    Both rates are reported: over the whole run (start-up included) and steady, from its first
    record on; the speed-up is taken over the steady one (the peer's best light)."""
    began = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        preexec_fn=_as_client, cwd=cwd,
    )  # fmt: skip
    records: Counter[str] = Counter()
    finished = True
    first = None
    for line in proc.stdout:
        if line.startswith('{"type": "RECORD"') or line.startswith('{"type":"RECORD"'):
            if first is None:
                first = time.monotonic() - began
            match = _RECORD_STREAM.search(line, 0, 300)
            records[match.group(1) if match else "?"] += 1
        if time.monotonic() - began > seconds:
            finished = False
            os.killpg(proc.pid, signal.SIGTERM)
            break
    proc.wait(timeout=30)
    elapsed = time.monotonic() - began
    total = sum(records.values())
    steady = elapsed - (first or 0.0)
    return {
        "records": dict(records),
        "objects": total,
        "seconds": elapsed,
        "first_record_seconds": first,
        "finished": finished,
        "overall_objects_per_second": total / elapsed if elapsed else 0.0,
        "objects_per_second": total / steady if total and steady > 0 else 0.0,
    }


def run_airbyte(airbyte_python: str, url: str, first: dt.date, seconds: float) -> dict:
    airbyte_python = os.path.abspath(airbyte_python)  # it runs beside its manifest (cwd below)
    site = subprocess.run(
        [airbyte_python, "-c", "import os, source_stripe; "
         "print(os.path.dirname(os.path.dirname(source_stripe.__file__)))"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "config.json")
        with open(config, "w") as f:
            json.dump(
                {"client_secret": LIVE_KEY, "account_id": "acct_1EmulatorLocal00",
                 "start_date": f"{first.isoformat()}T00:00:00Z"},
                f,
            )  # fmt: skip
        wrapper = [airbyte_python, "-c", AIRBYTE_WRAPPER, url]
        discovered = subprocess.run(
            [*wrapper, "discover", "--config", config],
            capture_output=True, text=True, check=True, timeout=300, cwd=site,
        ).stdout  # fmt: skip
        catalog = next(
            json.loads(line)["catalog"]
            for line in discovered.splitlines()
            if line.startswith("{") and '"CATALOG"' in line[:40]
        )
        streams = [
            {"stream": stream, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}
            for stream in catalog["streams"]
            if stream["name"] in RESOURCES
        ]
        catalog_path = os.path.join(tmp, "catalog.json")
        with open(catalog_path, "w") as f:
            json.dump({"streams": streams}, f)
        out = _count_records(
            [*wrapper, "read", "--config", config, "--catalog", catalog_path], seconds, cwd=site
        )
    out["streams"] = sorted(s["stream"]["name"] for s in streams)
    return out


def plot(path: str, aep: dict, peers: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["stripe-aep", *peers]
    rates = [
        aep["objects"] / aep["extraction_seconds"],
        *(p["objects_per_second"] for p in peers.values()),
    ]
    bound_rate = aep["objects"] / aep["bound_seconds"]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    bars = ax.barh(names, rates, color=["#2a7ab9"] + ["#999999"] * len(peers))
    ax.axvline(bound_rate, color="#c0392b", linestyle="--", label="Stripe's limits (the bound)")
    for bar, rate in zip(bars, rates, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {rate:,.0f}/s", va="center")
    ax.set_xlabel("objects per second (live-mode limits, 250–450 ms per request)")
    ax.set_title(f"First load, {aep['objects']:,} objects across six resources")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    ax.set_xlim(0, max(rates + [bound_rate]) * 1.25)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=4, help="closed days to extract")
    parser.add_argument("--charges-per-day", type=int, default=10000)
    parser.add_argument("--latency-ms", default="", help="override the live profile's 250-450")
    parser.add_argument("--tap-python", default="", help="python of a venv with tap-stripe==3.3.0")
    parser.add_argument(
        "--airbyte-python", default="", help="python of a venv with airbyte-source-stripe==5.14.1"
    )
    parser.add_argument("--peer-seconds", type=float, default=120.0)
    parser.add_argument("--png", default="", help="write the plot here")
    args = parser.parse_args()

    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=args.days)
    t0 = time.perf_counter()
    proc, url = start_emulator(args)
    print(f"emulator (live profile) ready on {url} in {time.perf_counter() - t0:.1f} s")
    peers: dict[str, dict] = {}
    try:
        aep = run_stripe_aep(url, first, args.days)
        aep["audit"] = audit(url)
        if args.tap_python:
            requests.post(f"{url}/_emulator/reset", timeout=30)
            time.sleep(1.5)  # let the one-second windows drain
            peers["tap-stripe 3.3.0"] = run_tap_stripe(
                args.tap_python, url, first, args.peer_seconds
            )
            peers["tap-stripe 3.3.0"]["audit"] = audit(url)
        if args.airbyte_python:
            requests.post(f"{url}/_emulator/reset", timeout=30)
            time.sleep(1.5)
            peers["Airbyte source-stripe 5.14.1"] = run_airbyte(
                args.airbyte_python, url, first, args.peer_seconds
            )
            peers["Airbyte source-stripe 5.14.1"]["audit"] = audit(url)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    a = aep["audit"]
    print(f"stripe-aep: {aep['objects']:,} objects, six resources at once")
    for r in sorted(aep["per_resource"], key=lambda r: -r["min_requests"]):
        print(
            f"  {r['resource']:<21} {r['objects']:>8} objects  {r['requests']:>6} requests "
            f"(fewest {r['min_requests']}, splits {r['splits']})  {r['ended'] - r['began']:6.1f} s"
        )
    print(
        f"  extraction {aep['extraction_seconds']:.1f} s, bound {aep['bound_seconds']:.1f} s "
        f"→ ratio to bound {aep['ratio_to_bound']:.3f} (target ≥ 0.90)"
    )
    print(
        f"  requests {aep['requests']} / minimum {aep['min_requests']} = "
        f"{aep['requests'] / aep['min_requests']:.3f} (target ≤ 1.10)"
    )
    print(
        f"  Stripe's view: {a['requests']} requests, 429s {a['429_by_reason'] or 0} "
        f"({sum(a['429_by_reason'].values()) / a['requests']:.2%}), 500s {a['500s']}, worst second "
        f"per endpoint {a['worst_endpoint_window']} (≤ 25), account {a['worst_account_window']} (≤ 100)"
    )
    print(
        f"  peak RSS {aep['peak_rss_mb']:.0f} MB per process, {aep['total_rss_mb']:.0f} MB for the six "
        f"(sum of each process's peak); JSON held at once: at most "
        f"{max(r['peak_buffered_mb'] for r in aep['per_resource']):.0f} MB per process"
    )
    aep_rate = aep["objects"] / aep["extraction_seconds"]
    print(f"  {aep_rate:,.0f} objects/s")
    for name, peer in peers.items():
        state = "finished" if peer["finished"] else f"cut off after {peer['seconds']:.0f} s"
        pa = peer["audit"]
        print(
            f"{name}: {peer['objects']:,} objects ({state}), first after "
            f"{peer['first_record_seconds'] or 0:.1f} s = {peer['objects_per_second']:,.0f} "
            f"objects/s steady ({peer['overall_objects_per_second']:,.0f} with start-up) "
            f"{peer['records']}; Stripe's view: {pa['requests']} requests "
            f"({pa['requests'] / peer['seconds']:.1f}/s), 429s {pa['429_by_reason'] or 0}"
        )
        if peer["objects_per_second"] > 0:
            speed_up = aep_rate / peer["objects_per_second"]
            print(f"  stripe-aep speed-up over {name}: {speed_up:.1f}×")
    if args.png:
        plot(args.png, aep, peers)
        print(f"plot: {args.png}")
    print("json: " + json.dumps({"stripe_aep": aep, "peers": peers}, default=str))


if __name__ == "__main__":
    main()
