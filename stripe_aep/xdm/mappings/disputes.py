"""Disputes → XDM ExperienceEvents of the customer of the disputed charge.

A dispute is a cardholder contesting a charge with their bank at one moment: an ExperienceEvent,
not a record, because it tells what happened to a payment, not what a person is. Each observed
state (`stripe.dispute.<status>`: `warning_needs_response` … `won`, `lost`) is its own event with
a new deterministic `_id`, timed at the dispute's creation, so the timeline shows when the
chargeback arrived and the latest version says how it ended. It uses no standard commerce
fields: XDM has no chargeback event type, and putting the disputed amount into the order fields
would count it as revenue in Adobe's commerce metrics; the amounts stay in the tenant fields,
with the balance transactions that withdrew and reinstated the funds. Primary identity: the
customer id (`StripeCustomerId`), so Profile stitches the dispute to the customer who disputed.
A dispute names only its charge, so the conversion takes the customer of that charge from the
raw charges already on the lake (never from Stripe), and `xdm/disputes` depends on
`stripe/charges`; a dispute whose charge is not on the lake or has no customer keeps a null
identity. Card disputes carry the card brand, the network and the network's reason code.
"""

from __future__ import annotations

from stripe_aep.xdm.mappings.common import (
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
from stripe_aep.xdm.spec import Currency, Each, Field, Id, Major, S, Time
from stripe_aep.xdm.standard import CUSTOMER_NAMESPACE

PMD = "payment_method_details"

MAPPING = ResourceMapping(
    rationale=__doc__,
    identities=(Identity("/_{TENANT}/dispute/customer", CUSTOMER_NAMESPACE, primary=True),),
    standard_fields=(
        record_id(),
        timestamp_field(Time("created"), "Event time: when the dispute was opened."),
        event_type("stripe.dispute.", "status"),
    ),
    resource_fields=(
        *money("amount", "amount", "currency", "Disputed amount", required=True),
        currency_field(),
        Field(
            "status",
            T.STRING,
            "Dispute status.",
            S("status"),
            suggested=(
                "warning_needs_response",
                "warning_under_review",
                "warning_closed",
                "needs_response",
                "under_review",
                "won",
                "lost",
                "prevented",
            ),
        ),
        Field(
            "reason",
            T.STRING,
            "Reason given by the cardholder's bank.",
            S("reason"),
            suggested=(
                "bank_cannot_process",
                "check_returned",
                "credit_not_processed",
                "customer_initiated",
                "debit_not_authorized",
                "duplicate",
                "fraudulent",
                "general",
                "incorrect_account_details",
                "insufficient_funds",
                "noncompliant",
                "product_not_received",
                "product_unacceptable",
                "subscription_canceled",
                "unrecognized",
            ),
        ),
        Field("charge", T.STRING, "Disputed charge id.", Id("charge")),
        Field("paymentIntent", T.STRING, "Payment intent id.", Id("payment_intent")),
        Field(
            "customer",
            T.STRING,
            "Customer id (identity `StripeCustomerId`): the customer of the disputed charge.",
            ChargeCustomer(
                None,
                "the `customer` of the disputed `charge`, from the raw charges on the lake (a "
                "dispute names no customer)",
            ),
        ),
        Field(
            "isChargeRefundable",
            T.BOOLEAN,
            "True if the charge can still be refunded (an inquiry not yet a chargeback).",
            S("is_charge_refundable", "boolean"),
        ),
        Field(
            "evidenceDetails",
            T.OBJECT,
            "Where the evidence stands.",
            children=(
                Field(
                    "dueBy",
                    T.DATETIME,
                    "Deadline to submit evidence.",
                    Time("evidence_details.due_by"),
                ),
                Field(
                    "hasEvidence",
                    T.BOOLEAN,
                    "True if evidence has been saved.",
                    S("evidence_details.has_evidence", "boolean"),
                ),
                Field(
                    "pastDue",
                    T.BOOLEAN,
                    "True if the deadline passed without evidence submitted.",
                    S("evidence_details.past_due", "boolean"),
                ),
                Field(
                    "submissionCount",
                    T.LONG,
                    "Number of evidence submissions.",
                    S("evidence_details.submission_count", "integer"),
                ),
            ),
        ),
        Field(
            "enhancedEligibilityTypes",
            T.ARRAY,
            "Enhanced evidence programmes the dispute qualifies for.",
            S("enhanced_eligibility_types", "string_list"),
            items=T.STRING,
        ),
        Field(
            "balanceTransactions",
            T.ARRAY,
            "Balance transactions of the dispute: funds withdrawn and, if won, reinstated.",
            Each("balance_transactions"),
            children=(
                Field("id", T.STRING, "Balance transaction id.", S("id")),
                Field("type", T.STRING, "Transaction type.", S("type")),
                Field(
                    "reportingCategory",
                    T.STRING,
                    "Reporting category (dispute, dispute_reversal).",
                    S("reporting_category"),
                ),
                Field("amount", T.LONG, "Amount in minor units (signed).", S("amount", "integer")),
                Field(
                    "amountMajor",
                    T.NUMBER,
                    "Amount in major units (signed).",
                    Major(S("amount", "integer"), S("currency")),
                ),
                Field("fee", T.LONG, "Fees in minor units (signed).", S("fee", "integer")),
                Field("net", T.LONG, "Net amount in minor units (signed).", S("net", "integer")),
                Field(
                    "currency",
                    T.STRING,
                    "Upper-case ISO 4217 currency.",
                    Currency("currency"),
                ),
            ),
        ),
        Field(
            "paymentMethodDetails",
            T.OBJECT,
            "Payment method of the disputed payment, with the network's dispute details.",
            children=(
                Field("type", T.STRING, "Stripe payment method type.", S(f"{PMD}.type")),
                Field(
                    "card",
                    T.OBJECT,
                    "Card dispute details.",
                    children=(
                        Field("brand", T.STRING, "Card brand.", S(f"{PMD}.card.brand")),
                        Field(
                            "caseType",
                            T.STRING,
                            "inquiry, chargeback or compliance.",
                            S(f"{PMD}.card.case_type"),
                            suggested=("chargeback", "compliance", "inquiry"),
                        ),
                        Field("network", T.STRING, "Card network.", S(f"{PMD}.card.network")),
                        Field(
                            "networkReasonCode",
                            T.STRING,
                            "The card network's reason code (e.g. Visa `10.4`).",
                            S(f"{PMD}.card.network_reason_code"),
                        ),
                    ),
                ),
                Field(
                    "klarna",
                    T.OBJECT,
                    "Klarna dispute details.",
                    children=(
                        Field(
                            "reasonCode",
                            T.STRING,
                            "Klarna's reason for the dispute.",
                            S(f"{PMD}.klarna.reason_code"),
                        ),
                    ),
                ),
                Field(
                    "paypal",
                    T.OBJECT,
                    "PayPal dispute details.",
                    children=(
                        Field("caseId", T.STRING, "PayPal case id.", S(f"{PMD}.paypal.case_id")),
                        Field(
                            "reasonCode",
                            T.STRING,
                            "PayPal's reason for the dispute.",
                            S(f"{PMD}.paypal.reason_code"),
                        ),
                    ),
                ),
            ),
        ),
        metadata_field(),
    ),
)
