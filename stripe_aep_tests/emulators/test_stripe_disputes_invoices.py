"""Disputes and invoices in the emulated account, and the catalog as the emulator's one source.

Every catalog resource has its generator module and objects in the account; disputes follow their
charges (amount, currency, ids, `disputed`, balance transactions, lifecycle events); invoices follow
their subscriptions' billing periods and fates; `/v1/disputes` and `/v1/invoices` list, filter,
page, retrieve, 404 and check permissions like the other lists.
"""
# ruff: noqa: F811  (pytest fixtures are imported from stripe_fixtures and used as arguments)

from __future__ import annotations

import datetime as dt
import importlib
from collections import Counter, defaultdict

import pytest
import requests

from stripe_aep.catalog import RESOURCE_NAMES, STRIPE_RESOURCES, stripe_resource
from stripe_aep.emulators.stripe_account import StripeAccount, _add_interval
from stripe_aep.emulators.stripe_api import StripeEmulator, endpoint_of
from stripe_aep.emulators.stripe_events import EMITTED_TYPES, PAYMENT_INTENT_TYPES
from stripe_aep.xdm.resources import mapping_for
from stripe_aep_tests.emulators.stripe_fixtures import HEADERS, day_bounds, get, ids, page_all

START = dt.date(2026, 3, 1)
DAYS = 30
WINDOW_START, _ = day_bounds(START)
#: Two thirds into the window: a live account with objects and lifecycles still ahead.
NOW = WINDOW_START + 20 * 86_400
#: Stripe's dispute `reason` values, as the disputes mapping lists them (its suggested values).
DISPUTE_REASONS = set(
    next(f for f in mapping_for("disputes").resource_fields if f.name == "reason").suggested
)


def make(seed: int = 11, **overrides) -> StripeAccount:
    arguments = dict(seed=seed, start=START, days=DAYS, charges_per_day=300, live=True,
                     clock=lambda: NOW)  # fmt: skip
    arguments.update(overrides)
    return StripeAccount(**arguments)


@pytest.fixture(scope="module")
def account() -> StripeAccount:
    return make()


@pytest.fixture(scope="module")
def events(account) -> list[dict]:
    return account.events()


@pytest.fixture(scope="module")
def emulator(account):
    with StripeEmulator(account, rate_limit_rps=0) as running:
        yield running


# ---- the catalog is the emulator's source ------------------------------------------------------


def test_every_catalog_resource_has_its_generator_module_and_objects(account):
    for resource in STRIPE_RESOURCES:
        module = importlib.import_module(resource.emulator_module)
        assert callable(module.make) and module.__doc__, resource.name
        assert account.total(resource.name) > 0, resource.name
        assert all(i.startswith(resource.id_prefix) for i in account.ids(resource.name))
        assert account.index(resource.name).columns.keys() == set(resource.list_filters)
    assert set(account.totals()) == set(RESOURCE_NAMES)


def test_emitted_event_types_are_the_catalogs(events):
    for resource in STRIPE_RESOURCES:
        assert set(EMITTED_TYPES.get(resource.name, ())) <= set(resource.event_types), resource
    assert set(EMITTED_TYPES) == {r.name for r in STRIPE_RESOURCES if r.has_events}
    seen = {e["type"] for e in events}
    # besides the catalog's, only the charges' PaymentIntent events (not a catalog resource)
    assert seen <= {t for types in EMITTED_TYPES.values() for t in types} | set(
        PAYMENT_INTENT_TYPES
    )
    assert "payment_intent.created" in seen


def test_same_seed_gives_the_same_disputes_and_invoices_and_another_seed_differs(account):
    again, other = make(), make(seed=12)
    for resource in ("disputes", "invoices"):
        assert again.index(resource).blobs == account.index(resource).blobs
        assert other.index(resource).ids != account.index(resource).ids
    recent = NOW - 2 * 86_400  # rendering every event twice would only slow the test down
    assert again.events(gte=recent) == account.events(gte=recent)


# ---- disputes ------------------------------------------------------------------------------


