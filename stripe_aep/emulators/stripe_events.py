"""Change over time in the emulated Stripe account: mutations, the events they emit, `/v1/events`.

Why: a `created` cursor never sees an object change, so the pipeline reads Stripe's Events API to
learn of refunds, captures, disputes, subscription status changes, customer edits and deletions,
price deactivations. To test that, the emulated account must change over time like a real one and
record the events Stripe would — with Stripe's retention (30 days), order (newest first), filters
(`type` with `*` wildcards, `types[]` ≤ 20) and rendering (each event's `data.object` at the API
version of the event's creation, not the request's `Stripe-Version`). Every behaviour is cited in
docs/emulators.md ("Events and mutations").

Layout: a `Mutation` is one planned or applied change of one object that emits one event (a
refund is `charge.refunded` on the charge; a cancellation is `customer.subscription.updated` then
`customer.subscription.deleted` in the same second). `Timeline` owns them: it applies those due
by the clock to the account's indexes (the served state is always the state at the clock's now),
moves deleted customers and prices out of the lists into a graveyard, and serves events.

Memory: creation events are not stored. They are derived from the object indexes (one per
object, at its `created`, id `evt_` + the object id's random part, so an index's order is also
its events' order), and a mutated object's earlier states are recovered by undoing its later
mutations (each keeps the previous top-level values it replaced). Only mutations (a few % of
objects) are stored, as small dicts, which keeps the million-object benchmark account's memory
and generation time nearly unchanged.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from stripe_aep.catalog import MAX_EVENT_TYPES_PER_REQUEST, STRIPE_RESOURCES, stripe_resource
from stripe_aep.specs import stripe as stripe_specs

DAY = 86_400
#: "List events, going back up to 30 days" (docs.stripe.com/api/events/list).
EVENT_RETENTION_SECONDS = 30 * DAY
#: "An array of up to 20 strings containing specific event names" (docs.stripe.com/api/events/list).
MAX_EVENT_TYPES = MAX_EVENT_TYPES_PER_REQUEST

#: Resources whose objects have events, with their id prefix (balance transactions have none):
#: the catalog's resources that declare event types.
EVENT_RESOURCES: dict[str, str] = {r.name: r.id_prefix for r in STRIPE_RESOURCES if r.has_events}
#: The creation event of each resource (charges: by status at creation, see CHARGE_CREATION_TYPES).
CREATION_TYPES: dict[str, str] = {
    r.name: r.creation_types[0] for r in STRIPE_RESOURCES if r.has_events and r.name != "charges"
}
CHARGE_CREATION_TYPES: dict[str, str] = {
    t.removeprefix("charge."): t for t in stripe_resource("charges").creation_types
}
#: Every event type this account emits, per resource (docs/emulators.md explains when): a choice
#: of the emulator, a subset of each resource's catalog `event_types` (a test checks it). The
#: account emits no `charge.expired` (uncaptured charges are captured or stay authorized),
#: no `refund.updated`/`refund.failed` (refunds succeed at once), no
#: `invoice.deleted` (only one-off drafts can be deleted; every invoice here is a subscription's).
EMITTED_TYPES: dict[str, tuple[str, ...]] = {
    "charges": ("charge.succeeded", "charge.failed", "charge.pending", "charge.captured",
                "charge.refunded", "charge.updated"),
    "subscriptions": ("customer.subscription.created", "customer.subscription.updated",
                      "customer.subscription.deleted"),
    "refunds": ("refund.created",),
    "customers": ("customer.created", "customer.updated", "customer.deleted"),
    "prices": ("price.created", "price.updated", "price.deleted"),
    "disputes": ("charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
                 "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated"),
    "invoices": ("invoice.created", "invoice.updated", "invoice.finalized", "invoice.paid",
                 "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible"),
}  # fmt: skip

#: The PaymentIntent events Stripe sends with every charge made through a PaymentIntent (each
#: charge here has one, `payment_intent`): `payment_intent.created` ("Occurs when a new
#: PaymentIntent is created"), then its outcome: `payment_intent.succeeded` ("Occurs when a
#: PaymentIntent has successfully completed payment"), `payment_intent.payment_failed`,
#: `payment_intent.processing` (an asynchronous payment method, the `charge.pending` ones) or
#: `payment_intent.amount_capturable_updated` (an authorized, uncaptured charge) — Stripe's event
#: types list (docs.stripe.com/api/events/types). Not a catalog resource: they only make the
#: unfiltered `/v1/events` as busy as a real account's (docs/emulators.md), and like every type
#: they are returned by `type`/`types[]` only when asked for. Derived from the charges index like
#: the charges' creation events, ids `evt_` + the charge id's random part + a mark (below).
PAYMENT_INTENT_CREATED = "payment_intent.created"
PAYMENT_INTENT_OUTCOMES: dict[str, str] = {
    "charge.succeeded": "payment_intent.succeeded",
    "charge.failed": "payment_intent.payment_failed",
    "charge.pending": "payment_intent.processing",
}
PAYMENT_INTENT_UNCAPTURED = "payment_intent.amount_capturable_updated"
PAYMENT_INTENT_TYPES: tuple[str, ...] = (
    PAYMENT_INTENT_CREATED, *PAYMENT_INTENT_OUTCOMES.values(), PAYMENT_INTENT_UNCAPTURED
)  # fmt: skip
#: The status of the PaymentIntent each of its events shows.
PAYMENT_INTENT_STATUS: dict[str, str] = {
    PAYMENT_INTENT_CREATED: "requires_payment_method",
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "requires_payment_method",
    "payment_intent.processing": "processing",
    PAYMENT_INTENT_UNCAPTURED: "requires_capture",
}
#: The last character of a PaymentIntent event's id: its creation, then its outcome (so a charge's
#: events sort charge, created, outcome within their second).
_PI_CREATED_MARK, _PI_OUTCOME_MARK = "a", "b"


class _Missing:
    """The previous value of a key the object did not have (undo removes the key)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class Mutation:
    """One change of one object at `time`, emitting one event of `type`.

    `changes` are new top-level values (`metadata` merges into the old map, like Stripe's
    update does); once applied, `old` holds the values they replaced and `new` the values set, so
    the change can be undone to recover the object as an earlier event showed it. `remove` takes
    the object out of its lists (a deleted customer or price). A `silent` change emits no event
    of its own: a charge's `disputed` turns true with the dispute's `charge.dispute.created`,
    which is about the dispute (Stripe sends no `charge.updated` for it).
    """

    __slots__ = ("time", "seq", "resource", "object_id", "type", "changes", "remove", "event_id",
                 "old", "new", "applied", "silent")  # fmt: skip

    def __init__(
        self,
        time: int,
        resource: str,
        object_id: str,
        type: str,
        changes: dict[str, Any] | None,
        event_id: str,
        remove: bool = False,
        seq: int = 0,
        silent: bool = False,
    ) -> None:
        self.time = time
        self.silent = silent
        self.seq = seq
        self.resource = resource
        self.object_id = object_id
        self.type = type
        self.changes = changes or {}
        self.remove = remove
        self.event_id = event_id
        self.old: dict[str, Any] | None = None
        self.new: dict[str, Any] | None = None
        self.applied = False

    def __repr__(self) -> str:
        return f"Mutation({self.time}, {self.type}, {self.object_id}, {self.event_id})"


