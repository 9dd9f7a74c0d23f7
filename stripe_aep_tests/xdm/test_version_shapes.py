"""Every Stripe field the XDM mapping reads exists in the objects of the pinned API version.

Stripe's `fixtures3.json` at a version lists every field that version returns by default
(vendored in `stripe_aep/specs/stripe/`). A mapping that reads a field the pinned version does not
send would fill a column with nulls in production while tests on hand-made objects pass (issue 8:
refund `customer` was read at a version that had none). The only fields allowed to be absent are
listed below, each with the reason the pinned sample cannot show it; the list must stay exact.
"""

from __future__ import annotations

from typing import Any

import pytest

from stripe_aep.catalog import RESOURCE_NAMES as RESOURCES
from stripe_aep.config import DEFAULT_STRIPE_API_VERSION
from stripe_aep.specs import stripe as stripe_specs
from stripe_aep.xdm.resources import mapping_for

#: (resource, Stripe path) the mapping reads that the pinned sample object cannot show, and why.
NOT_IN_THE_PINNED_SAMPLE: dict[tuple[str, str], str] = {
    # Fallbacks for accounts that read older versions (the mapping accepts both shapes).
    ("charges", "invoice"): "older versions only (removed from charges in 2025-03-31.basil)",
    ("subscriptions", "current_period_start"): "older versions only (moved to items in basil)",
    ("subscriptions", "current_period_end"): "older versions only (moved to items in basil)",
    # Present only for some objects; the sample is another variant.
    ("charges", "outcome.risk_level"): "Radar fields, sent only when Radar scored the charge",
    ("charges", "outcome.risk_score"): "Radar fields, sent only when Radar scored the charge",
    **{
        ("charges", f"payment_method_details.{path}"): "the sample is a card payment"
        for path in (
            "klarna.payment_method_category",
            "klarna.preferred_locale",
            "klarna.payer_details.address.country",
            "afterpay_clearpay.order_id",
            "afterpay_clearpay.reference",
            "affirm.transaction_id",
        )
    },
    ("refunds", "description"): "sent on non-card refunds only; the sample is a card refund",
    ("refunds", "failure_reason"): "sent on failed refunds only; the sample succeeded",
    **{
        ("balance_transactions", f"fee_details[].{name}"): "the sample has no fees (empty list)"
        for name in ("amount", "currency", "type", "description", "application")
    },
    ("customers", "shipping.name"): "the sample has no shipping details (empty object)",
    **{
        ("disputes", f"balance_transactions[].{name}"): "the sample has no balance transactions"
        for name in ("id", "type", "reporting_category", "amount", "fee", "net", "currency")
    },
    **{
        ("disputes", f"payment_method_details.{path}"): "the sample is a card dispute"
        for path in ("klarna.reason_code", "paypal.case_id", "paypal.reason_code")
    },
    # Invoice lines name their price in `pricing.price_details` since 2025-03-31.basil (the
    # sample's `pricing` has no details) and in `price` before (the mapping reads both).
    ("invoices", "lines.data[].pricing.price_details.price"): "the sample line has no price",
    ("invoices", "lines.data[].pricing.price_details.product"): "the sample line has no price",
    ("invoices", "lines.data[].price.id"): "older versions only (before 2025-03-31.basil)",
    ("invoices", "lines.data[].price.product"): "older versions only (before 2025-03-31.basil)",
    # The common `stripe.livemode` field: these objects have no `livemode` at all (null in XDM).
    ("refunds", "livemode"): "refunds carry no livemode field (common field, null here)",
    ("balance_transactions", "livemode"): "balance transactions carry no livemode (null here)",
}


def _present(value: Any, parts: list[str]) -> bool:
    """True if the dotted path exists in the sample (`name[]` steps into list elements)."""
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    if head.endswith("[]"):
        items = value.get(head[:-2]) if isinstance(value, dict) else None
        return isinstance(items, list) and any(_present(item, rest) for item in items)
    if not isinstance(value, dict) or head not in value:
        return False
    return _present(value[head], rest) if rest else True


def absent_fields(version: str) -> set[tuple[str, str]]:
    absent = set()
    for resource in RESOURCES:
        mapping = mapping_for(resource)
        sample = stripe_specs.sample_object(mapping.stripe_object, version)
        for source_input in mapping.inputs():
            if not _present(sample, source_input.path.split(".")):
                absent.add((resource, source_input.path))
    return absent


def test_every_mapped_field_exists_at_the_pinned_version():
    absent = absent_fields(DEFAULT_STRIPE_API_VERSION)
    unexplained = sorted(absent - set(NOT_IN_THE_PINNED_SAMPLE))
    assert not unexplained, (
        f"the XDM mapping reads fields that Stripe API version {DEFAULT_STRIPE_API_VERSION} does "
        f"not return: {unexplained}. Map a field the version has, or vendor the version that "
        "has it (stripe_aep/specs/stripe) and pin it."
    )
    stale = sorted(set(NOT_IN_THE_PINNED_SAMPLE) - absent)
    assert not stale, f"listed as absent but present (or no longer read): {stale}"


def test_refund_customer_is_read_and_exists_only_from_2026_07_29():
    """The reason for the pin: at the older vendored version the refund has no customer, so the
    mapping must take it from the charge (see test_refund_customer.py)."""
    assert ("refunds", "customer") not in absent_fields(DEFAULT_STRIPE_API_VERSION)
    assert ("refunds", "customer") in absent_fields("2026-06-24.dahlia")


@pytest.mark.parametrize("version", ["2026-06-24.dahlia", DEFAULT_STRIPE_API_VERSION])
def test_the_check_can_fail(version):
    """A mapped path no version has is reported (the checker is not vacuous)."""
    sample = stripe_specs.sample_object("refund", version)
    assert not _present(sample, ["no_such_field"])
    assert _present(sample, ["destination_details", "type"])
    assert not _present(stripe_specs.sample_object("balance_transaction", version),
                        ["fee_details[]", "amount"])  # fmt: skip


#: What the older vendored version (2026-06-24.dahlia) lacks beyond the pinned one's absences.
ONLY_AT_THE_PINNED_VERSION = {
    ("disputes", "payment_method_details.card.network"): "arrived in 2026-07-29.dahlia",
}


@pytest.mark.parametrize("version", ["2026-06-24.dahlia", DEFAULT_STRIPE_API_VERSION])
@pytest.mark.parametrize("resource", ["disputes", "invoices"])
def test_the_new_resources_read_fields_both_vendored_versions_send(version, resource):
    """Disputes and invoices (not in Adobe's own Stripe source) against both vendored shapes: the
    only fields missing are the listed ones, at either version."""
    absent = {key for key in absent_fields(version) if key[0] == resource}
    allowed = {key for key in NOT_IN_THE_PINNED_SAMPLE if key[0] == resource}
    if version != DEFAULT_STRIPE_API_VERSION:
        allowed |= {key for key in ONLY_AT_THE_PINNED_VERSION if key[0] == resource}
    assert absent == allowed
