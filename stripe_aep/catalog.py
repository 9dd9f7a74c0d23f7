"""The catalog of Stripe resources: one declaration per resource, everything else derives from it.

Why: everything the pipeline knows about one Stripe resource (its list path, the `object` name of
its items, the list calls that see every object, the restricted-key permission that reads it, the
events that announce its changes, the XDM class it maps to, its mapping module and the emulator's
generator) used to live in tables spread over the client, the config, the change capture, the XDM
package and the emulator, with nothing tying them together. Here each resource is one
`StripeResource` stanza (as one stanza declares a stream in Airbyte's `source-stripe` manifest);
the assets, the client, the setup, the doctor, the docs and the emulator read these stanzas, and
`stripe_aep_tests/test_catalog.py` fails when any part disagrees with them.

Plain Python, no Dagster and no heavy imports: every layer (the emulator included) imports it.
Facts about Stripe's API here come from Stripe's API reference (list endpoints and their filters,
event types) and are cited where they are not obvious.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

#: Stripe's cap on `types[]` in one `GET /v1/events` (API reference, "List all events": "An array of
#: up to 20 strings containing specific event names").
MAX_EVENT_TYPES_PER_REQUEST = 20


class XdmClass(enum.Enum):
    """The XDM class a resource's rows belong to (the reasoning per resource: docs/xdm-mapping.md)."""

    EXPERIENCE_EVENT = "experience_event"  # time-series: something that happened at a moment
    INDIVIDUAL_PROFILE = "individual_profile"  # record: a person
    CUSTOM_RECORD = "custom_record"  # record of a custom class (`stripe-aep setup` creates it)


@dataclass(frozen=True)
class StripeResource:
    """One Stripe list resource, declared once.

    `name` is the list resource as Stripe's URL names it (`/v1/<name>`); it also names the assets
    (`stripe/<name>`, `xdm/<name>`, `aep/<name>`), the lake folders and the AEP dataset.
    """

    name: str
    #: Stripe's `object` value of one item (`"object": "charge"`).
    object_name: str
    #: The prefix of the ids Stripe gives these objects (the emulator mints ids with it).
    id_prefix: str
    #: Restricted-key permission that reads the resource, as the Dashboard names it.
    permission: str
    #: The Dashboard's label of that permission (shown in errors and by `stripe-aep doctor`).
    permission_label: str
    xdm_class: XdmClass
    #: The list calls needed to see *every* object: Stripe hides some by default (prices list only
    #: active ones, subscriptions exclude canceled ones), so a resource may need several passes.
    filter_passes: tuple[Mapping[str, str], ...] = ({},)
    #: Filters of the list endpoint (besides `created` and paging) per Stripe's API reference; the
    #: emulator serves exactly these and refuses others, as Stripe does.
    list_filters: tuple[str, ...] = ()
    #: Event types whose `data.object` is one of these objects, creation types first. Empty: the
    #: resource has no events (balance transactions) and is always listed.
    event_types: tuple[str, ...] = ()
    #: The event types that announce a new object (the raw asset's probe looks for these).
    creation_types: tuple[str, ...] = ()
    #: Event types after which the object no longer exists: their payload is the tombstone.
    deletion_types: tuple[str, ...] = ()
    #: Events about *another* object that change one of these: type -> the field of the event's
    #: object that holds this resource's id (a dispute opened on a charge flips its `disputed`).
    subject_events: Mapping[str, str] = field(default_factory=dict)
    #: Other resources whose raw objects the XDM mapping reads (a refund or a dispute takes its
    #: customer from its charge): a selection holding this resource must hold those too.
    lookup_resources: tuple[str, ...] = ()
    #: One of the six objects Adobe's own Stripe source moves.
    in_aep_stripe_source: bool = True

    @property
    def list_path(self) -> str:
        return f"/v1/{self.name}"

    @property
    def permission_hint(self) -> str:
        """`Charges and Refunds: Read (rak_charge_read)`: what an error tells the user to grant."""
        return f"{self.permission_label} ({self.permission})"

    @property
    def mapping_module(self) -> str:
        """The module whose `MAPPING` maps these objects to XDM."""
        return f"stripe_aep.xdm.mappings.{self.name}"

    @property
    def emulator_module(self) -> str:
        """The module of the Stripe emulator that generates these objects."""
        return f"stripe_aep.emulators.generators.{self.name}"

    @property
    def has_events(self) -> bool:
        return bool(self.event_types)

    @property
    def requested_event_types(self) -> tuple[str, ...]:
        """The event types `stripe/events` asks for on behalf of this resource."""
        return (*self.event_types, *(t for t in self.subject_events if t not in self.event_types))


