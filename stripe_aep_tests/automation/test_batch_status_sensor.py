"""The AEP batch-status sensor on a real ledger and a real (temporary) Dagster instance.

The ledger is driven through the same write-ahead steps `deliver` takes (intent → created →
completing → completed → Catalog status), so what the sensor reads is what a delivery leaves.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import dagster as dg

from stripe_aep.aep.client import BatchMetrics, BatchState, BatchStatus
from stripe_aep.aep.errors import BatchError
from stripe_aep.aep.ledger import BatchLedger
from stripe_aep.automation import sensors
from stripe_aep_tests.automation.sensor_helpers import context, start_runs

NAME = sensors.BATCH_STATUS_SENSOR
DATASET = "ds-charges"


@dataclass(frozen=True)
class File:
    key: str
    rows: int
    size: int


def _batch(ledger: BatchLedger, day: str, batch_id: str, resource: str = "charges", parts=1):
    """A completed batch of `parts` XDM files of one day; returns its attempt id."""
    files = [File(f"xdm/{resource}/{day}/{batch_id}-{i}.parquet", 10, 100) for i in range(parts)]
    attempt = ledger.record_intent(f"ds-{resource}", f"ext-{batch_id}", files)
    ledger.record_created(attempt, batch_id)
    for f in files:
        ledger.record_file_started(attempt, f.key)
        ledger.record_file_uploaded(attempt, f.key, "0" * 64)
    ledger.record_complete_requested(attempt)
    ledger.record_completed(attempt)
    return attempt


def _status(ledger, attempt, batch_id, status, state, errors=()):
    ledger.record_status(
        attempt,
        BatchStatus(
            batch_id=batch_id,
            status=status,
            state=state,
            errors=errors,
            metrics=BatchMetrics(records_read=10, records_written=10 if status == "success" else 0),
        ),
    )


def _evaluate(instance, data_dir, cursor=None, now=None):
    ctx = context(instance, NAME, cursor)
    return sensors.evaluate_batch_status(ctx, str(data_dir), now or time.time()), ctx


def test_no_ledger_yet_is_a_skip_not_an_error(instance, data_dir):
    result, _ = _evaluate(instance, data_dir)
    assert isinstance(result, dg.SkipReason)
    assert "no delivery ledger yet" in result.skip_message


def test_final_status_is_observed_on_its_partition_once(instance, data_dir):
    ledger = BatchLedger.for_data_dir(data_dir)
    ok = _batch(ledger, "2026-11-20", "B-OK", parts=2)
    _status(ledger, ok, "B-OK", "success", BatchState.DONE)
    result, _ = _evaluate(instance, data_dir)
    assert isinstance(result, dg.SensorResult)
    assert result.run_requests == []
    (obs,) = result.asset_events
    assert obs.asset_key == dg.AssetKey(["aep", "charges"])
    assert obs.partition == "2026-11-20"
    meta = {k: v.value for k, v in obs.metadata.items()}
    assert meta["aep_batch_id"] == "B-OK"
    assert meta["aep_status"] == "success"
    assert meta["ledger_state"] == "success"
    assert meta["files"] == 2 and meta["rows"] == 20 and meta["records_written"] == 10
    assert json.loads(result.cursor)["event_id"] == ledger.last_event_id()

    # the next tick starts after the cursor: nothing is reported twice
    again, ctx = _evaluate(instance, data_dir, cursor=result.cursor)
    assert isinstance(again, dg.SkipReason)
    assert ctx.cursor == result.cursor

    # a later batch of another resource is the only thing the following tick reports
    other = _batch(ledger, "2026-11-21", "B-REF", resource="refunds")
    _status(ledger, other, "B-REF", "success", BatchState.DONE)
    third, _ = _evaluate(instance, data_dir, cursor=result.cursor)
    assert [(o.asset_key.to_user_string(), o.partition) for o in third.asset_events] == [
        ("aep/refunds", "2026-11-21")
    ]


def test_failed_batch_is_rerun_with_a_stable_run_key(instance, data_dir):
    ledger = BatchLedger.for_data_dir(data_dir)
    failed = _batch(ledger, "2026-11-20", "B-BAD")
    errors = (BatchError("INGEST-1212-400", "Encountered 10 errors in the data", 10),)
    _status(ledger, failed, "B-BAD", "failed", BatchState.FAILED, errors)
    result, _ = _evaluate(instance, data_dir)
    (obs,) = result.asset_events
    assert obs.metadata["errors"].value == (
        "INGEST-1212-400: Encountered 10 errors in the data (10 records)"
    )
    (request,) = result.run_requests
    assert request.partition_key == "2026-11-20"
    assert request.asset_selection == [dg.AssetKey(["aep", "charges"])]
    assert request.run_key == f"aep-retry:charges:2026-11-20:{failed}"
    assert request.tags[sensors.SENSOR_TAG] == NAME

    # a re-evaluated tick (same cursor) asks for the same run key: Dagster launches it once
    again, _ = _evaluate(instance, data_dir)
    assert [r.run_key for r in again.run_requests] == [request.run_key]

    # once a later attempt delivered the files, nothing is re-run
    files = [File(f.key, f.rows, f.size) for f in ledger.files_of(failed)]
    retry = ledger.record_intent(DATASET, "ext-retry", files)
    ledger.record_created(retry, "B-RETRY")
    ledger.record_complete_requested(retry)
    ledger.record_completed(retry)
    _status(ledger, retry, "B-RETRY", "success", BatchState.DONE)
    later, _ = _evaluate(instance, data_dir, cursor=result.cursor)
    assert later.run_requests == []
    assert [o.metadata["aep_status"].value for o in later.asset_events] == ["success"]


def test_a_day_that_keeps_failing_is_left_to_a_human(instance, data_dir):
    ledger = BatchLedger.for_data_dir(data_dir)
    files = [File("xdm/charges/2026-11-20/part-0.parquet", 10, 100)]
    keys = []
    for n in range(sensors.MAX_AUTOMATIC_RETRIES + 1):
        attempt = ledger.record_intent(DATASET, f"ext-{n}", files)
        ledger.record_created(attempt, f"B-{n}")
        ledger.record_complete_requested(attempt)
        ledger.record_completed(attempt)
        _status(ledger, attempt, f"B-{n}", "failed", BatchState.FAILED)
        result, _ = _evaluate(instance, data_dir)
        keys.append([r.run_key for r in result.run_requests])
    # one re-run per failure up to the limit, then none
    assert keys[:-1] == [[f"aep-retry:charges:2026-11-20:{i + 1}"] for i in range(len(keys) - 1)]
    assert keys[-1] == []


def test_pending_batch_is_rewatched_after_its_run_once_per_interval(instance, data_dir):
    ledger = BatchLedger.for_data_dir(data_dir)
    attempt = _batch(ledger, "2026-11-20", "B-SLOW")
    _status(ledger, attempt, "B-SLOW", "processing", BatchState.PENDING)
    at = ledger.attempt(attempt).updated_at
    fresh, _ = _evaluate(instance, data_dir, now=at + 60)
    assert fresh.run_requests == []  # its own run is still watching it
    late, _ = _evaluate(instance, data_dir, now=at + sensors.PENDING_RECHECK_AFTER_S + 1)
    (request,) = late.run_requests
    assert request.run_key == f"aep-watch:charges:2026-11-20:{attempt}:0"
    same_hour, _ = _evaluate(instance, data_dir, now=at + sensors.PENDING_RECHECK_EVERY_S - 1)
    assert [r.run_key for r in same_hour.run_requests] == [request.run_key]
    next_hour, _ = _evaluate(instance, data_dir, now=at + sensors.PENDING_RECHECK_EVERY_S + 1)
    assert [r.run_key for r in next_hour.run_requests] == [
        f"aep-watch:charges:2026-11-20:{attempt}:1"
    ]
    # stalled is reported on the partition and re-watched the same way
    _status(ledger, attempt, "B-SLOW", "stalled", BatchState.ALERT)
    stalled, _ = _evaluate(instance, data_dir, cursor=late.cursor, now=time.time() + 3600)
    assert [o.metadata["aep_status"].value for o in stalled.asset_events] == ["stalled"]
    assert len(stalled.run_requests) == 1


def test_in_flight_bound_newest_day_first(instance, data_dir):
    ledger = BatchLedger.for_data_dir(data_dir)
    for day in ("2026-11-18", "2026-11-19", "2026-11-20"):
        attempt = _batch(ledger, day, f"B-{day}")
        _status(ledger, attempt, f"B-{day}", "failed", BatchState.FAILED)
    start_runs(instance, NAME, sensors.MAX_RUNS_IN_FLIGHT - 1)
    start_runs(instance, NAME, 3, status=dg.DagsterRunStatus.SUCCESS)  # finished: not counted
    start_runs(instance, sensors.GAPS_SENSOR, 2)  # another sensor's runs: not counted
    result, _ = _evaluate(instance, data_dir)
    assert [r.partition_key for r in result.run_requests] == ["2026-11-20"]
    start_runs(instance, NAME, 1)
    full, ctx = _evaluate(instance, data_dir, cursor=result.cursor)
    assert isinstance(full, dg.SkipReason)
    assert "3 re-run(s) wait for a slot" in full.skip_message
    assert ctx.cursor == result.cursor


def test_a_rebuilt_ledger_restarts_the_cursor(instance, data_dir):
    ledger = BatchLedger.for_data_dir(data_dir)
    attempt = _batch(ledger, "2026-11-20", "B-1")
    _status(ledger, attempt, "B-1", "success", BatchState.DONE)
    stale_cursor = json.dumps({"event_id": ledger.last_event_id() + 1000})
    result, _ = _evaluate(instance, data_dir, cursor=stale_cursor)
    assert [o.partition for o in result.asset_events] == ["2026-11-20"]


def test_sensor_definition_reads_the_data_dir_and_is_stopped_by_default(instance, data_dir):
    assert sensors.aep_batch_status_sensor.default_status is dg.DefaultSensorStatus.STOPPED
    ledger = BatchLedger.for_data_dir(data_dir)
    attempt = _batch(ledger, "2026-11-20", "B-1")
    _status(ledger, attempt, "B-1", "failed", BatchState.FAILED)
    data = sensors.aep_batch_status_sensor.evaluate_tick(context(instance, NAME))
    assert [r.run_key for r in data.run_requests] == [f"aep-retry:charges:2026-11-20:{attempt}"]


def test_a_partition_with_a_run_in_progress_is_left_to_that_run(instance, data_dir):
    from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent
    from dagster._core.test_utils import create_run_for_test

    ledger = BatchLedger.for_data_dir(data_dir)
    for day in ("2026-11-19", "2026-11-20"):
        attempt = _batch(ledger, day, f"B-{day}")
        _status(ledger, attempt, f"B-{day}", "failed", BatchState.FAILED)
    # a run (not one of this sensor's) delivering aep/charges 2026-11-20 right now
    key = dg.AssetKey(["aep", "charges"])
    run = create_run_for_test(
        instance, job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED, asset_selection={key}
    )
    instance.report_dagster_event(
        DagsterEvent.build_asset_materialization_planned_event(
            "__ASSET_JOB", "aep__charges", AssetMaterializationPlannedData(key, "2026-11-20")
        ),
        run_id=run.run_id,
    )
    result, _ = _evaluate(instance, data_dir)
    assert [r.partition_key for r in result.run_requests] == ["2026-11-19"]


def test_a_postgres_ledger_is_read_whatever_the_lake(instance, postgres_url, monkeypatch):
    """With STRIPE_AEP_LEDGER_URL the sensor reads the shared ledger, an object-store lake too."""
    from stripe_aep.aep.ledger import PostgresBatchLedger

    monkeypatch.setenv("STRIPE_AEP_LEDGER_URL", postgres_url)
    ledger = PostgresBatchLedger(postgres_url)
    ok = _batch(ledger, "2026-11-20", "B-PG", parts=3)
    _status(ledger, ok, "B-PG", "success", BatchState.DONE)
    result, _ = _evaluate(instance, "s3://stripe-lake/prod")
    (obs,) = result.asset_events
    assert (obs.asset_key, obs.partition) == (dg.AssetKey(["aep", "charges"]), "2026-11-20")
    assert obs.metadata["aep_batch_id"].value == "B-PG" and obs.metadata["files"].value == 3
    assert json.loads(result.cursor)["event_id"] == ledger.last_event_id()
    ledger.close()

    monkeypatch.delenv("STRIPE_AEP_LEDGER_URL")  # and without it, an object-store lake says why
    skipped, _ = _evaluate(instance, "s3://stripe-lake/prod")
    assert isinstance(skipped, dg.SkipReason)
    assert "STRIPE_AEP_LEDGER_URL" in skipped.skip_message
