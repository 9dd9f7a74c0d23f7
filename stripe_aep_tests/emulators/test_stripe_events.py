"""The living emulated account: mutations over time, their events, and `GET /v1/events`."""
# ruff: noqa: F811  (pytest fixtures are imported from stripe_fixtures and used as arguments)

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict

import pytest
import requests

from stripe_aep.catalog import STRIPE_RESOURCES
from stripe_aep.emulators.stripe_account import StripeAccount
from stripe_aep.emulators.stripe_api import StripeEmulator
from stripe_aep.emulators.stripe_events import (
    EVENT_RESOURCES,
    dump_object,
    parse_version_history,
    previous_attributes,
)
from stripe_aep.specs import stripe as stripe_specs
from stripe_aep_tests.emulators.stripe_fixtures import HEADERS, day_bounds

START = dt.date(2026, 3, 1)
DAYS = 3
WINDOW_START, _ = day_bounds(START)
WINDOW_END = WINDOW_START + DAYS * 86_400
#: One hour after the window: every event is within Stripe's 30 days.
NOW = WINDOW_END + 3600
OLD, NEW = "2026-06-24.dahlia", "2026-07-29.dahlia"
CREATION = {r.name: set(r.creation_types) for r in STRIPE_RESOURCES if r.has_events}
OBJECT_RESOURCE = {r.object_name: r.name for r in STRIPE_RESOURCES}


def make(**overrides) -> StripeAccount:
    arguments = dict(seed=5, start=START, days=DAYS, charges_per_day=300, clock=lambda: NOW)
    arguments.update(overrides)
    return StripeAccount(**arguments)


@pytest.fixture(scope="module")
def account() -> StripeAccount:
    return make()


@pytest.fixture(scope="module")
def all_events(account) -> list[dict]:
    """Every event `GET /v1/events` serves, the charges' PaymentIntent events included."""
    return account.events()


@pytest.fixture(scope="module")
def events(all_events) -> list[dict]:
    """The events of the catalog's objects (the PaymentIntent events aside)."""
    return [e for e in all_events if e["data"]["object"]["object"] != "payment_intent"]


def _list(emulator: StripeEmulator, params=None, headers=None) -> requests.Response:
    return requests.get(
        emulator.url + "/v1/events", params=params, headers=headers or HEADERS, timeout=30
    )


def _page_all(emulator, params: dict, limit: int, backwards: bool = False) -> list[dict]:
    """Every event by cursor paging: `starting_after` (or `ending_before` from the oldest)."""
    collected: list[dict] = []
    cursor = None
    while True:
        query = {**params, "limit": limit}
        if cursor:
            query["ending_before" if backwards else "starting_after"] = cursor
        response = _list(emulator, query)
        assert response.status_code == 200, response.text
        body = response.json()
        data = body["data"]
        if backwards:
            collected = data + collected
            cursor = data[0]["id"] if data else None
        else:
            collected += data
            cursor = data[-1]["id"] if data else None
        if not body["has_more"]:
            return collected


# ---- events for every creation, update and deletion -----------------------------------------


def test_every_object_has_one_creation_event_of_its_type(account, events):
    created = defaultdict(list)
    pending = set()
    for event in reversed(events):
        obj = event["data"]["object"]
        resource = OBJECT_RESOURCE[obj["object"]]
        if event["type"] == "charge.succeeded" and event["created"] > obj["created"]:
            assert obj["id"] in pending  # a pending charge's success: an update
            continue
        if event["type"] in CREATION[resource]:
            assert event["created"] == obj["created"]
            created[resource].append(obj["id"])
            if event["type"] == "charge.pending":
                pending.add(obj["id"])
    assert pending
    deleted = {
        e["data"]["object"]["id"]
        for e in events
        if e["type"] in ("customer.deleted", "price.deleted")
    }
    for resource in EVENT_RESOURCES:
        ids = created[resource]
        assert len(ids) == len(set(ids)), resource
        assert set(ids) == set(account.ids(resource)) | {i for i in deleted if i in ids}, resource
        assert set(account.ids(resource)) <= set(ids)
    failed = {c["id"] for c in account.objects("charges") if c["status"] == "failed"}
    charge_types = {e["data"]["object"]["id"]: e["type"] for e in events
                    if e["type"] in CREATION["charges"]}  # fmt: skip
    assert failed and all(charge_types[i] == "charge.failed" for i in failed)
    assert "charge.succeeded" in charge_types.values()
    assert not any(e["data"]["object"]["object"] == "balance_transaction" for e in events)


