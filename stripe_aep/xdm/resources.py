"""The six resource mappings (charges, subscriptions, refunds, balance_transactions, customers,
prices): the single source of truth for class, identities, fields, conversion and docs.

Why these classes and identities (the reasoning is also rendered into `docs/xdm-mapping.md`):

- Charges, refunds and balance transactions happen at a point in time and never describe a
  person's current state, so they are XDM ExperienceEvents (time-series): they land in the
  profile's event timeline and are CJA event datasets. Where XDM has standard commerce fields
  (order total, currency, payments with type and amount, the purchases measure) we fill them, so
  Adobe's standard commerce reports and segments work without custom mapping.
- Customers are people: XDM Individual Profile (record). Primary identity: the Stripe customer id
  in the custom namespace `StripeCustomerId`; secondary identity: the email in `Email`.
- Subscriptions are ExperienceEvents too: a customer can hold many subscriptions, and a record
  keyed by the customer identity would merge them into one profile fragment (the last one would
  win). As events, every observed subscription state is its own entry in the customer's timeline
  (a changed state has a new deterministic `_id`), segmentable ("has an active subscription to
  price X") and analysable in CJA. The event time is the latest datable lifecycle moment
  (max of created, canceled_at, ended_at), always in the past as XDM requires.
- Prices belong to no person: a custom record class "Stripe Price" (record behaviour). It is a
  CJA lookup dataset keyed by the price id (`_{TENANT}.price.id`), joined to subscription items
  (`_{TENANT}.subscription.items[].priceId`). It is not Profile-enabled.
- Every object that belongs to a customer carries the customer id as its primary identity
  (`StripeCustomerId`), so Profile stitches charges, refunds and subscriptions to the customer's
  profile. Balance transactions belong to the Stripe account, not to a customer: no identity; they
  join to charges and refunds through `_{TENANT}.balanceTransaction.source`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from stripe_aep.xdm.spec import (
    VERSION_SOURCES,
    Const,
    Currency,
    Each,
    Expr,
    Field,
    Frame,
    Id,
    Input,
    ListFirst,
    Major,
    Metadata,
    One,
    Param,
    RecordId,
    S,
    Source,
    Time,
    Version,
    XdmType,
    seconds_to_timestamp,
)

T = XdmType

EXPERIENCE_EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
INDIVIDUAL_PROFILE = "https://ns.adobe.com/xdm/context/profile"
RECORD_BEHAVIOR = "https://ns.adobe.com/xdm/data/record"
FG_COMMERCE = "https://ns.adobe.com/xdm/context/experienceevent-commerce"
FG_PERSONAL_CONTACT = "https://ns.adobe.com/xdm/context/profile-personal-details"
FG_PERSON = "https://ns.adobe.com/xdm/context/profile-person-details"

#: Custom identity namespace for Stripe customer ids (create it once per sandbox).
CUSTOMER_NAMESPACE = "StripeCustomerId"
EMAIL_NAMESPACE = "Email"

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
ISO_CURRENCY = r"^[A-Z]{3}$"


@dataclass(frozen=True)
class Identity:
    """An identity descriptor: the field (JSON pointer, `{TENANT}` placeholder) and namespace."""

    pointer: str
    namespace: str
    primary: bool

    def for_tenant(self, tenant: str) -> str:
        return self.pointer.replace("{TENANT}", tenant)


@dataclass(frozen=True)
class ResourceMapping:
    """Everything about one resource: class, identities, standard and tenant fields."""

    resource: str
    stripe_object: str
    object_name: str  # name of the resource-specific object under `_{TENANT}`
    xdm_class: str  # class $id, or a `{{class:<resource>}}` placeholder for a custom class
    behaviour: str  # "time-series" or "record"
    standard_field_groups: tuple[str, ...]
    standard_fields: tuple[Field, ...]
    resource_fields: tuple[Field, ...]
    identities: tuple[Identity, ...]
    rationale: str
    custom_class_title: str | None = None

    @property
    def is_event(self) -> bool:
        return self.behaviour == "time-series"

    def common_field(self) -> Field:
        return Field(
            "stripe",
            T.OBJECT,
            "Fields every stripe-aep record carries, whatever the Stripe object.",
            children=(
                Field("id", T.STRING, "Stripe object id.", S("id"), required=True),
                Field(
                    "object",
                    T.STRING,
                    "Stripe object type name.",
                    S("object"),
                    required=True,
                    enum=(self.stripe_object,),
                ),
                Field(
                    "created",
                    T.DATETIME,
                    "Creation time of the Stripe object (Unix seconds → UTC).",
                    Time("created"),
                    required=True,
                ),
                Field(
                    "livemode",
                    T.BOOLEAN,
                    "True for live mode, false for test mode (absent on balance transactions).",
                    S("livemode", "boolean"),
                ),
                Field(
                    "account",
                    T.STRING,
                    "Connect account (`acct_…`) the object was read from; null for the platform.",
                    Param("account"),
                ),
                Field(
                    "apiVersion",
                    T.STRING,
                    "Stripe API version the object was read with (`Stripe-Version`).",
                    Param("api_version"),
                    required=True,
                ),
                # What version of the object the row is (docs/change-capture.md). Not `required`
                # in the schema: AEP only lets existing schemas gain optional fields, and setup
                # adds these to field groups created before them. Change lines are still checked
                # (a line without `_change.time`, `.source` or `.deleted` is quarantined).
                Field(
                    "versionTime",
                    T.DATETIME,
                    "When this version of the object was observed: the listing's fetch time for "
                    "a listing snapshot, the event's `created` (or the re-read's time) for a "
                    "change. The latest state of an object is its row with the greatest "
                    "versionTime.",
                    Version("time", "time", "the sidecar's `fetched_at` (else the window's `lt`)"),
                ),
                Field(
                    "versionSource",
                    T.STRING,
                    "How this version was observed: `list` (created-window listing), `event` "
                    "(an event's payload), `refetch` (GET after an event), `reread` (a window "
                    "read again).",
                    Version("source", "string", "`list`"),
                    enum=VERSION_SOURCES,
                ),
                Field(
                    "versionEventId",
                    T.STRING,
                    "Stripe event (`evt_…`) that revealed this version; null for listings and "
                    "re-reads.",
                    Version("event_id", "string", "null"),
                ),
                Field(
                    "versionEventType",
                    T.STRING,
                    "Stripe event type of that event (e.g. `customer.updated`), or `reread`; "
                    "null for listings.",
                    Version("event_type", "string", "null"),
                ),
                Field(
                    "deleted",
                    T.BOOLEAN,
                    "True for a tombstone: the object was deleted in Stripe; the row holds its "
                    "last known state.",
                    Version("deleted", "boolean", "`false`"),
                ),
            ),
        )

    def tenant_field(self, tenant: str) -> Field:
        return Field(
            f"_{tenant}",
            T.OBJECT,
            f"Tenant namespace: all Stripe-specific fields of the {self.resource} dataset.",
            children=(
                self.common_field(),
                Field(
                    self.object_name,
                    T.OBJECT,
                    f"Stripe {self.stripe_object} fields.",
                    children=self.resource_fields,
                ),
            ),
        )

    def fields(self, tenant: str) -> tuple[Field, ...]:
        """Top-level XDM fields in Parquet column order."""
        return (*self.standard_fields, self.tenant_field(tenant))

    def inputs(self) -> list[Input]:
        out: list[Input] = []
        for f in self.fields("TENANT"):
            out.extend(f.inputs())
        return out


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def money(
    name: str, amount: str, currency: str, what: str, required: bool = False
) -> tuple[Field, ...]:
    """Three fields per Stripe amount: minor (long), major (number), exact major text (string)."""
    return (
        Field(
            name,
            T.LONG,
            f"{what}, integer in the currency's minor unit as Stripe sends it.",
            S(amount, "integer"),
            required=required,
        ),
        Field(
            f"{name}Major",
            T.NUMBER,
            f"{what} in major units: the double nearest to the exact value.",
            Major(S(amount, "integer"), S(currency)),
        ),
        Field(
            f"{name}MajorText",
            T.STRING,
            f"{what} in major units, exact decimal text (e.g. `10.99`).",
            Major(S(amount, "integer"), S(currency), text=True),
        ),
    )


def currency_field(path: str = "currency", required: bool = True) -> Field:
    return Field(
        "currency",
        T.STRING,
        "Currency, upper-case ISO 4217 code.",
        Currency(path),
        required=required,
        pattern=ISO_CURRENCY,
    )


def metadata_field() -> Field:
    return Field(
        "metadata", T.MAP, "Stripe metadata: your key-value pairs (map of strings).", Metadata()
    )


def address_field(name: str, path: str, what: str) -> Field:
    return Field(
        name,
        T.OBJECT,
        what,
        children=(
            Field("line1", T.STRING, "Address line 1.", S(f"{path}.line1")),
            Field("line2", T.STRING, "Address line 2.", S(f"{path}.line2")),
            Field("city", T.STRING, "City.", S(f"{path}.city")),
            Field("postalCode", T.STRING, "Postal code.", S(f"{path}.postal_code")),
            Field("state", T.STRING, "State, county, province or region.", S(f"{path}.state")),
            Field("country", T.STRING, "Two-letter country code.", S(f"{path}.country")),
        ),
    )


def _prefixed(prefix: str, fallback: str) -> callable:
    def fn(status: pa.Array) -> pa.Array:
        joined = pc.binary_join_element_wise(prefix, status, "")
        return pc.fill_null(joined, fallback)

    return fn


def event_type(prefix: str, path: str, special: dict[str, str] | None = None) -> Field:
    """`eventType`: `<prefix><value of path>`, with standard XDM values for some values."""
    special = special or {}

    def fn(value: pa.Array) -> pa.Array:
        result = _prefixed(prefix, prefix.rstrip("."))(value)
        for raw, xdm in special.items():
            result = pc.if_else(pc.equal(value, raw), xdm, result)
        return pc.fill_null(result, prefix.rstrip("."))

    rules = "; ".join(f"`{k}` → `{v}`" for k, v in special.items())
    doc = f"`{prefix}` + `{path}`" + (f" ({rules})" if rules else "")
    suggested = tuple(special.values())
    return Field(
        "eventType",
        T.STRING,
        "XDM event type (extensible enum).",
        Expr(fn, (S(path),), doc),
        required=True,
        suggested=suggested or None,
        standard=EXPERIENCE_EVENT,
    )


def record_id() -> Field:
    return Field(
        "_id",
        T.STRING,
        "Deterministic record id: same object state → same `_id`.",
        RecordId(),
        required=True,
    )


def timestamp_field(source: Source, what: str) -> Field:
    return Field("timestamp", T.DATETIME, what, source, required=True, standard=EXPERIENCE_EVENT)


def _coalesce(*arrays: pa.Array) -> pa.Array:
    return pc.coalesce(*arrays)


def _upper_coalesce(*arrays: pa.Array) -> pa.Array:
    return pc.utf8_upper(pc.coalesce(*arrays))


def _latest_seconds(*arrays: pa.Array) -> pa.Array:
    return seconds_to_timestamp(pc.max_element_wise(*arrays, skip_nulls=True))


def _coalesce_time(*arrays: pa.Array) -> pa.Array:
    return seconds_to_timestamp(pc.coalesce(*arrays))


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
# charges
# ------------------------------------------------------------------------------------------

PMD = "payment_method_details"

CHARGES = ResourceMapping(
    resource="charges",
    stripe_object="charge",
    object_name="charge",
    xdm_class=EXPERIENCE_EVENT,
    behaviour="time-series",
    standard_field_groups=(FG_COMMERCE,),
    identities=(Identity("/_{TENANT}/charge/customer", CUSTOMER_NAMESPACE, primary=True),),
    rationale=(
        "A charge is a payment attempt at one moment: an ExperienceEvent. Succeeded charges are "
        "`commerce.purchases` events with the standard order total, currency and payment "
        "(type, amount, transaction id), so Adobe's commerce metrics work as is; other statuses "
        "are `stripe.charge.<status>`. Primary identity: the customer id (`StripeCustomerId`), "
        "so Profile stitches the charge to the customer; guest charges (no customer) stay in the "
        "data lake and CJA but are not attached to a profile."
    ),
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
                                _coalesce,
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

# ------------------------------------------------------------------------------------------
# refunds
# ------------------------------------------------------------------------------------------

#: Conversion parameter of refunds: (charge ids, customer ids) of the raw charges on the lake, as
#: two string arrays (stripe_aep/charge_customers.py builds them).
CHARGE_CUSTOMERS = "charge_customers"


@dataclass(frozen=True)
class RefundCustomer(Source):
    """The refund's customer: `customer` where the API version sends it (2026-07-29.dahlia on),
    else the customer of the refunded charge, looked up in the raw charges already on the lake
    (conversion parameter `charge_customers`). No request to Stripe: expanding `data.charge` is
    what Stripe's concurrency limiter sheds first, and a retrieve per refund costs one request
    per object."""

    def inputs(self) -> list[Input]:
        return [Input("customer", "expandable"), Input("charge", "expandable")]

    def evaluate(self, frame: Frame) -> pa.Array:
        own = Id("customer").evaluate(frame)
        lookup = frame.params.get(CHARGE_CUSTOMERS)
        if lookup is None or own.null_count == 0:
            return own
        charge_ids, customer_ids = lookup
        positions = pc.index_in(Id("charge").evaluate(frame), value_set=charge_ids)
        return pc.coalesce(own, pc.take(customer_ids, positions))

    def describe(self) -> str:
        return (
            "`customer` (expandable) where the API version sends it (2026-07-29.dahlia on); "
            "else the `customer` of the refunded `charge`, from the raw charges on the lake"
        )


REFUNDS = ResourceMapping(
    resource="refunds",
    stripe_object="refund",
    object_name="refund",
    xdm_class=EXPERIENCE_EVENT,
    behaviour="time-series",
    standard_field_groups=(FG_COMMERCE,),
    identities=(Identity("/_{TENANT}/refund/customer", CUSTOMER_NAMESPACE, primary=True),),
    rationale=(
        "A refund is money returned at one moment: an ExperienceEvent. Succeeded refunds use the "
        "standard back-office event type `commerce.backofficeCreditMemoIssued`, other statuses "
        "`stripe.refund.<status>`; the order id is the refunded charge and the payment carries "
        "the refunded amount. Primary identity: the customer id, at every API version. Stripe "
        "sends `customer` on refunds since 2026-07-29.dahlia; for raw refunds read at an older "
        "version the conversion takes the customer of the refunded charge from the raw charges "
        "already on the lake (a sidecar index per raw charges file), so `xdm/refunds` depends on "
        "`stripe/charges`. It never asks Stripe: expanding `data.charge` on the refund list is "
        "what Stripe's concurrency limiter sheds first, and one charge retrieve per refund would "
        "cost a request per object (≈ 100 s per 2,500 refunds at the 25 requests/s endpoint "
        "limit). A refund whose charge is not on the lake (older than the loaded range) or has "
        "no customer keeps a null identity."
    ),
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
            RefundCustomer(),
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

# ------------------------------------------------------------------------------------------
# balance transactions
# ------------------------------------------------------------------------------------------

BALANCE_TRANSACTIONS = ResourceMapping(
    resource="balance_transactions",
    stripe_object="balance_transaction",
    object_name="balanceTransaction",
    xdm_class=EXPERIENCE_EVENT,
    behaviour="time-series",
    standard_field_groups=(),
    identities=(),
    rationale=(
        "A balance transaction is a movement of funds in the Stripe balance at one moment: an "
        "ExperienceEvent with event type `stripe.balanceTransaction.<type>`. It belongs to the "
        "account, not to a customer, so it has no person identity and is not Profile-enabled; "
        "it joins to charges and refunds through `_{TENANT}.balanceTransaction.source` (CJA: "
        "event dataset whose person id is `_{TENANT}.stripe.account`, or a lookup)."
    ),
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

# ------------------------------------------------------------------------------------------
# customers
# ------------------------------------------------------------------------------------------

CUSTOMERS = ResourceMapping(
    resource="customers",
    stripe_object="customer",
    object_name="customer",
    xdm_class=INDIVIDUAL_PROFILE,
    behaviour="record",
    standard_field_groups=(FG_PERSONAL_CONTACT, FG_PERSON),
    identities=(
        Identity("/_{TENANT}/stripe/id", CUSTOMER_NAMESPACE, primary=True),
        Identity("/personalEmail/address", EMAIL_NAMESPACE, primary=False),
    ),
    rationale=(
        "A customer is a person: XDM Individual Profile. Primary identity: the Stripe customer id "
        "(`_{TENANT}.stripe.id`, custom namespace `StripeCustomerId`), the key every charge, "
        "refund and subscription points to; secondary identity: the email "
        "(`personalEmail.address`, namespace `Email`) so Stripe customers merge with the same "
        "person seen elsewhere. Name and email also fill the standard person fields."
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

# ------------------------------------------------------------------------------------------
# subscriptions
# ------------------------------------------------------------------------------------------

ITEM_PRICE = "price"
ITEM_PLAN = "plan"

SUBSCRIPTIONS = ResourceMapping(
    resource="subscriptions",
    stripe_object="subscription",
    object_name="subscription",
    xdm_class=EXPERIENCE_EVENT,
    behaviour="time-series",
    standard_field_groups=(),
    identities=(Identity("/_{TENANT}/subscription/customer", CUSTOMER_NAMESPACE, primary=True),),
    rationale=(
        "A subscription is long-lived, but a customer can hold several, and a record keyed by "
        "the customer identity would merge them into one profile fragment. So each observed "
        "subscription state is an ExperienceEvent (`stripe.subscription.<status>`; a changed "
        "state gets a new deterministic `_id`), timed at the latest datable lifecycle moment "
        "(max of `created`, `canceled_at`, `ended_at`). Primary identity: the customer id. "
        "Billing periods are read from the subscription (API versions before 2025-03-31) or "
        "from its first item (later versions); each item carries its own period, price and "
        "interval (from `price`, or the legacy `plan`)."
    ),
    standard_fields=(
        record_id(),
        timestamp_field(
            Expr(
                _latest_seconds,
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
                _coalesce_time,
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
                _coalesce_time,
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
                    Expr(_coalesce, (S("price.id"), S("plan.id")), "`price.id`, else `plan.id`"),
                ),
                Field(
                    "productId",
                    T.STRING,
                    "Product id.",
                    Expr(
                        _coalesce,
                        (Id("price.product"), Id("plan.product")),
                        "`price.product`, else `plan.product` (expandable)",
                    ),
                ),
                Field(
                    "unitAmount",
                    T.LONG,
                    "Unit amount in minor units.",
                    Expr(
                        _coalesce,
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
                            _coalesce,
                            (S("price.unit_amount", "integer"), S("plan.amount", "integer")),
                            "`price.unit_amount`, else `plan.amount`",
                        ),
                        Expr(
                            _coalesce,
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
                        _upper_coalesce,
                        (S("price.currency"), S("plan.currency")),
                        "`price.currency`, else `plan.currency`, upper-cased",
                    ),
                ),
                Field(
                    "interval",
                    T.STRING,
                    "Billing interval (day, week, month, year).",
                    Expr(
                        _coalesce,
                        (S("price.recurring.interval"), S("plan.interval")),
                        "`price.recurring.interval`, else `plan.interval`",
                    ),
                ),
                Field(
                    "intervalCount",
                    T.LONG,
                    "Number of intervals between billings.",
                    Expr(
                        _coalesce,
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

# ------------------------------------------------------------------------------------------
# prices
# ------------------------------------------------------------------------------------------

PRICES = ResourceMapping(
    resource="prices",
    stripe_object="price",
    object_name="price",
    xdm_class="{{class:prices}}",
    behaviour="record",
    standard_field_groups=(),
    identities=(),
    custom_class_title="Stripe Price",
    rationale=(
        "A price belongs to the catalogue, not to a person: a custom record class "
        '"Stripe Price" (record behaviour), used as a CJA lookup dataset keyed by '
        "`_{TENANT}.price.id` and joined from `_{TENANT}.subscription.items[].priceId`. No person "
        "identity, not Profile-enabled. `unit_amount_decimal` (sub-minor-unit precision) is kept "
        "as Stripe's exact decimal string."
    ),
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

_ALL = (CHARGES, SUBSCRIPTIONS, REFUNDS, BALANCE_TRANSACTIONS, CUSTOMERS, PRICES)

#: The six resources, in the order of the product (and of the AEP Stripe source).
RESOURCES: tuple[str, ...] = tuple(m.resource for m in _ALL)
_BY_NAME = {m.resource: m for m in _ALL}


def mapping_for(resource: str) -> ResourceMapping:
    """The mapping of one resource; a clear error names the valid resources."""
    try:
        return _BY_NAME[resource]
    except KeyError:
        raise ValueError(
            f"unknown resource {resource!r}: expected one of {', '.join(RESOURCES)}"
        ) from None


__all__ = [
    "RESOURCES",
    "ResourceMapping",
    "Identity",
    "mapping_for",
    "CUSTOMER_NAMESPACE",
    "BNPL_TYPES",
    "Const",
]
