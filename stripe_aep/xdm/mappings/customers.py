"""Customers → XDM Individual Profile records.

A customer is a person: XDM Individual Profile. Primary identity: the Stripe customer id
(`_{TENANT}.stripe.id`, custom namespace `StripeCustomerId`), the key every charge, refund and
subscription points to; secondary identity: the email (`personalEmail.address`, namespace `Email`)
so Stripe customers merge with the same person seen elsewhere. Name and email also fill the
standard person fields.
"""

from __future__ import annotations

from stripe_aep.xdm.mappings.common import (
    T,
    address_field,
    currency_field,
    metadata_field,
    money,
    record_id,
)
from stripe_aep.xdm.resources import Identity, ResourceMapping
from stripe_aep.xdm.spec import (
    Field,
    Id,
    S,
)
from stripe_aep.xdm.standard import (
    CUSTOMER_NAMESPACE,
    EMAIL_NAMESPACE,
    FG_PERSON,
    FG_PERSONAL_CONTACT,
)

MAPPING = ResourceMapping(
    rationale=__doc__,
    standard_field_groups=(FG_PERSONAL_CONTACT, FG_PERSON),
    identities=(
        Identity("/_{TENANT}/stripe/id", CUSTOMER_NAMESPACE, primary=True),
        Identity("/personalEmail/address", EMAIL_NAMESPACE, primary=False),
    ),
    standard_fields=(
        record_id(),
        Field(
            "personalEmail",
            T.OBJECT,
            "Standard personal email (Personal Contact Details field group).",
            standard=FG_PERSONAL_CONTACT,
            children=(Field("address", T.STRING, "Email address (identity `Email`).", S("email")),),
        ),
        Field(
            "person",
            T.OBJECT,
            "Standard person fields (Demographic Details field group).",
            standard=FG_PERSON,
            children=(
                Field(
                    "name",
                    T.OBJECT,
                    "Person name.",
                    children=(Field("fullName", T.STRING, "Full name.", S("name")),),
                ),
            ),
        ),
    ),
    resource_fields=(
        Field("email", T.STRING, "Email address.", S("email")),
        Field("name", T.STRING, "Full name or business name.", S("name")),
        Field("phone", T.STRING, "Phone number.", S("phone")),
        Field("description", T.STRING, "Description.", S("description")),
        *money("balance", "balance", "currency", "Customer balance (negative: credit)"),
        currency_field(required=False),
        Field(
            "delinquent", T.BOOLEAN, "True if an invoice is past due.", S("delinquent", "boolean")
        ),
        Field("invoicePrefix", T.STRING, "Invoice number prefix.", S("invoice_prefix")),
        Field(
            "nextInvoiceSequence",
            T.LONG,
            "Next invoice sequence number.",
            S("next_invoice_sequence", "integer"),
        ),
        Field("taxExempt", T.STRING, "none, exempt or reverse.", S("tax_exempt")),
        Field(
            "preferredLocales",
            T.ARRAY,
            "Preferred locales, by preference.",
            S("preferred_locales", "string_list"),
            items=T.STRING,
        ),
        address_field("address", "address", "Customer address."),
        Field("shippingName", T.STRING, "Shipping recipient name.", S("shipping.name")),
        Field("defaultSource", T.STRING, "Default payment source id.", Id("default_source")),
        Field(
            "defaultPaymentMethod",
            T.STRING,
            "Default payment method for invoices.",
            Id("invoice_settings.default_payment_method"),
        ),
        Field("testClock", T.STRING, "Test clock id.", Id("test_clock")),
        metadata_field(),
    ),
)