def test_mutations_are_a_modest_share_and_cover_every_kind(account, events):
    kinds = Counter(e["type"] for e in events)
    for kind in ("charge.refunded", "charge.captured",
                 "customer.subscription.updated", "customer.subscription.deleted",
                 "customer.updated", "customer.deleted", "charge.dispute.created",
                 "charge.dispute.funds_withdrawn", "invoice.created",
                 "invoice.finalized", "invoice.paid", "invoice.payment_failed",
                 "invoice.voided", "invoice.marked_uncollectible"):  # fmt: skip
        assert kinds[kind], kind
    # A dispute flips its charge's `disputed` without a `charge.updated` (planned ones emit none).
    assert not kinds["charge.updated"]
    objects = sum(account.total(r) for r in EVENT_RESOURCES if r != "invoices")
    creations = {t for types in CREATION.values() for t in types}
    mutations = sum(n for kind, n in kinds.items()
                    if kind not in creations and not kind.startswith("invoice."))  # fmt: skip
    assert mutations < 0.2 * objects  # refunds dominate: ~15% of charges get one or two
    # An invoice lives through a few steps: finalized, then paid / failed / voided / ...
    steps = (
        sum(n for kind, n in kinds.items() if kind.startswith("invoice."))
        - kinds["invoice.created"]
    )
    assert kinds["invoice.created"] == account.total("invoices")
    assert account.total("invoices") <= steps <= 4 * account.total("invoices")
    assert kinds["charge.refunded"] == account.total("refunds")  # one per refund


def test_newest_event_of_each_object_is_its_current_state(account, events):
    """Replaying the events ends at the state the list endpoints serve (compared where the
    newest event renders at the newest version, which the account is generated in)."""
    newest: dict[str, list[dict]] = {}  # the events of each object's newest second
    for event in reversed(events):  # oldest first
        tied = newest.setdefault(event["data"]["object"]["id"], [])
        if tied and tied[0]["created"] < event["created"]:
            tied.clear()
        tied.append(event)
    # A charge's `disputed` turns true with its dispute's `charge.dispute.created` (an event of
    # the dispute), so its own newest event shows it undisputed.
    disputed = {e["data"]["object"]["charge"] for e in events
                if e["type"] == "charge.dispute.created"}  # fmt: skip
    compared = 0
    for object_id, tied in newest.items():
        obj = tied[0]["data"]["object"]
        resource = OBJECT_RESOURCE[obj["object"]]
        current = account.current(resource, object_id)
        if any(e["type"] in ("customer.deleted", "price.deleted") for e in tied):
            assert object_id not in account.ids(resource)
            continue
        newer = stripe_specs.fields_newer_than(obj["object"], tied[0]["api_version"])
        expected = {k: v for k, v in current.items() if k not in newer}
        if object_id in disputed:
            assert expected["disputed"] is True and obj["disputed"] is False
            expected["disputed"] = False
        # Several events in one second: their order is not Stripe's to give; one is the last.
        assert expected in [e["data"]["object"] for e in tied], (tied[0]["type"], object_id)
        compared += 1
    assert compared > 1000


