"""The run-failure sensor: a real failed run in a temporary instance, its cause on the partitions."""

from __future__ import annotations

import dagster as dg
import pytest

from stripe_aep.automation import sensors

WINDOW = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="UTC", end_offset=1)
CAUSE = (
    "Stripe refused GET /v1/charges (403 permission_error, request req_9xZ): The provided key "
    "'rk_test_…AbCd' does not have the required permissions for this endpoint"
)


@pytest.fixture(autouse=True)
def short_window(monkeypatch):
    monkeypatch.setattr(sensors, "daily_partitions", WINDOW)


class StripePermissionError(Exception):
    pass


def _failed_run(instance, tags=None, partition_key=None, message=CAUSE):
    @dg.asset(key=["stripe", "charges"], partitions_def=WINDOW)
    def charges():
        raise StripePermissionError(message)

    @dg.asset(key=["stripe", "prices"], partitions_def=WINDOW)
    def prices():
        return None

    result = dg.materialize(
        [charges, prices],
        instance=instance,
        partition_key=partition_key,
        tags=tags,
        raise_on_error=False,
    )
    assert not result.success
    return instance.get_run_by_id(result.run_id)


def _run_failure_context(instance, run):
    (failure,) = [
        r.event_log_entry.dagster_event
        for r in instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
    ]
    return dg.build_run_status_sensor_context(
        sensor_name=sensors.RUN_FAILURE_SENSOR,
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
    ).for_run_failure()


def _observations(instance, key):
    records = instance.fetch_observations(dg.AssetKey(key), limit=100).records
    return [r.asset_observation for r in records]


def test_step_cause_lands_on_the_failed_partition(instance):
    run = _failed_run(instance, partition_key="2026-11-05")
    sensors.run_failure_sensor(_run_failure_context(instance, run))
    (obs,) = _observations(instance, ["stripe", "charges"])
    assert obs.partition == "2026-11-05"
    cause = obs.metadata["failure_cause"].value
    assert "does not have the required permissions" in cause and "req_9xZ" in cause
    assert "DagsterExecutionStepExecutionError" not in cause  # the client's words, not Dagster's
    assert obs.metadata["failed_step"].value == "stripe__charges"
    assert obs.metadata["failed_run"].value == run.run_id
    assert obs.description.startswith(f"run {run.run_id[:8]} failed: ")
    assert _observations(instance, ["stripe", "prices"]) == []  # it succeeded


def test_range_run_marks_every_day_of_the_range(instance):
    run = _failed_run(
        instance,
        tags={sensors.RANGE_START_TAG: "2026-11-02", sensors.RANGE_END_TAG: "2026-11-04"},
    )
    sensors.run_failure_sensor(_run_failure_context(instance, run))
    days = sorted(o.partition for o in _observations(instance, ["stripe", "charges"]))
    assert days == ["2026-11-02", "2026-11-03", "2026-11-04"]


def test_secrets_in_an_error_are_masked(instance, monkeypatch):
    key = "sk_test_51QmZzvLkdIwHu7ixS1cret0123456789"
    monkeypatch.setenv("STRIPE_API_KEY", key)
    run = _failed_run(instance, partition_key="2026-11-05", message=f"boom with {key} inside")
    sensors.run_failure_sensor(_run_failure_context(instance, run))
    (obs,) = _observations(instance, ["stripe", "charges"])
    text = obs.metadata["failure_cause"].value + obs.description
    assert key not in text and "boom with" in text


def test_sensor_is_stopped_by_default_and_can_start_running(monkeypatch):
    assert sensors.run_failure_sensor.default_status is dg.DefaultSensorStatus.STOPPED
    assert sensors.default_sensor_status({"STRIPE_AEP_SENSORS": "running"}) is (
        dg.DefaultSensorStatus.RUNNING
    )
    with pytest.raises(ValueError, match="STRIPE_AEP_SENSORS"):
        sensors.default_sensor_status({"STRIPE_AEP_SENSORS": "on"})
