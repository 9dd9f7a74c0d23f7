"""The shape every resource mapping has, and `mapping_for(name)`, which finds one.

Why: each Stripe resource has its own mapping module, `stripe_aep/xdm/mappings/<name>.py`, whose
`MAPPING` declares the fields (standard XDM fields, the resource's tenant fields, their Stripe
sources), the identities and, in the module docstring, why the resource maps the way it does. The
facts that are not about XDM fields (the resource's name, its Stripe object, the XDM class it maps
to) are the catalog's (`stripe_aep/catalog.py`): `mapping_for` binds the module's declaration to
its catalog stanza, so nothing here restates them. A mapping module is imported the first time
its resource is asked for.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from dataclasses import dataclass

from stripe_aep.catalog import StripeResource, XdmClass, stripe_resource
from stripe_aep.xdm.spec import (
    VERSION_SOURCES,
    Field,
    Input,
    Param,
    S,
    Time,
    Version,
    XdmType,
)
from stripe_aep.xdm.standard import behavior_of, class_uri

T = XdmType


@dataclass(frozen=True)
class Identity:
    """An identity descriptor: the field (JSON pointer, `{TENANT}` placeholder) and namespace."""

    pointer: str
    namespace: str
    primary: bool

    def for_tenant(self, tenant: str) -> str:
        return self.pointer.replace("{TENANT}", tenant)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


@dataclass(frozen=True)
class ResourceMapping:
    """One resource's XDM mapping: its fields, identities and reasoning.

    `rationale` is the mapping module's docstring: its first line names the mapping, the rest says
    why (rendered into `docs/xdm-mapping.md` and the schema's description). `catalog` is the
    resource's catalog stanza, set by `mapping_for`; the name, the Stripe object and the class
    come from it.
    """

    rationale: str
    standard_fields: tuple[Field, ...]
    resource_fields: tuple[Field, ...]
    identities: tuple[Identity, ...]
    standard_field_groups: tuple[str, ...] = ()
    #: Title of the custom class of a `CUSTOM_RECORD` resource (`stripe-aep setup` creates it).
    custom_class_title: str | None = None
    catalog: StripeResource | None = None

    @property
    def stripe_resource(self) -> StripeResource:
        if self.catalog is None:
            raise ValueError(
                "this mapping is not bound to its catalog stanza: get it with "
                "stripe_aep.xdm.resources.mapping_for(<resource name>)"
            )
        return self.catalog

    @property
    def resource(self) -> str:
        return self.stripe_resource.name

    @property
    def stripe_object(self) -> str:
        return self.stripe_resource.object_name

    @property
    def tenant_object(self) -> str:
        """Name of the resource-specific object under `_{TENANT}` (`balanceTransaction`)."""
        return _camel(self.stripe_object)

    @property
    def xdm_class(self) -> str:
        """The class `$id`, or the `{{class:<resource>}}` placeholder of a custom class."""
        return class_uri(self.stripe_resource.xdm_class, self.resource)

    @property
    def behaviour(self) -> str:
        return behavior_of(self.stripe_resource.xdm_class)

    @property
    def is_event(self) -> bool:
        return self.stripe_resource.xdm_class is XdmClass.EXPERIENCE_EVENT

    @property
    def why(self) -> str:
        """The reasoning of the module docstring (after its first line) as one paragraph."""
        _, _, body = self.rationale.strip().partition("\n")
        return re.sub(r"\s+", " ", body).strip()

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
                    self.tenant_object,
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


@functools.cache
def mapping_for(resource: str) -> ResourceMapping:
    """The mapping of one resource (its module's `MAPPING`, bound to its catalog stanza); a clear
    error names the valid resources."""
    stanza = stripe_resource(resource)
    module = importlib.import_module(stanza.mapping_module)
    declared = getattr(module, "MAPPING", None)
    if not isinstance(declared, ResourceMapping):
        raise TypeError(f"{stanza.mapping_module} must define MAPPING = ResourceMapping(...)")
    mapping = dataclasses.replace(declared, catalog=stanza)
    custom = stanza.xdm_class is XdmClass.CUSTOM_RECORD
    if custom != (mapping.custom_class_title is not None):
        raise ValueError(
            f"{stanza.mapping_module}: custom_class_title must be set exactly when the catalog "
            f"maps {resource} to a custom record class (it maps it to {stanza.xdm_class.name})"
        )
    return mapping


__all__ = ["Identity", "ResourceMapping", "mapping_for"]
