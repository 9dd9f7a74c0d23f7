"""`xdm/<resource>`: XDM-conformant Parquet built from the raw files, with quarantine and reconciliation.

Thin Dagster layer over `stripe_aep.xdm_lake` (layout, manifests) and `stripe_aep.xdm` (mapping,
streaming conversion). One factory builds the asset of each resource; what an asset reads besides
its own raw files (refunds and disputes: the raw charges, for their customer) comes from the
catalog's `lookup_resources`.
"""

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dagster as dg

from stripe_aep.assets import ASSET_OWNERS
from stripe_aep.assets.raw import partition_days, record_day_figures
from stripe_aep.catalog import RESOURCE_NAMES, STRIPE_RESOURCES, stripe_resource
from stripe_aep.charge_customers import ChargeCustomerIndex, carries_customer
from stripe_aep.locks import hold_partitions
from stripe_aep.partitions import backfill_policy, daily_partitions
from stripe_aep.resources import LakeResource, XdmResource
from stripe_aep.stripe.rawstore import DamagedRawFile
from stripe_aep.xdm import column_schema
from stripe_aep.xdm.mappings.common import CHARGE_CUSTOMERS
from stripe_aep.xdm_lake import XdmPartition, xdm_stem

RECONCILE_CHECK = "raw_objects_reconcile"
QUARANTINE_CHECK = "quarantine_empty"

#: The tenant only changes field names, not the column list: publish the schema of a placeholder.
_SCHEMA_TENANT = "tenant"


def _table_schema(resource: str) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=type_, description=description or None)
            for name, type_, description in column_schema(resource, _SCHEMA_TENANT)
        ]
    )


