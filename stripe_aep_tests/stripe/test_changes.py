"""Versions derived from events and re-reads (stripe_aep/stripe/changes.py), on hand-built lake files.

A fake client stands in for Stripe here (it records every request, so "no request" is asserted, not
assumed); the emulator-backed tests are in stripe_aep_tests/assets/test_changes_assets.py.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from types import SimpleNamespace

import pytest

from stripe_aep.config import DEFAULT_STRIPE_API_VERSION
from stripe_aep.lake import Lake
from stripe_aep.stripe.changes import (
    BT_AVAILABLE,
    STATE_ROOT,
    ChangeDeriver,
    DayFigures,
    at_pinned_version,
    bt_clusters,
    event_order,
    input_paths,
    is_creation,
    mapped_hash,
    subject_id,
    type_rank,
)
from stripe_aep.stripe.client import PAGE_LIMIT, StripeInvalidRequestError
from stripe_aep.stripe.extract import encode
from stripe_aep.stripe.rawstore import RawPartition, day_bounds, read_objects

PINNED = DEFAULT_STRIPE_API_VERSION
OLD_VERSION = "2023-10-16"
DAY = dt.date(2026, 11, 10)
START, END = day_bounds(DAY)
NEXT = DAY + dt.timedelta(days=1)
START_DATE = dt.date(2026, 1, 1)


class FakeStripe:
    """Retrieve and list over a dict of current objects; counts and records every request."""

    def __init__(self, objects: dict[str, dict] | None = None) -> None:
        self.settings = SimpleNamespace(api_version=PINNED, livemode=False)
        self.stats = SimpleNamespace(requests=0)
        self.objects = dict(objects or {})
        self.calls: list[tuple] = []

    def retrieve(self, resource, object_id):
        self.stats.requests += 1
        self.calls.append(("retrieve", resource, object_id))
        if object_id not in self.objects:
            raise StripeInvalidRequestError(
                f"No such object: '{object_id}'", status=404, request_id="req_1"
            )
        return self.objects[object_id]

    def iter_window(self, resource, gte, lt):
        found = sorted(
            (o for o in self.objects.values() if gte <= o["created"] < lt),
            key=lambda o: (-o["created"], o["id"]),
        )
        pages = max(1, -(-len(found) // PAGE_LIMIT))
        self.stats.requests += pages
        self.calls.append(("list", resource, gte, lt))
        yield from found


def customer(cid: str, created: int, **fields) -> dict:
    obj = {
        "id": cid,
        "object": "customer",
        "created": created,
        "email": f"{cid}@example.com",
        "name": "Ada",
        "description": None,
        "metadata": {},
        "livemode": False,
        "invoice_settings": {"default_payment_method": None, "footer": None},
        "balance": 0,
    }
    obj.update(fields)
    return obj


def event(eid: str, kind: str, created: int, obj: dict, api_version: str = PINNED) -> dict:
    return {
        "id": eid,
        "object": "event",
        "type": kind,
        "created": created,
        "api_version": api_version,
        "data": {"object": obj},
    }


def write_listing(lake, resource, day, objects, fetched_at, window=None):
    gte, lt = window or day_bounds(day)
    RawPartition(lake, resource, day).write(
        gte, lt, [encode(o) for o in objects], {"fetched_at": fetched_at}
    )


def write_events(lake, day, events, window=None):
    gte, lt = window or day_bounds(day)
    RawPartition(lake, "events", day).write(gte, lt, [encode(e) for e in events], {})


def changes_on(lake, resource, day):
    part = RawPartition(lake, resource, day, layer="changes")
    return [obj for f in part.files() for obj in read_objects(lake, f)]


def deriver(lake, client, resource="customers", clock=None):
    return ChangeDeriver(
        client,
        lake,
        resource,
        run_id="test",
        start_date=START_DATE,
        lock_wait=5,
        clock=clock or (lambda: END + 7200),
    )


@pytest.fixture
def lake(tmp_path):
    return Lake(str(tmp_path))


def test_ordering_rule():
    a = event("evt_b", "customer.updated", 10, {})
    b = event("evt_a", "customer.updated", 10, {})
    c = event("evt_c", "customer.deleted", 10, {})
    d = event("evt_d", "customer.created", 10, {})
    assert sorted([a, b, c, d], key=event_order) == [d, b, a, c]
    assert is_creation(d)
    charge = {"object": "charge", "created": 5}
    assert is_creation(event("e", "charge.succeeded", 5, charge))
    assert not is_creation(event("e", "charge.succeeded", 6, charge))  # e.g. ACH settling later
    assert not is_creation(event("e", "charge.refunded", 5, charge))


def test_a_dispute_opened_is_the_disputes_creation_and_a_change_of_its_charge():
    """`charge.dispute.created` (catalog: a creation type of disputes, a subject event of charges):
    for the dispute it only announces a new object; for the charge it is a change to re-fetch."""
    dispute = {"id": "dp_1", "object": "dispute", "charge": "ch_1", "created": 5}
    opened = event("evt_1", "charge.dispute.created", 5, dispute)
    assert is_creation(opened) and is_creation(opened, "dispute")
    assert not is_creation(opened, "charge")
    assert type_rank("charge.dispute.created", "dispute") == 0
    assert type_rank("charge.dispute.created", "charge") == 1
    assert subject_id(opened, "dispute") == "dp_1" and subject_id(opened, "charge") == "ch_1"
    expanded = event("evt_2", "charge.dispute.created", 5, {**dispute, "charge": {"id": "ch_2"}})
    assert subject_id(expanded, "charge") == "ch_2"
    assert subject_id(opened, "customer") is None
    updated = event("evt_3", "charge.dispute.updated", 9, dispute)
    assert subject_id(updated, "charge") is None  # only the opening flips the charge
    assert not is_creation(updated, "dispute") and type_rank("charge.dispute.updated") == 1
    # every creation type of the catalog ranks first, every deletion type last
    assert type_rank("invoice.created") == type_rank("charge.succeeded", "charge") == 0
    assert type_rank("invoice.deleted") == type_rank("customer.subscription.deleted") == 2


def footer(obj: dict, text: str) -> dict:
    return {**obj, "invoice_settings": {**obj["invoice_settings"], "footer": text}}


def test_mapping_reads_metadata_but_not_the_invoice_footer():
    # The "unchanged" tests below rely on this: checked against the mapping, not assumed. The
    # customers mapping reads `metadata` (so a metadata edit is a change), not the invoice footer.
    paths = input_paths("customers")
    assert "metadata" in paths and "email" in paths
    assert "invoice_settings.default_payment_method" in paths
    assert "invoice_settings.footer" not in paths and "invoice_settings" not in paths
    base = customer("cus_1", START)
    assert mapped_hash(base, paths) == mapped_hash(footer(base, "Thanks"), paths)
    assert mapped_hash(base, paths) != mapped_hash({**base, "metadata": {"a": "1"}}, paths)
    # Lists map element-wise, expanded objects count as their id.
    subs = input_paths("subscriptions")
    item = {"id": "si_1", "price": {"id": "price_1", "object": "price", "currency": "usd"}}
    sub = {"items": {"data": [item]}, "customer": "cus_1"}
    expanded = {**sub, "customer": {"id": "cus_1", "object": "customer", "email": "x"}}
    assert mapped_hash(sub, subs) == mapped_hash(expanded, subs)
    other = {"items": {"data": [{**item, "quantity": 2}]}, "customer": "cus_1"}
    assert mapped_hash(sub, subs) != mapped_hash(other, subs)


def test_tombstone_payload_drops_fields_newer_than_the_pinned_version():
    refund = {"id": "re_1", "object": "refund", "customer": "cus_1", "amount": 5}
    # `customer` arrived on refunds with 2026-07-29.dahlia (specs/stripe): a payload rendered
    # there loses it for a pipeline pinned to 2026-06-24.dahlia; other renderings are kept.
    newer = at_pinned_version(refund, "refund", "2026-07-29.dahlia", "2026-06-24.dahlia")
    assert newer == {"id": "re_1", "object": "refund", "amount": 5}
    assert at_pinned_version(refund, "refund", "2026-06-24.dahlia", "2026-07-29.dahlia") == refund
    assert at_pinned_version(refund, "refund", PINNED, PINNED) == refund


def test_latest_event_wins(lake):
    cus = customer("cus_1", START + 100)
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    events = [
        event("evt_1", "customer.updated", START + 300, {**cus, "email": "one@example.com"}),
        event("evt_3", "customer.updated", START + 500, {**cus, "email": "three@example.com"}),
        event("evt_2", "customer.updated", START + 400, {**cus, "email": "two@example.com"}),
    ]
    write_events(lake, DAY, events)
    client = FakeStripe()
    fig = DayFigures()
    deriver(lake, client).derive_events(DAY, fig)
    (version,) = changes_on(lake, "customers", DAY)
    assert version["email"] == "three@example.com"
    assert version["_change"] == {
        "time": START + 500,
        "event_id": "evt_3",
        "event_type": "customer.updated",
        "source": "event",
        "deleted": False,
    }
    assert (fig.versions, fig.tombstones, fig.refetched, fig.events_derived) == (1, 0, 0, 3)
    assert client.calls == []
    # The changes file's window is the events window: coverage = windows derived.
    assert RawPartition(lake, "customers", DAY, layer="changes").coverage() == [(START, END)]


def test_rerun_derives_nothing_and_writes_nothing(lake):
    cus = customer("cus_1", START + 100)
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    write_events(lake, DAY, [event("evt_1", "customer.updated", START + 300, {**cus, "name": "B"})])
    deriver(lake, FakeStripe()).derive_events(DAY, DayFigures())
    files = sorted(f.path for f in lake.list_files("changes", recursive=True))
    again = DayFigures()
    deriver(lake, FakeStripe()).derive_events(DAY, again)
    assert sorted(f.path for f in lake.list_files("changes", recursive=True)) == files
    assert again == DayFigures()


def test_empty_window_still_marks_coverage(lake):
    write_listing(lake, "customers", DAY, [], fetched_at=START + 200)
    # Events of other objects only: a changes file with no version is written all the same.
    write_events(
        lake,
        DAY,
        [event("evt_1", "price.updated", START + 300, {"id": "price_1", "object": "price"})],
    )
    fig = DayFigures()
    deriver(lake, FakeStripe()).derive_events(DAY, fig)
    part = RawPartition(lake, "customers", DAY, layer="changes")
    assert part.coverage() == [(START, END)]
    assert changes_on(lake, "customers", DAY) == []
    assert fig.events_derived == 0


def test_out_of_order_older_event_after_newer_version_makes_nothing(lake):
    cus = customer("cus_1", START + 100)
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    newer = event("evt_new", "customer.updated", END + 500, {**cus, "email": "new@example.com"})
    older = event("evt_old", "customer.updated", START + 900, {**cus, "email": "old@example.com"})
    write_events(lake, NEXT, [newer])
    write_events(lake, DAY, [older])
    first, second = DayFigures(), DayFigures()
    deriver(lake, FakeStripe()).derive_events(NEXT, first)  # the newer day is derived first
    deriver(lake, FakeStripe()).derive_events(DAY, second)
    assert [v["email"] for v in changes_on(lake, "customers", NEXT)] == ["new@example.com"]
    assert changes_on(lake, "customers", DAY) == []
    assert (first.versions, second.versions, second.subsumed) == (1, 0, 1)


def test_event_before_listing_fetch_or_before_listing_is_subsumed(lake):
    listed = customer("cus_1", START + 100)
    unlisted = customer("cus_2", START + 5000)
    # The listing covers [START, START+1000) and was fetched at START+2000.
    write_listing(
        lake, "customers", DAY, [listed], fetched_at=START + 2000, window=(START, START + 1000)
    )
    write_events(
        lake,
        DAY,
        [
            event("evt_1", "customer.updated", START + 1500, {**listed, "name": "Old news"}),
            event(
                "evt_2", "customer.updated", START + 6000, {**unlisted, "name": "Not listed yet"}
            ),
        ],
    )
    fig = DayFigures()
    deriver(lake, FakeStripe()).derive_events(DAY, fig)
    assert changes_on(lake, "customers", DAY) == []
    assert (fig.subsumed, fig.versions) == (2, 0)


def test_unchanged_mapped_state_makes_no_version(lake):
    cus = customer("cus_1", START + 100)
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    write_events(
        lake, DAY, [event("evt_1", "customer.updated", START + 300, footer(cus, "Thank you"))]
    )
    fig = DayFigures()
    deriver(lake, FakeStripe()).derive_events(DAY, fig)
    assert changes_on(lake, "customers", DAY) == []
    assert (fig.unchanged, fig.versions) == (1, 0)


def test_same_second_events_are_refetched(lake):
    cus = customer("cus_1", START + 100)
    current = {**cus, "email": "final@example.com", "name": "Final"}
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    write_events(
        lake,
        DAY,
        [
            event("evt_a", "customer.updated", START + 300, {**cus, "email": "a@example.com"}),
            event("evt_b", "customer.updated", START + 300, {**cus, "email": "b@example.com"}),
        ],
    )
    client = FakeStripe({"cus_1": current})
    fig = DayFigures()
    deriver(lake, client).derive_events(DAY, fig)
    (version,) = changes_on(lake, "customers", DAY)
    assert {k: v for k, v in version.items() if k != "_change"} == current
    assert version["_change"]["source"] == "refetch"
    assert version["_change"]["event_id"] == "evt_b"  # the newest by the rule (id breaks the tie)
    assert version["_change"]["time"] == START + 300
    assert client.calls == [("retrieve", "customers", "cus_1")]
    assert fig.refetched == 1


def test_event_at_another_api_version_is_refetched(lake):
    cus = customer("cus_1", START + 100)
    current = {**cus, "email": "pinned@example.com"}
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    old_shape = {**cus, "email": "pinned@example.com", "sources": {"data": []}}
    write_events(
        lake, DAY, [event("evt_1", "customer.updated", START + 300, old_shape, OLD_VERSION)]
    )
    client = FakeStripe({"cus_1": current})
    deriver(lake, client).derive_events(DAY, DayFigures())
    (version,) = changes_on(lake, "customers", DAY)
    assert "sources" not in version  # the pinned rendering, not the event's
    assert version["email"] == "pinned@example.com"
    assert client.calls == [("retrieve", "customers", "cus_1")]


def test_deleted_makes_a_tombstone_without_a_request(lake):
    cus = customer("cus_1", START + 100)
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    write_events(
        lake,
        DAY,
        [
            event("evt_1", "customer.updated", START + 300, {**cus, "name": "Last"}),
            event("evt_2", "customer.deleted", START + 300, {**cus, "name": "Last"}),
        ],
    )
    client = FakeStripe()
    fig = DayFigures()
    deriver(lake, client).derive_events(DAY, fig)
    (tomb,) = changes_on(lake, "customers", DAY)
    assert tomb["name"] == "Last" and tomb["id"] == "cus_1"
    assert tomb["_change"]["deleted"] is True
    assert tomb["_change"]["event_type"] == "customer.deleted"
    assert client.calls == []
    assert (fig.tombstones, fig.versions) == (1, 0)


def test_refetch_404_makes_a_tombstone_of_the_payload(lake):
    cus = customer("cus_1", START + 100)
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    payload = {**cus, "name": "Gone"}
    write_events(lake, DAY, [event("evt_1", "customer.updated", START + 300, payload, OLD_VERSION)])
    fig = DayFigures()
    deriver(lake, FakeStripe()).derive_events(DAY, fig)
    (tomb,) = changes_on(lake, "customers", DAY)
    assert tomb["name"] == "Gone" and tomb["_change"]["deleted"] is True
    assert tomb["_change"]["source"] == "refetch"
    assert fig.tombstones == 1


def test_object_created_before_the_start_date_gets_versions(lake):
    old_created = int(dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp())
    cus = customer("cus_old", old_created)
    write_events(lake, DAY, [event("evt_1", "customer.updated", START + 300, cus)])
    fig = DayFigures()
    deriver(lake, FakeStripe()).derive_events(DAY, fig)
    assert [v["id"] for v in changes_on(lake, "customers", DAY)] == ["cus_old"]


def test_state_store_rebuilds_from_the_changes_layer(lake):
    cus = customer("cus_1", START + 100)
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    write_events(
        lake,
        NEXT,
        [event("evt_new", "customer.updated", END + 500, {**cus, "email": "new@example.com"})],
    )
    write_events(
        lake,
        DAY,
        [event("evt_old", "customer.updated", START + 900, {**cus, "email": "x@example.com"})],
    )
    deriver(lake, FakeStripe()).derive_events(NEXT, DayFigures())
    versions = f"{STATE_ROOT}/customers/versions/{DAY.isoformat()}.json"
    assert lake.read_json(versions)["objects"]["cus_1"][0] == END + 500
    shutil.rmtree(lake.local_path(STATE_ROOT))
    fig = DayFigures()
    deriver(lake, FakeStripe()).derive_events(DAY, fig)
    # Rebuilt from changes/…: the older event is still known to be older than the version.
    assert (fig.subsumed, fig.versions) == (1, 0)
    assert lake.read_json(versions)["objects"]["cus_1"][0] == END + 500


def test_listing_index_is_built_once(lake, monkeypatch):
    cus = customer("cus_1", START + 100)
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    # No version from this one (only the footer changed): the listing index is built for it.
    write_events(lake, DAY, [event("evt_1", "customer.updated", START + 300, footer(cus, "x"))])
    first = DayFigures()
    deriver(lake, FakeStripe()).derive_events(DAY, first)
    assert first.unchanged == 1
    write_events(
        lake,
        NEXT,
        [event("evt_2", "customer.updated", END + 300, {**cus, "name": "C"})],
    )
    import stripe_aep.stripe.changes as changes

    opened = []
    real = changes.read_objects

    def spy(lake_, raw):
        opened.append(raw.path)
        return real(lake_, raw)

    monkeypatch.setattr(changes, "read_objects", spy)
    second = DayFigures()
    deriver(lake, FakeStripe()).derive_events(NEXT, second)
    assert second.versions == 1  # compared with the listing's hash, from the index
    # Only the events file of the new day: no listing file is decompressed again.
    assert opened == [f"stripe/events/{NEXT.isoformat()}/{END}-{END + 86400}.jsonl.zst"]


def test_a_window_whose_state_is_locked_elsewhere_is_left_for_the_next_run(lake):
    from stripe_aep.locks import hold_partitions

    cus = customer("cus_1", START + 100)
    write_listing(lake, "customers", DAY, [cus], fetched_at=START + 200)
    write_events(lake, NEXT, [event("evt_1", "customer.updated", END + 300, {**cus, "name": "B"})])
    fig = DayFigures()
    # Another run holds the state of the object's created day (its listing is running, say).
    with hold_partitions(lake, "state", "customers", [DAY], run_id="other", wait_seconds=0):
        d = ChangeDeriver(
            FakeStripe(), lake, "customers", run_id="me", start_date=START_DATE, lock_wait=0.3
        )
        d.derive_events(NEXT, fig)
    assert fig.deferred_windows == 1 and fig.versions == 0
    assert RawPartition(lake, "customers", NEXT, layer="changes").files() == []
    later = DayFigures()
    deriver(lake, FakeStripe()).derive_events(NEXT, later)
    assert later.versions == 1 and later.deferred_windows == 0


def test_reread_leaves_the_tombstone_of_an_object_still_listed(lake):
    sub = {"id": "sub_1", "object": "subscription", "created": START + 10, "status": "active"}
    canceled = {**sub, "status": "canceled"}
    write_listing(lake, "subscriptions", DAY, [sub], fetched_at=END)
    write_events(
        lake,
        NEXT,
        [event("evt_1", "customer.subscription.deleted", END + 300, canceled)],
    )
    client = FakeStripe({"sub_1": canceled})  # status=all still lists it
    fig = DayFigures()
    deriver(lake, client, "subscriptions").derive_events(NEXT, fig)
    assert fig.tombstones == 1
    figures: dict[str, DayFigures] = {}
    deriver(lake, client, "subscriptions", clock=lambda: END + 9000).reread_days([DAY], figures)
    assert (figures[DAY.isoformat()].versions, figures[DAY.isoformat()].unchanged) == (0, 1)
    assert changes_on(lake, "subscriptions", DAY) == []


# -- balance transactions ------------------------------------------------------------------------


def bt(tid: str, created: int, status: str, available_on: int) -> dict:
    return {
        "id": tid,
        "object": "balance_transaction",
        "created": created,
        "available_on": available_on,
        "status": status,
        "amount": 1000,
        "currency": "usd",
        "fee": 30,
        "net": 970,
        "type": "charge",
        "source": "ch_1",
        "reporting_category": "charge",
    }


def test_bt_reread_costs_nothing_when_nothing_is_due(lake):
    listed = [
        bt("txn_1", START + 10, "pending", END + 86400),
        bt("txn_2", START + 20, "available", START),
    ]
    write_listing(lake, "balance_transactions", DAY, listed, fetched_at=START + 100)
    client = FakeStripe({o["id"]: o for o in listed})
    fig = DayFigures()
    d = deriver(lake, client, "balance_transactions", clock=lambda: END + 3600)
    d.reread_balance_transactions([DAY], DAY, fig)
    assert client.calls == [] and fig.bt_reread_requests == 0
    summary = lake.read_json(f"{STATE_ROOT}/balance_transactions/pending.json")
    assert summary["days"][DAY.isoformat()]["pending"] == {"txn_1": [START + 10, END + 86400]}


def test_bt_reread_lists_one_window_per_cluster(lake, monkeypatch):
    due_on = START + 50_000
    listed = [
        bt("txn_a1", START + 100, "pending", due_on),
        bt("txn_a2", START + 400, "pending", due_on),
        bt("txn_b1", START + 30_000, "pending", due_on),
        bt("txn_c", START + 40_000, "pending", END + 10 * 86400),  # not due
        bt("txn_d", START + 45_000, "available", START),
    ]
    write_listing(lake, "balance_transactions", DAY, listed, fetched_at=START + 46_000)
    now_state = {o["id"]: dict(o) for o in listed}
    for tid in ("txn_a1", "txn_b1"):
        now_state[tid]["status"] = "available"  # txn_a2 is still pending (Stripe may lag)
    client = FakeStripe(now_state)
    clock = [START + 60_000]
    target = NEXT
    fig = DayFigures()
    d = deriver(lake, client, "balance_transactions", clock=lambda: clock[0])
    d.reread_balance_transactions([target], target, fig)
    assert [c[2:] for c in client.calls] == [
        (START + 100, START + 401),
        (START + 30_000, START + 30_001),
    ]
    assert fig.bt_reread_requests == 2
    assert fig.bt_became_available == 2
    versions = {v["id"]: v for v in changes_on(lake, "balance_transactions", target)}
    assert set(versions) == {"txn_a1", "txn_b1"}
    assert versions["txn_a1"]["status"] == "available"
    assert versions["txn_a1"]["_change"] == {
        "time": due_on,
        "event_id": None,
        "event_type": BT_AVAILABLE,
        "source": "reread",
        "deleted": False,
    }
    (file,) = RawPartition(lake, "balance_transactions", target, layer="changes").files()
    assert file.refresh is not None and (file.gte, file.lt) == day_bounds(target)
    # Next run: only txn_a2 is still due, its window alone is listed; then nothing is left.
    client.calls.clear()
    client.objects["txn_a2"]["status"] = "available"
    fig2 = DayFigures()
    d2 = deriver(lake, client, "balance_transactions", clock=lambda: clock[0] + 900)
    d2.reread_balance_transactions([target], target, fig2)
    assert [c[2:] for c in client.calls] == [(START + 400, START + 401)]
    assert fig2.bt_became_available == 1
    client.calls.clear()
    fig3 = DayFigures()
    d3 = deriver(lake, client, "balance_transactions", clock=lambda: clock[0] + 1800)
    d3.reread_balance_transactions([target], target, fig3)
    assert client.calls == [] and fig3 == DayFigures()


def test_bt_clusters():
    assert bt_clusters([]) == []
    assert bt_clusters([5, 10, 5000]) == [(5, 11), (5000, 5001)]
    # never across a UTC day
    assert bt_clusters([END - 10, END + 10]) == [(END - 10, END - 9), (END + 10, END + 11)]


# -- the reread mode -----------------------------------------------------------------------------


def test_reread_emits_only_changed_objects_and_tombstones(lake):
    same = customer("cus_same", START + 10)
    edited = customer("cus_edit", START + 20)
    cosmetic = customer("cus_cosmetic", START + 30)
    gone = customer("cus_gone", START + 40)
    write_listing(lake, "customers", DAY, [same, edited, cosmetic, gone], fetched_at=END + 10)
    now = {
        "cus_same": same,
        "cus_edit": {**edited, "email": "edited@example.com"},
        "cus_cosmetic": footer(cosmetic, "New footer"),
        "cus_new": customer("cus_new", START + 50),  # not listed before: the listing's business
    }
    client = FakeStripe(now)
    fetch = END + 5000
    figures: dict[str, DayFigures] = {}
    deriver(lake, client, clock=lambda: fetch).reread_days([DAY], figures)
    rows = {v["id"]: v for v in changes_on(lake, "customers", DAY)}
    assert set(rows) == {"cus_edit", "cus_gone"}
    assert rows["cus_edit"]["email"] == "edited@example.com"
    assert rows["cus_edit"]["_change"] == {
        "time": fetch,
        "event_id": None,
        "event_type": "reread",
        "source": "reread",
        "deleted": False,
    }
    assert rows["cus_gone"]["_change"]["deleted"] is True
    assert rows["cus_gone"]["email"] == gone["email"]  # the last known state
    fig = figures[DAY.isoformat()]
    assert (fig.versions, fig.tombstones, fig.unchanged) == (1, 1, 2)
    # A second re-read finds nothing new: the tombstone and the edit are the latest known rows.
    figures2: dict[str, DayFigures] = {}
    deriver(lake, client, clock=lambda: fetch + 100).reread_days([DAY], figures2)
    assert len(changes_on(lake, "customers", DAY)) == 2
    assert (figures2[DAY.isoformat()].versions, figures2[DAY.isoformat()].tombstones) == (0, 0)
    meta = json.loads(
        lake.read_bytes(RawPartition(lake, "customers", DAY, layer="changes").files()[0].meta_path)
    )
    assert meta["source"] == "reread"


def test_reread_in_the_listings_own_second_still_makes_a_later_version(lake):
    cus = customer("cus_1", START + 10)
    write_listing(lake, "customers", DAY, [cus], fetched_at=END + 50)
    client = FakeStripe({"cus_1": {**cus, "email": "changed@example.com"}})
    figures: dict[str, DayFigures] = {}
    deriver(lake, client, clock=lambda: END + 50).reread_days([DAY], figures)
    (row,) = changes_on(lake, "customers", DAY)
    assert row["email"] == "changed@example.com"
    assert row["_change"]["time"] == END + 51  # after the listing row: never a tie


def test_a_dispute_opened_on_a_charge_makes_a_version_of_the_charge_refetched(tmp_path):
    """`charge.dispute.created` carries the dispute, not the charge: the charge it names is
    re-fetched (its `disputed` is now true) and becomes a version; an older dispute of a charge
    listed after it makes none (the listing saw it)."""
    lake = Lake(str(tmp_path))
    listed = {
        "id": "ch_1",
        "object": "charge",
        "created": START + 10,
        "amount": 1000,
        "currency": "usd",
        "status": "succeeded",
        "disputed": False,
        "livemode": False,
    }
    late = {**listed, "id": "ch_2", "created": START + 20}
    # Both listed at START + 3000: after ch_2's dispute (subsumed), before ch_1's.
    write_listing(lake, "charges", DAY, [listed, late], fetched_at=START + 3000)
    dispute = {"id": "dp_1", "object": "dispute", "charge": "ch_1", "created": START + 5000}
    older = {"id": "dp_2", "object": "dispute", "charge": "ch_2", "created": START + 2000}
    write_events(
        lake,
        DAY,
        [
            event("evt_d1", "charge.dispute.created", START + 5000, dispute),
            event("evt_d2", "charge.dispute.created", START + 2000, older),
        ],
    )
    client = FakeStripe({"ch_1": {**listed, "disputed": True}, "ch_2": {**late, "disputed": True}})
    figures = DayFigures()
    deriver(lake, client, resource="charges").derive_events(DAY, figures)
    [version] = changes_on(lake, "charges", DAY)
    assert version["id"] == "ch_1" and version["disputed"] is True
    assert version["_change"]["event_type"] == "charge.dispute.created"
    assert version["_change"]["source"] == "refetch"
    assert version["_change"]["time"] == START + 5000
    assert sorted(c[2] for c in client.calls if c[0] == "retrieve") == ["ch_1", "ch_2"]
    assert (figures.versions, figures.subsumed, figures.refetched) == (1, 1, 2)
