"""Helpers of the sensor tests: in-flight runs of a sensor, and a sensor context."""

from __future__ import annotations

import dagster as dg
from dagster._core.test_utils import create_run_for_test

from stripe_aep.automation import sensors


def start_runs(instance: dg.DagsterInstance, sensor_name: str, n: int, status=None) -> None:
    """`n` runs of `sensor_name` that count as in flight (queued/started)."""
    for _ in range(n):
        create_run_for_test(
            instance,
            job_name="__ASSET_JOB",
            status=status or dg.DagsterRunStatus.STARTED,
            tags={sensors.SENSOR_TAG: sensor_name},
        )


def context(instance, sensor_name: str, cursor: str | None = None):
    """A tick's context, with the code location (evaluate_tick resolves run requests against it)."""
    from stripe_aep.definitions import defs

    return dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        sensor_name=sensor_name,
        repository_def=defs.get_repository_def(),
    )
