"""`stripe/<resource>`: raw, lossless Stripe objects, one folder per UTC day, pulled by the `created` cursor.

Thin Dagster layer over `stripe_aep.stripe.extract`: one factory builds the asset of each resource
of the catalog (stripe_aep/catalog.py); the code location keeps those `STRIPE_AEP_RESOURCES` selects.
"""

import datetime as dt
import time
from collections.abc import Callable, Mapping

import dagster as dg

from stripe_aep.assets import ASSET_OWNERS
from stripe_aep.catalog import EVENTS, RESOURCE_NAMES, stripe_resource
from stripe_aep.config import StripeSettings, selected_resources, start_date_from_env
from stripe_aep.lake import Lake
from stripe_aep.locks import hold_partitions
from stripe_aep.partitions import backfill_policy, daily_partitions
from stripe_aep.resources import LakeResource, StripeResource
from stripe_aep.stripe.changes import STATE_LAYER, ChangeDeriver, DayFigures
from stripe_aep.stripe.client import StripeClient, list_passes
from stripe_aep.stripe.events import Probe, probe
from stripe_aep.stripe.extract import ExtractionResult, PartitionExtractor
from stripe_aep.stripe.rawstore import RawPartition

STRIPE_POOL = "stripe_api"


class RawExtractConfig(dg.Config):
    """Run config for a raw extraction."""

    refresh: bool = False
    """Re-read the already covered part of the partitions and add objects not on disk yet (late
    arrivals). Costs API calls even for closed days; off by default."""

    reread: bool = False
    """Re-read the partitions' objects as Stripe returns them now, as new versions (the events that
    would have told their changes were lost past Stripe's 30-day retention). The sensor
    `stripe_aep_events_edge` sets it on the runs it launches; off by default."""


def _now() -> float:
    """The raw assets' clock (the idle-reads benchmark replaces it with a simulated one)."""
    return time.time()


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat()


#: Ticks a month of the fresh-data schedule (every 15 minutes) plus the daily close-out.
SCHEDULE_RUNS_PER_MONTH = 96 * 30 + 30
READS_LEDGER = "_meta/stripe_reads/{resource}.json"


def day_figures(lake: Lake, resource: str, result: ExtractionResult, day: dt.date) -> dict:
    """One day's own figures: what is on disk for it, what this run fetched into it, its cursor."""
    key = day.isoformat()
    part = RawPartition(lake, resource, day)
    on_disk = sum(int(lake.read_json(f.meta_path).get("objects", 0)) for f in part.files())
    cursor = result.cursors.get(key)
    return {
        "dagster/row_count": on_disk,
        "objects": result.day_objects.get(key, 0),
        "new_objects": result.day_new_objects.get(key, 0),
        "pages": result.day_pages.get(key, 0),
        "cursor": _iso(cursor) if cursor is not None else "",
    }


def _record_reads(lake: Lake, resource: str, requests: int, fresh_tick: bool) -> dict:
    """Add this run's reads to the resource's ledger (UTC day → reads) and read those of every
    selected resource and the events (`STRIPE_AEP_RESOURCES`).

    Each asset writes only its own ledger, so steps running at once never race on one file."""
    path = READS_LEDGER.format(resource=resource)
    ledger = lake.read_json(path) if lake.exists(path) else {}
    days = ledger.setdefault("days", {})
    today = dt.datetime.fromtimestamp(_now(), dt.UTC).date()
    days[today.isoformat()] = int(days.get(today.isoformat(), 0)) + requests
    horizon = (today - dt.timedelta(days=30)).isoformat()
    ledger["days"] = {d: n for d, n in days.items() if d > horizon}
    if fresh_tick:
        ledger["last_fresh_tick_reads"] = requests
    lake.write_json(path, ledger)
    used, per_tick = 0, 0
    selection = selected_resources()
    for other in (EVENTS, *selection):
        other_path = READS_LEDGER.format(resource=other)
        data = (
            ledger
            if other == resource
            else (lake.read_json(other_path) if lake.exists(other_path) else {})
        )
        used += sum(int(n) for d, n in data.get("days", {}).items() if d > horizon)
        if "last_fresh_tick_reads" in data:
            per_tick += int(data["last_fresh_tick_reads"])
        elif other != EVENTS or any(stripe_resource(r).has_events for r in selection):
            per_tick += len(list_passes(other, selection))
    return {"reads_30d": used, "projected_monthly_reads": per_tick * SCHEDULE_RUNS_PER_MONTH}


