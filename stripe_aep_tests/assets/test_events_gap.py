"""The 30-day edge, end to end in one process: the pipeline is switched off for 40 days while Stripe
changes (a customer edited, a price deactivated, a subscription canceled, plus the account's own
planned changes); the events of those changes are gone (Stripe keeps 30 days). The next run of
`stripe/events` shows the lost window as a warning in its metadata, the `stripe_aep_events_edge`
sensor launches the re-reads, and once they ran AEP's latest record of every object equals the
object as Stripe returns it now (tombstones for the deleted ones)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import requests

from stripe_aep.assets.aep import aep_assets
from stripe_aep.assets.events import build_events_asset
from stripe_aep.assets.raw import raw_assets
from stripe_aep.assets.xdm import xdm_assets
from stripe_aep.automation import sensors
from stripe_aep.config import DEFAULT_STRIPE_API_VERSION
from stripe_aep.definitions import resources_from_env
from stripe_aep.emulators.stripe_account import StripeAccount
from stripe_aep.emulators.stripe_api import StripeEmulator
from stripe_aep.resources import LakeResource, StripeResource, XdmResource
from stripe_aep.stripe.rawstore import day_bounds, day_of
from stripe_aep_tests.assets.test_change_delivery import (
    batch_tables,
    latest_records,
    object_state,
    record_of,
)
from stripe_aep_tests.automation.sensor_helpers import context
from stripe_aep_tests.conftest import AEP_SOURCE_RESOURCES, AEP_TEST_TENANT, TEST_KEY, only

#: AEP's six resources (`aep_setup` selects them).
events_asset = build_events_asset(AEP_SOURCE_RESOURCES)
ALL_ASSETS = [
    events_asset,
    *only([*raw_assets, *xdm_assets, *aep_assets], AEP_SOURCE_RESOURCES),
]
#: The resources compared with Stripe (refund records take their customer from the charges'
#: index, which the comparison's one-object conversion does not have).
COMPARED = ("customers", "prices", "subscriptions", "charges")
FIRST = dt.date(2026, 10, 1)
DAY = 86_400


def _resources(url: str, root) -> dict:
    return {
        "stripe": StripeResource(
            api_key=TEST_KEY, api_base=url, max_rps=1000, visibility_lag_seconds=0
        ),
        "lake": LakeResource(root=str(root)),
        "xdm": XdmResource(tenant=AEP_TEST_TENANT),
        "aep": resources_from_env()["aep"],  # the AEP_* variables, as deployed
    }


def _poll_fast(selection) -> dict:
    ops = {
        f"aep__{key.path[-1]}": {"config": {"poll_interval_seconds": 0.05}}
        for key in selection
        if key.path[0] == "aep"
    }
    return {"ops": ops}


def test_a_gap_longer_than_stripes_retention_ends_as_stripes_current_state(
    aep_setup, tmp_path, monkeypatch
):
    import stripe_aep.assets.raw as raw_module

    now = [day_bounds(FIRST + dt.timedelta(days=2))[0] + 6 * 3600.0]
    clock = lambda: now[0]  # noqa: E731
    monkeypatch.setattr(raw_module, "_now", clock)
    account = StripeAccount(
        seed=41, start=FIRST, days=2, charges_per_day=40, live=True, clock=clock
    )
    client, datasets = aep_setup
    with StripeEmulator(account, rate_limit_rps=0) as emulator, dg.instance_for_test() as instance:

        def materialize(selection=None, run_config=None, **kwargs) -> dg.ExecuteInProcessResult:
            keys = selection or [a.key for a in ALL_ASSETS]
            config = _poll_fast(keys)
            for op, value in (run_config or {}).get("ops", {}).items():
                config["ops"].setdefault(op, {}).setdefault("config", {}).update(value["config"])
            result = dg.materialize(
                ALL_ASSETS,
                selection=keys,
                resources=_resources(emulator.url, tmp_path),
                instance=instance,
                run_config=config,
                **kwargs,
            )
            assert result.success
            return result

        for day in (FIRST, FIRST + dt.timedelta(days=1)):
            materialize(partition_key=day.isoformat())

        # A day later Stripe changes three objects; then 40 days pass without a run.
        now[0] += DAY
        edited = account.objects("customers", *day_bounds(FIRST))[0]["id"]
        account.mutate("customers", edited, "update", email="after-the-gap@example.com")
        price = next(p["id"] for p in account.objects("prices") if p["active"])
        account.mutate("prices", price, "deactivate")
        subscription = next(
            s["id"]
            for s in account.objects("subscriptions")
            if s["status"] not in ("canceled", "incomplete_expired")
        )
        account.mutate("subscriptions", subscription, "cancel")
        now[0] += 40 * DAY
        today = day_of(int(now[0]))

        # The events asset's next run: the window between the last events fetched and Stripe's
        # 30 days is lost, and its metadata says so.
        result = materialize([events_asset.key], partition_key=today.isoformat())
        [event] = [
            e for e in result.get_asset_materialization_events() if e.asset_key == events_asset.key
        ]
        warning = event.materialization.metadata["events_coverage_warning"].value
        assert "LOST" in warning and "stripe_aep_events_edge" in warning, warning
        assert event.materialization.metadata["events_lost_windows_open"].value == 1

        # The sensor launches the re-reads (stripe/<r> with reread: true, xdm/<r>, aep/<r>), a
        # couple of runs per tick; once all are launched, its ticks launch nothing more.
        launched: list[str] = []
        for _ in range(10):
            tick = sensors.evaluate_events_edge(
                context(instance, sensors.EVENTS_EDGE_SENSOR), str(tmp_path), now[0]
            )
            if isinstance(tick, dg.SkipReason):
                break
            for request in tick.run_requests:
                materialize(list(request.asset_selection), request.run_config, tags=request.tags)
                launched.append(request.run_key)
        assert isinstance(tick, dg.SkipReason), "the sensor kept launching runs"
        assert len(launched) == len(set(launched)), "a re-read was launched twice"
        assert set(COMPARED) <= {key.split(":")[2] for key in launched}, launched

        # AEP's latest record of every object equals Stripe's object now.
        mismatched, compared = [], 0
        for resource in COMPARED:
            latest = latest_records(batch_tables(client, datasets[resource]).values())
            for oid, record in latest.items():
                response = requests.get(
                    f"{emulator.url}/v1/{resource}/{oid}",
                    headers={
                        "Authorization": f"Bearer {TEST_KEY}",
                        "Stripe-Version": DEFAULT_STRIPE_API_VERSION,
                    },
                    timeout=30,
                )
                stripe = record[f"_{AEP_TEST_TENANT}"]["stripe"]
                now_obj = response.json() if response.status_code == 200 else None
                if now_obj is None or now_obj.get("deleted"):
                    if stripe["deleted"] is not True:
                        mismatched.append((resource, oid, "deleted in Stripe, not a tombstone"))
                    continue
                expected = record_of(tmp_path, now_obj, resource, account.account_id)
                if object_state(record) != object_state(expected):
                    mismatched.append((resource, oid, stripe["versionSource"]))
                compared += 1
            for oid in {"customers": [edited], "prices": [price]}.get(resource, []):
                assert latest[oid][f"_{AEP_TEST_TENANT}"]["stripe"]["versionSource"] == "reread"
        assert compared > 50, compared
        assert mismatched == [], mismatched[:5]
