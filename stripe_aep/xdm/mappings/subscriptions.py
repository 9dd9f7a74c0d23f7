"""Subscriptions → XDM ExperienceEvents: one event per observed subscription state.

A subscription is long-lived, but a customer can hold several, and a record keyed by the customer
identity would merge them into one profile fragment. So each observed subscription state is an
ExperienceEvent (`stripe.subscription.<status>`; a changed state gets a new deterministic `_id`),
timed at the latest datable lifecycle moment (max of `created`, `canceled_at`, `ended_at`). Primary
identity: the customer id. Billing periods are read from the subscription (API versions before
2025-03-31) or from its first item (later versions); each item carries its own period, price and
interval (from `price`, or the legacy `plan`).
"""

from __future__ import annotations

from stripe_aep.xdm.mappings.common import (
    T,
    coalesce,
    coalesce_time,
    currency_field,
    event_type,
    latest_seconds,
    metadata_field,
    record_id,
    timestamp_field,
    upper_coalesce,
)
from stripe_aep.xdm.resources import Identity, ResourceMapping
from stripe_aep.xdm.spec import (
    Each,
    Expr,
    Field,
    Id,
    ListFirst,
    Major,
    S,
    Time,
)
from stripe_aep.xdm.standard import (
    CUSTOMER_NAMESPACE,
)

MAPPING = ResourceMapping(
    rationale=__doc__,
    identities=(Identity("/_{TENANT}/subscription/customer", CUSTOMER_NAMESPACE, primary=True),),
    standard_fields=(
        record_id(),
        timestamp_field(
            Expr(
                latest_seconds,
                (S("created", "integer"), S("canceled_at", "integer"), S("ended_at", "integer")),
                "max(`created`, `canceled_at`, `ended_at`) (Unix seconds → UTC)",
            ),
            "Event time: the latest datable lifecycle moment of the subscription.",
        ),
        event_type("stripe.subscription.", "status"),
    ),
    resource_fields=(
        Field(
            "customer",
            T.STRING,
            "Customer id (identity `StripeCustomerId`).",
            Id("customer"),
            required=True,
        ),
        Field(
            "status",
            T.STRING,
            "Subscription status.",
            S("status"),
            suggested=(
                "active",
                "canceled",
                "incomplete",
                "incomplete_expired",
                "past_due",
                "paused",
                "trialing",
                "unpaid",
            ),
        ),
        currency_field(),
        Field(
            "collectionMethod",
            T.STRING,
            "charge_automatically or send_invoice.",
            S("collection_method"),
        ),
        Field(
            "cancelAtPeriodEnd",
            T.BOOLEAN,
            "Cancels at the end of the period.",
            S("cancel_at_period_end", "boolean"),
        ),
        Field("cancelAt", T.DATETIME, "Scheduled cancellation time.", Time("cancel_at")),
        Field("canceledAt", T.DATETIME, "When it was canceled.", Time("canceled_at")),
        Field(
            "cancellationReason", T.STRING, "Why it was canceled.", S("cancellation_details.reason")
        ),
        Field("endedAt", T.DATETIME, "When it ended.", Time("ended_at")),
        Field("startDate", T.DATETIME, "Start date.", Time("start_date")),
        Field(
            "billingCycleAnchor", T.DATETIME, "Billing cycle anchor.", Time("billing_cycle_anchor")
        ),
        Field("trialStart", T.DATETIME, "Trial start.", Time("trial_start")),
        Field("trialEnd", T.DATETIME, "Trial end.", Time("trial_end")),
        Field(
            "currentPeriodStart",
            T.DATETIME,
            "Start of the current billing period.",
            Expr(
                coalesce_time,
                (
                    S("current_period_start", "integer"),
                    ListFirst("items.data", "current_period_start"),
                ),
                "`current_period_start`, else `items.data[0].current_period_start`",
            ),
        ),
        Field(
            "currentPeriodEnd",
            T.DATETIME,
            "End of the current billing period.",
            Expr(
                coalesce_time,
                (
                    S("current_period_end", "integer"),
                    ListFirst("items.data", "current_period_end"),
                ),
                "`current_period_end`, else `items.data[0].current_period_end`",
            ),
        ),
        Field("latestInvoice", T.STRING, "Latest invoice id.", Id("latest_invoice")),
        Field(
            "defaultPaymentMethod",
            T.STRING,
            "Default payment method id.",
            Id("default_payment_method"),
        ),
        Field("description", T.STRING, "Description.", S("description")),
        Field(
            "daysUntilDue", T.LONG, "Days until an invoice is due.", S("days_until_due", "integer")
        ),
        Field(
            "items",
            T.ARRAY,
            "Subscription items.",
            Each("items.data"),
            children=(
                Field("id", T.STRING, "Subscription item id.", S("id")),
                Field("created", T.DATETIME, "Item creation time.", Time("created")),
                Field("quantity", T.LONG, "Quantity.", S("quantity", "integer")),
                Field(
                    "priceId",
                    T.STRING,
                    "Price id (joins the prices dataset).",
                    Expr(coalesce, (S("price.id"), S("plan.id")), "`price.id`, else `plan.id`"),
                ),
                Field(
                    "productId",
                    T.STRING,
                    "Product id.",
                    Expr(
                        coalesce,
                        (Id("price.product"), Id("plan.product")),
                        "`price.product`, else `plan.product` (expandable)",
                    ),
                ),
                Field(
                    "unitAmount",
                    T.LONG,
                    "Unit amount in minor units.",
                    Expr(
                        coalesce,
                        (S("price.unit_amount", "integer"), S("plan.amount", "integer")),
                        "`price.unit_amount`, else `plan.amount`",
                    ),
                ),
                Field(
                    "unitAmountMajor",
                    T.NUMBER,
                    "Unit amount in major units.",
                    Major(
                        Expr(
                            coalesce,
                            (S("price.unit_amount", "integer"), S("plan.amount", "integer")),
                            "`price.unit_amount`, else `plan.amount`",
                        ),
                        Expr(
                            coalesce,
                            (S("price.currency"), S("plan.currency")),
                            "`price.currency`, else `plan.currency`",
                        ),
                    ),
                ),
                Field(
                    "currency",
                    T.STRING,
                    "Upper-case ISO 4217 currency.",
                    Expr(
                        upper_coalesce,
                        (S("price.currency"), S("plan.currency")),
                        "`price.currency`, else `plan.currency`, upper-cased",
                    ),
                ),
                Field(
                    "interval",
                    T.STRING,
                    "Billing interval (day, week, month, year).",
                    Expr(
                        coalesce,
                        (S("price.recurring.interval"), S("plan.interval")),
                        "`price.recurring.interval`, else `plan.interval`",
                    ),
                ),
                Field(
                    "intervalCount",
                    T.LONG,
                    "Number of intervals between billings.",
                    Expr(
                        coalesce,
                        (
                            S("price.recurring.interval_count", "integer"),
                            S("plan.interval_count", "integer"),
                        ),
                        "`price.recurring.interval_count`, else `plan.interval_count`",
                    ),
                ),
                Field(
                    "currentPeriodStart",
                    T.DATETIME,
                    "Item billing period start (API versions since 2025-03-31).",
                    Time("current_period_start"),
                ),
                Field(
                    "currentPeriodEnd",
                    T.DATETIME,
                    "Item billing period end (API versions since 2025-03-31).",
                    Time("current_period_end"),
                ),
            ),
        ),
        metadata_field(),
    ),
)
