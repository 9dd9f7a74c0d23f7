import datetime as dt

import dagster as dg

from stripe_aep.automation.schedules import daily_close_out_schedule, fresh_data_schedule
from stripe_aep.definitions import defs


def _tick(schedule, when):
    context = dg.build_schedule_context(
        scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    return schedule.evaluate_tick(context).run_requests


def test_fresh_data_runs_todays_partition_with_an_idempotent_key():
    when = dt.datetime(2026, 11, 27, 13, 45, tzinfo=dt.UTC)
    (request,) = _tick(fresh_data_schedule, when)
    assert request.partition_key == "2026-11-27"
    assert request.run_key == "fresh-20261127T1345"
    assert _tick(fresh_data_schedule, when)[0].run_key == request.run_key


def test_close_out_runs_yesterday_and_targets_every_layer():
    when = dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.UTC)
    (request,) = _tick(daily_close_out_schedule, when)
    assert request.partition_key == "2026-11-30"
    job = defs.resolve_job_def(daily_close_out_schedule.job_name)
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {k.split("/")[0] for k in keys} == {"stripe", "xdm", "aep"}
    assert keys == {a.key.to_user_string() for a in defs.assets}  # every asset of the location


def test_schedules_start_stopped():
    for schedule in (fresh_data_schedule, daily_close_out_schedule):
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