_READ = "Read"

STRIPE_RESOURCES: tuple[StripeResource, ...] = (
    StripeResource(
        name="charges",
        object_name="charge",
        id_prefix="ch_",
        permission="rak_charge_read",
        permission_label=f"Charges and Refunds: {_READ}",
        xdm_class=XdmClass.EXPERIENCE_EVENT,
        list_filters=("customer", "payment_intent", "transfer_group"),
        event_types=(
            # a charge is announced by the event of its outcome at creation
            "charge.succeeded",
            "charge.failed",
            "charge.pending",
            "charge.captured",
            "charge.expired",
            "charge.refunded",
            "charge.updated",
        ),
        creation_types=("charge.succeeded", "charge.failed", "charge.pending"),
        subject_events={"charge.dispute.created": "charge"},
    ),
    StripeResource(
        name="subscriptions",
        object_name="subscription",
        id_prefix="sub_",
        permission="rak_subscription_read",
        permission_label=f"Subscriptions: {_READ}",
        xdm_class=XdmClass.EXPERIENCE_EVENT,
        # "By default, returns a list of subscriptions that have not been canceled" (API reference)
        filter_passes=({"status": "all"},),
        list_filters=("status", "customer", "collection_method", "price"),
        event_types=(
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
        ),
        creation_types=("customer.subscription.created",),
        deletion_types=("customer.subscription.deleted",),
    ),
    StripeResource(
        name="refunds",
        object_name="refund",
        id_prefix="re_",
        permission="rak_refund_read",
        permission_label=f"Charges and Refunds: {_READ}",
        xdm_class=XdmClass.EXPERIENCE_EVENT,
        list_filters=("charge", "payment_intent"),
        # sent for every refund since 2024-10-28.acacia (Stripe changelog "refund webhook update")
        event_types=("refund.created", "refund.updated", "refund.failed"),
        creation_types=("refund.created",),
        lookup_resources=("charges",),  # refunds rendered before 2026-07-29.dahlia have no customer
    ),
    StripeResource(
        name="balance_transactions",
        object_name="balance_transaction",
        id_prefix="txn_",
        permission="rak_balance_read",
        permission_label=f"Balance: {_READ}",
        xdm_class=XdmClass.EXPERIENCE_EVENT,
        list_filters=("type", "currency", "source"),
    ),
    StripeResource(
        name="customers",
        object_name="customer",
        id_prefix="cus_",
        permission="rak_customer_read",
        permission_label=f"Customers: {_READ}",
        xdm_class=XdmClass.INDIVIDUAL_PROFILE,
        list_filters=("email",),
        event_types=("customer.created", "customer.updated", "customer.deleted"),
        creation_types=("customer.created",),
        deletion_types=("customer.deleted",),
    ),
    StripeResource(
        name="prices",
        object_name="price",
        id_prefix="price_",
        permission="rak_plan_read",
        permission_label=f"Products and Prices: {_READ}",
        xdm_class=XdmClass.CUSTOM_RECORD,
        # "Only return prices that are active or inactive (e.g., pass false to list all inactive
        # prices)": without `active`, the list holds active prices only.
        filter_passes=({"active": "true"}, {"active": "false"}),
        list_filters=("active", "type", "currency", "product", "lookup_key"),
        event_types=("price.created", "price.updated", "price.deleted"),
        creation_types=("price.created",),
        deletion_types=("price.deleted",),
    ),
    StripeResource(
        name="disputes",
        object_name="dispute",
        id_prefix="dp_",
        permission="rak_dispute_read",
        permission_label=f"Disputes: {_READ}",
        xdm_class=XdmClass.EXPERIENCE_EVENT,
        list_filters=("charge", "payment_intent"),
        event_types=(
            "charge.dispute.created",
            "charge.dispute.updated",
            "charge.dispute.closed",
            "charge.dispute.funds_withdrawn",
            "charge.dispute.funds_reinstated",
        ),
        creation_types=("charge.dispute.created",),
        lookup_resources=("charges",),  # a dispute names its charge, not the customer
        in_aep_stripe_source=False,
    ),
    StripeResource(
        name="invoices",
        object_name="invoice",
        id_prefix="in_",
        permission="rak_invoice_read",
        permission_label=f"Invoices: {_READ}",
        xdm_class=XdmClass.EXPERIENCE_EVENT,
        list_filters=("customer", "subscription", "status", "collection_method"),
        event_types=(
            "invoice.created",
            "invoice.updated",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_failed",
            "invoice.voided",
            "invoice.marked_uncollectible",
            "invoice.deleted",  # only drafts can be deleted
        ),
        creation_types=("invoice.created",),
        deletion_types=("invoice.deleted",),
        in_aep_stripe_source=False,
    ),
)

