"""`make demo`: the whole pipeline end to end on the local emulators, no credentials needed.

Starts the emulators in-process on free ports, points the pipeline's resources at them, materializes
every asset of the code location for the last few days (today included) in one range run, and prints a
table per resource. It uses the same asset definitions as production; only the resources differ.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from collections import defaultdict

from stripe_aep.records import DeliverySummary

DEMO_KEY = "sk_test_emulator_demo_0000000000"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in rows:
        cells = [str(row[0]).ljust(widths[0])]
        cells += [str(x).rjust(w) for x, w in zip(row[1:], widths[1:], strict=False)]
        out.append("  ".join(cells))
    return "\n".join(out)


#: The AEP emulator's default identity (not secrets: they exist only inside the local emulator).
DEMO_AEP = {
    "AEP_CLIENT_ID": "stripe-aep-local",
    "AEP_CLIENT_SECRET": "local-secret",
    "AEP_ORG_ID": "0000000000000000000000AA@AdobeOrg",
    "AEP_SANDBOX": "prod",
    "AEP_TENANT_ID": "stripeaep",
}


def run_demo(days: int = 3, charges_per_day: int = 300, data_dir: str = "data/demo") -> int:
    os.environ.setdefault(
        "STRIPE_START_DATE", (dt.date.today() - dt.timedelta(days=30)).isoformat()
    )
    import dagster as dg

    from stripe_aep.emulators._server import BackgroundServer
    from stripe_aep.emulators.aep_api import create_app as create_aep_app
    from stripe_aep.emulators.stripe_account import StripeAccount
    from stripe_aep.emulators.stripe_api import create_app

    # The demo starts from scratch: its emulators are in memory, so must be its lake and ledger.
    shutil.rmtree(data_dir, ignore_errors=True)
    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    account = StripeAccount(seed=7, start=first, days=days, charges_per_day=charges_per_day)
    started = time.monotonic()
    with (
        BackgroundServer(create_app(account, rate_limit_rps=25)) as stripe_server,
        BackgroundServer(create_aep_app()) as aep_server,
    ):
        os.environ.update(DEMO_AEP)
        os.environ.update(
            STRIPE_API_KEY=DEMO_KEY,
            STRIPE_API_BASE=stripe_server.url,
            STRIPE_AEP_DATA_DIR=data_dir,
            AEP_IMS_URL=aep_server.url,
            AEP_PLATFORM_URL=aep_server.url,
        )
        from stripe_aep.commands import setup_command
        from stripe_aep.config import selected_resources
        from stripe_aep.definitions import resources_from_env, selected_assets
        from stripe_aep.resources import LakeResource, StripeResource, XdmResource

        print(f"Stripe emulator on {stripe_server.url}, AEP emulator on {aep_server.url}")
        print("stripe-aep setup (field groups, schemas, identity namespace, datasets) ...")
        setup_command()
        resources = {
            "stripe": StripeResource(
                api_key=DEMO_KEY, api_base=stripe_server.url, visibility_lag_seconds=0
            ),
            "lake": LakeResource(root=data_dir),
            "xdm": XdmResource(tenant=DEMO_AEP["AEP_TENANT_ID"]),
            "aep": resources_from_env()["aep"],  # fed from the AEP_* set above, as deployed
        }
        selection = selected_resources()  # STRIPE_AEP_RESOURCES, default every resource
        assets = selected_assets(selection)
        print(
            f"\nmaterializing {len(assets)} assets for {first} .. {today} into "
            f"{os.path.abspath(data_dir)} ...",
            flush=True,
        )
        result = dg.materialize(
            assets,
            resources=resources,
            instance=dg.DagsterInstance.ephemeral(),
            run_config={
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                "ops": {f"aep__{r}": {"config": {"poll_interval_seconds": 0.3}} for r in selection},
            },
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": today.isoformat(),
            },
            raise_on_error=False,
        )
        tick = None
        if result.success:
            tick = _change_capture_tick(account, assets, resources, today)
    if not result.success or (tick is not None and not tick.success):
        result = result if not result.success else tick
        for event in result.all_events:
            if event.is_failure:
                print(event.message, file=sys.stderr)
        print("demo failed", file=sys.stderr)
        return 1
    # One materialization per asset and day of the range, each with that day's own figures (row
    # counts, quarantined): those add up over the days. Run-wide figures (`run_*`: the batches and
    # AEP's own count of rows written, since a batch may hold several days) are the same on every
    # day's event and are read once.
    day_sums: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    run_figures: dict[tuple[str, str], dict] = {}
    for event in result.get_asset_materialization_events():
        layer, resource = event.asset_key.path
        metadata = {k: v.value for k, v in event.materialization.metadata.items()}
        for name in ("dagster/row_count", "quarantined"):
            day_sums[layer, resource][name] += int(metadata.get(name, 0))
        run_figures[layer, resource] = {k: v for k, v in metadata.items() if k.startswith("run_")}
    checks = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    rows = []
    events = day_sums.pop(("stripe", "events"), {}).get("dagster/row_count", 0)
    run_figures.pop(("stripe", "events"), None)
    for resource in sorted({resource for _, resource in run_figures}):
        delivery = _delivery(run_figures.get(("aep", resource), {}))
        rows.append(
            [
                resource,
                day_sums["stripe", resource]["dagster/row_count"],
                day_sums["xdm", resource]["dagster/row_count"],
                day_sums["xdm", resource]["quarantined"],
                len(delivery.batch_ids) if delivery else 0,
                delivery.records_written if delivery else "",
            ]
        )
    print()
    print(
        _table(
            rows,
            [
                "resource",
                "stripe objects",
                "xdm rows",
                "quarantined",
                "aep batches",
                "aep rows written",
            ],
        )
    )
    print(
        f"\nstripe/events: {events} events of the selected resources on the lake (change capture)"
    )
    if tick is not None:
        _print_tick(tick, today)
    failed = [c for c in checks if not c.passed]
    print(
        f"\nasset checks: {len(checks) - len(failed)} of {len(checks)} passed"
        + "".join(f"\n  FAILED {c.asset_key.to_user_string()} {c.check_name}" for c in failed)
    )
    print(f"data: {os.path.abspath(data_dir)}  (stripe/, xdm/, quarantine/, ledger/)")
    print(f"end to end in {time.monotonic() - started:.1f} s")
    return 0


def _delivery(metadata: dict) -> DeliverySummary | None:
    """The delivery summary an aep materialization carries (`run_delivery`), if any."""
    return (
        DeliverySummary.from_json(metadata["run_delivery"]) if "run_delivery" in metadata else None
    )


#: What the demo changes in Stripe after the first load: (resource, kind, fields).
DEMO_CHANGES = (
    ("customers", "update", {"email": "changed-in-the-demo@example.com"}),
    ("customers", "delete", {}),
    ("prices", "deactivate", {}),
    ("subscriptions", "cancel", {}),
    ("charges", "refund", {}),
)


def _change_capture_tick(account, assets, resources, today: dt.date):
    """Change five objects in the Stripe emulator (as Stripe's own users would), then run today's
    partition once more, as the fresh-data schedule's next tick does: the changes arrive as events
    and become versions (docs/change-capture.md)."""
    import dagster as dg

    from stripe_aep.config import selected_resources

    print("\nin Stripe: a customer edited, one deleted, a price deactivated, a subscription "
          "canceled, a charge refunded; then the next tick of today ...", flush=True)  # fmt: skip
    touched: set[str] = set()
    for resource, kind, fields in DEMO_CHANGES:
        for obj in account.objects(resource):
            if obj["id"] in touched:
                continue
            try:
                account.mutate(resource, obj["id"], kind, **fields)
            except ValueError:
                continue  # e.g. a charge refunded already, a subscription ended already
            touched.add(obj["id"])
            break
    time.sleep(1.1)  # the events are listed up to the current second, excluded
    return dg.materialize(
        assets,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=today.isoformat(),
        run_config={
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            "ops": {
                f"aep__{r}": {"config": {"poll_interval_seconds": 0.3}}
                for r in selected_resources()
            },
        },
        raise_on_error=False,
    )


def _print_tick(tick, today: dt.date) -> None:
    figures: dict[tuple[str, str], dict] = {}
    for event in tick.get_asset_materialization_events():
        figures[tuple(event.asset_key.path)] = {
            k: v.value for k, v in event.materialization.metadata.items()
        }
    rows = []
    for resource in sorted({r for layer, r in figures if layer == "xdm"}):
        raw = figures.get(("stripe", resource), {})
        delivery = _delivery(figures.get(("aep", resource), {}))
        rows.append(
            [
                resource,
                int(raw.get("versions", 0)),
                int(raw.get("tombstones", 0)),
                int(figures.get(("xdm", resource), {}).get("rows_converted", 0)),
                delivery.records_written if delivery else 0,
            ]
        )
    print(f"\nnext tick of {today}: what changed in Stripe, as versions")
    print(_table(rows, ["resource", "versions", "tombstones", "xdm rows", "aep rows written"]))
