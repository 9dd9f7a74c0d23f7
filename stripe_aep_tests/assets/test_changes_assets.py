"""The raw assets derive versions after their listing (stripe_aep/stripe/changes.py), against the
Stripe emulator: events on the lake become versions and tombstones, re-fetches stay within the
client's budgets, a re-run writes nothing, and the `reread` mode writes only what changed."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg
import requests

from stripe_aep.assets.raw import raw_assets
from stripe_aep.config import DEFAULT_STRIPE_API_VERSION
from stripe_aep.emulators.stripe_api import StripeEmulator
from stripe_aep.emulators.stripe_limits import busiest_second
from stripe_aep.lake import Lake
from stripe_aep.resources import LakeResource, StripeResource
from stripe_aep.stripe.extract import encode
from stripe_aep.stripe.rawstore import RawPartition, day_bounds, read_objects
from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY

CUSTOMERS = [a for a in raw_assets if a.key == dg.AssetKey(["stripe", "customers"])]


def _resources(url, root, max_rps="1000"):
    return {
        "stripe": StripeResource(
            api_key=TEST_KEY, api_base=url, max_rps=max_rps, visibility_lag_seconds="0"
        ),
        "lake": LakeResource(root=str(root)),
    }


def _materialize(instance, url, root, day, max_rps="1000", reread=False):
    result = dg.materialize(
        CUSTOMERS,
        resources=_resources(url, root, max_rps),
        partition_key=day.isoformat(),
        instance=instance,
        run_config={"ops": {"stripe__customers": {"config": {"reread": reread}}}}
        if reread
        else None,
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _current(url, cid):
    response = requests.get(
        f"{url}/v1/customers/{cid}",
        headers={
            "Authorization": f"Bearer {TEST_KEY}",
            "Stripe-Version": DEFAULT_STRIPE_API_VERSION,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _event(eid, kind, created, obj, api_version=DEFAULT_STRIPE_API_VERSION):
    return {
        "id": eid,
        "object": "event",
        "type": kind,
        "created": created,
        "api_version": api_version,
        "data": {"object": obj},
    }


def _write_events(lake, day, gte, lt, events):
    RawPartition(lake, "events", day).write(gte, lt, [encode(e) for e in events], {})


def _changes(lake, day):
    part = RawPartition(lake, "customers", day, layer="changes")
    return [o for f in part.files() for o in read_objects(lake, f)]


def _backdate_listing(lake, seconds):
    """Pretend the listing of ACCOUNT_START was fetched `seconds` earlier than it was."""
    for f in RawPartition(lake, "customers", ACCOUNT_START).files():
        meta = lake.read_json(f.meta_path)
        lake.write_json(f.meta_path, {**meta, "fetched_at": meta["fetched_at"] - seconds})


def _events_window(today):
    """A minute of today (its first minute when the test runs just after midnight)."""
    now = int(time.time())
    gte = max(day_bounds(today)[0], now - 60)
    return gte, gte + 60


def _listed_customers(lake):
    part = RawPartition(lake, "customers", ACCOUNT_START)
    return [o for f in part.files() for o in read_objects(lake, f)]


def test_raw_asset_derives_versions_from_the_days_events(stripe_emulator, tmp_path):
    lake = Lake(str(tmp_path))
    today = dt.datetime.now(dt.UTC).date()
    with dg.instance_for_test() as instance:
        _materialize(instance, stripe_emulator.url, tmp_path, ACCOUNT_START)
        edited, stale, deleted, cosmetic = sorted(_listed_customers(lake), key=lambda c: c["id"])[
            :4
        ]
        # Events after the listing's fetch (an hour ago), in today's events partition.
        _backdate_listing(lake, 3600)
        gte, now = _events_window(today)
        events = [
            _event("evt_1", "customer.updated", gte + 5, {**edited, "email": "new@example.com"}),
            _event("evt_2", "customer.updated", gte + 10, stale, api_version="2023-10-16"),
            _event("evt_3", "customer.deleted", gte + 15, deleted),
            _event(
                "evt_4",
                "customer.updated",
                gte + 20,
                {**cosmetic, "invoice_settings": {**cosmetic["invoice_settings"], "footer": "x"}},
            ),
            _event("evt_5", "customer.created", gte + 25, {**edited, "id": "cus_brand_new"}),
        ]
        _write_events(lake, today, gte, now, events)
        before = len(stripe_emulator.log)
        meta = _materialize(instance, stripe_emulator.url, tmp_path, today)
        rows = {r["id"]: r for r in _changes(lake, today)}
        assert set(rows) == {edited["id"], deleted["id"]}
        assert rows[edited["id"]]["email"] == "new@example.com"
        assert rows[edited["id"]]["_change"]["event_id"] == "evt_1"
        assert rows[deleted["id"]]["_change"]["deleted"] is True
        # The 2023 event was re-fetched at the pinned version: the emulator's object is unchanged.
        retrieves = [r for r in stripe_emulator.log[before:] if r.path.count("/") == 3]
        assert [r.path for r in retrieves] == [f"/v1/customers/{stale['id']}"]
        assert retrieves[0].api_version == DEFAULT_STRIPE_API_VERSION
        assert (meta["versions"], meta["tombstones"], meta["unchanged"]) == (1, 1, 2)
        assert (meta["refetched"], meta["events_derived"], meta["subsumed"]) == (1, 5, 0)
        # The changes file covers exactly the events window.
        assert RawPartition(lake, "customers", today, layer="changes").coverage() == [(gte, now)]

        # A re-run derives nothing and writes nothing.
        files = sorted(f.path for f in lake.list_files("changes", recursive=True))
        again = _materialize(instance, stripe_emulator.url, tmp_path, today)
        assert sorted(f.path for f in lake.list_files("changes", recursive=True)) == files
        assert (again["versions"], again["tombstones"], again["events_derived"]) == (0, 0, 0)


def test_refetches_stay_within_the_client_budget(stripe_account, tmp_path):
    """Sixty objects whose two newest events share a second: sixty re-fetches, against an
    emulator enforcing Stripe's limits, paced by a budget of 8 requests/s."""
    lake = Lake(str(tmp_path))
    today = dt.datetime.now(dt.UTC).date()
    budget = 8
    with StripeEmulator(stripe_account) as emulator, dg.instance_for_test() as instance:
        _materialize(instance, emulator.url, tmp_path, ACCOUNT_START)
        customers = sorted(_listed_customers(lake), key=lambda c: c["id"])[:60]
        assert len(customers) == 60
        _backdate_listing(lake, 3600)
        gte, lt = _events_window(today)
        events = []
        for i, cus in enumerate(customers):
            events.append(_event(f"evt_{i}_a", "customer.updated", gte + 9, {**cus, "name": "A"}))
            events.append(_event(f"evt_{i}_b", "customer.updated", gte + 9, {**cus, "name": "B"}))
        _write_events(lake, today, gte, lt, events)
        before = len(emulator.log)
        meta = _materialize(instance, emulator.url, tmp_path, today, max_rps=str(budget))
        log = emulator.log[before:]
        retrieves = [r for r in log if r.path.startswith("/v1/customers/")]
        assert len(retrieves) == meta["refetched"] == 60
        assert all(r.status == 200 for r in log), {r.status for r in log}
        worst = busiest_second(r.t for r in log)
        assert worst <= budget, f"{worst} requests in one second with a budget of {budget}"
        # Re-fetched objects equal the emulator's: the mapped state did not change.
        assert meta["unchanged"] == 60 and meta["versions"] == 0