def test_disputes_follow_their_charges(account):
    disputes = account.objects("disputes")
    charges = {c["id"]: c for c in account.objects("charges")}
    captured = sum(1 for c in charges.values() if c["captured"])
    assert 0.003 * captured <= len(disputes) <= 0.01 * captured
    txns = {t["id"]: t for t in account.objects("balance_transactions")}
    statuses, reasons, with_txns = Counter(), Counter(), Counter()
    for dispute in disputes:
        charge = charges[dispute["charge"]]
        assert dispute["object"] == "dispute" and dispute["livemode"] is False
        assert (dispute["amount"], dispute["currency"]) == (charge["amount"], charge["currency"])
        assert dispute["payment_intent"] == charge["payment_intent"]
        assert charge["disputed"] is True and charge["payment_method_details"]["type"] == "card"
        assert 86_400 <= dispute["created"] - charge["created"] <= 6 * 86_400
        assert dispute["evidence_details"]["due_by"] > dispute["created"]
        assert dispute["reason"] in DISPUTE_REASONS
        card = dispute["payment_method_details"]["card"]
        assert card["brand"] == charge["payment_method_details"]["card"]["brand"]
        inquiry = dispute["status"].startswith("warning_")
        assert card["case_type"] == ("inquiry" if inquiry else "chargeback")
        statuses[dispute["status"]] += 1
        reasons[dispute["reason"]] += 1
        listed = dispute["balance_transactions"]
        with_txns[len(listed)] += 1
        assert len(listed) == (0 if inquiry else 2 if dispute["status"] == "won" else 1)
        for position, txn in enumerate(listed):
            truth = txns[txn["id"]]
            assert {k: v for k, v in txn.items() if k != "status"} == {
                k: v for k, v in truth.items() if k != "status"
            }
            assert truth["type"] == "adjustment" and truth["source"] == dispute["id"]
            assert truth["reporting_category"] == ("dispute_reversal" if position else "dispute")
            assert (truth["amount"] > 0) == bool(position)
    assert {"needs_response", "under_review", "won"} <= set(statuses)
    assert any(s.startswith("warning_") for s in statuses) and len(reasons) >= 4
    undisputed = [c for c in charges.values() if c["id"] not in {d["charge"] for d in disputes}]
    assert not any(c["disputed"] for c in undisputed)


def test_dispute_events_tell_its_lifecycle_and_the_charge_gets_no_event(account, events):
    by_dispute = defaultdict(list)
    for event in reversed(events):  # oldest first
        if event["type"].startswith("charge.dispute."):
            assert event["data"]["object"]["object"] == "dispute"
            by_dispute[event["data"]["object"]["id"]].append(event)
    assert not any(e["type"] == "charge.updated" for e in events)
    disputes = {d["id"]: d for d in account.objects("disputes")}
    assert set(by_dispute) == set(disputes)
    for dispute_id, history in by_dispute.items():
        dispute = disputes[dispute_id]
        created = [e for e in history if e["type"] == "charge.dispute.created"]
        assert len(created) == 1 and created[0]["created"] == dispute["created"]
        assert created[0]["data"]["object"]["status"] in (
            "needs_response",
            "warning_needs_response",
        )
        types = [e["type"] for e in history]
        chargeback = not dispute["status"].startswith("warning_")
        assert ("charge.dispute.funds_withdrawn" in types) == chargeback
        assert ("charge.dispute.funds_reinstated" in types) == (dispute["status"] == "won")
        assert ("charge.dispute.closed" in types) == (
            dispute["status"] in ("won", "lost", "warning_closed")
        )
        closed = [e for e in history if e["type"] == "charge.dispute.closed"]
        if closed:
            assert closed[0]["data"]["object"]["status"] == dispute["status"]
        updated = [e for e in history if e["type"] == "charge.dispute.updated"]
        for event in updated:
            assert event["data"]["previous_attributes"]["status"].endswith("needs_response")


def test_a_charge_reads_undisputed_before_its_dispute_and_disputed_after(account):
    day = START + dt.timedelta(days=2)
    now = [day_bounds(day)[0]]
    growing = make(clock=lambda: now[0])
    dispute = min(account.objects("disputes"), key=lambda d: d["created"])
    now[0] = dispute["created"] - 1
    assert growing.current("charges", dispute["charge"])["disputed"] is False
    assert growing.current("disputes", dispute["id"]) is None
    now[0] = dispute["created"]
    assert growing.current("charges", dispute["charge"])["disputed"] is True
    assert growing.current("disputes", dispute["id"])["status"].endswith("needs_response")