def record_day_figures(context: dg.AssetExecutionContext, figures: Mapping[str, Mapping]) -> None:
    """Put each day's own figures on that day's partition (the raw, XDM and AEP assets all do).

    Dagster records one materialization per partition of a ranged run, and metadata added with
    `add_asset_metadata(partition_key=...)` lands on that partition only (it overrides a key of the
    same name in the step's `MaterializeResult`, which lands on every partition of the run). So a
    3-day run shows each day's row count and cursor, not the range's totals three times; the
    step's `MaterializeResult` keeps only run-wide figures, prefixed `run_` so no one adds them up
    across days."""
    for partition_key, values in figures.items():
        context.add_asset_metadata(dict(values), partition_key=partition_key)


def record_run_metadata(
    context: dg.AssetExecutionContext,
    lake: Lake,
    resource: str,
    result: ExtractionResult,
    settings: StripeSettings,
) -> dg.MaterializeResult:
    """Each day's own figures on that day's partition; the run's request accounting on all."""
    days = [dt.date.fromisoformat(d) for d in result.days]
    figures = {day.isoformat(): day_figures(lake, resource, result, day) for day in days}
    record_day_figures(context, figures)
    stats = result.request_stats
    requests = int(stats["requests"])
    today = dt.datetime.fromtimestamp(_now(), dt.UTC).date()
    reads = _record_reads(lake, resource, requests, fresh_tick=days == [today])
    allocation = settings.rates.read_allocation
    by_reason = {
        k[len("rate_limited_429[") : -1]: int(v)
        for k, v in stats.items()
        if k.startswith("rate_limited_429[")
    }
    window = result.window
    context.log.info(
        f"{resource} {days[0]}..{days[-1]}: {result.objects} objects fetched "
        f"({result.new_objects} new) in {requests} requests (fewest possible "
        f"{result.min_requests}), {int(stats['retries'])} retries, "
        f"{int(stats['rate_limited_429'])} 429s {by_reason}"
    )
    if allocation and reads["projected_monthly_reads"] > allocation:
        context.log.warning(
            f"Stripe read allocation: the schedules' projected reads "
            f"({reads['projected_monthly_reads']} a month for the selected resources and the "
            f"events) exceed STRIPE_READ_ALLOCATION={allocation}. Stripe may throttle the account; run the "
            "fresh-data schedule less often, or ask Stripe for a larger allocation"
        )
    metadata = {
        # The days' own figures added up (each day's event has its own; these are the run's).
        "run_row_count": sum(f["dagster/row_count"] for f in figures.values()),
        "run_objects": result.objects,
        "run_new_objects": result.new_objects,
        "run_pages": sum(f["pages"] for f in figures.values()),
        "run_requests": requests,
        "run_min_requests": result.min_requests,
        # Windows split while paging (each costs at most one extra, partial, page per pass).
        "run_splits": result.splits,
        "run_requests_per_minimum": round(requests / result.min_requests, 3)
        if result.min_requests
        else 0.0,
        "run_retries": int(stats["retries"]),
        "run_rate_limited_429": int(stats["rate_limited_429"]),
        **{f"run_429_{reason}": n for reason, n in by_reason.items()},
        "run_window": f"{_iso(window[0])} .. {_iso(window[1])}" if window else "nothing to fetch",
        "run_objects_per_second": round(result.objects_per_second, 1),
        "run_files_written": len(result.files),
        "reads_30d": reads["reads_30d"],
        "projected_monthly_reads": reads["projected_monthly_reads"],
        "path": dg.MetadataValue.path(lake.full_path(f"stripe/{resource}")),
    }
    if allocation:
        metadata["read_allocation"] = allocation
    return dg.MaterializeResult(metadata=metadata)


def events_probe(
    lake: Lake,
    resource: str,
    days: list[dt.date],
    config: RawExtractConfig,
    settings: StripeSettings,
) -> Probe | None:
    """The events probe applies to a plain run of today's partition alone (the fresh-data tick);
    the close-out, backfills, refresh and re-read runs always list. None when it does not apply."""
    now = _now()
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    if days != [today] or config.refresh or config.reread:
        return None
    return probe(lake, resource, today, now, settings.visibility_lag_seconds)


