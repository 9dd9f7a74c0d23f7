"""Invoices → XDM ExperienceEvents: one event per observed invoice state, with the order fields.

An invoice moves through states (`draft`, `open`, `paid`, `void`, `uncollectible`) as a
subscription does, and a customer receives many: a record keyed by the customer identity would
merge them into one profile fragment. So each observed invoice state is an ExperienceEvent
(`stripe.invoice.<status>`; a changed state gets a new deterministic `_id`), timed at the latest
datable lifecycle moment (max of `created` and the `status_transitions` times: finalized, paid,
voided, marked uncollectible). Primary identity: the customer id (`StripeCustomerId`). The standard
commerce order carries the invoice id, total and currency, so Adobe's commerce reports see what was
billed; it is not a `commerce.purchases` event and has no payments, because the charge that pays
the invoice is already the purchase (counting both would double the revenue). Each line keeps its
amount, period, quantity and price (`pricing.price_details.price` since 2025-03-31, else the legacy
`price`), joining the prices dataset like subscription items; the subscription is read from
`parent` (2025-03-31 on) or the legacy top-level field. Only the lines Stripe embeds in the
invoice are mapped (`linesHasMore` tells when the invoice has more).
"""

from __future__ import annotations

from stripe_aep.xdm.mappings.common import (
    ISO_CURRENCY,
    T,
    coalesce,
    currency_field,
    event_type,
    latest_seconds,
    metadata_field,
    money,
    record_id,
    timestamp_field,
)
from stripe_aep.xdm.resources import Identity, ResourceMapping
from stripe_aep.xdm.spec import Currency, Each, Expr, Field, Id, Major, S, Time
from stripe_aep.xdm.standard import CUSTOMER_NAMESPACE, FG_COMMERCE

ST = "status_transitions"

