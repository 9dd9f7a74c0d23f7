"""Conversion: every sample converts, typical variation is kept, bad records are quarantined."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections import Counter

import pytest

from stripe_aep.catalog import RESOURCE_NAMES as RESOURCES
from stripe_aep.xdm import mapping_for
from stripe_aep_tests.xdm.conftest import TENANT, jsonl, sample, samples

NS = f"_{TENANT}"


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_sample_object_converts(convert, resource):
    objects = samples(resource)
    run = convert(jsonl(objects), resource, account="acct_123")
    assert run.quarantine == []
    n = len(objects)
    assert (run.result.input_records, run.result.rows, run.result.quarantined) == (n, n, 0)
    assert run.result.slow_path_records == 0  # old and new shapes parse together, vectorised
    rows = run.rows()
    assert [r[NS]["stripe"]["id"] for r in rows] == [o["id"] for o in objects]
    for row, obj in zip(rows, objects, strict=True):
        common = row[NS]["stripe"]
        assert common["object"] == obj["object"]
        assert common["created"] == dt.datetime.fromtimestamp(obj["created"], dt.UTC)
        assert common["account"] == "acct_123"
        assert common["apiVersion"] == "2026-06-24.dahlia"
        assert common["livemode"] == obj.get("livemode")
        assert row["_id"].startswith(obj["id"] + "-")
        assert row[NS][mapping_for(resource).tenant_object] is not None


def test_charge_money_currency_and_payment_fields(convert):
    charge = sample("charges")
    charge.update(amount=1099, currency="eur", customer={"id": "cus_X", "object": "customer"})
    run = convert(jsonl([charge]), "charges")
    row = run.rows()[0]
    c = row[NS]["charge"]
    assert (c["amount"], c["amountMajor"], c["amountMajorText"]) == (1099, 10.99, "10.99")
    assert c["currency"] == "EUR"
    assert c["customer"] == "cus_X"
    assert row["eventType"] == "commerce.purchases"
    assert row["timestamp"] == dt.datetime.fromtimestamp(charge["created"], dt.UTC)
    order = row["commerce"]["order"]
    assert order["priceTotal"] == 10.99 and order["currencyCode"] == "EUR"
    assert order["payments"] == [
        {
            "transactionID": charge["id"],
            "paymentAmount": 10.99,
            "currencyCode": "EUR",
            "paymentType": "credit_card",
        }
    ]
    assert c["paymentMethodDetails"]["card"]["brand"] == "visa"
    assert c["paymentMethodDetails"]["isBnpl"] is False


@pytest.mark.parametrize(
    ("pm_type", "details", "path", "expected"),
    [
        (
            "klarna",
            {"payment_method_category": "pay_later", "preferred_locale": "de-DE"},
            "klarna",
            {
                "paymentMethodCategory": "pay_later",
                "preferredLocale": "de-DE",
                "payerCountry": None,
            },
        ),
        (
            "afterpay_clearpay",
            {"order_id": "ap_1", "reference": "r1"},
            "afterpayClearpay",
            {"orderId": "ap_1", "reference": "r1"},
        ),
        ("affirm", {"transaction_id": "af_1"}, "affirm", {"transactionId": "af_1"}),
        ("zip", {}, None, None),
    ],
)
def test_bnpl_details_are_queryable(convert, pm_type, details, path, expected):
    charge = sample("charges")
    charge["payment_method_details"] = {"type": pm_type, pm_type: details}
    run = convert(jsonl([charge]), "charges")
    pmd = run.rows()[0][NS]["charge"]["paymentMethodDetails"]
    assert pmd["type"] == pm_type and pmd["isBnpl"] is True and pmd["bnplProvider"] == pm_type
    assert pmd["card"] is None
    if path:
        assert pmd[path] == expected
    payment = run.rows()[0]["commerce"]["order"]["payments"][0]
    assert payment["paymentType"] == "other"


@pytest.mark.parametrize(
    ("currency", "amount", "major", "text"),
    [
        ("jpy", 1234, 1234.0, "1234"),
        ("kwd", 5120, 5.12, "5.120"),
        ("isk", 50000, 500.0, "500.00"),
        ("ugx", 500, 5.0, "5.00"),
        ("usd", -400, -4.0, "-4.00"),
    ],
)
def test_currency_exponents_in_conversion(convert, currency, amount, major, text):
    txn = sample("balance_transactions")
    txn.update(currency=currency, amount=amount, net=amount)
    c = convert(jsonl([txn]), "balance_transactions").rows()[0][NS]["balanceTransaction"]
    assert (c["amountMajor"], c["amountMajorText"], c["currency"]) == (
        major,
        text,
        currency.upper(),
    )


def test_subscription_periods_old_and_new_shapes(convert):
    new = sample("subscriptions")
    old = sample("subscriptions", "samples-2023")
    rows = convert(jsonl([new, old]), "subscriptions").rows()
    item_start = new["items"]["data"][0]["current_period_start"]
    ts = lambda s: dt.datetime.fromtimestamp(s, dt.UTC)  # noqa: E731
    assert rows[0][NS]["subscription"]["currentPeriodStart"] == ts(item_start)
    assert rows[1][NS]["subscription"]["currentPeriodStart"] == ts(old["current_period_start"])
    assert rows[1][NS]["subscription"]["currentPeriodEnd"] == ts(old["current_period_end"])
    item = rows[1][NS]["subscription"]["items"][0]
    assert item["priceId"] == "price_1MowQULkdIwHu7ixraBm864M"
    assert (item["unitAmount"], item["unitAmountMajor"], item["interval"]) == (1000, 10.0, "month")
    assert rows[0]["eventType"] == "stripe.subscription.active"
    assert rows[0][NS]["subscription"]["customer"] == new["customer"]


def test_legacy_plan_only_item_and_expanded_product(convert):
    sub = sample("subscriptions", "samples-2023")
    item = sub["items"]["data"][0]
    plan = item.pop("price")
    item["plan"] = dict(plan, amount=2500, currency="eur", product={"id": "prod_Z", "name": "Z"})
    row = convert(jsonl([sub]), "subscriptions").rows()[0]
    got = row[NS]["subscription"]["items"][0]
    assert (got["unitAmount"], got["currency"], got["productId"]) == (2500, "EUR", "prod_Z")


def test_typical_variation_is_not_quarantined(convert):
    a = sample("charges")
    b = sample("charges")
    b.update(id="ch_b", customer=None, shipping=None, metadata=None, payment_method_details=None)
    c = sample("charges")
    c["id"] = "ch_c"
    for key in ("outcome", "billing_details", "refunds", "source", "description"):
        c.pop(key)
    c["a_field_stripe_adds_next_year"] = {"nested": [1, 2, {"x": "y"}]}
    d = sample("charges")
    d.update(id="ch_d", metadata={"order": "42", "zeta": "z", "alpha": "a"})
    run = convert(jsonl([a, b, c, d]), "charges")
    assert run.result.quarantined == 0 and run.result.rows == 4
    rows = run.rows()
    assert rows[1][NS]["charge"]["paymentMethodDetails"] is None
    assert rows[1][NS]["charge"]["metadata"] is None
    assert rows[2][NS]["charge"]["outcome"] is None
    assert rows[3][NS]["charge"]["metadata"] == [("alpha", "a"), ("order", "42"), ("zeta", "z")]


def test_consistently_expanded_fields_stay_on_fast_path(convert):
    charges = []
    for i in range(20):
        c = sample("charges")
        c["id"] = f"ch_{i}"
        c["customer"] = {"id": f"cus_{i}", "object": "customer", "email": "x@example.com"}
        c["balance_transaction"] = {"id": f"txn_{i}", "object": "balance_transaction"}
        charges.append(c)
    run = convert(jsonl(charges), "charges")
    assert run.result.rows == 20 and run.result.slow_path_records == 0
    assert [r[NS]["charge"]["customer"] for r in run.rows()] == [f"cus_{i}" for i in range(20)]


def test_mixed_expanded_and_id_in_one_block_converts(convert):
    a = sample("charges")
    a["customer"] = "cus_1"
    b = sample("charges")
    b.update(id="ch_2", customer={"id": "cus_2", "object": "customer"})
    run = convert(jsonl([a, b]), "charges")
    assert run.result.quarantined == 0
    assert [r[NS]["charge"]["customer"] for r in run.rows()] == ["cus_1", "cus_2"]


def test_bad_records_are_quarantined_with_reason_and_nothing_is_lost(convert):
    good = sample("charges")
    missing_id = sample("charges")
    del missing_id["id"]
    float_created = dict(sample("charges"), id="ch_float", created=1700000000.5)
    bad_currency = dict(sample("charges"), id="ch_cur", currency="xyz")
    string_amount = dict(sample("charges"), id="ch_str", amount="100")
    object_as_string = dict(sample("charges"), id="ch_pmd", payment_method_details="card")
    wrong_object = dict(sample("charges"), id="ch_obj", object="refund")
    lines = [
        good,
        missing_id,
        float_created,
        bad_currency,
        string_amount,
        "null",
        object_as_string,
        "{not json",
        wrong_object,
        "[1, 2]",
        "",
        "   ",
    ]
    run = convert(jsonl(lines), "charges")
    res = run.result
    assert res.input_records == 10  # blank lines are not records
    assert (res.rows, res.quarantined) == (1, 9)
    assert res.rows + res.quarantined == res.input_records
    assert run.rows()[0][NS]["stripe"]["id"] == good["id"]
    got = Counter((q["reason"], q["field"]) for q in run.quarantine)
    assert got == Counter(
        {
            ("missing_required_field", "id"): 1,
            ("type_mismatch", "created"): 1,
            ("unknown_currency", "currency"): 1,
            ("type_mismatch", "amount"): 1,
            ("type_mismatch", "payment_method_details"): 1,
            ("not_in_enum", "object"): 1,
            ("invalid_json", None): 1,
            ("not_an_object", None): 2,
        }
    )
    assert res.reasons == {
        "missing_required_field": 1,
        "type_mismatch": 3,
        "unknown_currency": 1,
        "not_an_object": 2,
        "invalid_json": 1,
        "not_in_enum": 1,
    }
    by_field = {q["field"]: q for q in run.quarantine}
    assert by_field["amount"]["record"] == string_amount  # the original object, unchanged
    assert by_field["created"]["record"] == float_created
    assert "expected integer, got number" in by_field["created"]["detail"]
    assert by_field["currency"]["record"] == bad_currency
    texts = [q["record"] for q in run.quarantine if q["reason"] == "invalid_json"]
    assert texts == ["{not json"]
    nulls = [q["record"] for q in run.quarantine if q["reason"] == "not_an_object"]
    assert sorted(map(json.dumps, nulls)) == ["[1, 2]", "null"]


def test_only_null_line_does_not_crash(convert):
    run = convert(b"null\n", "customers")
    assert (run.result.input_records, run.result.rows, run.result.quarantined) == (1, 0, 1)
    assert run.result.parts == []


def test_two_objects_on_one_line_are_quarantined_not_split(convert):
    a = json.dumps(sample("prices"))
    run = convert(f"{a} {a}\n{a}\n".encode(), "prices")
    assert (run.result.rows, run.result.quarantined) == (1, 1)
    assert run.quarantine[0]["reason"] == "invalid_json"


def test_metadata_non_string_value_is_quarantined(convert):
    p = sample("prices")
    p["metadata"] = {"ok": "1", "bad": {"nested": True}}
    run = convert(jsonl([sample("prices"), p]), "prices")
    assert run.result.rows == 1
    assert [(q["reason"], q["field"]) for q in run.quarantine] == [("type_mismatch", "metadata")]


def test_empty_input_writes_no_part(convert):
    run = convert(b"", "refunds")
    assert (run.result.input_records, run.result.rows, run.result.files) == (0, 0, 0)
    assert run.paths == []


def test_same_input_same_rows_changed_object_new_id(convert):
    a = sample("customers")
    b = copy.deepcopy(a)
    b["email"] = "new@example.com"
    first = convert(jsonl([a]), "customers")
    second = convert(jsonl([a]), "customers")
    changed = convert(jsonl([b]), "customers")
    assert first.rows() == second.rows()
    assert first.paths[0].read_bytes() == second.paths[0].read_bytes()
    assert changed.rows()[0]["_id"] != first.rows()[0]["_id"]
    assert changed.rows()[0]["personalEmail"] == {"address": "new@example.com"}


def test_blocks_and_row_order_are_deterministic(convert):
    prices = []
    for i in range(300):
        p = sample("prices")
        p.update(id=f"price_{i:04d}", unit_amount=i, metadata={f"k{i % 7}": str(i)})
        prices.append(p)
    data = jsonl(prices)
    small = convert(data, "prices", block_bytes=10_000)
    big = convert(data, "prices")
    assert [r[NS]["price"]["id"] for r in small.rows()] == [p["id"] for p in prices]
    assert small.rows() == big.rows()


def test_output_is_split_into_parts_below_the_limit(convert):
    charges = []
    for i in range(3000):
        c = sample("charges")
        c.update(id=f"ch_{i:06d}", amount=i * 7, description=f"charge {i} " + "x" * (i % 50))
        charges.append(c)
    limit = 128 * 1024
    run = convert(jsonl(charges), "charges", max_file_bytes=limit)
    res = run.result
    assert res.files >= 2
    assert [p.index for p in res.parts] == list(range(res.files))
    assert all(p.bytes <= limit for p in res.parts)
    assert [p.stat().st_size for p in run.paths] == [p.bytes for p in res.parts]
    assert sum(p.rows for p in res.parts) == 3000 == res.rows
    assert [r[NS]["stripe"]["id"] for r in run.rows()] == [c["id"] for c in charges]


def test_result_preview_and_markdown(convert):
    run = convert(jsonl([sample("refunds")]), "refunds")
    res = run.result
    assert res.preview[0][NS]["refund"]["amount"] == 100
    assert res.preview[0]["timestamp"] == "2009-02-13T23:31:30Z"
    md = res.preview_markdown()
    assert md.splitlines()[0].startswith("| _id | timestamp |")
    assert sample("refunds")["id"] in md
    json.dumps(res.preview)  # JSON-safe for Dagster metadata


def test_bad_arguments_fail_with_clear_errors(convert):
    with pytest.raises(ValueError, match="unknown Stripe resource 'payouts'.*invoices"):
        convert(b"", "payouts")
    with pytest.raises(ValueError, match="too small"):
        convert(b"", "prices", max_file_bytes=10)
