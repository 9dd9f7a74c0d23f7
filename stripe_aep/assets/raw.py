"""`stripe/<resource>`: raw, lossless Stripe objects, one folder per UTC day, pulled by the `created` cursor.

Thin Dagster layer over `stripe_aep.stripe.extract`: one factory builds the six assets.
"""

import datetime as dt

import dagster as dg

from stripe_aep.assets import ASSET_OWNERS
from stripe_aep.config import RESOURCES
from stripe_aep.locks import hold_partitions
from stripe_aep.partitions import backfill_policy, daily_partitions
from stripe_aep.resources import LakeResource, StripeResource
from stripe_aep.stripe.extract import PartitionExtractor
from stripe_aep.stripe.rawstore import RawPartition

STRIPE_POOL = "stripe_api"


class RawExtractConfig(dg.Config):
    """Run config for a raw extraction."""

    refresh: bool = False
    """Re-read the already covered part of the partitions and add objects not on disk yet (late
    arrivals). Costs API calls even for closed days; off by default."""


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat()


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The UTC days of the run's partition or partition range."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def build_raw_asset(resource: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=["stripe", resource],
        group_name="stripe",
        partitions_def=daily_partitions,
        backfill_policy=backfill_policy,
        kinds={"stripe", "json"},
        owners=ASSET_OWNERS,
        pool=STRIPE_POOL,
        description=(
            f"Raw Stripe {resource}, lossless JSON lines (zstd), one folder per UTC day of `created`. "
            "Each run fetches only the uncovered part of the day up to now minus the visibility lag; "
            "a closed, fully covered day costs no API call unless `refresh` is set."
        ),
        metadata={"stripe_endpoint": f"/v1/{resource}"},
    )
    def raw_asset(
        context: dg.AssetExecutionContext,
        config: RawExtractConfig,
        stripe: StripeResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        settings = stripe.settings()
        client = stripe.client()
        days = partition_days(context)
        extractor = PartitionExtractor(
            client,
            lake.lake(),
            resource,
            concurrency=settings.concurrency,
            visibility_lag_seconds=settings.visibility_lag_seconds,
        )
        try:
            # One writer per partition: a second run of these days waits here (see locks.py).
            with hold_partitions(
                lake.lake(), "stripe", resource, days, run_id=context.run_id, log=context.log
            ):
                result = extractor.run(days, refresh=config.refresh)
        finally:
            client.close()
        for message in result.damaged:
            context.log.warning(message)
        partitions = [RawPartition(lake.lake(), resource, d) for d in days]
        on_disk = sum(
            int(lake.lake().read_json(f.meta_path).get("objects", 0))
            for p in partitions
            for f in p.files()
        )
        stats = result.request_stats
        window = result.window
        cursor = min(result.cursors.values()) if result.cursors else None
        context.log.info(
            f"{resource} {days[0]}..{days[-1]}: {result.objects} objects fetched "
            f"({result.new_objects} new) in {stats['requests']} requests, "
            f"{stats['retries']} retries, {stats['rate_limited_429']} 429s"
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": on_disk,
                "objects": result.objects,
                "new_objects": result.new_objects,
                "requests": int(stats["requests"]),
                "pages": int(stats["pages"]),
                "retries": int(stats["retries"]),
                "rate_limited_429": int(stats["rate_limited_429"]),
                "cursor": _iso(cursor) if cursor is not None else "",
                "window": f"{_iso(window[0])} .. {_iso(window[1])}"
                if window
                else "nothing to fetch",
                "objects_per_second": round(result.objects_per_second, 1),
                "files_written": len(result.files),
                "path": dg.MetadataValue.path(lake.lake().full_path(f"stripe/{resource}")),
            }
        )

    return raw_asset


raw_assets = [build_raw_asset(resource) for resource in RESOURCES]