def test_creation_events_show_the_object_as_it_was_created(events):
    by_object = defaultdict(list)
    for event in reversed(events):
        by_object[event["data"]["object"]["id"]].append(event)
    refunded = [evts for evts in by_object.values() if evts[-1]["type"] == "charge.refunded"]
    assert refunded
    for history in refunded:
        first = history[0]["data"]["object"]
        assert first["amount_refunded"] == 0 and first["refunded"] is False
        assert history[-1]["data"]["object"]["amount_refunded"] > 0
        totals = [e["data"]["object"]["amount_refunded"] for e in history[1:]]
        assert totals == sorted(totals)  # each refund adds to the total
        assert "previous_attributes" not in history[-1]["data"]  # not a *.updated event
    canceled = [h for h in by_object.values() if h[-1]["type"] == "customer.subscription.deleted"]
    assert canceled
    for history in canceled:
        assert history[0]["type"] == "customer.subscription.created"
        assert history[0]["data"]["object"]["status"] in ("active", "trialing", "incomplete")
        (deletion,) = [e for e in history if e["type"] == "customer.subscription.deleted"]
        (update,) = [
            e for e in history if e["created"] == deletion["created"] and e is not deletion
        ]
        assert update["type"] == "customer.subscription.updated"  # the same second
        assert update["data"]["object"]["status"] in ("canceled", "incomplete_expired")
        before = [e for e in history if e["created"] < deletion["created"]][-1]
        assert update["data"]["previous_attributes"]["status"] == before["data"]["object"]["status"]
        assert deletion["data"]["object"] == update["data"]["object"]


def test_updated_events_carry_previous_attributes(events):
    updates = [e for e in events if e["type"].endswith(".updated")]
    assert updates
    by_object = defaultdict(list)
    for event in reversed(events):
        by_object[event["data"]["object"]["id"]].append(event)
    for history in by_object.values():
        seconds = Counter(e["created"] for e in history)
        for before, after in zip(history, history[1:], strict=False):
            # Compare consecutive states only where the order is certain (no tie in a second).
            if (
                not after["type"].endswith(".updated")
                or before["api_version"] != after["api_version"]
                or seconds[before["created"]] > 1
                or seconds[after["created"]] > 1
            ):
                continue
            previous = after["data"]["previous_attributes"]
            assert previous, after["id"]
            old, new = before["data"]["object"], after["data"]["object"]
            changed = {k for k in new if old.get(k) != new.get(k)}
            assert set(previous) == changed, after["id"]
            assert previous == previous_attributes(old, {k: new[k] for k in changed})
    for event in events:
        if not event["type"].endswith(".updated"):
            assert "previous_attributes" not in event["data"]


def test_previous_attributes_of_a_hash_show_only_its_changed_keys():
    old = {"metadata": {"a": "1", "b": "2"}, "email": "x@example.com", "address": None}
    new = {"metadata": {"a": "1", "b": "3", "c": "4"}, "email": "y@example.com",
           "address": {"city": "Berlin"}}  # fmt: skip
    assert previous_attributes(old, new) == {
        "metadata": {"b": "2", "c": None},
        "email": "x@example.com",
        "address": None,
    }


def test_some_mutations_tie_with_another_event_of_the_object_and_some_come_days_later(events):
    by_object = defaultdict(list)
    for event in events:
        by_object[event["data"]["object"]["id"]].append(event)
    ties = [h for h in by_object.values() if len({e["created"] for e in h}) < len(h)]
    assert len(ties) >= 10
    late = [
        h for h in by_object.values()
        if h[0]["created"] - min(e["created"] for e in h) >= 86_400
    ]  # fmt: skip
    assert late


# ---- GET /v1/events --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(account):
    with StripeEmulator(account, rate_limit_rps=0) as running:
        yield running


def test_list_is_newest_first_and_matches_the_ground_truth(emulator, all_events):
    first = _list(emulator, {"limit": 100}).json()
    assert first["object"] == "list" and first["url"] == "/v1/events" and first["has_more"]
    assert first["data"] == all_events[:100]
    keys = [(e["created"], e["id"]) for e in all_events]
    assert keys == sorted(keys, reverse=True)
    event = first["data"][0]
    assert list(event) == ["id", "object", "api_version", "created", "data", "livemode",
                           "pending_webhooks", "request", "type"]  # fmt: skip
    assert event["object"] == "event" and event["livemode"] is False
    assert event["pending_webhooks"] == 0
    assert event["request"] == {"id": None, "idempotency_key": None}
    one = requests.get(emulator.url + f"/v1/events/{event['id']}", headers=HEADERS, timeout=30)
    assert one.json() == event


