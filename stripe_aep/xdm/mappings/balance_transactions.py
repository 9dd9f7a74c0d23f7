"""Balance transactions → XDM ExperienceEvents of the Stripe account (no person identity).

A balance transaction is a movement of funds in the Stripe balance at one moment: an
ExperienceEvent with event type `stripe.balanceTransaction.<type>`. It belongs to the account, not
to a customer, so it has no person identity and is not Profile-enabled; it joins to charges and
refunds through `_{TENANT}.balanceTransaction.source` (CJA: event dataset whose person id is
`_{TENANT}.stripe.account`, or a lookup).
"""

from __future__ import annotations

from stripe_aep.xdm.mappings.common import (
    T,
    currency_field,
    event_type,
    money,
    record_id,
    timestamp_field,
)
from stripe_aep.xdm.resources import ResourceMapping
from stripe_aep.xdm.spec import (
    Currency,
    Each,
    Field,
    Id,
    Major,
    S,
    Time,
)

MAPPING = ResourceMapping(
    rationale=__doc__,
    identities=(),
    standard_fields=(
        record_id(),
        timestamp_field(Time("created"), "Event time: when the transaction was created."),
        event_type("stripe.balanceTransaction.", "type"),
    ),
    resource_fields=(
        *money("amount", "amount", "currency", "Gross amount (signed)", required=True),
        *money("fee", "fee", "currency", "Fees paid (signed)"),
        *money("net", "net", "currency", "Net amount (signed)"),
        currency_field(),
        Field(
            "exchangeRate",
            T.NUMBER,
            "Exchange rate used when the source currency differs.",
            S("exchange_rate", "number"),
        ),
        Field("type", T.STRING, "Transaction type (charge, refund, payout, …).", S("type")),
        Field("reportingCategory", T.STRING, "Reporting category.", S("reporting_category")),
        Field(
            "status",
            T.STRING,
            "pending or available.",
            S("status"),
            suggested=("pending", "available"),
        ),
        Field("balanceType", T.STRING, "Balance the transaction affects.", S("balance_type")),
        Field(
            "availableOn",
            T.DATETIME,
            "When the funds become available.",
            Time("available_on"),
        ),
        Field(
            "source",
            T.STRING,
            "Id of the object that caused the transaction (charge, refund, payout, …).",
            Id("source"),
        ),
        Field("description", T.STRING, "Description.", S("description")),
        Field(
            "feeDetails",
            T.ARRAY,
            "Fee breakdown.",
            Each("fee_details"),
            children=(
                Field("amount", T.LONG, "Fee in minor units.", S("amount", "integer")),
                Field(
                    "amountMajor",
                    T.NUMBER,
                    "Fee in major units.",
                    Major(S("amount", "integer"), S("currency")),
                ),
                Field(
                    "currency",
                    T.STRING,
                    "Upper-case ISO 4217 currency.",
                    Currency("currency"),
                ),
                Field("type", T.STRING, "Fee type.", S("type")),
                Field("description", T.STRING, "Fee description.", S("description")),
                Field("application", T.STRING, "Connect application id.", S("application")),
            ),
        ),
    ),
)