def build_xdm_asset(resource: str) -> dg.AssetsDefinition:
    key = dg.AssetKey(["xdm", resource])

    @dg.asset(
        key=key,
        group_name="xdm",
        # Its raw files, and the raw files of the resources its mapping looks up (catalog).
        deps=[dg.AssetKey(["stripe", name]) for name in raw_inputs(resource)],
        partitions_def=daily_partitions,
        backfill_policy=backfill_policy,
        kinds={"parquet", "xdm"},
        owners=ASSET_OWNERS,
        description=(
            f"Stripe {resource} as XDM-conformant Parquet (one file set per raw file, ≤ 256 MB each): "
            "the listing snapshots (`stripe/`) and the later versions (`changes/`, "
            "docs/change-capture.md), each row with its version fields. Only raw files not "
            "converted yet are read; records that fail validation go to `quarantine/` with the "
            "reason and the original object."
        ),
        metadata={"dagster/column_schema": _table_schema(resource)},
        check_specs=[
            dg.AssetCheckSpec(
                RECONCILE_CHECK,
                asset=key,
                blocking=True,
                description=(
                    "raw objects = XDM rows + quarantined records + dropped duplicates, for the "
                    "partitions, and every XDM part and quarantine file listed is on the lake whole"
                ),
            ),
            dg.AssetCheckSpec(
                QUARANTINE_CHECK,
                asset=key,
                description="no record of the partitions is in quarantine (warning)",
            ),
        ],
    )
    def xdm_asset(
        context: dg.AssetExecutionContext, lake: LakeResource, xdm: XdmResource
    ) -> dg.MaterializeResult:
        tenant = xdm.tenant_id()
        # One writer per partition: a second conversion of these days waits here. The raw locks
        # too (always after the XDM ones), so no extraction merges or adds raw files of these
        # days while they are read, and setting a damaged raw file aside races no extraction.
        days = partition_days(context)
        with (
            hold_partitions(
                lake.lake(), "xdm", resource, days, run_id=context.run_id, log=context.log
            ),
            hold_partitions(
                lake.lake(), "stripe", resource, days, run_id=context.run_id, log=context.log
            ),
        ):
            return convert_partitions(context, lake, tenant)

    def convert_partitions(
        context: dg.AssetExecutionContext, lake: LakeResource, tenant: str
    ) -> dg.MaterializeResult:
        partitions = [XdmPartition(lake.lake(), resource, day) for day in partition_days(context)]
        # This run's conversions, per day (partition key).
        converted: dict[str, int] = {}
        converted_rows: dict[str, int] = {}
        previews: dict[str, str] = {}
        damaged: list[str] = []
        lookups = _lookups(resource, lake, partitions, tenant)
        for partition in partitions:
            key = partition.day.isoformat()
            # Raw files that are truncated or whose sidecar is unusable are set aside first.
            damaged.extend(d.message() for d in partition.heal())
            pending = partition.pending(tenant)
            if not pending:
                continue
            # Ids already rows of the day: a duplicate of one of them is dropped, not converted.
            known = partition.kept_ids(tenant, exclude={p.stem for p in pending})
            for item in pending:
                if item.why != "not converted yet":
                    context.log.warning(f"{item.raw.path}: converting again, {item.why}")
                try:
                    manifest, result = partition.convert(item.raw, tenant, known, lookups)
                except DamagedRawFile as exc:
                    damaged.append(str(exc))
                    continue
                converted[key] = converted.get(key, 0) + 1
                converted_rows[key] = converted_rows.get(key, 0) + manifest.rows
                if result.rows:
                    previews[key] = result.preview_markdown()
        for message in damaged:
            context.log.warning(message)
        days = {p.day.isoformat(): _day_state(p, tenant) for p in partitions}
        totals = _DayState.total(days.values())
        context.log.info(
            f"{resource}: converted {sum(converted.values())} raw files into "
            f"{sum(converted_rows.values())} rows"
        )
        if damaged:
            # The healthy files are converted; the damaged ones need the raw asset again.
            raise dg.Failure(
                description=f"{len(damaged)} damaged raw file(s) set aside:\n" + "\n".join(damaged),
                metadata={"damaged_raw_files": len(damaged), "converted": sum(converted.values())},
            )
        record_day_figures(
            context,
            {
                key: {
                    "dagster/row_count": day.rows,
                    "raw_objects": day.raw_objects,
                    "quarantined": day.quarantined,
                    "duplicates_dropped": day.duplicates,
                    # Rows of change files (versions observed this day), and of those the
                    # tombstones of deleted objects (docs/change-capture.md).
                    "version_rows": day.version_rows,
                    "tombstones": day.tombstones,
                    "files": day.files,
                    "bytes": day.bytes,
                    "rows_converted": converted_rows.get(key, 0),
                    "raw_files_converted": converted.get(key, 0),
                    "preview": dg.MetadataValue.md(
                        previews.get(key, "_no rows converted in this run_")
                    ),
                    "path": dg.MetadataValue.path(lake.lake().full_path(f"xdm/{resource}/{key}")),
                }
                for key, day in days.items()
            },
        )
        top_reasons = "\n".join(
            f"- {count} × {reason}" for reason, count in totals.reasons.most_common()
        )
        return dg.MaterializeResult(
            # Run-wide figures, the same on every day of the run: `run_` so no one adds them up.
            metadata={
                "run_rows": totals.rows,
                "run_raw_objects": totals.raw_objects,
                "run_rows_converted": sum(converted_rows.values()),
                "run_raw_files_converted": sum(converted.values()),
                "run_quarantined": totals.quarantined,
                "run_duplicates_dropped": totals.duplicates,
                "run_version_rows": totals.version_rows,
                "run_tombstones": totals.tombstones,
                "run_files": totals.files,
                "run_bytes": totals.bytes,
                "tenant": tenant,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=RECONCILE_CHECK,
                    passed=totals.reconciled,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={
                        "raw_objects": totals.raw_objects,
                        "xdm_rows": totals.rows,
                        "quarantined": totals.quarantined,
                        "duplicates_dropped": totals.duplicates,
                        "problems": dg.MetadataValue.md(
                            "\n".join(f"- {p}" for p in totals.problems[:50]) or "none"
                        ),
                    },
                ),
                dg.AssetCheckResult(
                    check_name=QUARANTINE_CHECK,
                    passed=totals.quarantined == 0,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "quarantined": totals.quarantined,
                        "reasons": dg.MetadataValue.md(top_reasons or "none"),
                        "path": dg.MetadataValue.path(
                            lake.lake().full_path(f"quarantine/{resource}")
                        ),
                    },
                ),
            ],
        )

    return xdm_asset


