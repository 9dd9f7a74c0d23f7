"""Adobe's standard XDM identifiers and the identity namespace stripe-aep creates, defined once.

Why one module: the class and field group URIs and the `StripeCustomerId` namespace body are facts
of Adobe's platform (and of the sandbox setup) that the mapping, the setup, the AEP emulator and
the benchmarks all need; each used to keep its own copy, and a copy that drifted would make the
emulator accept what Adobe rejects or the setup create a namespace the descriptors do not name.

Plain constants and standard library only: the AEP emulator imports it too.
"""

from __future__ import annotations

from typing import Any

from stripe_aep.catalog import XdmClass

# Standard classes (Adobe XDM: `https://ns.adobe.com/xdm/context/...`).
EXPERIENCE_EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
INDIVIDUAL_PROFILE = "https://ns.adobe.com/xdm/context/profile"

# Behaviours a class extends: time-series (ExperienceEvent), record (profile, custom records),
# ad hoc (schemas of ad hoc datasets).
TIME_SERIES_BEHAVIOR = "https://ns.adobe.com/xdm/data/time-series"
RECORD_BEHAVIOR = "https://ns.adobe.com/xdm/data/record"
ADHOC_BEHAVIOR = "https://ns.adobe.com/xdm/data/adhoc"

# Standard field groups the mappings use.
FG_COMMERCE = "https://ns.adobe.com/xdm/context/experienceevent-commerce"
FG_PERSONAL_CONTACT = "https://ns.adobe.com/xdm/context/profile-personal-details"
FG_PERSON = "https://ns.adobe.com/xdm/context/profile-person-details"

#: Only schemas of these classes can be enabled for Real-Time Customer Profile.
PROFILE_CLASSES = frozenset({INDIVIDUAL_PROFILE, EXPERIENCE_EVENT})

#: Custom identity namespace for Stripe customer ids (`stripe-aep setup` creates it once per sandbox).
CUSTOMER_NAMESPACE = "StripeCustomerId"
#: Adobe's standard namespace for email addresses.
EMAIL_NAMESPACE = "Email"


def identity_namespace_payload() -> dict[str, Any]:
    """Identity Service `POST /data/core/idnamespace/identities` body for `StripeCustomerId`."""
    return {
        "name": "Stripe Customer ID",
        "code": CUSTOMER_NAMESPACE,
        "idType": "CROSS_DEVICE",
        "description": "Stripe customer id (cus_…), written by stripe-aep.",
    }


def placeholder(kind: str, resource: str) -> str:
    """`{{kind:resource}}`: the `$id` of a class, field group or schema that setup creates (AEP
    assigns `$id`s on creation, so payloads refer to one another through these)."""
    return "{{" + f"{kind}:{resource}" + "}}"


def class_uri(xdm_class: XdmClass, resource: str) -> str:
    """The `$id` (or the placeholder of a custom class) of the class a resource's rows belong to."""
    if xdm_class is XdmClass.EXPERIENCE_EVENT:
        return EXPERIENCE_EVENT
    if xdm_class is XdmClass.INDIVIDUAL_PROFILE:
        return INDIVIDUAL_PROFILE
    return placeholder("class", resource)


def behavior_of(xdm_class: XdmClass) -> str:
    """The behaviour a class extends: only ExperienceEvents are time-series."""
    return TIME_SERIES_BEHAVIOR if xdm_class is XdmClass.EXPERIENCE_EVENT else RECORD_BEHAVIOR