def apply_to(document: dict[str, Any], mutation: Mutation) -> None:
    """Apply `mutation` to a parsed object, recording what it replaced."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for key, value in mutation.changes.items():
        before = document.get(key, MISSING)
        if key == "metadata" and isinstance(value, dict) and isinstance(before, dict):
            value = {k: v for k, v in {**before, **value}.items() if v not in (None, "")}
        old[key] = before
        new[key] = value
        document[key] = value
    mutation.old, mutation.new = old, new
    mutation.changes = {}  # `new` holds the values; the plan is no longer needed
    mutation.applied = True


def patch_scalars(blob: bytes, mutation: Mutation) -> bytes | None:
    """`mutation` applied to serialized JSON without parsing it, or None when that is not safe.

    Why: most planned mutations (a charge's refunds: `amount_refunded`, `refunded`) replace
    scalars, and parsing and re-serializing a 2 KB object for that costs most of the mutations'
    share of generating a million-object account. Safe when every changed key occurs exactly once
    in the object (so it is the top-level field: the keys mutated exist at the top of every object
    of their resource) and its old value is a number, true, false or null.
    """
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for key, value in mutation.changes.items():
        if isinstance(value, dict | list | float):
            return None
        marker = b'"' + key.encode() + b'":'
        at = blob.find(marker)
        if at < 0 or blob.find(marker, at + 1) >= 0:
            return None
        start = at + len(marker)
        if blob[start : start + 1] in (b'"', b"{", b"["):
            return None
        end = start
        while blob[end : end + 1] not in (b",", b"}"):
            end += 1
        old[key] = orjson.loads(blob[start:end])
        new[key] = value
        blob = blob[:start] + dump_object(value) + blob[end:]
    mutation.old, mutation.new = old, new
    mutation.changes = {}
    mutation.applied = True
    return blob


def undo(document: dict[str, Any], mutation: Mutation) -> None:
    """Put back the values an applied `mutation` replaced."""
    for key, value in (mutation.old or {}).items():
        if value is MISSING:
            document.pop(key, None)
        else:
            document[key] = value


def previous_attributes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Stripe's `data.previous_attributes`: the changed attributes' values before the event.

    Hashes show only their changed keys (a key that did not exist shows `null`); arrays and
    scalars show the whole previous value (docs.stripe.com/api/events/object: "If an array
    attribute has any updated elements, this object contains the entire array")."""
    result: dict[str, Any] = {}
    for key, after in new.items():
        before = old.get(key, MISSING)
        if before is MISSING:
            result[key] = None
        elif before != after:
            if isinstance(before, dict) and isinstance(after, dict):
                result[key] = _hash_diff(before, after)
            else:
                result[key] = before
    return result


def _hash_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    diff: dict[str, Any] = {}
    for key in list(before) + [k for k in after if k not in before]:
        if key not in after:
            diff[key] = before[key]
        elif key not in before:
            diff[key] = None
        elif before[key] != after[key]:
            inner_before, inner_after = before[key], after[key]
            if isinstance(inner_before, dict) and isinstance(inner_after, dict):
                diff[key] = _hash_diff(inner_before, inner_after)
            else:
                diff[key] = inner_before
    return diff


def dump_object(document: dict[str, Any]) -> bytes:
    """Compact JSON exactly like the generator's (`json.dumps` separators, ASCII escapes).

    orjson is 3–5× faster and writes the same bytes for ASCII text, integers and the account's
    floats (exchange rates); non-ASCII text (which orjson leaves unescaped) is escaped afterwards
    the way `json.dumps` does (`\\u00e9`, surrogate pairs above U+FFFF, DEL as `\\u007f`), which
    costs a fraction of `json.dumps` (names and invoice lines often hold some).
    The result is copied into a `bytes` of its own size: orjson's output keeps the capacity of its
    growing buffer (15 KB for a 3 KB subscription), which the account would hold for good.
    """
    blob = orjson.dumps(document)
    if blob.isascii() and b"\x7f" not in blob:
        return bytes(memoryview(blob))
    if b"\\x" in blob or b"\\U" in blob:  # text that reads like the escapes below: rare
        return json.dumps(document, separators=(",", ":")).encode()
    # `backslashreplace` writes \xe9, \u20ac, \U0001f600 (lowercase hex, like json); JSON wants
    # \u00e9 and a surrogate pair for the last. orjson itself never writes \x or \U.
    escaped = blob.decode().replace("\x7f", "\\u007f").encode("ascii", "backslashreplace")
    escaped = escaped.replace(b"\\x", b"\\u00")
    if b"\\U" in escaped:
        escaped = _ASTRAL.sub(_surrogate_pair, escaped)
    return escaped


_ASTRAL = re.compile(rb"\\U([0-9a-f]{8})")


def _surrogate_pair(match: re.Match[bytes]) -> bytes:
    code = int(match.group(1), 16) - 0x10000
    return b"\\u%04x\\u%04x" % (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))


