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


def test_raw_asset_derives_versions_from_the_days_events(stripe_emulator, stripe_account, tmp_path):
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
        # The changes file covers exactly the events window, and records the account and mode
        # its versions belong to, as the listing files do (the XDM rows carry them).
        changes = RawPartition(lake, "customers", today, layer="changes")
        assert changes.coverage() == [(gte, now)]
        listing = RawPartition(lake, "customers", ACCOUNT_START)
        listing_meta = listing.read_meta(listing.files()[0])
        [changes_meta] = [changes.read_meta(f) for f in changes.files()]
        assert changes_meta["account"] == listing_meta["account"] == stripe_account.account_id
        assert changes_meta["livemode"] is False

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


def _latest_rows(lake, resource, days):
    """The latest row per object id across the listing and the changes layers (version time:
    `fetched_at` for a listing row, `_change.time` for a version)."""
    latest: dict[str, tuple[int, dict]] = {}

    def offer(obj, when):
        if obj["id"] not in latest or when > latest[obj["id"]][0]:
            latest[obj["id"]] = (when, obj)

    for day in days:
        part = RawPartition(lake, resource, day)
        for f in part.files():
            when = lake.read_json(f.meta_path)["fetched_at"]
            for obj in read_objects(lake, f):
                offer(obj, when)
        for f in RawPartition(lake, resource, day, layer="changes").files():
            for obj in read_objects(lake, f):
                offer(obj, obj["_change"]["time"])
    return {oid: obj for oid, (_, obj) in latest.items()}


def test_mutations_in_the_emulator_end_as_its_current_state(tmp_path, monkeypatch):
    """A live emulator account: listings first, then an hour of changes (its planned mutations,
    plus an edit, two edits in one second and a deletion made here); after the events and
    customers runs, the latest row of every customer equals what Stripe returns now (a tombstone
    for the deleted one), and a re-run writes nothing."""
    import stripe_aep.assets.events as events_module
    import stripe_aep.assets.raw as raw_module
    from stripe_aep.emulators.stripe_account import StripeAccount

    first = dt.date(2026, 11, 18)
    days = [first + dt.timedelta(days=i) for i in range(3)]
    now = [day_bounds(days[-1])[0] + 12 * 3600.0]
    clock = lambda: now[0]  # noqa: E731
    monkeypatch.setattr(raw_module, "_now", clock)
    account = StripeAccount(
        seed=21, start=first, days=3, charges_per_day=40, live=True, clock=clock
    )
    assets = [events_module.events_asset, *CUSTOMERS]
    lake = Lake(str(tmp_path))
    with StripeEmulator(account, rate_limit_rps=0) as emulator, dg.instance_for_test() as instance:

        def run(day):
            result = dg.materialize(
                assets,
                resources=_resources(emulator.url, tmp_path),
                partition_key=day.isoformat(),
                instance=instance,
            )
            assert result.success
            return {
                e.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()
            }

        for day in days:
            run(day)
        listed = sorted(_latest_rows(lake, "customers", days))
        edited, twice, deleted = listed[0], listed[1], listed[2]
        now[0] += 600
        account.mutate("customers", edited, "update", email="edited@example.com")
        account.mutate("customers", twice, "update", name="First")
        account.mutate("customers", twice, "update", name="Second")  # the same second
        now[0] += 600
        account.mutate("customers", deleted, "delete")
        now[0] += 2400
        meta = {day: run(day)["customers"] for day in days}
        today = meta[days[-1]]
        assert today["versions"] >= 2 and today["tombstones"] >= 1
        assert today["refetched"] >= 1  # the two edits in one second
        latest = _latest_rows(lake, "customers", days)
        for oid, row in latest.items():
            current = account.current("customers", oid)
            body = {k: v for k, v in row.items() if k != "_change"}
            if current is None or current.get("deleted"):
                assert row.get("_change", {}).get("deleted") is True, oid
            else:
                assert body == current, oid
        assert latest[twice]["name"] == "Second"
        assert latest[edited]["email"] == "edited@example.com"
        assert latest[deleted]["_change"]["deleted"] is True
        # Nothing twice: a re-run of every day writes nothing.
        files = sorted(f.path for f in lake.list_files("changes", recursive=True))
        again = {day: run(day)["customers"] for day in days}
        assert sorted(f.path for f in lake.list_files("changes", recursive=True)) == files
        assert all(m["versions"] == m["tombstones"] == 0 for m in again.values())


