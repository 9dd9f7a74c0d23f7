"""The synthetic Stripe account: determinism, content that breaks extractors, ground truth, live mode."""
# ruff: noqa: F811  (pytest fixtures are imported from stripe_fixtures and used as arguments)

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter

import pytest

from stripe_aep.catalog import RESOURCE_NAMES as RESOURCES
from stripe_aep.catalog import STRIPE_RESOURCES
from stripe_aep.emulators.stripe_account import StripeAccount
from stripe_aep_tests.emulators.stripe_fixtures import (
    CHARGES_PER_DAY,
    DAYS,
    FIXED_NOW,
    START,
    account,  # noqa: F401 - fixture
    day_bounds,
    make_account,
)

PREFIXES = {r.name: r.id_prefix for r in STRIPE_RESOURCES}
OBJECT = {r.name: r.object_name for r in STRIPE_RESOURCES}


def test_same_seed_gives_identical_bytes_and_another_seed_differs():
    first, second, other = make_account(), make_account(), make_account(seed=6)
    for resource in RESOURCES:
        assert first.index(resource).blobs == second.index(resource).blobs, resource
        assert first.index(resource).ids != other.index(resource).ids, resource
    assert first.account_json == second.account_json


def test_every_object_has_a_unique_prefixed_id_and_compact_json(account):
    seen = set()
    for resource in RESOURCES:
        index = account.index(resource)
        for object_id, blob in zip(index.ids, index.blobs, strict=True):
            assert re.fullmatch(re.escape(PREFIXES[resource]) + r"[A-Za-z0-9]{24}", object_id)
            obj = json.loads(blob)
            assert obj["id"] == object_id and obj["object"] == OBJECT[resource]
            assert blob == json.dumps(obj, separators=(",", ":")).encode()
        seen.update(index.ids)
    assert len(seen) == sum(account.total(resource) for resource in RESOURCES)


def test_objects_are_newest_first_within_the_window_and_totals_match(account):
    first_day, _ = day_bounds(START)
    end = first_day + DAYS * 86_400
    for resource in RESOURCES:
        objects = account.objects(resource)
        keys = [(obj["created"], obj["id"]) for obj in objects]
        assert keys == sorted(keys, reverse=True), resource
        assert len(objects) == account.total(resource) > 0
        assert all(first_day <= obj["created"] < end for obj in objects)
    assert account.total("charges") == DAYS * CHARGES_PER_DAY