MAPPING = ResourceMapping(
    rationale=__doc__,
    standard_field_groups=(FG_COMMERCE,),
    identities=(Identity("/_{TENANT}/invoice/customer", CUSTOMER_NAMESPACE, primary=True),),
    standard_fields=(
        record_id(),
        timestamp_field(
            Expr(
                latest_seconds,
                (
                    S("created", "integer"),
                    S(f"{ST}.finalized_at", "integer"),
                    S(f"{ST}.paid_at", "integer"),
                    S(f"{ST}.voided_at", "integer"),
                    S(f"{ST}.marked_uncollectible_at", "integer"),
                ),
                "max(`created`, `status_transitions.finalized_at`, `.paid_at`, `.voided_at`, "
                "`.marked_uncollectible_at`) (Unix seconds → UTC)",
            ),
            "Event time: the latest datable lifecycle moment of the invoice.",
        ),
        event_type("stripe.invoice.", "status"),
        Field(
            "commerce",
            T.OBJECT,
            "Standard XDM commerce details (Commerce Details field group).",
            standard=FG_COMMERCE,
            children=(
                Field(
                    "order",
                    T.OBJECT,
                    "The order the invoice bills.",
                    children=(
                        Field("purchaseID", T.STRING, "Stripe invoice id.", S("id")),
                        Field(
                            "priceTotal",
                            T.NUMBER,
                            "Invoice total in major units.",
                            Major(S("total", "integer"), S("currency")),
                        ),
                        Field(
                            "currencyCode",
                            T.STRING,
                            "ISO 4217 currency code.",
                            Currency("currency"),
                            pattern=ISO_CURRENCY,
                        ),
                    ),
                ),
            ),
        ),
    ),
    resource_fields=(
        Field("customer", T.STRING, "Customer id (identity `StripeCustomerId`).", Id("customer")),
        Field(
            "status",
            T.STRING,
            "Invoice status.",
            S("status"),
            suggested=("draft", "open", "paid", "uncollectible", "void"),
        ),
        Field("number", T.STRING, "Invoice number (set when finalized).", S("number")),
        Field(
            "billingReason",
            T.STRING,
            "Why the invoice was created.",
            S("billing_reason"),
            suggested=(
                "automatic_pending_invoice_item_invoice",
                "manual",
                "quote_accept",
                "subscription",
                "subscription_create",
                "subscription_cycle",
                "subscription_threshold",
                "subscription_update",
                "upcoming",
            ),
        ),
        Field(
            "collectionMethod",
            T.STRING,
            "charge_automatically or send_invoice.",
            S("collection_method"),
        ),
        currency_field(),
        *money("total", "total", "currency", "Total after discounts and taxes", required=True),
        *money("subtotal", "subtotal", "currency", "Total before discounts and taxes"),
        *money("amountDue", "amount_due", "currency", "Amount due"),
        *money("amountPaid", "amount_paid", "currency", "Amount paid"),
        *money("amountRemaining", "amount_remaining", "currency", "Amount remaining"),
        Field(
            "subscription",
            T.STRING,
            "Subscription id, if a subscription generated the invoice.",
            Expr(
                coalesce,
                (Id("parent.subscription_details.subscription"), Id("subscription")),
                "`parent.subscription_details.subscription`, else `subscription` (expandable)",
            ),
        ),
        Field(
            "attempted", T.BOOLEAN, "True once payment was attempted.", S("attempted", "boolean")
        ),
        Field("attemptCount", T.LONG, "Number of payment attempts.", S("attempt_count", "integer")),
        Field("dueDate", T.DATETIME, "When payment is due (send_invoice).", Time("due_date")),
        Field("periodStart", T.DATETIME, "Start of the usage period.", Time("period_start")),
        Field("periodEnd", T.DATETIME, "End of the usage period.", Time("period_end")),
        Field(
            "effectiveAt",
            T.DATETIME,
            "When the invoice is considered issued.",
            Time("effective_at"),
        ),
        Field("finalizedAt", T.DATETIME, "When it was finalized.", Time(f"{ST}.finalized_at")),
        Field("paidAt", T.DATETIME, "When it was paid.", Time(f"{ST}.paid_at")),
        Field("voidedAt", T.DATETIME, "When it was voided.", Time(f"{ST}.voided_at")),
        Field(
            "markedUncollectibleAt",
            T.DATETIME,
            "When it was marked uncollectible.",
            Time(f"{ST}.marked_uncollectible_at"),
        ),
        Field("customerEmail", T.STRING, "Customer email at finalization.", S("customer_email")),
        Field(
            "defaultPaymentMethod",
            T.STRING,
            "Default payment method id.",
            Id("default_payment_method"),
        ),
        Field("description", T.STRING, "Description (memo).", S("description")),
        Field(
            "linesHasMore",
            T.BOOLEAN,
            "True if the invoice has more lines than the ones embedded (and mapped) here.",
            S("lines.has_more", "boolean"),
        ),
        Field(
            "lines",
            T.ARRAY,
            "Invoice lines embedded in the invoice.",
            Each("lines.data"),
            children=(
                Field("id", T.STRING, "Line item id.", S("id")),
                Field("amount", T.LONG, "Line amount in minor units.", S("amount", "integer")),
                Field(
                    "amountMajor",
                    T.NUMBER,
                    "Line amount in major units.",
                    Major(S("amount", "integer"), S("currency")),
                ),
                Field("currency", T.STRING, "Upper-case ISO 4217 currency.", Currency("currency")),
                Field("description", T.STRING, "Line description.", S("description")),
                Field("quantity", T.LONG, "Quantity.", S("quantity", "integer")),
                Field(
                    "priceId",
                    T.STRING,
                    "Price id (joins the prices dataset).",
                    Expr(
                        coalesce,
                        (Id("pricing.price_details.price"), S("price.id")),
                        "`pricing.price_details.price` (expandable), else `price.id` (API "
                        "versions before 2025-03-31)",
                    ),
                ),
                Field(
                    "productId",
                    T.STRING,
                    "Product id.",
                    Expr(
                        coalesce,
                        (S("pricing.price_details.product"), Id("price.product")),
                        "`pricing.price_details.product`, else `price.product` (expandable)",
                    ),
                ),
                Field(
                    "subscription",
                    T.STRING,
                    "Subscription id, for a line billed by a subscription.",
                    Expr(
                        coalesce,
                        (Id("parent.subscription_item_details.subscription"), Id("subscription")),
                        "`parent.subscription_item_details.subscription`, else `subscription`",
                    ),
                ),
                Field(
                    "periodStart", T.DATETIME, "Start of the line's period.", Time("period.start")
                ),
                Field("periodEnd", T.DATETIME, "End of the line's period.", Time("period.end")),
            ),
        ),
        metadata_field(),
    ),
)