def test_reread_mode_writes_only_changed_objects_and_tombstones(stripe_emulator, tmp_path):
    lake = Lake(str(tmp_path))
    with dg.instance_for_test() as instance:
        _materialize(instance, stripe_emulator.url, tmp_path, ACCOUNT_START)
        part = RawPartition(lake, "customers", ACCOUNT_START)
        (listing,) = part.files()
        fetched_at = lake.read_json(listing.meta_path)["fetched_at"]
        objects = read_objects(lake, listing)
        objects.sort(key=lambda c: c["id"])
        stale = objects[0]
        truth = _current(stripe_emulator.url, stale["id"])
        # What the lake believed: an older email for one customer, and one customer Stripe no
        # longer lists (as a deleted customer vanishes from lists).
        objects[0] = {**stale, "email": "older@example.com"}
        ghost = {**objects[1], "id": "cus_deletedSince0001"}
        lake.delete(listing.path)
        lake.delete(listing.meta_path)
        start, end = day_bounds(ACCOUNT_START)
        part.write(start, end, [encode(o) for o in [*objects, ghost]], {"fetched_at": fetched_at})
        before = len(stripe_emulator.log)
        meta = _materialize(instance, stripe_emulator.url, tmp_path, ACCOUNT_START, reread=True)
        rows = {r["id"]: r for r in _changes(lake, ACCOUNT_START)}
        assert set(rows) == {stale["id"], ghost["id"]}
        assert {k: v for k, v in rows[stale["id"]].items() if k != "_change"} == truth
        assert rows[stale["id"]]["_change"]["source"] == "reread"
        assert rows[ghost["id"]]["_change"]["deleted"] is True
        assert (meta["versions"], meta["tombstones"]) == (1, 1)
        assert meta["unchanged"] == len(objects) - 1
        lists = [r for r in stripe_emulator.log[before:] if r.path == "/v1/customers"]
        assert len(lists) == -(-len(objects) // 100)
        # Nothing changed since: a second re-read writes nothing.
        files = sorted(f.path for f in lake.list_files("changes", recursive=True))
        again = _materialize(instance, stripe_emulator.url, tmp_path, ACCOUNT_START, reread=True)
        assert sorted(f.path for f in lake.list_files("changes", recursive=True)) == files
        assert (again["versions"], again["tombstones"]) == (0, 0)
