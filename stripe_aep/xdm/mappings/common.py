"""Field helpers every mapping module shares: money, currency, metadata, addresses, the event
type and time of ExperienceEvents, the deterministic `_id`, and the customer of an object that
names only its charge.

Why shared: these are conventions of the whole mapping (docs/xdm-mapping.md, "Conventions"):
every amount becomes the same three fields, every currency the same upper-case ISO code, every
`eventType` the same `<prefix><status>` rule. One definition keeps the resources consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from stripe_aep.xdm.spec import (
    Currency,
    Expr,
    Field,
    Frame,
    Id,
    Input,
    Major,
    Metadata,
    RecordId,
    S,
    Source,
    XdmType,
    seconds_to_timestamp,
)
from stripe_aep.xdm.standard import EXPERIENCE_EVENT

T = XdmType

ISO_CURRENCY = r"^[A-Z]{3}$"


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


def _prefixed(prefix: str, fallback: str):
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


def coalesce(*arrays: pa.Array) -> pa.Array:
    return pc.coalesce(*arrays)


def upper_coalesce(*arrays: pa.Array) -> pa.Array:
    return pc.utf8_upper(pc.coalesce(*arrays))


def latest_seconds(*arrays: pa.Array) -> pa.Array:
    return seconds_to_timestamp(pc.max_element_wise(*arrays, skip_nulls=True))


def coalesce_time(*arrays: pa.Array) -> pa.Array:
    return seconds_to_timestamp(pc.coalesce(*arrays))


#: Conversion parameter of the resources whose customer may come from their charge: (charge ids,
#: customer ids) of the raw charges on the lake, as two string arrays (built by
#: stripe_aep/charge_customers.py, for the resources whose catalog stanza looks up `charges`).
CHARGE_CUSTOMERS = "charge_customers"


@dataclass(frozen=True)
class ChargeCustomer(Source):
    """The customer of an object tied to a charge: its own `customer` where the object has one
    (`own`; refunds since 2026-07-29.dahlia), else the customer of its `charge`, looked up in the
    raw charges already on the lake (conversion parameter `charge_customers`).

    No request to Stripe: expanding `charge` on a list is what Stripe's concurrency limiter sheds
    first, and a retrieve per object costs one request per object. Without the lookup (or for a
    charge not on the lake, or one without customer) the value stays null: nothing is invented.
    """

    own: str | None  # the object's own expandable customer path, if its type has one
    doc: str  # the rule in words (docs)

    def inputs(self) -> list[Input]:
        own = [Input(self.own, "expandable")] if self.own else []
        return [*own, Input("charge", "expandable")]

    def evaluate(self, frame: Frame) -> pa.Array:
        own = Id(self.own).evaluate(frame) if self.own else pa.nulls(len(frame), pa.string())
        lookup = frame.params.get(CHARGE_CUSTOMERS)
        if lookup is None or own.null_count == 0:
            return own
        charge_ids, customer_ids = lookup
        positions = pc.index_in(Id("charge").evaluate(frame), value_set=charge_ids)
        return pc.coalesce(own, pc.take(customer_ids, positions))

    @property
    def stripe_path(self) -> str | None:
        return self.own or "charge"

    def describe(self) -> str:
        return self.doc
