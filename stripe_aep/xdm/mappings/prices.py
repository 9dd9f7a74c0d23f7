"""Prices → records of the custom class "Stripe Price" (a CJA lookup dataset).

A price belongs to the catalogue, not to a person: a custom record class "Stripe Price" (record
behaviour), used as a CJA lookup dataset keyed by `_{TENANT}.price.id` and joined from
`_{TENANT}.subscription.items[].priceId`. No person identity, not Profile-enabled.
`unit_amount_decimal` (sub-minor-unit precision) is kept as Stripe's exact decimal string.
"""

from __future__ import annotations

from stripe_aep.xdm.mappings.common import (
    T,
    currency_field,
    metadata_field,
    money,
    record_id,
)
from stripe_aep.xdm.resources import ResourceMapping
from stripe_aep.xdm.spec import (
    Field,
    Id,
    S,
)

MAPPING = ResourceMapping(
    rationale=__doc__,
    identities=(),
    custom_class_title="Stripe Price",
    standard_fields=(record_id(),),
    resource_fields=(
        Field("id", T.STRING, "Price id (lookup key).", S("id"), required=True),
        Field(
            "active",
            T.BOOLEAN,
            "Whether the price can be used for new purchases.",
            S("active", "boolean"),
        ),
        Field(
            "type",
            T.STRING,
            "one_time or recurring.",
            S("type"),
            suggested=("one_time", "recurring"),
        ),
        Field("product", T.STRING, "Product id.", Id("product")),
        Field("nickname", T.STRING, "Nickname.", S("nickname")),
        Field("lookupKey", T.STRING, "Lookup key.", S("lookup_key")),
        *money("unitAmount", "unit_amount", "currency", "Unit amount"),
        Field(
            "unitAmountDecimal",
            T.STRING,
            "Unit amount in minor units as Stripe's exact decimal string (up to 12 decimals).",
            S("unit_amount_decimal"),
        ),
        currency_field(),
        Field("billingScheme", T.STRING, "per_unit or tiered.", S("billing_scheme")),
        Field("taxBehavior", T.STRING, "inclusive, exclusive or unspecified.", S("tax_behavior")),
        Field("tiersMode", T.STRING, "graduated or volume.", S("tiers_mode")),
        Field(
            "recurring",
            T.OBJECT,
            "Recurring components of the price.",
            children=(
                Field("interval", T.STRING, "day, week, month or year.", S("recurring.interval")),
                Field(
                    "intervalCount",
                    T.LONG,
                    "Intervals between billings.",
                    S("recurring.interval_count", "integer"),
                ),
                Field("usageType", T.STRING, "licensed or metered.", S("recurring.usage_type")),
                Field(
                    "trialPeriodDays",
                    T.LONG,
                    "Default trial days.",
                    S("recurring.trial_period_days", "integer"),
                ),
                Field("meter", T.STRING, "Billing meter id.", S("recurring.meter")),
            ),
        ),
        Field(
            "transformQuantity",
            T.OBJECT,
            "Quantity transformation before billing.",
            children=(
                Field(
                    "divideBy",
                    T.LONG,
                    "Divide quantity by.",
                    S("transform_quantity.divide_by", "integer"),
                ),
                Field("round", T.STRING, "up or down.", S("transform_quantity.round")),
            ),
        ),
        metadata_field(),
    ),
)