# --------------------------------------------------------------------------------------------
# API versions of the account's events


class EventVersions:
    """The account's default API version over time: what renders each event's `data`.

    Stripe renders an event at the API version of its creation ("The Stripe API version used to
    render data when the event was created. The contents of data never change",
    docs.stripe.com/api/events/object), so an account that upgraded its version has older events
    in the older shape. `history` is `[(since_unix_seconds, version), ...]`; the first entry
    applies to everything before its time too.
    """

    def __init__(self, history: Sequence[tuple[int, str]]) -> None:
        if not history:
            raise ValueError("event_api_versions needs at least one (since, version) entry")
        entries = sorted((int(since), version) for since, version in history)
        newest = stripe_specs.newest_vendored_version()
        for _, version in entries:
            if not stripe_specs.is_api_version(version):
                raise ValueError(f"event_api_versions: {version!r} is not a Stripe API version")
            if stripe_specs.version_key(version) > stripe_specs.version_key(newest):
                raise ValueError(
                    f"event_api_versions: {version} is newer than the newest vendored object "
                    f"shapes ({newest}); the emulator cannot render it"
                )
        self.history = tuple(entries)
        self._times = [since for since, _ in entries]

    def at(self, when: int) -> str:
        i = bisect.bisect_right(self._times, when) - 1
        return self.history[max(i, 0)][1]