def test_a_day_of_planned_mutations_ends_as_the_emulators_current_state(tmp_path, monkeypatch):
    """The emulator's own planned mutations (charges captured, refunded, disputed; subscriptions
    changing status; customers edited and deleted; prices deactivated) over a day and a half: the
    latest row of every object of the four mutable resources equals Stripe's current object."""
    import stripe_aep.assets.events as events_module
    import stripe_aep.assets.raw as raw_module
    from stripe_aep.emulators.stripe_account import StripeAccount

    first = dt.date(2026, 11, 18)
    now = [day_bounds(first + dt.timedelta(days=2))[0] + 6 * 3600.0]
    clock = lambda: now[0]  # noqa: E731
    monkeypatch.setattr(raw_module, "_now", clock)
    account = StripeAccount(
        seed=33, start=first, days=3, charges_per_day=60, live=True, clock=clock
    )
    mutable = ("charges", "subscriptions", "customers", "prices")
    assets = [events_module.events_asset] + [a for a in raw_assets if a.key.path[-1] in mutable]
    lake = Lake(str(tmp_path))
    with StripeEmulator(account, rate_limit_rps=0) as emulator, dg.instance_for_test() as instance:

        def run(day):
            result = dg.materialize(
                assets,
                resources=_resources(emulator.url, tmp_path),
                partition_key=day.isoformat(),
                instance=instance,
            )
            assert result.success
            return {
                e.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()
            }

        days = [first + dt.timedelta(days=i) for i in range(3)]
        for day in days:
            run(day)
        now[0] += 36 * 3600  # a day and a half of the account's planned changes
        days.append(days[-1] + dt.timedelta(days=1))
        totals = dict.fromkeys(("versions", "tombstones", "refetched"), 0)
        for day in days:
            for resource, figures in run(day).items():
                if resource in mutable:
                    for key in totals:
                        totals[key] += figures[key]
        assert totals["versions"] > 0, totals
        mismatched = []
        for resource in mutable:
            for oid, row in _latest_rows(lake, resource, days).items():
                current = account.current(resource, oid)
                if current is None or current.get("deleted"):
                    if row.get("_change", {}).get("deleted") is not True:
                        mismatched.append((resource, oid, "not a tombstone"))
                elif {k: v for k, v in row.items() if k != "_change"} != current:
                    mismatched.append((resource, oid, row.get("_change")))
        assert mismatched == [], mismatched[:5]


def test_balance_transactions_become_available_through_narrow_rereads(tmp_path, monkeypatch):
    """Listed while pending; once `available_on` has passed, one run of today's partition re-lists
    only the windows holding the due ones and writes them as available. Before that, and after,
    the re-read costs no request."""
    import stripe_aep.assets.raw as raw_module
    from stripe_aep.emulators.stripe_account import StripeAccount

    day = dt.date(2026, 11, 18)
    start, end = day_bounds(day)
    now = [end + 3600.0]  # the next day: the day's transactions are pending (available on day + 2)
    clock = lambda: now[0]  # noqa: E731
    monkeypatch.setattr(raw_module, "_now", clock)
    account = StripeAccount(seed=5, start=day, days=1, charges_per_day=30, live=True, clock=clock)
    bts = [a for a in raw_assets if a.key.path[-1] == "balance_transactions"]
    lake = Lake(str(tmp_path))
    with StripeEmulator(account, rate_limit_rps=0) as emulator, dg.instance_for_test() as instance:

        def run(partition):
            before = len(emulator.log)
            result = dg.materialize(
                bts,
                resources=_resources(emulator.url, tmp_path),
                partition_key=partition.isoformat(),
                instance=instance,
            )
            assert result.success
            (event,) = result.get_asset_materialization_events()
            meta = {k: v.value for k, v in event.materialization.metadata.items()}
            return meta, [r for r in emulator.log[before:] if r.path == "/v1/balance_transactions"]

        run(day)
        listed = [o for f in RawPartition(lake, "balance_transactions", day).files()
                  for o in read_objects(lake, f)]  # fmt: skip
        pending = {o["id"]: o for o in listed if o["status"] == "pending"}
        assert pending, "the day's transactions should still be pending"
        today = day + dt.timedelta(days=1)
        meta, lists = run(today)  # not due yet: only today's own (empty) listing
        assert meta["bt_reread_requests"] == 0 and meta["bt_became_available"] == 0
        assert all(r.query.get("created[gte]") == str(day_bounds(today)[0]) for r in lists)

        now[0] = start + 2 * 86400 + 600  # past available_on (day + 2)
        later = day + dt.timedelta(days=2)
        meta, lists = run(later)
        rereads = [r for r in lists if int(r.query["created[gte]"]) < day_bounds(later)[0]]
        assert meta["bt_reread_requests"] == len(rereads) >= 1
        lo = min(o["created"] for o in pending.values())
        hi = max(o["created"] for o in pending.values()) + 1
        for r in rereads:  # narrow: within the span of the pending ones
            assert lo <= int(r.query["created[gte]"]) < int(r.query["created[lt]"]) <= hi
        assert meta["bt_became_available"] == len(pending)
        versions = {v["id"]: v for v in _changes_of(lake, "balance_transactions", later)}
        assert set(versions) == set(pending)
        for tid, version in versions.items():
            assert version["status"] == "available"
            assert version["_change"]["time"] == pending[tid]["available_on"]
            assert version["_change"]["event_type"] == "balance_transaction.available"
            body = {k: v for k, v in version.items() if k != "_change"}
            assert body == account.current("balance_transactions", tid)
        # Nothing left pending: the next run costs no re-read and writes nothing.
        meta, _ = run(later)
        assert meta["bt_reread_requests"] == 0 and meta["bt_became_available"] == 0
        assert len(_changes_of(lake, "balance_transactions", later)) == len(pending)


def _changes_of(lake, resource, day):
    part = RawPartition(lake, resource, day, layer="changes")
    return [o for f in part.files() for o in read_objects(lake, f)]
