"""The extractor as a whole: concurrent windows, the shared budget across processes, refresh."""

import datetime as dt
import subprocess
import sys

from stripe_aep.config import StripeSettings
from stripe_aep.emulators.stripe_limits import busiest_second
from stripe_aep.lake import Lake
from stripe_aep.stripe.client import StripeClient
from stripe_aep.stripe.extract import (
    ExtractionResult,
    PartitionExtractor,
    cut_windows,
    fewest_requests,
)
from stripe_aep.stripe.rawstore import RawPartition, day_bounds, read_objects
from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY


def test_cut_windows_cover_gaps_exactly():
    gaps = [(0, 1000), (5000, 5100)]
    assert cut_windows(gaps, None) == gaps  # by default a window is one piece
    pieces = cut_windows(gaps, 300)
    assert pieces[0][0] == 0 and pieces[-1][1] == 5100
    covered = sorted(pieces)
    assert all(a < b and b - a <= 300 for a, b in covered)
    assert sum(b - a for a, b in covered) == 1100
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(covered, covered[1:], strict=False))


def test_fewest_requests_counts_one_per_empty_pass():
    assert fewest_requests([0]) == 1
    assert fewest_requests([100]) == 1
    assert fewest_requests([101, 0]) == 3


def test_work_stealing_keeps_every_object_exactly_once(stripe_emulator, stripe_account, tmp_path):
    # One day as ONE planned piece, eight workers: the idle ones must split it while it runs.
    settings = StripeSettings.build(api_key=TEST_KEY, api_base=stripe_emulator.url, max_rps="1000")
    client = StripeClient(settings, shared_limiter=False)
    extractor = PartitionExtractor(
        client,
        Lake(str(tmp_path)),
        "balance_transactions",
        concurrency=8,
        visibility_lag_seconds=0,
        min_split_pages=1,
        split_budget=1.0,  # small day: allow splits a real run would find too costly
    )
    result = extractor.run([ACCOUNT_START])
    assert len(result.windows) > 1 and result.splits >= 1, "no piece was stolen"
    lake = Lake(str(tmp_path))
    part = RawPartition(lake, "balance_transactions", ACCOUNT_START)
    ids = [o["id"] for f in part.files() for o in read_objects(lake, f)]
    truth = {
        o["id"] for o in stripe_account.objects("balance_transactions", *day_bounds(ACCOUNT_START))
    }
    assert len(ids) == len(set(ids)) and set(ids) == truth
    assert result.objects == result.new_objects == len(truth)


def test_refresh_adds_only_objects_missing_on_disk(stripe_emulator, stripe_account, tmp_path):
    settings = StripeSettings.build(api_key=TEST_KEY, api_base=stripe_emulator.url, max_rps="1000")
    lake = Lake(str(tmp_path))
    run = PartitionExtractor(
        StripeClient(settings, shared_limiter=False),
        lake,
        "customers",
        concurrency=4,
        visibility_lag_seconds=0,
    )
    run.run([ACCOUNT_START])
    part = RawPartition(lake, "customers", ACCOUNT_START)
    # Lose one object from disk (as if Stripe had shown it late): rewrite the file without it.
    only = part.files()[0]
    objects = read_objects(lake, only)
    missing = objects[3]["id"]
    lake.delete(only.path)
    part.write(
        only.gte,
        only.lt,
        [__import__("orjson").dumps(o) for o in objects if o["id"] != missing],
        {},
    )
    again = PartitionExtractor(
        StripeClient(settings, shared_limiter=False),
        lake,
        "customers",
        concurrency=4,
        visibility_lag_seconds=0,
    ).run([ACCOUNT_START], refresh=True)
    assert again.new_objects == 1
    ids = [o["id"] for f in part.files() for o in read_objects(lake, f)]
    assert len(ids) == len(set(ids)) == len(objects)
    assert missing in ids


