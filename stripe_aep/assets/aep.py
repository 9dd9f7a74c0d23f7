"""`aep/<resource>`: the XDM files of the partitions delivered to the AEP dataset, exactly once.

Thin Dagster layer over `stripe_aep.aep.deliver` (write-ahead ledger, batch lifecycle, crash
recovery). One factory builds the asset of each resource of the catalog (stripe_aep/catalog.py);
the code location keeps those `STRIPE_AEP_RESOURCES` selects.
"""

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from stripe_aep.aep.deliver import XdmFile, deliver
from stripe_aep.aep.ledger import BatchLedger, open_ledger
from stripe_aep.aep.setup import resolve_dataset_id
from stripe_aep.assets import ASSET_OWNERS
from stripe_aep.assets.raw import partition_days, record_day_figures
from stripe_aep.catalog import RESOURCE_NAMES
from stripe_aep.locks import hold_partitions
from stripe_aep.partitions import backfill_policy, daily_partitions
from stripe_aep.records import XdmPart
from stripe_aep.resources import AepResource, LakeResource
from stripe_aep.xdm_lake import XdmPartition

ROWS_CHECK = "aep_rows_match_xdm_rows"
AEP_POOL = "aep_api"


class DeliveryConfig(dg.Config):
    """Run config for a delivery."""

    wait_timeout_seconds: float = 600.0
    """How long to wait for AEP to finish processing. A batch still pending then stays in the
    ledger and the next run of the partition resumes watching it instead of re-sending."""
    poll_interval_seconds: float = 5.0