#: Every resource the pipeline can move, in the product's order.
RESOURCE_NAMES: tuple[str, ...] = tuple(r.name for r in STRIPE_RESOURCES)
#: The default selection (`STRIPE_AEP_RESOURCES` unset): every resource of the catalog.
DEFAULT_RESOURCES: tuple[str, ...] = RESOURCE_NAMES
_BY_NAME: Mapping[str, StripeResource] = MappingProxyType({r.name: r for r in STRIPE_RESOURCES})

#: Stripe's Events API (`/v1/events`): not a resource (no XDM mapping, no AEP dataset) but the raw
#: asset `stripe/events` that tells which objects changed; laid out on the lake like a resource.
EVENTS = "events"
EVENTS_PERMISSION = "rak_event_read"
EVENTS_PERMISSION_LABEL = f"Events: {_READ}"


def stripe_resource(name: str) -> StripeResource:
    """The declaration of `name`; a clear error names the known resources."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown Stripe resource {name!r}: expected one of {', '.join(RESOURCE_NAMES)}"
        ) from None


def by_object_name(object_name: str) -> StripeResource | None:
    """The resource whose items have `"object": object_name` (None for any other object)."""
    return next((r for r in STRIPE_RESOURCES if r.object_name == object_name), None)


def event_type_passes(resources: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """The `types[]` of each `GET /v1/events` pass `stripe/events` makes for `resources`.

    Stripe takes at most 20 types a request, so the types are packed into passes in catalog order,
    a resource's types never split over two passes (a fresh tick's cost then grows by one request
    only when a selection needs more than 20 types); a type already asked for is not repeated.
    """
    selected = set(resources)
    passes: list[list[str]] = []
    seen: set[str] = set()
    for resource in STRIPE_RESOURCES:
        if resource.name not in selected:
            continue
        wanted = [t for t in resource.requested_event_types if t not in seen]
        if not wanted:
            continue
        if len(wanted) > MAX_EVENT_TYPES_PER_REQUEST:  # pragma: no cover - a declaration mistake
            raise ValueError(f"{resource.name} declares more than 20 event types")
        if not passes or len(passes[-1]) + len(wanted) > MAX_EVENT_TYPES_PER_REQUEST:
            passes.append([])
        passes[-1].extend(wanted)
        seen.update(wanted)
    return tuple(tuple(p) for p in passes)


def deletion_types(resources: Sequence[str] = RESOURCE_NAMES) -> frozenset[str]:
    """Every event type after which its object no longer exists."""
    return frozenset(t for name in resources for t in stripe_resource(name).deletion_types)


__all__ = [
    "DEFAULT_RESOURCES",
    "EVENTS",
    "EVENTS_PERMISSION",
    "EVENTS_PERMISSION_LABEL",
    "MAX_EVENT_TYPES_PER_REQUEST",
    "RESOURCE_NAMES",
    "STRIPE_RESOURCES",
    "StripeResource",
    "XdmClass",
    "by_object_name",
    "deletion_types",
    "event_type_passes",
    "stripe_resource",
]
