"""Refunds → XDM ExperienceEvents: money returned, as back-office credit memos.

A refund is money returned at one moment: an ExperienceEvent. Succeeded refunds use the standard
back-office event type `commerce.backofficeCreditMemoIssued`, other statuses
`stripe.refund.<status>`; the order id is the refunded charge and the payment carries the refunded
amount. Primary identity: the customer id, at every API version. Stripe sends `customer` on refunds
since 2026-07-29.dahlia; for raw refunds read at an older version the conversion takes the customer
of the refunded charge from the raw charges already on the lake (a sidecar index per raw charges
file), so `xdm/refunds` depends on `stripe/charges`. It never asks Stripe: expanding `data.charge`
on the refund list is what Stripe's concurrency limiter sheds first, and one charge retrieve per
refund would cost a request per object (≈ 100 s per 2,500 refunds at the 25 requests/s endpoint
limit). A refund whose charge is not on the lake (older than the loaded range) or has no customer
keeps a null identity.
"""

from __future__ import annotations

from stripe_aep.xdm.mappings.common import (
    ISO_CURRENCY,
    ChargeCustomer,
    T,
    currency_field,
    event_type,
    metadata_field,
    money,
    record_id,
    timestamp_field,
)
from stripe_aep.xdm.resources import Identity, ResourceMapping
from stripe_aep.xdm.spec import (
    Currency,
    Field,
    Id,
    Major,
    One,
    S,
    Time,
)
from stripe_aep.xdm.standard import (
    CUSTOMER_NAMESPACE,
    FG_COMMERCE,
)

MAPPING = ResourceMapping(
    rationale=__doc__,
    standard_field_groups=(FG_COMMERCE,),
    identities=(Identity("/_{TENANT}/refund/customer", CUSTOMER_NAMESPACE, primary=True),),
    standard_fields=(
        record_id(),
        timestamp_field(Time("created"), "Event time: when the refund was created."),
        event_type(
            "stripe.refund.", "status", {"succeeded": "commerce.backofficeCreditMemoIssued"}
        ),
        Field(
            "commerce",
            T.OBJECT,
            "Standard XDM commerce details (Commerce Details field group).",
            standard=FG_COMMERCE,
            children=(
                Field(
                    "order",
                    T.OBJECT,
                    "The refunded order.",
                    children=(
                        Field("purchaseID", T.STRING, "Refunded charge id.", Id("charge")),
                        Field(
                            "currencyCode",
                            T.STRING,
                            "ISO 4217 currency code.",
                            Currency("currency"),
                            pattern=ISO_CURRENCY,
                        ),
                        Field(
                            "payments",
                            T.ARRAY,
                            "The refund as a payment item (one element).",
                            One(),
                            children=(
                                Field("transactionID", T.STRING, "Stripe refund id.", S("id")),
                                Field(
                                    "paymentAmount",
                                    T.NUMBER,
                                    "Refunded amount in major units.",
                                    Major(S("amount", "integer"), S("currency")),
                                ),
                                Field(
                                    "currencyCode",
                                    T.STRING,
                                    "ISO 4217 currency code.",
                                    Currency("currency"),
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    ),
    resource_fields=(
        *money("amount", "amount", "currency", "Refunded amount", required=True),
        currency_field(),
        Field(
            "status",
            T.STRING,
            "Refund status.",
            S("status"),
            suggested=("pending", "requires_action", "succeeded", "failed", "canceled"),
        ),
        Field(
            "reason",
            T.STRING,
            "Reason for the refund.",
            S("reason"),
            suggested=(
                "duplicate",
                "fraudulent",
                "requested_by_customer",
                "expired_uncaptured_charge",
            ),
        ),
        Field("charge", T.STRING, "Refunded charge id.", Id("charge")),
        Field("paymentIntent", T.STRING, "Payment intent id.", Id("payment_intent")),
        Field(
            "customer",
            T.STRING,
            "Customer id (identity `StripeCustomerId`), from the refund or its charge.",
            ChargeCustomer(
                "customer",
                "`customer` (expandable) where the API version sends it (2026-07-29.dahlia on); "
                "else the `customer` of the refunded `charge`, from the raw charges on the lake",
            ),
        ),
        Field("balanceTransaction", T.STRING, "Balance transaction id.", Id("balance_transaction")),
        Field("description", T.STRING, "Description.", S("description")),
        Field("failureReason", T.STRING, "Why a refund failed.", S("failure_reason")),
        Field("receiptNumber", T.STRING, "Receipt number.", S("receipt_number")),
        Field(
            "destinationType",
            T.STRING,
            "Type of the refund destination (card, …).",
            S("destination_details.type"),
        ),
        metadata_field(),
    ),
)