def skipped_listing(lake: Lake, resource: str, days: list[dt.date]) -> ExtractionResult:
    """The result of a run whose listing the probe skipped: no request, the cursor unchanged."""
    result = ExtractionResult(resource, [d.isoformat() for d in days])
    for day in days:
        result.cursors[day.isoformat()] = RawPartition(lake, resource, day).cursor()
    result.request_stats = {"requests": 0, "retries": 0, "rate_limited_429": 0}
    return result


def with_probe_metadata(
    context: dg.AssetExecutionContext, materialized: dg.MaterializeResult, decision: Probe | None
) -> dg.MaterializeResult:
    if decision is None:
        return materialized
    if decision.skip:
        context.log.info(f"listing skipped by events: {decision.reason}")
    metadata = dict(materialized.metadata or {})
    metadata["listing_skipped_by_events"] = decision.skip
    metadata["listing_probe"] = decision.reason
    return dg.MaterializeResult(metadata=metadata)


def derive_versions(
    context: dg.AssetExecutionContext,
    client: StripeClient,
    lake: Lake,
    resource: str,
    days: list[dt.date],
    settings: StripeSettings,
    reread: bool,
    account: Callable[[], str | None] | None = None,
) -> dict[str, DayFigures]:
    """After the listing: versions of changed objects into `changes/<resource>/<day>` (see
    stripe_aep/stripe/changes.py). Events of each day not derived yet; for balance transactions the
    pending ones now due (into the run's last day); in `reread` mode the whole days listed again.
    The caller holds the days' `stripe` and `state` locks."""
    deriver = ChangeDeriver(
        client,
        lake,
        resource,
        run_id=context.run_id,
        start_date=start_date_from_env(),
        held_days=days,
        clock=_now,
        visibility_lag_seconds=settings.visibility_lag_seconds,
        account=account,
    )
    figures = {day.isoformat(): DayFigures() for day in days}
    for day in days:
        deriver.derive_events(day, figures[day.isoformat()])
    if resource == "balance_transactions":
        deriver.reread_balance_transactions(days, days[-1], figures[days[-1].isoformat()])
    if reread:
        deriver.reread_days(days, figures)
    for key, fig in figures.items():
        if fig.deferred_windows:
            context.log.warning(
                f"stripe/{resource} {key}: {fig.deferred_windows} events window(s) not derived "
                "(another run holds the state of an object's created day); the next run derives them"
            )
    record_day_figures(context, {key: fig.metadata(resource) for key, fig in figures.items()})
    return figures


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
        # One run lists the events first: the probe below reads them (docs/operations.md).
        deps=[dg.AssetKey(["stripe", EVENTS])],
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
            clock=_now,
        )
        try:
            # One writer per partition: a second run of these days waits here (see locks.py).
            with (
                hold_partitions(
                    lake.lake(), "stripe", resource, days, run_id=context.run_id, log=context.log
                ),
                # The state of objects created on these days: no derivation judges them "not
                # listed yet" while this listing runs (stripe_aep/stripe/changes.py).
                hold_partitions(
                    lake.lake(), STATE_LAYER, resource, days, run_id=context.run_id, log=context.log
                ),
            ):
                decision = events_probe(lake.lake(), resource, days, config, settings)
                if decision is not None and decision.skip:
                    result = skipped_listing(lake.lake(), resource, days)
                else:
                    result = extractor.run(days, refresh=config.refresh)
                before = client.stats.as_dict()
                derive_versions(
                    context,
                    client,
                    lake.lake(),
                    resource,
                    days,
                    settings,
                    config.reread,
                    account=extractor.account_id,
                )
                # Re-fetches and re-reads count in the run's requests and the reads ledger.
                after = client.stats.as_dict()
                for name, value in after.items():
                    result.request_stats[name] = (
                        result.request_stats.get(name, 0) + value - before[name]
                    )
        finally:
            client.close()
        for message in result.damaged:
            context.log.warning(message)
        materialized = record_run_metadata(context, lake.lake(), resource, result, settings)
        return with_probe_metadata(context, materialized, decision)

    return raw_asset


#: One asset per resource of the catalog; the code location keeps the selected ones.
raw_assets = [build_raw_asset(resource) for resource in RESOURCE_NAMES]