CHILD = """
import datetime as dt, sys
from stripe_aep.config import StripeSettings
from stripe_aep.lake import Lake
from stripe_aep.stripe.client import StripeClient
from stripe_aep.stripe.extract import PartitionExtractor
s = StripeSettings.build(api_key=sys.argv[1], api_base=sys.argv[2], max_rps=sys.argv[3], concurrency="8")
PartitionExtractor(StripeClient(s), Lake(sys.argv[4]), sys.argv[5], concurrency=8,
                   visibility_lag_seconds=0).run([dt.date.fromisoformat(sys.argv[6])])
"""


def test_budget_holds_across_processes_extracting_at_once(external_stripe_emulator, tmp_path):
    """Two extraction processes (as two Dagster steps would be) share one machine-wide budget.

    Stripe's view is the emulator's arrival log; the emulator runs in its own process too."""
    import requests

    budget = 15
    url = external_stripe_emulator("--rate-limit", "0", "--days", "2", "--charges-per-day", "1500")
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                TEST_KEY,
                url,
                str(budget),
                str(tmp_path / r),
                r,
                yesterday,
            ]
        )
        for r in ("charges", "balance_transactions")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    log = requests.get(f"{url}/_emulator/log", timeout=10).json()
    arrivals = sorted(r["t"] for r in log if r["path"].startswith("/v1/"))
    assert len(arrivals) > 2 * budget  # long enough to measure a rate
    worst = busiest_second(arrivals)
    assert worst <= budget, f"{worst} requests in one second with a budget of {budget}"


def _count_list_requests(emulator, resource):
    return sum(1 for r in emulator.log if r.path == f"/v1/{resource}")


def test_idle_tick_costs_one_request_per_list_pass(stripe_account, tmp_path):
    """A 10-minute window with no objects (an idle account's fresh-data tick), eight idle workers and
    a slow answer: nobody splits a window whose first page has not shown anything to split."""
    from stripe_aep.emulators.stripe_api import StripeEmulator

    with StripeEmulator(stripe_account, rate_limit_rps=0, latency_ms=300) as emulator:
        _idle_tick(emulator, tmp_path)


def _idle_tick(stripe_emulator, tmp_path):
    settings = StripeSettings.build(api_key=TEST_KEY, api_base=stripe_emulator.url, max_rps="1000")
    empty_day = ACCOUNT_START + dt.timedelta(days=30)  # after the account's last object
    start, _ = day_bounds(empty_day)
    for resource in ("charges", "prices"):  # prices: two list passes (active and inactive)
        stripe_emulator.log.clear()
        result = PartitionExtractor(
            StripeClient(settings, shared_limiter=False),
            Lake(str(tmp_path)),
            resource,
            concurrency=8,
            visibility_lag_seconds=120,
            clock=lambda: start + 600 + 120,
            account_id="acct_test",
        ).run([empty_day])
        passes = 2 if resource == "prices" else 1
        assert _count_list_requests(stripe_emulator, resource) == passes
        assert result.request_stats["requests"] == result.min_requests == passes
        assert result.windows == [(start, start + 600)] and result.objects == 0


def test_one_page_day_costs_one_request_per_list_pass(stripe_emulator, stripe_account, tmp_path):
    settings = StripeSettings.build(api_key=TEST_KEY, api_base=stripe_emulator.url, max_rps="1000")
    gte, lt = day_bounds(ACCOUNT_START)
    small = [
        r
        for r in ("refunds", "customers", "subscriptions", "prices")
        if 0 < len(stripe_account.objects(r, gte=gte, lt=lt)) <= 100
    ]
    assert small, "the test account has no one-page resource"
    for resource in small:
        stripe_emulator.log.clear()
        result = PartitionExtractor(
            StripeClient(settings, shared_limiter=False),
            Lake(str(tmp_path)),
            resource,
            concurrency=8,
            visibility_lag_seconds=0,
            account_id="acct_test",
        ).run([ACCOUNT_START])
        passes = 2 if resource == "prices" else 1
        assert _count_list_requests(stripe_emulator, resource) == passes, resource
        assert result.min_requests == passes


