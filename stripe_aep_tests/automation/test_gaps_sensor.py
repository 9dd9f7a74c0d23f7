"""The gaps sensor on a real (temporary) Dagster instance and a lake folder.

Partitions are a short window (2026-11-01 .. 2026-11-10) so every expectation is spelled out.
Delivered days are recorded as materializations of every `aep/<resource>` asset of the selection
(the default: every resource of the catalog) and have their raw and XDM files on the lake, as a
delivery leaves them.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest

from stripe_aep.automation import sensors
from stripe_aep.config import RESOURCES_VARIABLE, selected_resources
from stripe_aep_tests.automation.sensor_helpers import context, start_runs

NAME = sensors.GAPS_SENSOR
WINDOW = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="UTC", end_offset=1)
NOW = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC).timestamp()
DAYS = [f"2026-11-{d:02d}" for d in range(1, 11)]


#: The default selection (STRIPE_AEP_RESOURCES unset): every resource of the catalog.
RESOURCES = selected_resources({})


@pytest.fixture(autouse=True)
def short_window(monkeypatch):
    monkeypatch.setattr(sensors, "daily_partitions", WINDOW)
    monkeypatch.delenv(RESOURCES_VARIABLE, raising=False)


def deliver(instance, data_dir, days, resources=RESOURCES):
    for day in days:
        for r in resources:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=["aep", r], partition=day)
            )
            raw = data_dir / "stripe" / r / day
            xdm = data_dir / "xdm" / r / day
            raw.mkdir(parents=True, exist_ok=True)
            xdm.mkdir(parents=True, exist_ok=True)
            (raw / "1-2.jsonl.zst").write_bytes(b"x")
            (xdm / "1-2.xdm.json").write_text("{}")


def tick(instance, data_dir, cursor=None, now=NOW):
    ctx = context(instance, NAME, cursor)
    return sensors.evaluate_gaps(ctx, str(data_dir), now), ctx


def ranges(result):
    return [
        (r.tags[sensors.RANGE_START_TAG], r.tags[sensors.RANGE_END_TAG], r.run_key)
        for r in result.run_requests
    ]


def test_all_delivered_is_a_skip(instance, data_dir):
    deliver(instance, data_dir, DAYS)
    result, _ = tick(instance, data_dir)
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == "no gaps in 2026-11-01..2026-11-10"


def test_missing_failed_and_vanished_days_become_range_runs_newest_first(instance, data_dir):
    deliver(instance, data_dir, [d for d in DAYS if d != "2026-11-08"])
    deliver(instance, data_dir, ["2026-11-08"], resources=[r for r in RESOURCES if r != "refunds"])
    # a delivered day whose raw files were deleted from the lake (the folder stays, empty)
    for f in (data_dir / "stripe" / "charges" / "2026-11-03").iterdir():
        f.unlink()
    result, _ = tick(instance, data_dir)
    assert ranges(result) == [
        ("2026-11-08", "2026-11-08", "gaps:2026-11-08..2026-11-08:1"),
        ("2026-11-03", "2026-11-03", "gaps:2026-11-03..2026-11-03:1"),
    ]
    for request in result.run_requests:
        assert request.partition_key is None  # a range run: the range tags say which days
        assert request.tags[sensors.SENSOR_TAG] == NAME


def test_a_failed_delivery_is_a_gap(instance, data_dir):
    deliver(instance, data_dir, DAYS)

    @dg.asset(key=["aep", "customers"], partitions_def=WINDOW)
    def failing():
        raise RuntimeError("AEP said no")

    outcome = dg.materialize(
        [failing], partition_key="2026-11-05", instance=instance, raise_on_error=False
    )
    assert not outcome.success
    result, _ = tick(instance, data_dir)
    assert ranges(result) == [("2026-11-05", "2026-11-05", "gaps:2026-11-05..2026-11-05:1")]


def test_ranges_are_bounded_and_runs_in_flight_are_bounded(instance, data_dir, monkeypatch):
    monkeypatch.setattr(sensors, "MAX_PARTITIONS_PER_RUN", 4)
    result, _ = tick(instance, data_dir)  # nothing delivered at all (e.g. the start moved earlier)
    assert [(a, b) for a, b, _ in ranges(result)] == [
        ("2026-11-07", "2026-11-10"),
        ("2026-11-03", "2026-11-06"),
    ]
    start_runs(instance, NAME, 1)
    one, _ = tick(instance, data_dir)
    assert [(a, b) for a, b, _ in ranges(one)] == [("2026-11-07", "2026-11-10")]
    start_runs(instance, NAME, 1)
    none, _ = tick(instance, data_dir)
    assert isinstance(none, dg.SkipReason)
    assert "0 run slot(s) free" in none.skip_message


def test_cursor_backs_off_and_run_keys_count_the_tries(instance, data_dir):
    deliver(instance, data_dir, [d for d in DAYS if d != "2026-11-04"])
    first, _ = tick(instance, data_dir)
    assert [k for *_, k in ranges(first)] == ["gaps:2026-11-04..2026-11-04:1"]
    assert json.loads(first.cursor)["ranges"]["2026-11-04..2026-11-04"]["tries"] == 1

    # a re-evaluated tick (the cursor was not stored) asks for the same run key
    replay, _ = tick(instance, data_dir)
    assert [k for *_, k in ranges(replay)] == ["gaps:2026-11-04..2026-11-04:1"]

    # the next tick, while the range is still a gap (its run failed), backs off ...
    soon, ctx = tick(instance, data_dir, cursor=first.cursor, now=NOW + 300)
    assert isinstance(soon, dg.SkipReason)
    assert "1 range(s) retried within the last 60 min" in soon.skip_message
    assert ctx.cursor == first.cursor
    # ... and retries with a new run key after the back-off
    later, _ = tick(instance, data_dir, cursor=first.cursor, now=NOW + sensors.GAP_RETRY_AFTER_S)
    assert [k for *_, k in ranges(later)] == ["gaps:2026-11-04..2026-11-04:2"]

    # once the day is delivered, the cursor forgets it
    deliver(instance, data_dir, ["2026-11-04"])
    done, ctx = tick(instance, data_dir, cursor=later.cursor, now=NOW + 7200)
    assert isinstance(done, dg.SkipReason)
    assert json.loads(ctx.cursor) == {"ranges": {}}


def test_a_garbled_cursor_starts_over(instance, data_dir):
    deliver(instance, data_dir, [d for d in DAYS if d != "2026-11-10"])
    result, _ = tick(instance, data_dir, cursor="not json")
    assert [k for *_, k in ranges(result)] == ["gaps:2026-11-10..2026-11-10:1"]


def test_the_registered_sensor_targets_all_layers(instance, data_dir, monkeypatch):
    from stripe_aep.definitions import defs

    assert sensors.gaps_sensor.default_status is dg.DefaultSensorStatus.STOPPED
    deliver(instance, data_dir, [d for d in DAYS if d != "2026-11-10"])
    monkeypatch.setattr(sensors, "_now", lambda: NOW)
    data = sensors.gaps_sensor.evaluate_tick(context(instance, NAME))
    (request,) = data.run_requests
    assert request.tags[sensors.RANGE_START_TAG] == "2026-11-10"
    # no selection of its own: the run covers the sensor's target, every asset of the location
    assert request.asset_selection is None
    job = defs.resolve_job_def(sensors.gaps_sensor.job_name)
    assert set(job.asset_layer.selected_asset_keys) == {a.key for a in defs.assets}


def test_only_the_selected_resources_make_gaps(instance, data_dir, monkeypatch):
    """Days delivered for the selected resources are no gap, whatever the other resources lack."""
    deliver(instance, data_dir, DAYS, resources=["charges", "customers"])
    monkeypatch.setenv(RESOURCES_VARIABLE, "customers,charges")
    result, _ = tick(instance, data_dir)
    assert isinstance(result, dg.SkipReason), result
    monkeypatch.delenv(RESOURCES_VARIABLE)  # every resource: the others were never delivered
    result, _ = tick(instance, data_dir)
    assert ranges(result), result
