"""Disputes and invoices: the two resources beyond Adobe's own Stripe source, converted from
Stripe's sample objects with the variety real accounts have (statuses, missing customers,
zero-decimal currencies, metadata, old and new API shapes), and the dispute's customer taken from
the raw charges on the lake by the XDM asset, as the catalog's `lookup_resources` declares."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stripe_aep.assets import xdm as xdm_asset_module
from stripe_aep.assets.xdm import LOOKUPS, build_xdm_asset, raw_inputs
from stripe_aep.catalog import STRIPE_RESOURCES, stripe_resource
from stripe_aep.lake import Lake
from stripe_aep.resources import LakeResource, XdmResource
from stripe_aep.stripe.rawstore import RawPartition, day_bounds
from stripe_aep.xdm.mappings.common import CHARGE_CUSTOMERS
from stripe_aep.xdm_lake import XdmPartition
from stripe_aep_tests.xdm.conftest import TENANT, jsonl, sample

NS = f"_{TENANT}"
T0 = 1_780_000_000  # 2026-05-28


def utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def by_id(run) -> dict[str, dict]:
    return {row[NS]["stripe"]["id"]: row for row in run.rows()}


# ------------------------------------------------------------------------------------------
# disputes
# ------------------------------------------------------------------------------------------


def _dispute(**changes) -> dict:
    return {**sample("disputes"), "created": T0, **changes}


def test_disputes_keep_status_reason_evidence_and_network_details(convert):
    withdrawn = {
        "id": "txn_w",
        "object": "balance_transaction",
        "type": "adjustment",
        "reporting_category": "dispute",
        "amount": -5000,
        "fee": 1500,
        "net": -6500,
        "currency": "jpy",
    }
    reinstated = {**withdrawn, "id": "txn_r", "reporting_category": "dispute_reversal",
                  "amount": 5000, "fee": -1500, "net": 6500}  # fmt: skip
    won = _dispute(
        id="dp_won",
        status="won",
        reason="fraudulent",
        amount=5000,
        currency="jpy",  # zero-decimal: 5000 yen, not 50.00
        charge={"id": "ch_a", "object": "charge"},  # expanded
        is_charge_refundable=False,
        balance_transactions=[withdrawn, reinstated],
        metadata={"case": "42", "agent": "ann"},
    )
    open_ = _dispute(id="dp_open", charge="ch_b", evidence_details={
        **sample("disputes")["evidence_details"], "due_by": T0 + 7 * 86400, "has_evidence": True,
        "submission_count": 1})  # fmt: skip
    klarna = _dispute(
        id="dp_klarna",
        status="lost",
        charge="ch_guest",
        payment_method_details={"type": "klarna", "klarna": {"reason_code": "not_received"}},
    )
    lookup = (pa.array(["ch_a", "ch_b"]), pa.array(["cus_a", "cus_b"]))
    run = convert(jsonl([won, open_, klarna]), "disputes", lookups={CHARGE_CUSTOMERS: lookup})
    assert (run.result.rows, run.result.quarantined) == (3, 0)
    rows = by_id(run)

    row = rows["dp_won"]
    d = row[NS]["dispute"]
    assert row["eventType"] == "stripe.dispute.won"
    assert row["timestamp"] == utc(T0)
    assert "commerce" not in row  # a chargeback is no purchase: no standard order fields
    assert (d["amount"], d["amountMajor"], d["amountMajorText"], d["currency"]) == (
        5000, 5000.0, "5000", "JPY")  # fmt: skip
    assert (d["status"], d["reason"], d["charge"], d["customer"]) == (
        "won", "fraudulent", "ch_a", "cus_a")  # fmt: skip
    assert d["isChargeRefundable"] is False
    assert [
        (b["id"], b["reportingCategory"], b["amount"], b["amountMajor"], b["net"], b["currency"])
        for b in d["balanceTransactions"]
    ] == [("txn_w", "dispute", -5000, -5000.0, -6500, "JPY"),
          ("txn_r", "dispute_reversal", 5000, 5000.0, 6500, "JPY")]  # fmt: skip
    assert dict(d["metadata"]) == {"agent": "ann", "case": "42"}
    card = d["paymentMethodDetails"]["card"]
    assert (card["brand"], card["caseType"], card["networkReasonCode"]) == (
        "visa",
        "inquiry",
        "10.4",
    )

    evidence = rows["dp_open"][NS]["dispute"]["evidenceDetails"]
    assert evidence == {"dueBy": utc(T0 + 7 * 86400), "hasEvidence": True, "pastDue": False,
                        "submissionCount": 1}  # fmt: skip
    assert rows["dp_open"][NS]["dispute"]["customer"] == "cus_b"
    assert rows["dp_open"]["eventType"] == "stripe.dispute.warning_needs_response"

    lost = rows["dp_klarna"][NS]["dispute"]
    assert lost["customer"] is None  # its charge is not on the lake: no identity invented
    assert lost["paymentMethodDetails"]["type"] == "klarna"
    assert lost["paymentMethodDetails"]["klarna"] == {"reasonCode": "not_received"}
    assert lost["paymentMethodDetails"]["card"] is None


def test_a_dispute_without_the_charge_lookup_has_no_customer(convert):
    run = convert(jsonl([_dispute(id="dp_1")]), "disputes")
    assert run.result.rows == 1
    assert run.rows()[0][NS]["dispute"]["customer"] is None


def test_a_dispute_in_an_unknown_currency_is_quarantined_with_the_reason(convert):
    run = convert(jsonl([_dispute(id="dp_bad", currency="zzz")]), "disputes")
    assert (run.result.rows, run.result.quarantined) == (0, 1)
    (bad,) = run.quarantine
    assert (bad["reason"], bad["field"], bad["id"]) == ("unknown_currency", "currency", "dp_bad")


# ------------------------------------------------------------------------------------------
# invoices
# ------------------------------------------------------------------------------------------


def _invoice(**changes) -> dict:
    base = sample("invoices")
    base.update(created=T0, period_start=T0, period_end=T0, due_date=None, effective_at=None)
    base.update(changes)
    return base


def _transitions(**times) -> dict:
    keys = ("finalized_at", "marked_uncollectible_at", "paid_at", "voided_at")
    return {k: times.get(k) for k in keys}


def _line(line_id: str, amount: int, currency: str, **changes) -> dict:
    line = {**sample("invoices")["lines"]["data"][0], "id": line_id, "amount": amount}
    line.update(currency=currency, period={"start": T0, "end": T0 + 30 * 86400}, **changes)
    return line


def test_invoices_are_events_at_their_latest_lifecycle_moment(convert):
    draft = _invoice(id="in_draft", status="draft", status_transitions=_transitions())
    paid = _invoice(id="in_paid", status="paid", amount_paid=1000, amount_remaining=0,
                    status_transitions=_transitions(finalized_at=T0 + 60, paid_at=T0 + 3600))  # fmt: skip
    void = _invoice(id="in_void", status="void",
                    status_transitions=_transitions(finalized_at=T0 + 60, voided_at=T0 + 7200))  # fmt: skip
    bad_debt = _invoice(id="in_bad", status="uncollectible", status_transitions=_transitions(
        finalized_at=T0 + 60, marked_uncollectible_at=T0 + 9000))  # fmt: skip
    run = convert(jsonl([draft, paid, void, bad_debt]), "invoices")
    assert (run.result.rows, run.result.quarantined) == (4, 0)
    rows = by_id(run)
    assert {k: (r["eventType"], r["timestamp"]) for k, r in rows.items()} == {
        "in_draft": ("stripe.invoice.draft", utc(T0)),
        "in_paid": ("stripe.invoice.paid", utc(T0 + 3600)),
        "in_void": ("stripe.invoice.void", utc(T0 + 7200)),
        "in_bad": ("stripe.invoice.uncollectible", utc(T0 + 9000)),
    }
    inv = rows["in_paid"][NS]["invoice"]
    assert (inv["finalizedAt"], inv["paidAt"], inv["voidedAt"]) == (
        utc(T0 + 60), utc(T0 + 3600), None)  # fmt: skip
    assert (inv["amountPaid"], inv["amountRemaining"], inv["customer"]) == (
        1000, 0, "cus_QXg1o8vcGmoR32")  # fmt: skip
    # The order is what was billed; the purchase is the charge that paid it (not counted twice).
    assert rows["in_paid"]["commerce"] == {
        "order": {"purchaseID": "in_paid", "priceTotal": 10.0, "currencyCode": "USD"}
    }


def test_invoice_lines_money_shapes_and_missing_customer(convert):
    new_shape = _line("il_new", 1500, "jpy", pricing={"type": "price_details",
                      "price_details": {"price": "price_new", "product": "prod_new"},
                      "unit_amount_decimal": "1500"},
                      parent={"type": "subscription_item_details",
                              "subscription_item_details": {"subscription": "sub_new",
                                                            "subscription_item": "si_1"}})  # fmt: skip
    old_shape = {
        k: v for k, v in _line("il_old", 250, "jpy").items() if k not in ("pricing", "parent")
    }
    old_shape.update(price={"id": "price_old", "object": "price", "product": {"id": "prod_old"}},
                     subscription="sub_old")  # fmt: skip
    invoice = _invoice(
        id="in_jpy",
        customer=None,  # e.g. an invoice billed to a customer account: no Stripe customer id
        currency="jpy",
        total=1750,
        subtotal=1750,
        amount_due=1750,
        amount_paid=0,
        amount_remaining=1750,
        subscription=None,
        parent={"type": "subscription_details",
                "subscription_details": {"subscription": "sub_new", "metadata": None}},
        lines={"object": "list", "data": [new_shape, old_shape], "has_more": True,
               "url": "/v1/invoices/in_jpy/lines"},
        metadata={"order": "A-1"},
    )  # fmt: skip
    legacy = _invoice(id="in_legacy", parent=None, subscription="sub_legacy", lines={
        "object": "list", "data": [], "has_more": False, "url": "/v1/invoices/in_legacy/lines"})  # fmt: skip
    run = convert(jsonl([invoice, legacy]), "invoices")
    assert (run.result.rows, run.result.quarantined) == (2, 0)
    rows = by_id(run)
    inv = rows["in_jpy"][NS]["invoice"]
    assert inv["customer"] is None  # kept, with no identity (nothing invented)
    assert (inv["total"], inv["totalMajor"], inv["totalMajorText"], inv["currency"]) == (
        1750, 1750.0, "1750", "JPY")  # fmt: skip
    assert rows["in_jpy"]["commerce"]["order"]["priceTotal"] == 1750.0
    assert inv["subscription"] == "sub_new"  # from `parent` (2025-03-31 on)
    assert inv["linesHasMore"] is True
    assert dict(inv["metadata"]) == {"order": "A-1"}
    assert [
        (li["id"], li["amount"], li["amountMajor"], li["currency"], li["priceId"],
         li["productId"], li["subscription"], li["periodEnd"])
        for li in inv["lines"]
    ] == [
        ("il_new", 1500, 1500.0, "JPY", "price_new", "prod_new", "sub_new", utc(T0 + 30 * 86400)),
        ("il_old", 250, 250.0, "JPY", "price_old", "prod_old", "sub_old", utc(T0 + 30 * 86400)),
    ]  # fmt: skip
    legacy_row = rows["in_legacy"][NS]["invoice"]
    assert legacy_row["subscription"] == "sub_legacy"  # the top-level field of older versions
    assert legacy_row["lines"] == []


def test_an_invoice_without_total_is_quarantined(convert):
    broken = {k: v for k, v in _invoice(id="in_nototal").items() if k != "total"}
    run = convert(jsonl([broken]), "invoices")
    assert (run.result.rows, run.result.quarantined) == (0, 1)
    assert run.quarantine[0]["reason"] == "missing_required_field"


# ------------------------------------------------------------------------------------------
# the XDM asset: deps and lookups from the catalog
# ------------------------------------------------------------------------------------------


def test_xdm_asset_inputs_follow_the_catalog():
    for resource in STRIPE_RESOURCES:
        assert raw_inputs(resource.name) == (resource.name, *resource.lookup_resources)
    assert raw_inputs("disputes") == ("disputes", "charges")
    assert raw_inputs("invoices") == ("invoices",)
    deps = {key for key in build_xdm_asset("disputes").dependency_keys}
    assert deps == {dg.AssetKey(["stripe", "disputes"]), dg.AssetKey(["stripe", "charges"])}


def test_a_catalog_lookup_without_a_provider_fails_naming_it(monkeypatch):
    monkeypatch.setattr(xdm_asset_module, "LOOKUPS", {})
    with pytest.raises(ValueError, match=r"refunds looks up \['charges'\].*LOOKUPS"):
        xdm_asset_module._check_lookups()
    assert set(LOOKUPS) == {n for r in STRIPE_RESOURCES for n in r.lookup_resources}


def test_the_disputes_asset_takes_each_customer_from_the_raw_charges(tmp_path):
    """stripe/charges and stripe/disputes raw files on the lake, then xdm/disputes: every dispute
    whose charge is on the lake carries that charge's customer; no Stripe client is involved."""
    lake = Lake(str(tmp_path))
    day = dt.date(2026, 5, 28)
    start, end = day_bounds(day)
    meta = {"api_version": "2026-07-29.dahlia", "account": None, "fetched_at": end + 60}
    charge = sample("charges")
    charges = [
        {**charge, "id": f"ch_{i}", "created": start + i, "customer": f"cus_{i}" if i % 3 else None}
        for i in range(30)
    ]
    RawPartition(lake, "charges", day).write(
        start, end, [json.dumps(c).encode() for c in charges], meta
    )
    disputes = [
        _dispute(id=f"dp_{i}", created=start + 100 + i, charge=f"ch_{i}",
                 status=("needs_response", "won", "lost")[i % 3])
        for i in range(0, 30, 2)
    ] + [_dispute(id="dp_orphan", created=start + 500, charge="ch_elsewhere")]  # fmt: skip
    RawPartition(lake, "disputes", day).write(
        start, end, [json.dumps(d).encode() for d in disputes], meta
    )
    asset = build_xdm_asset("disputes")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [asset],
            resources={"lake": LakeResource(root=str(tmp_path)), "xdm": XdmResource(tenant=TENANT)},
            instance=instance,
            partition_key=day.isoformat(),
            selection=[asset.key],
        )
    assert result.success
    got: dict[str, str | None] = {}
    for part in XdmPartition(lake, "disputes", day).parts():
        table = pq.read_table(lake.full_path(part.path)).column(NS).combine_chunks()
        ids = table.field("stripe").field("id").to_pylist()
        got.update(zip(ids, table.field("dispute").field("customer").to_pylist(), strict=True))
    expected = {f"dp_{i}": (f"cus_{i}" if i % 3 else None) for i in range(0, 30, 2)}
    expected["dp_orphan"] = None
    assert got == expected
    assert stripe_resource("disputes").lookup_resources == ("charges",)