def test_a_dense_run_stays_within_ten_percent_of_the_fewest_requests(
    stripe_emulator, stripe_account, tmp_path
):
    """Three days of balance transactions with twelve workers: splits happen (the run is dense
    enough to want them) but cost at most ~5 % extra requests."""
    settings = StripeSettings.build(api_key=TEST_KEY, api_base=stripe_emulator.url, max_rps="1000")
    days = [ACCOUNT_START + dt.timedelta(days=i) for i in range(3)]
    client = StripeClient(settings, shared_limiter=False)
    result = PartitionExtractor(
        client,
        Lake(str(tmp_path)),
        "balance_transactions",
        concurrency=12,
        visibility_lag_seconds=0,
        account_id="acct_test",
    ).run(days)
    truth = sum(len(stripe_account.objects("balance_transactions", *day_bounds(d))) for d in days)
    assert result.objects == truth
    assert result.min_requests == sum(
        -(-len(stripe_account.objects("balance_transactions", *day_bounds(d))) // 100) for d in days
    )
    assert result.request_stats["requests"] <= 1.10 * result.min_requests


def test_large_windows_are_written_as_they_are_paged(tmp_path, monkeypatch):
    """Memory stays flat: a piece writes what it has paged to its end once it holds FLUSH_BYTES
    of JSON; every object still lands on disk exactly once, with or without splits, and the bytes
    held at once stay within pieces × (FLUSH_BYTES + one page), far below the day's size."""
    import stripe_aep.stripe.extract as extract
    from stripe_aep.emulators.stripe_account import StripeAccount
    from stripe_aep.emulators.stripe_api import StripeEmulator

    flush = 40_000
    monkeypatch.setattr(extract, "FLUSH_BYTES", flush)
    stripe_account = StripeAccount(seed=5, start=ACCOUNT_START, days=1, charges_per_day=3000)
    with StripeEmulator(stripe_account, rate_limit_rps=0) as emulator:
        result = _extract_large_day(emulator.url, tmp_path)
    objects = stripe_account.objects("balance_transactions", *day_bounds(ACCOUNT_START))
    truth = {o["id"] for o in objects}
    sizes = sorted(len(extract.encode(o)) for o in objects)
    day_bytes = sum(sizes)
    assert day_bytes > 10 * flush  # the day is large against the bound
    lake = Lake(str(tmp_path))
    part = RawPartition(lake, "balance_transactions", ACCOUNT_START)
    ids = [o["id"] for f in part.files() for o in read_objects(lake, f)]
    assert len(ids) == len(set(ids)) and set(ids) == truth
    assert result.objects == result.new_objects == len(truth)
    assert part.gaps(day_bounds(ACCOUNT_START)[1]) == []
    # Written in many parts as it was paged, merged into one file at the end.
    assert len(result.windows) >= day_bytes // (flush + 100 * sizes[-1])
    assert len(part.files()) == 1
    # Bounded buffer: each running piece holds under FLUSH_BYTES plus the page that crossed it
    # (and the objects of that page's oldest second, kept for the next part).
    page = 100 * sizes[-1]
    assert 0 < result.peak_buffered_bytes <= 4 * (flush + 2 * page)  # 4 = the run's concurrency
    assert result.peak_buffered_bytes < day_bytes / 2


def _extract_large_day(url: str, root) -> ExtractionResult:
    settings = StripeSettings.build(api_key=TEST_KEY, api_base=url, max_rps="1000")
    return PartitionExtractor(
        StripeClient(settings, shared_limiter=False),
        Lake(str(root)),
        "balance_transactions",
        concurrency=4,
        visibility_lag_seconds=0,
        min_split_pages=1,
        split_budget=1.0,
        account_id="acct_test",
    ).run([ACCOUNT_START])