@dataclass
class _DayState:
    """What the lake holds for one day (or, added up, for the run's days): raw objects, XDM rows
    (of which versions and tombstones), quarantined and dropped records, parts, quarantine reasons,
    and anything that keeps the day from reconciling."""

    raw_objects: int = 0
    rows: int = 0
    quarantined: int = 0
    duplicates: int = 0
    version_rows: int = 0
    tombstones: int = 0
    files: int = 0
    bytes: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        """Every raw object is a row, a quarantined record or a dropped duplicate, and nothing
        listed is missing."""
        counted = self.rows + self.quarantined + self.duplicates
        return self.raw_objects == counted and not self.problems

    @classmethod
    def total(cls, days: Iterable["_DayState"]) -> "_DayState":
        out = cls()
        for day in days:
            out.raw_objects += day.raw_objects
            out.rows += day.rows
            out.quarantined += day.quarantined
            out.duplicates += day.duplicates
            out.version_rows += day.version_rows
            out.tombstones += day.tombstones
            out.files += day.files
            out.bytes += day.bytes
            out.reasons.update(day.reasons)
            out.problems.extend(day.problems)
        return out


def _day_state(partition: XdmPartition, tenant: str) -> _DayState:
    """One day's state from its manifests. Problems: a raw file without manifest, a part that is
    missing or cut short, a conversion for another tenant."""
    manifests = partition.manifests()
    state = _DayState(raw_objects=partition.raw_objects())
    state.problems.extend(
        f"{f.path} has no XDM manifest"
        for f in partition.raw_files()
        if xdm_stem(f) not in manifests
    )
    for manifest in manifests.values():
        state.problems.extend(partition.file_problems(manifest))
        if manifest.tenant != tenant:
            state.problems.append(f"{manifest.raw} was converted for another tenant")
        state.rows += manifest.rows
        state.quarantined += manifest.quarantined
        state.duplicates += manifest.duplicates
        state.version_rows += manifest.versions
        state.tombstones += manifest.tombstones
        state.files += len(manifest.parts)
        state.bytes += manifest.bytes
        state.reasons.update(manifest.reasons)
    return state


def raw_inputs(resource: str) -> tuple[str, ...]:
    """The raw assets the XDM asset of `resource` reads: its own and its catalog lookups."""
    return (resource, *stripe_resource(resource).lookup_resources)


def _charge_customers(
    resource: str, lake: LakeResource, partitions: list[XdmPartition], tenant: str
) -> dict:
    """The charge → customer index of the raw charges on the lake (stripe_aep/charge_customers.py),
    unless every raw file to convert was read at an API version whose objects carry `customer`
    (refunds since 2026-07-29.dahlia; disputes never do)."""
    object_name = stripe_resource(resource).object_name
    versions = {
        partition.read_meta(item.raw).get("api_version")
        for partition in partitions
        for item in partition.pending(tenant)
    }
    if all(carries_customer(object_name, version) for version in versions):
        return {}
    latest = max(p.day for p in partitions)
    return {CHARGE_CUSTOMERS: ChargeCustomerIndex(lake.lake()).pairs(until=latest)}


#: What each lookup resource gives a conversion: its conversion parameters.
LOOKUPS: dict[str, Callable[[str, LakeResource, list[XdmPartition], str], dict]] = {
    "charges": _charge_customers,
}


def _lookups(
    resource: str, lake: LakeResource, partitions: list[XdmPartition], tenant: str
) -> dict | None:
    """The conversion parameters the catalog's `lookup_resources` of `resource` provide."""
    params: dict = {}
    for name in stripe_resource(resource).lookup_resources:
        params.update(LOOKUPS[name](resource, lake, partitions, tenant))
    return params or None


def _check_lookups() -> None:
    """Every lookup the catalog declares has a provider here (fails at import, naming it)."""
    for stanza in STRIPE_RESOURCES:
        missing = [name for name in stanza.lookup_resources if name not in LOOKUPS]
        if missing:
            raise ValueError(
                f"the catalog says {stanza.name} looks up {missing}, but assets/xdm.py has no "
                f"lookup for it: add one to LOOKUPS"
            )


_check_lookups()

xdm_assets = [build_xdm_asset(resource) for resource in RESOURCE_NAMES]