def build_aep_asset(
    resource: str, *, on_checkpoint: Callable[[str], None] | None = None
) -> dg.AssetsDefinition:
    """The aep asset of one resource. `on_checkpoint` is passed to `deliver` (see its checkpoints):
    the crash tests build assets that SIGKILL their run at one; the code location passes none."""
    key = dg.AssetKey(["aep", resource])

    @dg.asset(
        key=key,
        group_name="aep",
        deps=[dg.AssetKey(["xdm", resource])],
        partitions_def=daily_partitions,
        backfill_policy=backfill_policy,
        kinds={"adobe", "parquet"},
        owners=ASSET_OWNERS,
        pool=AEP_POOL,
        description=(
            f"Stripe {resource} delivered to its AEP dataset: XDM files not yet delivered are sent in "
            "as few batches as AEP allows, recorded step by step in a write-ahead ledger so a retry, "
            "crash or re-launched backfill never sends a file twice."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                ROWS_CHECK,
                asset=key,
                description="rows AEP reports written = XDM rows sent, for the partitions",
            )
        ],
    )
    def aep_asset(
        context: dg.AssetExecutionContext,
        config: DeliveryConfig,
        aep: AepResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        # One writer per partition: a second delivery of these days waits here (see locks.py).
        with hold_partitions(
            lake.lake(),
            "aep",
            resource,
            partition_days(context),
            run_id=context.run_id,
            log=context.log,
        ):
            return deliver_partitions(context, config, aep, lake)

    def deliver_partitions(
        context: dg.AssetExecutionContext,
        config: DeliveryConfig,
        aep: AepResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        the_lake = lake.lake()
        day_parts = {
            day.isoformat(): XdmPartition(the_lake, resource, day).parts()
            for day in partition_days(context)
        }
        parts = [part for parts_of_day in day_parts.values() for part in parts_of_day]
        files = [
            XdmFile(
                key=p.path, rows=p.rows, size=p.bytes, open=lambda p=p: the_lake.open_input(p.path)
            )
            for p in parts
        ]
        client = aep.client()
        # STRIPE_AEP_LEDGER_URL (PostgreSQL, or SQLite) or the SQLite file in a local lake
        ledger = open_ledger(the_lake.local_path("") if the_lake.is_local else the_lake.root)
        try:
            dataset_id = resolve_dataset_id(client, resource)
            report = deliver(
                client,
                ledger,
                dataset_id=dataset_id,
                files=files,
                wait_timeout_s=config.wait_timeout_seconds,
                poll_interval_s=config.poll_interval_seconds,
                log=context.log,
                on_checkpoint=on_checkpoint,
            )
            days = {
                key: _day_figures(ledger, dataset_id, day_of_parts, set(report.files))
                for key, day_of_parts in day_parts.items()
            }
        finally:
            ledger.close()
        record_day_figures(context, {key: day.metadata() for key, day in days.items()})
        xdm_rows = sum(day.xdm_rows for day in days.values())
        delivered = sum(day.rows_delivered for day in days.values())
        summary = report.summary()
        # AEP's own count for the batches that finished in this run must equal what we sent in them.
        aep_matches_sent = report.records_written == report.delivered_rows
        everything_delivered = delivered == xdm_rows
        # Run-wide figures, the same on every day of the run (a batch may hold files of several
        # days, so AEP's counts are per run): `run_` so no one adds them up across days. The
        # whole summary (batch ids, statuses, ...) is `run_delivery`, read back with
        # `DeliverySummary.from_json`; its counts are also plain numbers the UI can plot.
        return dg.MaterializeResult(
            metadata={
                "dataset_id": report.dataset_id,
                **{f"run_{name}": count for name, count in summary.counts().items()},
                "run_delivery": dg.MetadataValue.json(summary.to_json()),
                "run_rows_delivered": delivered,
                "run_xdm_rows": xdm_rows,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=ROWS_CHECK,
                    passed=aep_matches_sent and everything_delivered,
                    # Still processing is not an error yet; a mismatch is.
                    severity=dg.AssetCheckSeverity.ERROR
                    if not aep_matches_sent or not report.pending_batches
                    else dg.AssetCheckSeverity.WARN,
                    metadata={
                        "xdm_rows": xdm_rows,
                        "rows_delivered": delivered,
                        "aep_records_written_this_run": report.records_written,
                        "rows_confirmed_this_run": report.delivered_rows,
                        "pending_batches": len(report.pending_batches),
                    },
                )
            ],
        )

    return aep_asset


@dataclass(frozen=True)
class DayDelivery:
    """One day's own delivery: its XDM rows, the rows AEP holds of them, what this run sent, and
    the batches (of any run) that hold its files."""

    xdm_rows: int
    rows_delivered: int
    files: int
    files_sent: int
    rows_sent: int
    bytes_sent: int
    batch_ids: tuple[str, ...]
    pending_batches: tuple[str, ...]

    def metadata(self) -> dict[str, int | dg.MetadataValue]:
        """The day partition's materialization metadata."""
        return {
            "dagster/row_count": self.rows_delivered,
            "xdm_rows": self.xdm_rows,
            "files": self.files,
            "files_sent": self.files_sent,
            "rows_sent": self.rows_sent,
            "bytes_sent": self.bytes_sent,
            "batch_ids": dg.MetadataValue.json(list(self.batch_ids)),
            "pending_batches": dg.MetadataValue.json(list(self.pending_batches)),
        }


def _day_figures(
    ledger: BatchLedger, dataset_id: str, parts: list[XdmPart], sent_this_run: set[str]
) -> DayDelivery:
    keys = [p.path for p in parts]
    claims = ledger.claims(dataset_id, keys)
    sent = [p for p in parts if p.path in sent_this_run]
    return DayDelivery(
        xdm_rows=sum(p.rows for p in parts),
        rows_delivered=ledger.delivered_rows(keys, dataset_id=dataset_id),
        files=len(parts),
        files_sent=len(sent),
        rows_sent=sum(p.rows for p in sent),
        bytes_sent=sum(p.bytes for p in sent),
        batch_ids=tuple(sorted({a.batch_id or a.external_id for a, _ in claims.values()})),
        pending_batches=tuple(
            sorted({a.batch_id or a.external_id for a, _ in claims.values() if a.active})
        ),
    )


#: One asset per resource of the catalog; the code location keeps the selected ones.
aep_assets = [build_aep_asset(resource) for resource in RESOURCE_NAMES]