def test_paging_across_same_second_ties_returns_every_event_exactly_once(emulator, all_events):
    seconds = Counter(e["created"] for e in all_events)
    assert max(seconds.values()) >= 150  # a cluster of charges: ties straddle pages
    forward = _page_all(emulator, {}, limit=37)
    assert [e["id"] for e in forward] == [e["id"] for e in all_events]
    oldest = all_events[-1]["id"]
    newer = _page_all(emulator, {"ending_before": oldest}, limit=53, backwards=True)
    assert [e["id"] for e in newer] == [e["id"] for e in all_events[:-1]]


def test_created_filters_select_the_window(emulator, all_events, account):
    second = all_events[len(all_events) // 2]["created"]
    cases = {
        "created[gte]": lambda c: c >= second,
        "created[gt]": lambda c: c > second,
        "created[lte]": lambda c: c <= second,
        "created[lt]": lambda c: c < second,
        "created": lambda c: c == second,
    }
    for param, keep in cases.items():
        got = _page_all(emulator, {param: second}, limit=100)
        assert [e["id"] for e in got] == [e["id"] for e in all_events if keep(e["created"])], param
    window = account.events(gte=second, lt=second + 3600)
    assert window == [e for e in all_events if second <= e["created"] < second + 3600]


def test_types_are_exact_and_the_wildcard_matches_deeper_names(emulator, events):
    exact = _page_all(emulator, {"types[]": ["customer.created", "customer.updated",
                                             "customer.deleted"]}, limit=100)  # fmt: skip
    assert exact and {e["type"] for e in exact} == {
        "customer.created", "customer.updated", "customer.deleted"}  # fmt: skip
    assert [e["id"] for e in exact] == [
        e["id"] for e in events if e["type"] in ("customer.created", "customer.updated",
                                                 "customer.deleted")]  # fmt: skip
    wildcard = _page_all(emulator, {"type": "customer.*"}, limit=100)
    assert {e["type"] for e in wildcard} >= {
        "customer.created",
        "customer.subscription.created",
        "customer.subscription.updated",
    }
    assert [e["id"] for e in wildcard] == [
        e["id"] for e in events if e["type"].startswith("customer.")
    ]
    one = _page_all(emulator, {"type": "charge.refunded"}, limit=100)
    assert [e["id"] for e in one] == [e["id"] for e in events if e["type"] == "charge.refunded"]
    indexed = _page_all(emulator, {"types[0]": "price.created", "types[1]": "refund.created"}, 100)
    assert {e["type"] for e in indexed} == {"price.created", "refund.created"}


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        ({"types[]": [f"charge.t{i}" for i in range(21)]}, "types", "at most 20"),
        ({"type": "charge.*", "types[]": "charge.updated"}, "types", "either type or types"),
        ({"limit": 0}, "limit", "between 1 and 100"),
        ({"limit": 101}, "limit", "between 1 and 100"),
        ({"created[gte]": "yesterday"}, "created[gte]", "Invalid integer"),
        ({"starting_after": "evt_nope"}, "starting_after", "No such event"),
        ({"starting_after": "evt_a", "ending_before": "evt_b"}, "ending_before", "only specify"),
        ({"object": "charge"}, "object", "unknown parameter"),
        ({"delivery_success": "maybe"}, "delivery_success", "Invalid boolean"),
    ],
)
def test_bad_event_queries_get_stripes_400(emulator, params, param, message):
    response = _list(emulator, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert message in error["message"]


def test_twenty_types_are_accepted(emulator):
    types = [f"charge.t{i}" for i in range(19)] + ["price.created"]
    body = _list(emulator, {"types[]": types, "limit": 100}).json()
    assert body["data"] and {e["type"] for e in body["data"]} == {"price.created"}


def test_delivery_success(emulator, events):
    assert _list(emulator, {"delivery_success": "false"}).json()["data"] == []
    assert _list(emulator, {"delivery_success": "true", "limit": 5}).json()["data"] == events[:5]


# ---- API versions ------------------------------------------------------------------------------


def test_events_render_at_their_own_version_not_the_requests(emulator, events, account):
    switch = WINDOW_START + (DAYS // 2) * 86_400  # default: the older version before mid-account
    refunds = [e for e in events if e["type"] == "refund.created"]
    old = [e for e in refunds if e["created"] < switch]
    new = [e for e in refunds if e["created"] >= switch]
    assert old and new
    assert all(e["api_version"] == OLD and "customer" not in e["data"]["object"] for e in old)
    assert all(e["api_version"] == NEW and "customer" in e["data"]["object"] for e in new)
    # The request's Stripe-Version does not change an event...
    for version in (OLD, NEW):
        body = _list(emulator, {"type": "refund.created", "limit": 100},
                     {**HEADERS, "Stripe-Version": version}).json()  # fmt: skip
        assert body["data"] == refunds[:100]
    # ...while the list endpoints render at it.
    refund_id = old[0]["data"]["object"]["id"]
    for version, has_customer in ((OLD, False), (NEW, True)):
        got = requests.get(emulator.url + f"/v1/refunds/{refund_id}",
                           headers={**HEADERS, "Stripe-Version": version}, timeout=30).json()  # fmt: skip
        assert ("customer" in got) is has_customer


def test_event_api_versions_are_an_account_option():
    pinned = make(charges_per_day=40, event_api_versions=[(0, NEW)])
    assert {e["api_version"] for e in pinned.events()} == {NEW}
    switched = make(charges_per_day=40, event_api_versions=[(0, OLD), ("2026-03-03", NEW)])
    third_day = WINDOW_START + 2 * 86_400
    assert all(
        e["api_version"] == (NEW if e["created"] >= third_day else OLD) for e in switched.events()
    )
    with pytest.raises(ValueError, match="not a Stripe API version"):
        make(charges_per_day=10, event_api_versions=[(0, "2026-13-01.nope")])
    with pytest.raises(ValueError, match="newer than the newest vendored"):
        make(charges_per_day=10, event_api_versions=[(0, "2026-10-28.endive")])


def test_event_api_versions_option_text():
    assert parse_version_history("2026-06-24.dahlia,2026-07-29.dahlia@2026-03-03") == [
        (0, OLD),
        ("2026-03-03", NEW),
    ]
    assert parse_version_history(f"{NEW}@1772496000") == [(1772496000, NEW)]
    with pytest.raises(ValueError, match="VERSION@YYYY-MM-DD"):
        parse_version_history(f"{NEW}@yesterday")


# ---- retention -------------------------------------------------------------------------------


def test_only_the_last_30_days_of_events_are_served():
    start = dt.date(2026, 1, 1)
    first, _ = day_bounds(start)
    now = first + 40 * 86_400 + 1800
    account = StripeAccount(seed=3, start=start, days=40, charges_per_day=10, clock=lambda: now)
    served = account.events()
    everything = account.events(include_expired=True)
    cutoff = now - 30 * 86_400
    assert served == [e for e in everything if e["created"] >= cutoff]
    assert len(everything) > len(served) > 0
    expired = next(e for e in everything if e["created"] < cutoff)
    with StripeEmulator(account, rate_limit_rps=0) as emulator:
        assert _page_all(emulator, {}, limit=100) == served
        old = _list(emulator, {"created[lt]": cutoff}).json()
        assert old["data"] == [] and old["has_more"] is False
        gone = requests.get(emulator.url + f"/v1/events/{expired['id']}", headers=HEADERS,
                            timeout=30)  # fmt: skip
        assert gone.status_code == 404
        assert _list(emulator, {"starting_after": expired["id"]}).status_code == 400


# ---- deletions ----------------------------------------------------------------------------------


def test_deleted_customer_vanishes_from_lists_and_retrieves_as_a_stub():
    account = make(charges_per_day=60)
    with StripeEmulator(account, rate_limit_rps=0) as emulator:
        subscribed = account.objects("subscriptions", lt=WINDOW_START + 86_400)
        live = next(s for s in subscribed if s["status"] in ("active", "trialing", "past_due"))
        customer_id = live["customer"]
        before = account.current("customers", customer_id)
        event_ids = account.mutate("customers", customer_id, "delete")
        listed = requests.get(emulator.url + "/v1/customers", params={"limit": 100},
                              headers=HEADERS, timeout=30).json()  # fmt: skip
        assert customer_id not in {c["id"] for c in listed["data"]}
        assert customer_id not in account.ids("customers")
        stub = requests.get(emulator.url + f"/v1/customers/{customer_id}", headers=HEADERS,
                            timeout=30)  # fmt: skip
        assert stub.status_code == 200
        assert stub.json() == {"id": customer_id, "object": "customer", "deleted": True}
        assert account.current("customers", customer_id) == stub.json()
        events = {e["id"]: e for e in account.events()}
        deletion = events[event_ids[-1]]
        assert deletion["type"] == "customer.deleted" and deletion["created"] == int(NOW)
        assert deletion["data"]["object"] == before
        # Deleting a customer cancels its active subscriptions (Stripe's documented behaviour).
        ended = [events[i] for i in event_ids[:-1]]
        assert [e["type"] for e in ended][:2] == [
            "customer.subscription.updated", "customer.subscription.deleted"]  # fmt: skip
        assert account.current("subscriptions", live["id"])["status"] == "canceled"


def test_deleted_price_vanishes_and_retrieves_as_404():
    account = make(charges_per_day=60)
    price_id = account.objects("prices")[0]["id"]
    (event_id,) = account.mutate("prices", price_id, "delete")
    assert account.current("prices", price_id) is None
    with StripeEmulator(account, rate_limit_rps=0) as emulator:
        for active in ("true", "false"):
            listed = requests.get(emulator.url + "/v1/prices",
                                  params={"limit": 100, "active": active}, headers=HEADERS,
                                  timeout=30).json()  # fmt: skip
            assert price_id not in {p["id"] for p in listed["data"]}
        missing = requests.get(emulator.url + f"/v1/prices/{price_id}", headers=HEADERS,
                               timeout=30)  # fmt: skip
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "resource_missing"
    assert account.events()[0]["id"] == event_id
    assert account.events()[0]["type"] == "price.deleted"


# ---- mutate ------------------------------------------------------------------------------------


def test_mutate_applies_now_and_records_the_events():
    account = make()
    customer = account.objects("customers")[5]
    (event_id,) = account.mutate("customers", customer["id"], "update",
                                 email="new@example.com", metadata={"tier": "gold"})  # fmt: skip
    event = account.events()[0]
    assert event["id"] == event_id and event["type"] == "customer.updated"
    assert event["created"] == int(NOW) and event["api_version"] == NEW
    assert event["data"]["object"]["email"] == "new@example.com"
    assert event["data"]["previous_attributes"]["email"] == customer["email"]
    assert event["data"]["previous_attributes"]["metadata"] == {"tier": None}
    assert account.current("customers", customer["id"])["metadata"]["tier"] == "gold"

    charge = next(c for c in account.objects("charges") if c["captured"] and not c["refunded"])
    refunds_before = account.total("refunds")
    ids = account.mutate("charges", charge["id"], "refund")
    assert account.total("refunds") == refunds_before + 1
    by_id = {e["id"]: e for e in account.events()}
    assert [by_id[i]["type"] for i in ids] == ["charge.refunded", "refund.created"]
    refund = by_id[ids[1]]["data"]["object"]
    assert refund["amount"] == charge["amount"] - charge["amount_refunded"]
    txn = next(t for t in account.objects("balance_transactions") if t["source"] == refund["id"])
    assert txn["id"] == refund["balance_transaction"] and txn["status"] == "pending"
    assert account.current("charges", charge["id"])["refunded"] is True

    uncaptured = next(c for c in account.objects("charges")
                      if not c["captured"] and c["status"] == "succeeded")  # fmt: skip
    (captured,) = account.mutate("charges", uncaptured["id"], "capture")
    assert account.current("charges", uncaptured["id"])["captured"] is True
    sub = next(s for s in account.objects("subscriptions") if s["status"] == "active")
    ids = account.mutate("subscriptions", sub["id"], "cancel")
    by_id = {e["id"]: e for e in account.events()}
    assert [by_id[i]["type"] for i in ids] == [
        "customer.subscription.updated",
        "customer.subscription.deleted",
    ]
    assert by_id[ids[0]]["data"]["previous_attributes"]["status"] == "active"
    assert by_id[captured]["type"] == "charge.captured"
    assert account.current("subscriptions", sub["id"])["status"] == "canceled"
    price = next(p for p in account.objects("prices") if p["active"])
    account.mutate("prices", price["id"], "deactivate")
    assert account.current("prices", price["id"])["active"] is False

    with pytest.raises(ValueError, match="already ended"):
        account.mutate("subscriptions", sub["id"], "cancel")
    with pytest.raises(ValueError, match="unknown mutation"):
        account.mutate("customers", customer["id"], "explode")
    with pytest.raises(ValueError, match="no events"):
        account.mutate("balance_transactions", txn["id"], "update")
    with pytest.raises(LookupError):
        account.mutate("customers", "cus_doesnotexist", "update")


def test_mutate_endpoint_returns_the_event_ids():
    account = make(charges_per_day=60)
    customer = account.objects("customers")[3]["id"]
    with StripeEmulator(account, rate_limit_rps=0) as emulator:
        response = requests.post(emulator.url + "/_emulator/mutate", json={
            "resource": "customers", "id": customer, "kind": "update",
            "fields": {"name": "Ada Lovelace"}}, timeout=30)  # fmt: skip
        assert response.status_code == 200, response.text
        (event_id,) = response.json()["event_ids"]
        event = requests.get(emulator.url + f"/v1/events/{event_id}", headers=HEADERS,
                             timeout=30).json()  # fmt: skip
        assert event["type"] == "customer.updated"
        assert event["data"]["object"]["name"] == "Ada Lovelace"
        bad = requests.post(emulator.url + "/_emulator/mutate", json={
            "resource": "customers", "id": customer, "kind": "update",
            "fields": {"balance": 5}}, timeout=30)  # fmt: skip
        assert bad.status_code == 400 and "balance" in bad.json()["error"]
        missing = requests.post(emulator.url + "/_emulator/mutate", json={
            "resource": "customers", "id": "cus_nope", "kind": "delete"}, timeout=30)  # fmt: skip
        assert missing.status_code == 404


# ---- live clock --------------------------------------------------------------------------------


def test_live_clock_applies_planned_mutations_as_it_passes():
    day = dt.date(2026, 5, 10)
    start, _ = day_bounds(day)
    end = start + 3 * 86_400
    now = [start + 36 * 3600]
    growing = StripeAccount(seed=8, start=day, days=3, charges_per_day=300, live=True,
                            clock=lambda: now[0])  # fmt: skip
    finished = StripeAccount(seed=8, start=day, days=3, charges_per_day=300, live=True,
                             clock=lambda: end + 5)  # fmt: skip
    truth = finished.events()
    early = growing.events()
    assert early == [e for e in truth if e["created"] <= now[0]]
    pending = [t for t in growing.objects("balance_transactions") if t["status"] == "pending"]
    assert pending
    mutated = next(
        e for e in truth
        if e["created"] > now[0] and e["type"] == "charge.refunded"
        and e["data"]["object"]["created"] <= now[0]
    )  # fmt: skip
    charge_id = mutated["data"]["object"]["id"]
    assert (
        growing.current("charges", charge_id)["amount_refunded"]
        < mutated["data"]["object"]["amount_refunded"]
    )
    now[0] = end + 5
    assert growing.events() == truth
    assert growing.current("charges", charge_id) == finished.current("charges", charge_id)
    for resource in EVENT_RESOURCES:
        assert growing.objects(resource) == finished.objects(resource), resource
    for txn in pending:
        if txn["available_on"] <= now[0]:
            assert growing.current("balance_transactions", txn["id"])["status"] == "available"
    assert any(t["available_on"] <= now[0] for t in pending)


# ---- determinism, permissions and accounting ---------------------------------------------------


def test_same_seed_gives_the_same_events_byte_for_byte(emulator, all_events):
    again = make()
    assert json.dumps(again.events()) == json.dumps(all_events)
    with StripeEmulator(again, rate_limit_rps=0) as other:
        for params in ({"limit": 100}, {"type": "customer.*", "limit": 50}):
            assert _list(other, params).content == _list(emulator, params).content
    assert make(seed=6).events()[:50] != all_events[:50]


def test_restricted_keys_need_the_event_read_permission_and_the_log_counts_the_endpoint(account):
    without, with_events = "rk_test_51NoEventsKey000001", "rk_test_51EventsKey0000002"
    restricted = {without: {"charges"}, with_events: {"events"}}
    with StripeEmulator(account, rate_limit_rps=0, restricted_keys=restricted) as emulator:
        denied = _list(emulator, {}, {"Authorization": f"Bearer {without}"})
        assert denied.status_code == 403
        assert "rak_event_read" in denied.json()["error"]["message"]
        allowed = _list(emulator, {}, {"Authorization": f"Bearer {with_events}"})
        assert allowed.status_code == 200
        assert [r.endpoint for r in emulator.log] == ["GET /v1/events", "GET /v1/events"]
    with pytest.raises(ValueError, match="unknown resources"):
        StripeEmulator(account, restricted_keys={without: {"webhooks"}})


@pytest.mark.parametrize(
    "text",
    ["plain", "Zoë Jónsdóttir €", "emoji 😀 and \U0010ffff", "del \x7f ctrl \x01\n\t\"q\" \\ é",
     "looks escaped: \\x41 \\U0001f600 é", "ÿ\u0100\uffff"],
)  # fmt: skip
def test_dump_object_writes_exactly_what_json_dumps_writes(text):
    document = {"name": text, "nested": {"ü": [text, 1, 2.5, None, True]}}
    assert dump_object(document) == json.dumps(document, separators=(",", ":")).encode()


def test_each_charge_brings_its_payment_intent_events_only_unfiltered_or_asked(
    emulator, all_events, account
):
    """Stripe sends `payment_intent.created` and the PaymentIntent's outcome with each charge: the
    unfiltered list carries them (as busy as a real account), `types[]` only when asked."""
    charges = {c["id"]: c for c in account.objects("charges")}
    intents = [e for e in all_events if e["data"]["object"]["object"] == "payment_intent"]
    assert len(intents) == 2 * len(charges)
    by_intent: dict[str, list[dict]] = defaultdict(list)
    for event in intents:
        by_intent[event["data"]["object"]["id"]].append(event)
    kinds = Counter()
    for charge in charges.values():
        pair = by_intent[charge["payment_intent"]]
        types = {e["type"] for e in pair}
        assert "payment_intent.created" in types and len(types) == 2
        (last,) = types - {"payment_intent.created"}
        kinds[last] += 1
        if charge["status"] == "failed":
            assert last == "payment_intent.payment_failed"
        elif not charge["captured"]:  # authorized, never captured
            assert last == "payment_intent.amount_capturable_updated"
        else:  # succeeded at once, after processing, or captured after an authorization
            assert last in ("payment_intent.succeeded", "payment_intent.processing",
                            "payment_intent.amount_capturable_updated")  # fmt: skip
        for event in pair:
            intent = event["data"]["object"]
            assert event["created"] == intent["created"] == charge["created"]
            assert (intent["amount"], intent["currency"]) == (charge["amount"], charge["currency"])
    assert kinds["payment_intent.succeeded"] and kinds["payment_intent.payment_failed"]
    assert kinds["payment_intent.amount_capturable_updated"]
    # asked for alone, they come alone and in the same order; never among other types' results
    asked = _page_all(emulator, {"types[]": ["payment_intent.succeeded"]}, limit=100)
    assert [e["id"] for e in asked] == [
        e["id"] for e in intents if e["type"] == "payment_intent.succeeded"
    ]
    charge_types = [t for t in CREATION["charges"]]
    others = _page_all(emulator, {"types[]": charge_types}, limit=100)
    assert others and all(e["type"] in charge_types for e in others)
    one = requests.get(emulator.url + f"/v1/events/{asked[-1]['id']}", headers=HEADERS, timeout=30)
    assert one.json() == asked[-1]
