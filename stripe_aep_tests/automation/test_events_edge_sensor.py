"""The events-edge sensor: lost events windows on the lake become bounded re-read runs, once."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from stripe_aep.automation import sensors
from stripe_aep.lake import Lake
from stripe_aep.stripe.events import LostWindows, scan_coverage
from stripe_aep.stripe.extract import encode
from stripe_aep.stripe.rawstore import RawPartition, day_bounds
from stripe_aep_tests.automation.sensor_helpers import context, start_runs

NAME = sensors.EVENTS_EDGE_SENSOR
WINDOW = dg.DailyPartitionsDefinition(start_date="2026-09-01", timezone="UTC", end_offset=1)
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC).timestamp()
LAG = 120


@pytest.fixture(autouse=True)
def short_window(monkeypatch):
    monkeypatch.setattr(sensors, "daily_partitions", WINDOW)


def listed(lake, resource, day, fetched_at):
    lo, hi = day_bounds(day)
    RawPartition(lake, resource, day).write(
        lo, hi, [encode({"id": f"{resource}_{day}", "created": lo})], {"fetched_at": fetched_at}
    )


def lose_events(data_dir):
    """Listings of Sept. 1-3 (customers) and Sept. 2 (prices) fetched early September; no events
    were ever fetched: everything before the retention's edge is lost."""
    lake = Lake(str(data_dir))
    for n in (1, 2, 3):
        day = dt.date(2026, 9, n)
        listed(lake, "customers", day, day_bounds(day)[1] + 60)
    listed(lake, "prices", dt.date(2026, 9, 2), day_bounds(dt.date(2026, 9, 2))[1] + 60)
    # a balance-transactions listing relies on no event: never re-read for a lost window
    listed(lake, "balance_transactions", dt.date(2026, 9, 1), day_bounds(dt.date(2026, 9, 1))[1])
    report = scan_coverage(lake, NOW, LAG)
    assert len(report.lost) == 1
    return lake


def tick(instance, data_dir):
    return sensors.evaluate_events_edge(context(instance, NAME), str(data_dir), NOW)


def test_nothing_lost_is_a_skip(instance, data_dir):
    result = tick(instance, data_dir)
    assert isinstance(result, dg.SkipReason)
    assert "no lost events window" in result.skip_message


def test_a_lost_window_launches_bounded_reread_runs_once(instance, data_dir):
    lake = lose_events(data_dir)
    (window,) = LostWindows(lake).load()
    assert window.partitions == {
        "customers": ["2026-09-01", "2026-09-02", "2026-09-03"],
        "prices": ["2026-09-02"],
    }
    result = tick(instance, data_dir)
    requests = {r.run_key: r for r in result.run_requests}
    customers = f"reread:{window.key}:customers:2026-09-01..2026-09-03"
    prices = f"reread:{window.key}:prices:2026-09-02..2026-09-02"
    assert set(requests) == {customers, prices}
    request = requests[customers]
    assert request.tags[sensors.RANGE_START_TAG] == "2026-09-01"
    assert request.tags[sensors.RANGE_END_TAG] == "2026-09-03"
    assert request.tags[sensors.SENSOR_TAG] == NAME
    assert set(request.asset_selection) == {
        dg.AssetKey(["stripe", "customers"]),
        dg.AssetKey(["xdm", "customers"]),
        dg.AssetKey(["aep", "customers"]),
    }
    assert request.run_config == {"ops": {"stripe__customers": {"config": {"reread": True}}}}
    # recorded on the lake: the next tick launches nothing again
    (window,) = LostWindows(lake).load()
    assert window.status == "reread_launched" and set(window.runs) == {customers, prices}
    again = tick(instance, data_dir)
    assert isinstance(again, dg.SkipReason)


def test_runs_in_flight_bound_the_launches(instance, data_dir):
    lake = lose_events(data_dir)
    start_runs(instance, NAME, sensors.MAX_RUNS_IN_FLIGHT - 1)
    first = tick(instance, data_dir)
    assert len(first.run_requests) == 1
    (window,) = LostWindows(lake).load()
    assert window.status == "open" and len(window.runs) == 1
    second = tick(instance, data_dir)
    assert [r.run_key for r in second.run_requests] != [r.run_key for r in first.run_requests]
    (window,) = LostWindows(lake).load()
    assert window.status == "reread_launched" and len(window.runs) == 2


def test_the_run_config_is_accepted_by_the_raw_asset(instance, data_dir, monkeypatch):
    """The request resolves against the code location: `reread` is a field of the raw config."""
    from stripe_aep_tests.conftest import TEST_KEY

    for name, value in {
        "STRIPE_API_KEY": TEST_KEY,
        "AEP_TENANT_ID": "_tenant",
        "AEP_CLIENT_ID": "client",
        "AEP_CLIENT_SECRET": "secret-value",
    }.items():
        monkeypatch.setenv(name, value)
    lose_events(data_dir)
    ctx = context(instance, NAME)
    result = sensors.evaluate_events_edge(ctx, str(data_dir), NOW)
    from stripe_aep.definitions import defs

    job = defs.get_implicit_global_asset_job_def()
    for request in result.run_requests:
        validated = dg.validate_run_config(job, request.run_config)
        assert validated["ops"][f"stripe__{request.run_key.split(':')[2]}"]["config"]["reread"]