def test_a_dispute_opened_on_demand_is_a_real_dispute():
    account = make(seed=13, live=False, clock=lambda: NOW, days=3)
    charge = next(c for c in account.objects("charges")
                  if c["captured"] and not c["disputed"] and not c["refunded"])  # fmt: skip
    event_ids = account.mutate("charges", charge["id"], "dispute")
    assert len(event_ids) == 2
    recorded = {e["type"]: e for e in account.events() if e["id"] in event_ids}
    assert recorded.keys() == {"charge.dispute.created", "charge.dispute.funds_withdrawn"}
    created = recorded["charge.dispute.created"]
    dispute = account.current("disputes", created["data"]["object"]["id"])
    assert dispute["charge"] == charge["id"] and dispute["amount"] == charge["amount"]
    assert dispute["status"] == "needs_response"
    (txn,) = dispute["balance_transactions"]
    assert account.current("balance_transactions", txn["id"])["source"] == dispute["id"]
    assert account.current("charges", charge["id"])["disputed"] is True
    assert not any(e["type"] == "charge.updated" for e in account.events())
    with pytest.raises(ValueError, match="already disputed"):
        account.mutate("charges", charge["id"], "dispute")
    with pytest.raises(ValueError, match="cannot mutate disputes"):
        account.mutate("disputes", dispute["id"], "update")


# ---- invoices ------------------------------------------------------------------------------


def test_every_subscription_gets_one_invoice_per_billing_period(account):
    invoices = defaultdict(list)
    for invoice in account.objects("invoices"):
        invoices[invoice["subscription"]].append(invoice)
    customers = {c["id"]: c for c in account.objects("customers")}
    deleted = account.deleted_ids("customers")
    prices = {}
    for subscription in account.objects("subscriptions"):
        own = sorted(invoices.pop(subscription["id"]), key=lambda i: i["created"])
        first = own[0]
        assert first["id"] == subscription["latest_invoice"]
        assert first["created"] == subscription["created"]
        assert first["billing_reason"] == "subscription_create"
        assert all(i["billing_reason"] == "subscription_cycle" for i in own[1:])
        item = subscription["items"]["data"][0]
        price = item["price"]
        prices[price["id"]] = price
        for invoice in own:
            (line,) = invoice["lines"]["data"]
            assert invoice["customer"] == subscription["customer"]
            assert invoice["parent"]["subscription_details"]["subscription"] == subscription["id"]
            assert invoice["collection_method"] == subscription["collection_method"]
            assert invoice["currency"] == price["currency"] == line["currency"]
            assert line["pricing"]["price_details"]["price"] == price["id"]
            details = line["parent"]["subscription_item_details"]
            assert details["subscription_item"] == item["id"]
            assert line["quantity"] == item["quantity"]
            trial = invoice is first and subscription["trial_start"] is not None
            amount = 0 if trial else price["unit_amount"] * item["quantity"]
            assert line["amount"] == invoice["total"] == invoice["amount_due"] == amount
            assert invoice["amount_paid"] + invoice["amount_remaining"] == amount
            assert line["period"]["start"] == invoice["created"] < line["period"]["end"]
            # The customer as the invoice was made (a later edit does not change it).
            assert invoice["customer"] in customers or invoice["customer"] in deleted
            if invoice["collection_method"] == "send_invoice":
                assert invoice["due_date"] is not None
            else:
                assert invoice["due_date"] is None
        for before, after in zip(own[1:], own[2:], strict=False):
            recurring = price["recurring"]
            assert after["created"] == _add_interval(
                before["created"], recurring["interval"], recurring["interval_count"]
            )
    assert not invoices  # every invoice belongs to a listed subscription


def test_invoices_have_stripes_variety_and_consistent_states(account):
    invoices = account.objects("invoices")
    assert Counter(i["status"] for i in invoices).keys() >= {"paid", "open", "void",
                                                               "uncollectible"}  # fmt: skip
    assert {i["billing_reason"] for i in invoices} == {"subscription_create",
                                                       "subscription_cycle"}  # fmt: skip
    assert {i["collection_method"] for i in invoices} == {"charge_automatically", "send_invoice"}
    numbers = [i["number"] for i in invoices if i["number"] is not None]
    assert len(numbers) == len(set(numbers))
    for invoice in invoices:
        transitions = invoice["status_transitions"]
        if invoice["status"] == "draft":
            assert invoice["number"] is None and transitions["finalized_at"] is None
            continue
        assert invoice["number"] and transitions["finalized_at"] >= invoice["created"]
        if invoice["status"] == "paid":
            assert invoice["amount_remaining"] == 0 and transitions["paid_at"]
        else:
            assert invoice["amount_paid"] == 0
        assert (invoice["status"] == "void") == (transitions["voided_at"] is not None)
        uncollectible = transitions["marked_uncollectible_at"] is not None
        assert (invoice["status"] == "uncollectible") == uncollectible


