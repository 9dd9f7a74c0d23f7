"""Schedules that keep the datasets fresh: today's partition every few minutes, yesterday's at close-out.

Why two: today's partition is extracted incrementally (only the part of the day since the last run,
minus the visibility lag), so a frequent run is cheap; the close-out run after midnight fetches the last
lagged minutes of yesterday and marks the day fully covered. Both run the whole chain (stripe → xdm →
aep) for one partition. They start STOPPED, as Dagster schedules do: switch them on in the UI
(Automation) once `stripe-aep doctor` passes.
"""

import datetime as dt

import dagster as dg

from stripe_aep.config import fresh_cron_from_env

#: Every asset of the code location: the three layers in dependency order, one run per tick.
ALL_LAYERS = dg.AssetSelection.groups("stripe", "xdm", "aep")

#: `STRIPE_AEP_FRESH_CRON` overrides it: a shorter interval lowers the worst-case freshness at the
#: cost of more reads (docs/operations.md); any five-field cron expression Dagster accepts, checked
#: when the code location loads.
FRESH_CRON = fresh_cron_from_env()
CLOSE_OUT_CRON = "30 0 * * *"


def _day(context: dg.ScheduleEvaluationContext, days_back: int) -> str:
    return (
        context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(days_back)
    ).isoformat()


@dg.schedule(
    name="stripe_aep_fresh_data",
    cron_schedule=FRESH_CRON,
    execution_timezone="UTC",
    target=ALL_LAYERS,
    description="Today's partition, end to end, every 15 minutes (incremental: only new objects).",
)
def fresh_data_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = _day(context, 0)
    # The run key makes a tick idempotent: a re-evaluated tick never launches a second run.
    stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
    return dg.RunRequest(run_key=f"fresh-{stamp}", partition_key=day)


@dg.schedule(
    name="stripe_aep_daily_close_out",
    cron_schedule=CLOSE_OUT_CRON,
    execution_timezone="UTC",
    target=ALL_LAYERS,
    description=(
        "Yesterday's partition, end to end, at 00:30 UTC: fetches the minutes the visibility lag "
        "held back and leaves the day fully covered (later runs of it cost no API call)."
    ),
)
def daily_close_out_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = _day(context, 1)
    return dg.RunRequest(run_key=f"close-out-{day}", partition_key=day)


schedules = [fresh_data_schedule, daily_close_out_schedule]
