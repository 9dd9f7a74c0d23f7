"""The one partitioning shared by all three layers: UTC days of Stripe's `created`, today included.

`created` never changes, so an object's partition never changes. `end_offset=1` adds today's partition
so fresh data can flow every few minutes; it is re-run incrementally (only the new part of the day).
"""

from __future__ import annotations

import dagster as dg

from stripe_aep.config import start_date_from_env

#: Range runs are cheap (one run pages many days concurrently) but bounded, so one failure does not
#: sink a whole year and the run's event log stays small.
MAX_PARTITIONS_PER_RUN = 31

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=start_date_from_env().isoformat(),
    timezone="UTC",
    end_offset=1,
)

backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN)
