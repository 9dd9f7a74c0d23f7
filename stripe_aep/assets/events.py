"""`stripe/events`: Stripe's events of the selected resources, one folder per UTC day of the event's `created`.

The same extractor, client, budgets, pool, cursor-from-files and atomic storage as the raw resources
(`stripe_aep.stripe.extract`), on `/v1/events`, keeping the types the catalog declares for the
resources `STRIPE_AEP_RESOURCES` selects (`events_listing`): asked as `types[]` when they fit one
request (at most 20, Stripe's limit: the resources of AEP's own Stripe source), else listed
unfiltered and the other types dropped before writing (the whole catalog), so one request a window.
The raw assets depend on it, so one run lists the events first: today's listing is then skipped when the events show nothing new (the probe, `stripe_aep.stripe.events`),
and the changes they carry are derived into versions.

Events older than Stripe's 30-day retention are never asked for (a window Stripe no longer serves
would be written as empty and claim coverage it does not have). After each run the asset checks that
the events on the lake cover what the listing snapshots rely upon; a lost window becomes a warning
here (log and metadata, every run until the re-reads are launched) and a marker on the lake that the
sensor `stripe_aep_events_edge` acts upon.
"""

from collections.abc import Sequence

import dagster as dg

from stripe_aep.assets import ASSET_OWNERS
from stripe_aep.assets import raw as raw_assets_module
from stripe_aep.assets.raw import (
    STRIPE_POOL,
    RawExtractConfig,
    partition_days,
    record_run_metadata,
)
from stripe_aep.catalog import EVENTS, RESOURCE_NAMES, event_type_passes
from stripe_aep.lake import Lake
from stripe_aep.locks import hold_partitions
from stripe_aep.partitions import backfill_policy, daily_partitions
from stripe_aep.resources import LakeResource, StripeResource
from stripe_aep.stripe.client import events_listing
from stripe_aep.stripe.events import LostWindows, oldest_fetchable, scan_coverage
from stripe_aep.stripe.extract import ExtractionResult, PartitionExtractor


def edge_metadata(
    context: dg.AssetExecutionContext, lake: Lake, lag: int, resources: Sequence[str]
) -> dict:
    """Check the events coverage (the 30-day edge) of the listings of `resources`; warn in the
    log and the metadata."""
    report = scan_coverage(lake, raw_assets_module._now(), lag, resources)
    windows = LostWindows(lake, resources).load()
    open_windows = [w for w in windows if w.status == "open"]
    launched = [w for w in windows if w.status != "open"]
    warnings = []
    if open_windows:
        warnings.append(
            "events LOST past Stripe's 30-day retention: "
            + ", ".join(
                f"{w.as_dict()['window']} ({sum(len(d) for d in w.partitions.values())} "
                "partition(s) to re-read)"
                for w in open_windows
            )
            + "; the listings fetched before these windows' ends may no longer equal Stripe's "
            "state. The sensor stripe_aep_events_edge re-reads them (switch it on in Automation), "
            f"see {LostWindows.__module__} and docs/operations.md"
        )
    if report.fetchable:
        warnings.append(report.warning().split(" | ")[-1])
    text = " | ".join(warnings)
    if text:
        context.log.warning(text)
    return {
        "events_needed_from": report.needed_from or 0,
        "events_lost_windows_open": len(open_windows),
        "events_lost_windows_reread": len(launched),
        "events_fetchable_holes": len(report.fetchable),
        "events_coverage_warning": text or "none: the events cover every listing snapshot",
    }


def build_events_asset(resources: Sequence[str]) -> dg.AssetsDefinition:
    """`stripe/events` asking the event types of `resources` (the selection)."""
    resources = tuple(resources)
    passes = event_type_passes(resources)
    types = [t for types in passes for t in types]
    # asked as `types[]`, or one unfiltered pass with the other types dropped (`events_listing`)
    filtered = not passes or "types[]" in events_listing(resources)[0][0]

    @dg.asset(
        key=["stripe", EVENTS],
        group_name="stripe",
        partitions_def=daily_partitions,
        backfill_policy=backfill_policy,
        kinds={"stripe", "json"},
        owners=ASSET_OWNERS,
        pool=STRIPE_POOL,
        description=(
            f"Raw Stripe events of {', '.join(resources)} (their {len(types)} types, "
            + (
                "asked as types[]"
                if filtered
                else "more than a request's 20: listed unfiltered, other types dropped"
            )
            + "), "
            "lossless JSON lines, one folder per UTC day of the event's `created`. Incremental "
            "like the raw resources; never asks for events older than Stripe's 30-day retention, "
            "and warns (metadata `events_coverage_warning`) when a window the listings rely upon "
            "was lost."
        ),
        metadata={
            "stripe_endpoint": "/v1/events",
            "event_types": ", ".join(types) or "none",
            "event_types_filter": "types[]" if filtered else "none (other types dropped)",
        },
    )
    def events_asset(
        context: dg.AssetExecutionContext,
        config: RawExtractConfig,
        stripe: StripeResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        settings = stripe.settings()
        days = partition_days(context)
        store = lake.lake()
        if not passes:
            # No selected resource has events (balance transactions alone): nothing to list, and
            # no window is claimed as covered.
            context.log.info(f"no event types to list for {', '.join(resources)}")
            result = ExtractionResult(EVENTS, [d.isoformat() for d in days])
            result.request_stats = {"requests": 0, "retries": 0, "rate_limited_429": 0}
            return record_run_metadata(context, store, EVENTS, result, settings)
        client = stripe.client()
        extractor = PartitionExtractor(
            client,
            store,
            EVENTS,
            concurrency=settings.concurrency,
            visibility_lag_seconds=settings.visibility_lag_seconds,
            clock=raw_assets_module._now,
            oldest_fetchable=oldest_fetchable,
            selection=resources,
        )
        try:
            with hold_partitions(
                store, "stripe", EVENTS, days, run_id=context.run_id, log=context.log
            ):
                result = extractor.run(days, refresh=config.refresh)
        finally:
            client.close()
        for message in result.damaged:
            context.log.warning(message)
        materialized = record_run_metadata(context, store, EVENTS, result, settings)
        metadata = dict(materialized.metadata or {})
        metadata.update(edge_metadata(context, store, settings.visibility_lag_seconds, resources))
        return dg.MaterializeResult(metadata=metadata)

    return events_asset


#: `stripe/events` for every resource of the catalog; the code location builds the selection's.
events_asset = build_events_asset(RESOURCE_NAMES)