def parse_version_history(text: str) -> list[tuple[int | str, str]]:
    """`--event-api-versions` text: comma-separated `VERSION[@SINCE]` (SINCE a unix time or
    YYYY-MM-DD; an entry without it applies from the beginning), e.g.
    `2026-06-24.dahlia,2026-07-29.dahlia@2026-03-03`."""
    entries: list[tuple[int | str, str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        version, _, since = item.partition("@")
        if not since:
            entries.append((0, version))
        elif since.isdigit():
            entries.append((int(since), version))
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", since):
            entries.append((since, version))
        else:
            raise ValueError(
                f"--event-api-versions: {item!r} should be VERSION or VERSION@YYYY-MM-DD "
                "(or VERSION@<unix seconds>)"
            )
    if not entries:
        raise ValueError("--event-api-versions needs at least one version")
    return entries


def add_event_version_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--event-api-versions", default=None, metavar="VERSION[@YYYY-MM-DD],...",
        help="the account's API version over time, which renders each event's data (default: "
        "the older vendored version until the account's middle day, the newest from then on)",
    )  # fmt: skip


def event_versions_option(args: argparse.Namespace) -> list[tuple[int | str, str]] | None:
    """`StripeAccount(event_api_versions=...)` from `--event-api-versions` (ValueError if bad)."""
    text = getattr(args, "event_api_versions", None)
    return None if text is None else parse_version_history(text)


# --------------------------------------------------------------------------------------------
# Event queries


class EventQueryError(ValueError):
    """A `/v1/events` parameter Stripe would refuse (400), with the parameter's name."""

    def __init__(self, message: str, param: str, code: str = "parameter_invalid_string") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass
class EventQuery:
    """A validated `/v1/events` request."""

    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    created_min: int | None = None  # inclusive
    created_max: int | None = None  # inclusive
    type: str | None = None  # exact or with `*` wildcards
    types: list[str] = field(default_factory=list)
    delivery_success: bool | None = None

    def matcher(self) -> Callable[[str], bool] | None:
        """A predicate on event types, or None when every type matches."""
        if self.types:
            wanted = frozenset(self.types)
            return wanted.__contains__
        if self.type is None:
            return None
        if "*" not in self.type:
            exact = self.type
            return exact.__eq__
        # "A string containing a specific event name, or group of events using * as a wildcard":
        # `*` stands for any characters, dots included (`customer.*` matches
        # `customer.subscription.updated` too).
        pattern = re.compile(".*".join(re.escape(part) for part in self.type.split("*")))
        return lambda name: pattern.fullmatch(name) is not None


# --------------------------------------------------------------------------------------------
# The timeline


@dataclass
class _Entry:
    created: int
    event_id: str
    resource: str
    object_id: str
    mutation: Mutation | None  # None: the object's creation event
    #: A PaymentIntent event of the charge `object_id`: its mark (`_PI_CREATED_MARK`, ...).
    payment_intent: str | None = None


class Timeline:
    """The account's mutations: applies them as the clock passes and serves their events.

    `indexes` are the account's `ResourceIndex`es (mutated in place); `plans` the mutations
    planned at generation. Those due at `now` are applied at once; later ones wait for the clock
    when `live`, and are dropped otherwise (a non-live account is frozen at generation time).
    """

    def __init__(
        self,
        indexes: dict[str, Any],
        plans: list[Mutation],
        now: int,
        live: bool,
        versions: EventVersions,
        charge_creation_types: dict[str, str],
    ) -> None:
        self.indexes = indexes
        self.versions = versions
        self.charge_creation_types = charge_creation_types
        self.by_object: dict[str, list[Mutation]] = {}
        # Deleted objects: id -> (resource, created, JSON at deletion); and their creation
        # events' keys, ascending (created, event id).
        self.graveyard: dict[str, tuple[str, int, bytes]] = {}
        self._grave_keys: list[tuple[int, str]] = []
        self._grave_ids: list[str] = []
        # Mutation events, ascending (created, event id).
        self._event_keys: list[tuple[int, str]] = []
        self._event_mutations: list[Mutation] = []
        self.by_event_id: dict[str, Mutation] = {}
        plans.sort(key=lambda m: (m.time, m.seq))
        due = [m for m in plans if m.time <= now]
        self.pending = [m for m in plans if m.time > now] if live else []
        self.pending.reverse()  # pop() takes the earliest
        self._remember_all(due + self.pending[::-1])
        self._apply_batch(due)

    # ---- bookkeeping ------------------------------------------------------------------

    def _remember_all(self, mutations: list[Mutation]) -> None:
        """`_remember` for the planned mutations at once: one sort instead of an insertion each
        (the million-object account plans a few hundred thousand)."""
        by_object = self.by_object
        for mutation in mutations:
            by_object.setdefault(mutation.object_id, []).append(mutation)
        evented = sorted((m for m in mutations if not m.silent), key=lambda m: (m.time, m.event_id))
        self._event_keys = [(m.time, m.event_id) for m in evented]
        self._event_mutations = evented
        self.by_event_id = {m.event_id: m for m in evented}

    def _remember(self, mutation: Mutation) -> None:
        self.by_object.setdefault(mutation.object_id, []).append(mutation)
        if mutation.silent:
            return
        key = (mutation.time, mutation.event_id)
        i = bisect.bisect_left(self._event_keys, key)
        self._event_keys.insert(i, key)
        self._event_mutations.insert(i, mutation)
        self.by_event_id[mutation.event_id] = mutation

    def _forget_pending(self, object_id: str) -> None:
        """Drop an object's planned future mutations (a test decided its fate now); silent ones
        stay: they follow from another object (a dispute that will still be opened)."""
        dropped = {id(m) for m in self.pending if m.object_id == object_id and not m.silent}
        if not dropped:
            return
        self.pending = [m for m in self.pending if id(m) not in dropped]
        self.by_object[object_id] = [m for m in self.by_object[object_id] if id(m) not in dropped]
        keep = [i for i, m in enumerate(self._event_mutations) if id(m) not in dropped]
        for mutation in self._event_mutations:
            if id(mutation) in dropped:
                self.by_event_id.pop(mutation.event_id, None)
        self._event_keys = [self._event_keys[i] for i in keep]
        self._event_mutations = [self._event_mutations[i] for i in keep]

    def _apply_batch(self, mutations: list[Mutation]) -> None:
        """Apply due mutations object by object: one parse and one serialization per object.
        Mutations a generator applied before serializing its object are skipped."""
        by_object: dict[str, list[Mutation]] = {}
        for mutation in mutations:
            if mutation.applied:
                continue
            by_object.setdefault(mutation.object_id, []).append(mutation)
        removed: dict[str, list[str]] = {}
        for object_id, group in by_object.items():
            resource = group[0].resource
            index = self.indexes[resource]
            position = index.position[object_id]
            index.blobs[position] = self._applied(index, position, group)
            if any(m.remove for m in group):
                removed.setdefault(resource, []).append(object_id)
        for resource, ids in removed.items():
            self._bury(resource, ids)

    def _applied(self, index: Any, position: int, group: list[Mutation]) -> bytes:
        """The object at `position` with `group` (its due mutations, in order) applied: patched
        in place while that is safe, else parsed once for the rest."""
        blob = index.blobs[position]
        for i, mutation in enumerate(group):
            patched = patch_scalars(blob, mutation)
            if patched is None:
                document = orjson.loads(blob)
                for rest in group[i:]:
                    apply_to(document, rest)
                    self._update_columns(index, position, rest)
                return dump_object(document)
            blob = patched
            self._update_columns(index, position, mutation)
        return blob

    @staticmethod
    def _update_columns(index: Any, position: int, mutation: Mutation) -> None:
        """Keep the index's filter columns (subscription `status`, price `active`, customer
        `email`) equal to the object's fields."""
        new = mutation.new
        if not new or new.keys().isdisjoint(index.columns):
            return
        for name, values in index.columns.items():
            if name in new:
                values[position] = new[name]
        index.invalidate()

    def _bury(self, resource: str, ids: list[str]) -> None:
        """Move deleted objects out of their lists (Stripe: "deleted customers" are not listed)."""
        index = self.indexes[resource]
        prefix = EVENT_RESOURCES[resource]
        for object_id in ids:
            position = index.position[object_id]
            created = -index.neg_created[position]
            self.graveyard[object_id] = (resource, created, index.blobs[position])
            key = (created, "evt_" + object_id[len(prefix) :])
            i = bisect.bisect_left(self._grave_keys, key)
            self._grave_keys.insert(i, key)
            self._grave_ids.insert(i, object_id)
        index.remove(set(ids))

    def sync(self, now: int) -> int:
        """Apply the planned mutations the clock has reached; returns how many."""
        count = 0
        while self.pending and self.pending[-1].time <= now:
            mutation = self.pending.pop()
            self.apply(mutation)
            count += 1
        return count

    def apply(self, mutation: Mutation) -> None:
        """Apply one mutation now (already remembered)."""
        index = self.indexes[mutation.resource]
        position = index.position[mutation.object_id]
        index.blobs[position] = self._applied(index, position, [mutation])
        if mutation.remove:
            self._bury(mutation.resource, [mutation.object_id])

    def record(self, mutations: list[Mutation]) -> list[str]:
        """Apply mutations made now (`StripeAccount.mutate`); returns their event ids."""
        for mutation in mutations:
            self._forget_pending(mutation.object_id)
        for mutation in mutations:
            self._remember(mutation)
            self.apply(mutation)
        return [m.event_id for m in mutations if not m.silent]

    # ---- objects as events show them --------------------------------------------------

    def blob(self, resource: str, object_id: str) -> bytes | None:
        index = self.indexes[resource]
        position = index.position.get(object_id)
        if position is not None:
            return index.blobs[position]
        buried = self.graveyard.get(object_id)
        return buried[2] if buried else None

    def state(self, resource: str, object_id: str, after: Mutation | None) -> dict[str, Any]:
        """The object right after `after` (None: as created): its current state with the
        applied mutations that came later undone."""
        blob = self.blob(resource, object_id)
        if blob is None:
            raise KeyError(object_id)
        document = orjson.loads(blob)
        for mutation in reversed(self.by_object.get(object_id, ())):
            if mutation is after:
                break
            if mutation.applied:
                undo(document, mutation)
        return document

    def creation_type(self, resource: str, object_id: str) -> str:
        if resource == "charges":
            return self.charge_creation_types.get(object_id, "charge.succeeded")
        return CREATION_TYPES[resource]

    # ---- the events list --------------------------------------------------------------

    def find(self, event_id: str, now: int) -> _Entry | None:
        """The event with this id if it exists and is visible at `now` (within retention)."""
        entry: _Entry | None = None
        mutation = self.by_event_id.get(event_id)
        if mutation is not None and mutation.applied:
            entry = _Entry(mutation.time, event_id, mutation.resource, mutation.object_id, mutation)
        elif event_id.startswith("evt_"):
            suffix = event_id[4:]
            for resource, prefix in EVENT_RESOURCES.items():
                object_id = prefix + suffix
                index = self.indexes[resource]
                position = index.position.get(object_id)
                if position is not None:
                    created = -index.neg_created[position]
                    entry = _Entry(created, event_id, resource, object_id, None)
                    break
                buried = self.graveyard.get(object_id)
                if buried is not None:
                    entry = _Entry(buried[1], event_id, resource, object_id, None)
                    break
        if entry is None and event_id[-1:] in (_PI_CREATED_MARK, _PI_OUTCOME_MARK):
            charge_id = EVENT_RESOURCES["charges"] + event_id[4:-1]
            index = self.indexes["charges"]
            position = index.position.get(charge_id)
            if position is not None:
                created = -index.neg_created[position]
                entry = _Entry(created, event_id, "charges", charge_id, None, event_id[-1])
        if entry is None or entry.created > now or entry.created < now - EVENT_RETENTION_SECONDS:
            return None
        return entry

    def page(
        self, query: EventQuery, now: int, retention: bool = True
    ) -> tuple[list[_Entry], bool]:
        """The events `query` selects at `now`: (entries in list order, has_more)."""
        if query.delivery_success is False:
            # No webhook endpoints exist, so no event is pending or failed delivery.
            return [], False
        low = now - EVENT_RETENTION_SECONDS if retention else 0
        if query.created_min is not None:
            low = max(low, query.created_min)
        high = now if query.created_max is None else min(now, query.created_max)
        cursor: tuple[int, str] | None = None
        ascending = query.ending_before is not None
        cursor_id = query.ending_before if ascending else query.starting_after
        if cursor_id is not None:
            found = self.find(cursor_id, now)
            if found is None:
                raise EventQueryError(
                    f"No such event: '{cursor_id}'",
                    "ending_before" if ascending else "starting_after",
                    code="resource_missing",
                )
            cursor = (found.created, found.event_id)
        if high < low:
            return [], False
        match = query.matcher()
        sources = [self._index_events(r, low, high, cursor, ascending, match)
                   for r in EVENT_RESOURCES]  # fmt: skip
        sources.append(self._sorted_events(self._grave_keys, self._grave_entry, low, high,
                                           cursor, ascending, match))  # fmt: skip
        sources.append(self._payment_intent_events(low, high, cursor, ascending, match))
        sources.append(self._sorted_events(self._event_keys, self._mutation_entry, low, high,
                                           cursor, ascending, match))  # fmt: skip
        merged = heapq.merge(*sources, key=_entry_key, reverse=not ascending)
        entries: list[_Entry] = []
        for entry in merged:
            entries.append(entry)
            if len(entries) > query.limit:
                break
        has_more = len(entries) > query.limit
        entries = entries[: query.limit]
        if ascending:
            entries.reverse()
        return entries, has_more

    def _index_events(
        self,
        resource: str,
        low: int,
        high: int,
        cursor: tuple[int, str] | None,
        ascending: bool,
        match: Callable[[str], bool] | None,
    ) -> Iterator[_Entry]:
        """Creation events of the listed objects of `resource`, in list order (or reversed)."""
        if match is not None:
            if resource == "charges":
                if not any(match(t) for t in CHARGE_CREATION_TYPES.values()):
                    return
            elif not match(CREATION_TYPES[resource]):
                return
        index = self.indexes[resource]
        prefix_length = len(EVENT_RESOURCES[resource])
        ids, neg = index.ids, index.neg_created
        lo, hi = index.created_range(gte=low, lte=high)
        if cursor is not None:
            created, event_id = cursor
            suffix = event_id[4:]
            p = bisect.bisect_left(neg, -created)
            if ascending:  # newer than the cursor: positions before the first key <= cursor
                while p < len(ids) and neg[p] == -created and ids[p][prefix_length:] > suffix:
                    p += 1
                hi = min(hi, p)
            else:  # older than the cursor: from the first key < cursor
                while p < len(ids) and neg[p] == -created and ids[p][prefix_length:] >= suffix:
                    p += 1
                lo = max(lo, p)
        positions = range(hi - 1, lo - 1, -1) if ascending else range(lo, hi)
        for p in positions:
            object_id = ids[p]
            if (
                match is not None
                and resource == "charges"
                and not match(self.charge_creation_types.get(object_id, "charge.succeeded"))
            ):
                continue
            yield _Entry(-neg[p], "evt_" + object_id[prefix_length:], resource, object_id, None)

    def _payment_intent_outcome(self, charge_id: str) -> str:
        """The type of the outcome event of the charge's PaymentIntent, from the charge's creation
        type; an authorized charge (captured later, or not yet) is `succeeded` but uncaptured."""
        kind = self.creation_type("charges", charge_id)
        if kind == "charge.succeeded" and (
            any(m.type == "charge.captured" for m in self.by_object.get(charge_id, ()))
            or b'"captured":false' in (self.blob("charges", charge_id) or b"")
        ):
            return PAYMENT_INTENT_UNCAPTURED
        return PAYMENT_INTENT_OUTCOMES[kind]

    def _payment_intent_events(
        self,
        low: int,
        high: int,
        cursor: tuple[int, str] | None,
        ascending: bool,
        match: Callable[[str], bool] | None,
    ) -> Iterator[_Entry]:
        """The PaymentIntent events of the listed charges, in list order (or reversed): two a
        charge at its `created`, ids `evt_` + the charge id's random part + a mark."""
        if match is not None and not any(match(t) for t in PAYMENT_INTENT_TYPES):
            return
        index = self.indexes["charges"]
        prefix_length = len(EVENT_RESOURCES["charges"])
        ids, neg = index.ids, index.neg_created
        lo, hi = index.created_range(gte=low, lte=high)
        if cursor is not None:  # the cursor's second, then each entry compared with the cursor
            if ascending:
                hi = min(hi, bisect.bisect_right(neg, -cursor[0]))
            else:
                lo = max(lo, bisect.bisect_left(neg, -cursor[0]))
        positions = range(hi - 1, lo - 1, -1) if ascending else range(lo, hi)
        marks = (_PI_CREATED_MARK, _PI_OUTCOME_MARK) if ascending else (_PI_OUTCOME_MARK,
                                                                       _PI_CREATED_MARK)  # fmt: skip
        for p in positions:
            object_id = ids[p]
            created = -neg[p]
            base = "evt_" + object_id[prefix_length:]
            for mark in marks:
                event_id = base + mark
                if cursor is not None and created == cursor[0]:
                    key = (created, event_id)
                    if (key <= cursor) if ascending else (key >= cursor):
                        continue
                if match is not None:
                    kind = (
                        PAYMENT_INTENT_CREATED
                        if mark == _PI_CREATED_MARK
                        else self._payment_intent_outcome(object_id)
                    )
                    if not match(kind):
                        continue
                yield _Entry(created, event_id, "charges", object_id, None, mark)

    def _sorted_events(
        self,
        keys: list[tuple[int, str]],
        entry_at: Callable[[int], _Entry | None],
        low: int,
        high: int,
        cursor: tuple[int, str] | None,
        ascending: bool,
        match: Callable[[str], bool] | None,
    ) -> Iterator[_Entry]:
        """Events of a list kept ascending by (created, event id)."""
        lo = bisect.bisect_left(keys, (low, ""))
        hi = bisect.bisect_left(keys, (high + 1, ""))
        if cursor is not None:
            if ascending:
                lo = max(lo, bisect.bisect_right(keys, cursor))
            else:
                hi = min(hi, bisect.bisect_left(keys, cursor))
        positions = range(lo, hi) if ascending else range(hi - 1, lo - 1, -1)
        for i in positions:
            entry = entry_at(i)
            if entry is None:
                continue
            if match is not None:
                kind = (
                    entry.mutation.type
                    if entry.mutation is not None
                    else self.creation_type(entry.resource, entry.object_id)
                )
                if not match(kind):
                    continue
            yield entry

    def _grave_entry(self, i: int) -> _Entry:
        object_id = self._grave_ids[i]
        resource, created, _ = self.graveyard[object_id]
        return _Entry(created, self._grave_keys[i][1], resource, object_id, None)

    def _mutation_entry(self, i: int) -> _Entry | None:
        mutation = self._event_mutations[i]
        if not mutation.applied:
            return None
        return _Entry(mutation.time, mutation.event_id, mutation.resource, mutation.object_id,
                      mutation)  # fmt: skip

    # ---- rendering ----------------------------------------------------------------------

    def render(self, entry: _Entry, livemode: bool = False) -> bytes:
        """The event as Stripe returns it: `data.object` at the event's own API version."""
        version = self.versions.at(entry.created)
        mutation = entry.mutation
        document = self.state(entry.resource, entry.object_id, mutation)
        if entry.payment_intent is not None:
            return self._render_payment_intent(entry, version, document, livemode)
        newer = stripe_specs.fields_newer_than(stripe_resource(entry.resource).object_name, version)
        for name in newer:
            document.pop(name, None)
        data: dict[str, Any] = {"object": document}
        if mutation is None:
            kind = self.creation_type(entry.resource, entry.object_id)
        else:
            kind = mutation.type
            if kind.endswith(".updated") and mutation.old is not None and mutation.new:
                previous = previous_attributes(mutation.old, mutation.new)
                for name in newer:
                    previous.pop(name, None)
                data["previous_attributes"] = previous
        event = {
            "id": entry.event_id,
            "object": "event",
            "api_version": version,
            "created": entry.created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }
        blob = orjson.dumps(event)
        if livemode:
            blob = blob.replace(b'"livemode":false', b'"livemode":true')
        return blob

    def _render_payment_intent(
        self, entry: _Entry, version: str, charge: dict[str, Any], livemode: bool
    ) -> bytes:
        """A PaymentIntent event of a charge: `data.object` a minimal PaymentIntent (its id,
        amount, currency, status and created; the pipeline never keeps these events)."""
        kind = (
            PAYMENT_INTENT_CREATED
            if entry.payment_intent == _PI_CREATED_MARK
            else self._payment_intent_outcome(entry.object_id)
        )
        intent = {
            "id": charge.get("payment_intent"),
            "object": "payment_intent",
            "amount": charge.get("amount"),
            "created": entry.created,
            "currency": charge.get("currency"),
            "livemode": livemode,
            "status": PAYMENT_INTENT_STATUS[kind],
        }
        event = {
            "id": entry.event_id,
            "object": "event",
            "api_version": version,
            "created": entry.created,
            "data": {"object": intent},
            "livemode": livemode,
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }
        return orjson.dumps(event)


def _entry_key(entry: _Entry) -> tuple[int, str]:
    return (entry.created, entry.event_id)


def parse_event_query(items: list[tuple[str, str]]) -> EventQuery:
    """Validate the query string of `GET /v1/events` like Stripe does (EventQueryError → 400)."""
    query = EventQuery()
    bracket = re.compile(r"([a-z_]+)(?:\[([a-z_]*|\d+)\])?")
    singles: dict[str, str] = {}
    saw_types = False
    for key, value in items:
        match = bracket.fullmatch(key)
        if match is None:
            raise EventQueryError(f"Received unknown parameter: {key}", key, "parameter_unknown")
        base, sub = match.group(1), match.group(2)
        if base == "created":
            number = _integer(value, key)
            if sub is None:
                query.created_min = _max(query.created_min, number)
                query.created_max = _min(query.created_max, number)
            elif sub == "gte":
                query.created_min = _max(query.created_min, number)
            elif sub == "gt":
                query.created_min = _max(query.created_min, number + 1)
            elif sub == "lte":
                query.created_max = _min(query.created_max, number)
            elif sub == "lt":
                query.created_max = _min(query.created_max, number - 1)
            else:
                raise EventQueryError(
                    f"Received unknown parameter: {key}", key, "parameter_unknown"
                )
        elif base == "types" and (sub is None or sub == "" or sub.isdigit()):
            saw_types = True
            query.types.append(value)
        elif base == "expand" and (sub is None or sub == "" or sub.isdigit()):
            continue  # accepted; events cannot expand `data.object` fields anyway
        elif sub is None and base in (
            "limit", "starting_after", "ending_before", "type", "delivery_success"
        ):  # fmt: skip
            singles[base] = value
        else:
            raise EventQueryError(f"Received unknown parameter: {key}", key, "parameter_unknown")
    if saw_types and "type" in singles:
        # "You may pass either type or types, but not both." (docs.stripe.com/api/events/list)
        raise EventQueryError(
            "You may pass either type or types, but not both.", "types", "parameter_invalid_array"
        )
    if len(query.types) > MAX_EVENT_TYPES:
        raise EventQueryError(
            f"Invalid array: types may contain at most {MAX_EVENT_TYPES} event types "
            f"(got {len(query.types)}).",
            "types",
            "parameter_invalid_array",
        )
    if any(not name for name in query.types):
        raise EventQueryError("Invalid types: an event type cannot be empty.", "types")
    if "type" in singles:
        if not singles["type"]:
            raise EventQueryError("Invalid type: an event type cannot be empty.", "type")
        query.type = singles["type"]
    if "limit" in singles:
        limit = _integer(singles["limit"], "limit")
        if not 1 <= limit <= 100:
            raise EventQueryError(
                f"Invalid limit: must be between 1 and 100 (got {singles['limit']})",
                "limit",
                "parameter_invalid_integer",
            )
        query.limit = limit
    for cursor in ("starting_after", "ending_before"):
        if cursor in singles:
            if not singles[cursor]:
                raise EventQueryError(
                    f"Invalid {cursor}: must be an object id", cursor, "parameter_invalid_empty"
                )
            setattr(query, cursor, singles[cursor])
    if query.starting_after and query.ending_before:
        raise EventQueryError(
            "You may only specify one of these parameters: ending_before, starting_after.",
            "ending_before",
            "parameter_unknown",
        )
    if "delivery_success" in singles:
        flag = singles["delivery_success"]
        if flag not in ("true", "false"):
            raise EventQueryError(
                f"Invalid boolean: {flag}", "delivery_success", "parameter_invalid_boolean"
            )
        query.delivery_success = flag == "true"
    return query


def _integer(value: str, param: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise EventQueryError(
            f"Invalid integer: {value}", param, "parameter_invalid_integer"
        ) from None


def _max(current: int | None, value: int) -> int:
    return value if current is None else max(current, value)


def _min(current: int | None, value: int) -> int:
    return value if current is None else min(current, value)