def test_invoice_events_tell_its_lifecycle_in_order(account, events):
    by_invoice = defaultdict(list)
    for event in reversed(events):
        if event["type"].startswith("invoice."):
            by_invoice[event["data"]["object"]["id"]].append(event)
    invoices = {i["id"]: i for i in account.objects("invoices")}
    assert set(by_invoice) == set(invoices)
    order = {"invoice.created": 0, "invoice.updated": 1, "invoice.finalized": 2,
             "invoice.payment_failed": 3, "invoice.paid": 4, "invoice.voided": 4,
             "invoice.marked_uncollectible": 4}  # fmt: skip
    for invoice_id, history in by_invoice.items():
        history.sort(key=lambda e: (e["created"], order[e["type"]]))
        assert history[0]["type"] == "invoice.created"
        assert history[0]["data"]["object"]["status"] == "draft"
        assert history[-1]["data"]["object"] == invoices[invoice_id]
        statuses = {
            "invoice.finalized": "open", "invoice.paid": "paid", "invoice.voided": "void",
            "invoice.marked_uncollectible": "uncollectible", "invoice.payment_failed": "open",
        }  # fmt: skip
        for event in history[1:]:
            if event["type"] in statuses:
                assert event["data"]["object"]["status"] == statuses[event["type"]], event["type"]


# ---- the API -------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["disputes", "invoices"])
def test_list_pages_every_object_newest_first_and_retrieves_each(emulator, account, resource):
    truth = account.objects(resource)
    listed, pages = page_all(emulator, resource, limit=7)
    assert listed == truth and pages == -(-len(truth) // 7)
    created = [o["created"] for o in truth]
    middle = created[len(created) // 2]
    window, _ = page_all(emulator, resource, {"created[gte]": middle})
    assert ids(window) == [o["id"] for o in truth if o["created"] >= middle]
    one = get(emulator, f"/v1/{resource}/{truth[-1]['id']}")
    assert one.status_code == 200 and one.json() == truth[-1]
    prefix = stripe_resource(resource).id_prefix
    missing = get(emulator, f"/v1/{resource}/{prefix}missing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"
    assert endpoint_of("GET", f"/v1/{resource}/{truth[0]['id']}") == f"GET /v1/{resource}/{{id}}"


def test_dispute_list_filters_are_stripes(emulator, account):
    dispute = account.objects("disputes")[0]
    for param in ("charge", "payment_intent"):
        listed, _ = page_all(emulator, "disputes", {param: dispute[param]})
        assert ids(listed) == [dispute["id"]]
    refused = get(emulator, "/v1/disputes", {"status": "won"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "status"


def test_invoice_list_filters_are_stripes_and_hide_nothing_by_default(emulator, account):
    truth = account.objects("invoices")
    everything, _ = page_all(emulator, "invoices")
    assert len(everything) == len(truth)  # no status is hidden by default
    sample = next(i for i in truth if i["status"] == "void")
    for param, value in (("customer", sample["customer"]), ("subscription", sample["subscription"]),
                         ("status", "void"), ("collection_method", "send_invoice")):  # fmt: skip
        listed, _ = page_all(emulator, "invoices", {param: value})
        assert ids(listed) == [i["id"] for i in truth if i[param] == value], param
    both, _ = page_all(
        emulator, "invoices", {"status": "paid", "collection_method": "send_invoice"}
    )
    expected = [i["id"] for i in truth
                if i["status"] == "paid" and i["collection_method"] == "send_invoice"]  # fmt: skip
    assert ids(both) == expected and expected
    for params, param in (({"status": "pending"}, "status"),
                          ({"collection_method": "cash"}, "collection_method"),
                          ({"due_date[gte]": "1"}, "due_date[gte]"),
                          ({"charge": "ch_1"}, "charge")):  # fmt: skip
        response = get(emulator, "/v1/invoices", params)
        assert response.status_code == 400, params
        assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("resource", "permission"), [("disputes", "rak_dispute_read"), ("invoices", "rak_invoice_read")]
)
def test_restricted_keys_need_the_catalogs_permission(account, resource, permission):
    key = "rk_test_51EmulatorRestricted0001"
    others = set(RESOURCE_NAMES) - {resource}
    with StripeEmulator(account, rate_limit_rps=0,
                        restricted_keys={key: others, "rk_test_51EmulatorAllowed00001": {resource}}
                        ) as emu:  # fmt: skip
        denied = requests.get(f"{emu.url}/v1/{resource}",
                              headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
        allowed = requests.get(f"{emu.url}/v1/{resource}", timeout=30,
                               headers={"Authorization": "Bearer rk_test_51EmulatorAllowed00001"})  # fmt: skip
        unrelated = requests.get(f"{emu.url}/v1/charges", headers=HEADERS, timeout=30)
    assert denied.status_code == 403 and f"'{permission}' permission" in denied.text
    assert stripe_resource(resource).permission == permission
    assert allowed.status_code == 200 and unrelated.status_code == 200