def test_objects_window_is_gte_inclusive_and_lt_exclusive(account):
    charges = account.objects("charges")
    second = charges[len(charges) // 2]["created"]
    before = account.objects("charges", lt=second)
    from_second = account.objects("charges", gte=second)
    assert all(obj["created"] < second for obj in before)
    assert all(obj["created"] >= second for obj in from_second)
    assert len(before) + len(from_second) == len(charges)
    assert account.ids("charges", gte=second) == [obj["id"] for obj in from_second]
    assert account.ids("charges", lt=second) == [obj["id"] for obj in before]
    assert {obj["id"] for obj in charges if obj["created"] == second} <= {
        obj["id"] for obj in from_second
    }


def test_same_second_clusters_of_charges_and_balance_transactions(account):
    charges = Counter(obj["created"] for obj in account.objects("charges"))
    txns = Counter(obj["created"] for obj in account.objects("balance_transactions"))
    big_charge_seconds = [second for second, count in charges.items() if count >= 150]
    assert len(big_charge_seconds) >= DAYS  # one cluster of 150–250 per day at this size
    assert max(charges.values()) <= 250
    assert max(txns.values()) > 100  # the charges' transactions share the second


def test_currencies_and_amounts_valid_for_each_currency(account):
    charges = account.objects("charges")
    currencies = {obj["currency"] for obj in charges}
    assert {"usd", "eur", "gbp", "jpy", "krw", "kwd", "bhd", "isk", "ugx", "huf"} <= currencies
    for obj in charges + account.objects("refunds"):
        if obj["currency"] in ("isk", "ugx"):
            assert obj["amount"] % 100 == 0, obj["id"]
        if obj["currency"] in ("kwd", "bhd"):
            assert obj["amount"] % 10 == 0, obj["id"]
        assert isinstance(obj["amount"], int) and obj["amount"] > 0


def test_payment_method_details_include_cards_and_buy_now_pay_later(account):
    by_type = {}
    for charge in account.objects("charges"):
        details = charge["payment_method_details"]
        by_type.setdefault(details["type"], details)
        assert details["type"] in details  # the type's sub-object is there
    assert {"card", "klarna", "afterpay_clearpay", "affirm", "zip"} <= set(by_type)
    assert by_type["klarna"]["klarna"]["payer_details"]["address"]["country"]
    assert set(by_type["afterpay_clearpay"]["afterpay_clearpay"]) == {"order_id", "reference"}
    assert "transaction_id" in by_type["affirm"]["affirm"]
    assert by_type["zip"]["zip"] == {}
    assert by_type["card"]["card"]["last4"].isdigit()


def test_failed_charges_carry_failure_fields_and_no_balance_transaction(account):
    failed = [c for c in account.objects("charges") if c["status"] == "failed"]
    assert len(failed) >= 0.04 * DAYS * CHARGES_PER_DAY
    for charge in failed:
        assert charge["paid"] is False and charge["captured"] is False
        assert charge["failure_code"] and charge["failure_message"]
        assert charge["balance_transaction"] is None and charge["amount_refunded"] == 0
    succeeded = [c for c in account.objects("charges") if c["status"] == "succeeded"]
    assert all(c["failure_code"] is None and c["paid"] for c in succeeded)


def test_refunds_point_to_earlier_charges_and_charges_add_up(account):
    charges = {c["id"]: c for c in account.objects("charges")}
    refunded_sum = Counter()
    refunds = account.objects("refunds")
    assert 0.10 * len(charges) <= len(refunds) <= 0.25 * len(charges)
    for refund in refunds:
        charge = charges[refund["charge"]]
        assert refund["created"] > charge["created"]
        assert refund["currency"] == charge["currency"]
        assert refund["payment_intent"] == charge["payment_intent"]
        refunded_sum[charge["id"]] += refund["amount"]
    for charge in charges.values():
        assert charge["amount_refunded"] == refunded_sum.get(charge["id"], 0)
        assert charge["refunded"] == (charge["amount_refunded"] == charge["amount"])
    kinds = Counter(c["refunded"] for c in charges.values() if c["amount_refunded"])
    assert kinds[True] and kinds[False]  # full and partial refunds


def test_balance_transactions_one_per_captured_charge_and_per_refund(account):
    txns = account.objects("balance_transactions")
    by_source = {t["source"]: t for t in txns if t["source"]}
    charges = account.objects("charges")
    for charge in charges:
        if charge["balance_transaction"]:
            txn = by_source[charge["id"]]
            assert txn["id"] == charge["balance_transaction"] and txn["type"] == "charge"
            # At creation, or at the capture of a charge authorized earlier (charge.captured).
            assert txn["created"] == charge["created"] or (
                txn["created"] > charge["created"] and charge["captured"]
            )
            assert txn["fee_details"] and txn["net"] == txn["amount"] - txn["fee"]
    for refund in account.objects("refunds"):
        txn = by_source[refund["id"]]
        assert txn["type"] == "refund" and txn["amount"] < 0
    types = Counter(t["type"] for t in txns)
    assert {"charge", "refund", "payout", "stripe_fee"} <= set(types)
    assert types["charge"] == sum(1 for c in charges if c["balance_transaction"])


def test_customers_vary_and_are_referenced(account):
    customers = {c["id"]: c for c in account.objects("customers")}
    assert 0.2 * DAYS * CHARGES_PER_DAY <= len(customers) <= 0.4 * DAYS * CHARGES_PER_DAY
    values = list(customers.values())
    assert any(c["address"] is None for c in values) and any(c["address"] for c in values)
    assert any(c["email"] is None for c in values) and any(c["email"] for c in values)
    assert any(c["phone"] for c in values)
    for sub in account.objects("subscriptions"):
        assert customers[sub["customer"]]["created"] <= sub["created"]
    with_customer = [c for c in account.objects("charges") if c["customer"]]
    assert len(with_customer) >= 0.4 * DAYS * CHARGES_PER_DAY
    for charge in with_customer:
        if charge["customer"] not in customers:  # deleted since (charges keep the id)
            assert account.current("customers", charge["customer"])["deleted"] is True
            continue
        assert customers[charge["customer"]]["created"] <= charge["created"]


def test_subscriptions_statuses_and_both_shapes(account):
    subs = account.objects("subscriptions")
    statuses = Counter(s["status"] for s in subs)
    assert statuses["canceled"] >= 0.2 * len(subs)
    assert {"active", "trialing", "past_due", "canceled", "incomplete_expired"} <= set(statuses)
    for sub in subs:
        if sub["status"] == "canceled":
            assert sub["canceled_at"] >= sub["created"] and sub["ended_at"]
    old = [s for s in subs if "current_period_start" in s]
    current = [s for s in subs if "current_period_start" not in s]
    assert 0.05 * len(subs) <= len(old) <= 0.15 * len(subs)
    assert all("plan" in s["items"]["data"][0] for s in old)
    item = current[0]["items"]["data"][0]
    assert item["current_period_end"] > item["current_period_start"]
    assert item["price"]["object"] == "price" and item["subscription"] == current[0]["id"]


def test_some_charges_have_the_2023_shape(account):
    charges = account.objects("charges")
    old = [c for c in charges if "invoice" in c]  # `invoice` was removed from charges in basil
    assert 0.05 * len(charges) <= len(old) <= 0.15 * len(charges)
    assert all("tax_id" not in c["billing_details"] for c in old)


def test_prices_active_and_inactive_one_time_and_recurring(account):
    prices = account.objects("prices")
    inactive = [p for p in prices if not p["active"]]
    assert len(inactive) >= 0.25 * len(prices)
    kinds = Counter(p["type"] for p in prices)
    assert kinds["one_time"] and kinds["recurring"]
    for price in prices:
        assert (price["recurring"] is None) == (price["type"] == "one_time")
        assert price["unit_amount_decimal"] == str(price["unit_amount"])


def test_metadata_maps_some_empty_some_filled(account):
    metadata = [c["metadata"] for c in account.objects("charges")]
    assert any(m == {} for m in metadata) and any(m for m in metadata)
    assert all(isinstance(v, str) for m in metadata for v in m.values())


def test_non_live_account_never_holds_objects_after_the_clock():
    day = dt.date(2026, 5, 10)
    noon = day_bounds(day)[0] + 12 * 3600
    account = StripeAccount(seed=2, start=None, days=2, charges_per_day=100, clock=lambda: noon)
    assert account.start == day - dt.timedelta(days=1)  # start=None: the last `days` days
    for resource in RESOURCES:
        assert all(obj["created"] <= noon for obj in account.objects(resource)), resource
    assert account.total("charges") == 200


def test_live_account_reveals_objects_as_the_clock_advances():
    day = dt.date(2026, 5, 10)
    start, end = day_bounds(day)
    now = [start + 6 * 3600]
    account = StripeAccount(
        seed=2, start=day, days=1, charges_per_day=100, live=True, clock=lambda: now[0]
    )
    early = account.total("charges")
    assert 0 < early < 100
    assert all(obj["created"] <= now[0] for obj in account.objects("charges"))
    now[0] = end
    assert account.total("charges") == 100
    assert {obj["id"] for obj in account.objects("charges")} >= {
        obj["id"] for obj in account.objects("charges", lt=start + 6 * 3600)
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"days": 0}, "days must be a positive integer"),
        ({"charges_per_day": -1}, "charges_per_day"),
        ({"start": "01/03/2026"}, "YYYY-MM-DD"),
        ({"account_id": "acct-1"}, "acct_"),
    ],
)
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        make_account(**arguments)


def test_unknown_resource_is_a_clear_error(account):
    with pytest.raises(KeyError, match="expected one of charges"):
        account.objects("payouts")


def test_repr_names_the_account_and_uses_no_clock():
    account = make_account(days=1, charges_per_day=10)
    assert "seed=5" in repr(account) and "2026-03-01" in repr(account)
    assert account.clock() == FIXED_NOW
