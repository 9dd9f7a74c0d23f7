"""Charges → XDM ExperienceEvents: a payment attempt, with the standard commerce fields.

A charge is a payment attempt at one moment: an ExperienceEvent. Succeeded charges are
`commerce.purchases` events with the standard order total, currency and payment (type, amount,
transaction id), so Adobe's commerce metrics work as is; other statuses are
`stripe.charge.<status>`. Primary identity: the customer id (`StripeCustomerId`), so Profile
stitches the charge to the customer; guest charges (no customer) stay in the data lake and CJA but
are not attached to a profile.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from stripe_aep.xdm.mappings.common import (
    ISO_CURRENCY,
    T,
    address_field,
    coalesce,
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
    Expr,
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

#: Buy-now-pay-later payment method types that are queryable directly.
BNPL_TYPES = ("affirm", "afterpay_clearpay", "klarna", "zip")
XDM_PAYMENT_TYPES = (
    "cash",
    "credit_card",
    "debit_card",
    "gift_card",
    "check",
    "paypal",
    "wire_transfer",
    "credit_card_reference",
    "other",
)
PMD = "payment_method_details"


def _payment_type(pm_type: pa.Array, funding: pa.Array) -> pa.Array:
    card = pc.if_else(pc.equal(funding, "debit"), "debit_card", "credit_card")
    result = pc.if_else(pc.equal(pm_type, "card"), card, "other")
    result = pc.if_else(pc.equal(pm_type, "paypal"), "paypal", result)
    transfer = pc.is_in(pm_type, value_set=pa.array(["ach_credit_transfer", "customer_balance"]))
    return pc.if_else(transfer, "wire_transfer", result)


def _bnpl_provider(pm_type: pa.Array) -> pa.Array:
    is_bnpl = pc.is_in(pm_type, value_set=pa.array(BNPL_TYPES))
    return pc.if_else(is_bnpl, pm_type, pa.scalar(None, pa.string()))


def _is_bnpl(pm_type: pa.Array) -> pa.Array:
    return pc.if_else(
        pc.is_null(pm_type),
        pa.scalar(None, pa.bool_()),
        pc.is_in(pm_type, value_set=pa.array(BNPL_TYPES)),
    )


def _purchase_measure(status: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(status, "succeeded"), 1.0, pa.scalar(None, pa.float64()))


# ------------------------------------------------------------------------------------------


MAPPING = ResourceMapping(
    rationale=__doc__,
    standard_field_groups=(FG_COMMERCE,),
    identities=(Identity("/_{TENANT}/charge/customer", CUSTOMER_NAMESPACE, primary=True),),
    standard_fields=(
        record_id(),
        timestamp_field(Time("created"), "Event time: when the charge was created."),
        event_type("stripe.charge.", "status", {"succeeded": "commerce.purchases"}),
        Field(
            "commerce",
            T.OBJECT,
            "Standard XDM commerce details (Commerce Details field group).",
            standard=FG_COMMERCE,
            children=(
                Field(
                    "order",
                    T.OBJECT,
                    "The order paid by this charge.",
                    children=(
                        Field(
                            "purchaseID",
                            T.STRING,
                            "Payment intent id, or the charge id for charges without one.",
                            Expr(
                                coalesce,
                                (Id("payment_intent"), S("id")),
                                "`payment_intent` (expandable) if set, else `id`",
                            ),
                        ),
                        Field(
                            "priceTotal",
                            T.NUMBER,
                            "Charged amount in major units.",
                            Major(S("amount", "integer"), S("currency")),
                        ),
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
                            "The payment: one element per charge.",
                            One(),
                            children=(
                                Field(
                                    "transactionID",
                                    T.STRING,
                                    "Stripe charge id.",
                                    S("id"),
                                ),
                                Field(
                                    "paymentAmount",
                                    T.NUMBER,
                                    "Charged amount in major units.",
                                    Major(S("amount", "integer"), S("currency")),
                                ),
                                Field(
                                    "currencyCode",
                                    T.STRING,
                                    "ISO 4217 currency code.",
                                    Currency("currency"),
                                ),
                                Field(
                                    "paymentType",
                                    T.STRING,
                                    "XDM payment type from the Stripe payment method type.",
                                    Expr(
                                        _payment_type,
                                        (S(f"{PMD}.type"), S(f"{PMD}.card.funding")),
                                        "`card` → `debit_card` if `card.funding` is `debit`, "
                                        "else `credit_card`; `paypal` → `paypal`; "
                                        "`ach_credit_transfer`/`customer_balance` → "
                                        "`wire_transfer`; anything else → `other`",
                                    ),
                                    enum=XDM_PAYMENT_TYPES,
                                ),
                            ),
                        ),
                    ),
                ),
                Field(
                    "purchases",
                    T.OBJECT,
                    "Purchases measure.",
                    children=(
                        Field(
                            "value",
                            T.NUMBER,
                            "1 for a succeeded charge, absent otherwise.",
                            Expr(_purchase_measure, (S("status"),), "1 if `status` is `succeeded`"),
                        ),
                    ),
                ),
            ),
        ),
    ),
    resource_fields=(
        *money("amount", "amount", "currency", "Charged amount", required=True),
        *money("amountCaptured", "amount_captured", "currency", "Captured amount"),
        *money("amountRefunded", "amount_refunded", "currency", "Refunded amount"),
        *money("applicationFeeAmount", "application_fee_amount", "currency", "Application fee"),
        currency_field(),
        Field(
            "status",
            T.STRING,
            "Charge status.",
            S("status"),
            suggested=("succeeded", "pending", "failed"),
        ),
        Field(
            "paid",
            T.BOOLEAN,
            "True if the charge succeeded or was authorized.",
            S("paid", "boolean"),
        ),
        Field("captured", T.BOOLEAN, "True if the charge was captured.", S("captured", "boolean")),
        Field("refunded", T.BOOLEAN, "True if fully refunded.", S("refunded", "boolean")),
        Field("disputed", T.BOOLEAN, "True if disputed.", S("disputed", "boolean")),
        Field("customer", T.STRING, "Customer id (identity `StripeCustomerId`).", Id("customer")),
        Field("paymentIntent", T.STRING, "Payment intent id.", Id("payment_intent")),
        Field("invoice", T.STRING, "Invoice id (API versions before 2025-03-31).", Id("invoice")),
        Field("balanceTransaction", T.STRING, "Balance transaction id.", Id("balance_transaction")),
        Field("paymentMethod", T.STRING, "Payment method id.", S("payment_method")),
        Field("description", T.STRING, "Description.", S("description")),
        Field("failureCode", T.STRING, "Error code of a failed charge.", S("failure_code")),
        Field("failureMessage", T.STRING, "Message of a failed charge.", S("failure_message")),
        Field("receiptEmail", T.STRING, "Receipt email address.", S("receipt_email")),
        Field(
            "statementDescriptor",
            T.STRING,
            "Statement descriptor as shown on the statement.",
            S("calculated_statement_descriptor"),
        ),
        Field(
            "billingDetails",
            T.OBJECT,
            "Billing details of the payment method.",
            children=(
                Field("name", T.STRING, "Billing name.", S("billing_details.name")),
                Field("email", T.STRING, "Billing email.", S("billing_details.email")),
                Field("phone", T.STRING, "Billing phone.", S("billing_details.phone")),
                address_field("address", "billing_details.address", "Billing address."),
            ),
        ),
        Field(
            "outcome",
            T.OBJECT,
            "Result of the payment: network status, risk, reason.",
            children=(
                Field("type", T.STRING, "Outcome type.", S("outcome.type")),
                Field("networkStatus", T.STRING, "Network status.", S("outcome.network_status")),
                Field("reason", T.STRING, "Reason code.", S("outcome.reason")),
                Field("riskLevel", T.STRING, "Radar risk level.", S("outcome.risk_level")),
                Field(
                    "riskScore",
                    T.LONG,
                    "Radar risk score (0-100).",
                    S("outcome.risk_score", "integer"),
                ),
                Field(
                    "sellerMessage",
                    T.STRING,
                    "Message for the seller.",
                    S("outcome.seller_message"),
                ),
            ),
        ),
        Field(
            "paymentMethodDetails",
            T.OBJECT,
            "Payment method used: its type plus card and buy-now-pay-later details.",
            children=(
                Field(
                    "type",
                    T.STRING,
                    "Stripe payment method type (`card`, `klarna`, `afterpay_clearpay`, …).",
                    S(f"{PMD}.type"),
                ),
                Field(
                    "isBnpl",
                    T.BOOLEAN,
                    "True for buy-now-pay-later types (affirm, afterpay_clearpay, klarna, zip).",
                    Expr(
                        _is_bnpl,
                        (S(f"{PMD}.type"),),
                        "`type` in affirm, afterpay_clearpay, klarna, zip",
                    ),
                ),
                Field(
                    "bnplProvider",
                    T.STRING,
                    "The buy-now-pay-later provider, null for other payment methods.",
                    Expr(_bnpl_provider, (S(f"{PMD}.type"),), "`type` if buy-now-pay-later"),
                    suggested=BNPL_TYPES,
                ),
                Field(
                    "card",
                    T.OBJECT,
                    "Card details.",
                    children=(
                        Field("brand", T.STRING, "Card brand.", S(f"{PMD}.card.brand")),
                        Field(
                            "funding",
                            T.STRING,
                            "credit, debit, prepaid or unknown.",
                            S(f"{PMD}.card.funding"),
                        ),
                        Field("country", T.STRING, "Issuing country.", S(f"{PMD}.card.country")),
                        Field("last4", T.STRING, "Last four digits.", S(f"{PMD}.card.last4")),
                        Field(
                            "expMonth",
                            T.LONG,
                            "Expiry month.",
                            S(f"{PMD}.card.exp_month", "integer"),
                        ),
                        Field(
                            "expYear", T.LONG, "Expiry year.", S(f"{PMD}.card.exp_year", "integer")
                        ),
                        Field("network", T.STRING, "Card network.", S(f"{PMD}.card.network")),
                        Field(
                            "fingerprint",
                            T.STRING,
                            "Card fingerprint.",
                            S(f"{PMD}.card.fingerprint"),
                        ),
                        Field(
                            "walletType",
                            T.STRING,
                            "Wallet (apple_pay, link, …).",
                            S(f"{PMD}.card.wallet.type"),
                        ),
                        Field(
                            "threeDSecureResult",
                            T.STRING,
                            "3D Secure result.",
                            S(f"{PMD}.card.three_d_secure.result"),
                        ),
                    ),
                ),
                Field(
                    "klarna",
                    T.OBJECT,
                    "Klarna details.",
                    children=(
                        Field(
                            "paymentMethodCategory",
                            T.STRING,
                            "Klarna category (pay_later, pay_now, pay_with_financing, pay_in_installments).",
                            S(f"{PMD}.klarna.payment_method_category"),
                        ),
                        Field(
                            "preferredLocale",
                            T.STRING,
                            "Customer locale.",
                            S(f"{PMD}.klarna.preferred_locale"),
                        ),
                        Field(
                            "payerCountry",
                            T.STRING,
                            "Payer's country.",
                            S(f"{PMD}.klarna.payer_details.address.country"),
                        ),
                    ),
                ),
                Field(
                    "afterpayClearpay",
                    T.OBJECT,
                    "Afterpay / Clearpay details.",
                    children=(
                        Field(
                            "orderId",
                            T.STRING,
                            "Afterpay order id.",
                            S(f"{PMD}.afterpay_clearpay.order_id"),
                        ),
                        Field(
                            "reference",
                            T.STRING,
                            "Merchant reference.",
                            S(f"{PMD}.afterpay_clearpay.reference"),
                        ),
                    ),
                ),
                Field(
                    "affirm",
                    T.OBJECT,
                    "Affirm details.",
                    children=(
                        Field(
                            "transactionId",
                            T.STRING,
                            "Affirm transaction id.",
                            S(f"{PMD}.affirm.transaction_id"),
                        ),
                    ),
                ),
            ),
        ),
        metadata_field(),
    ),
)
