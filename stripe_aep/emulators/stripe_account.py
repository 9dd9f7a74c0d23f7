"""A deterministic synthetic Stripe account: the data the local Stripe emulator serves.

Why: the extractor, the XDM mapping and the benchmarks need a Stripe account whose content is known
exactly (ground truth for "nothing lost, nothing doubled"), that is large enough to measure
throughput, and that contains the data which breaks naive extractors: hundreds of objects sharing one
`created` second (ties straddling page boundaries), canceled subscriptions and inactive prices hidden
by default filters, zero-decimal / three-decimal / special-case currencies, buy-now-pay-later
payment details, failed charges, partial and full refunds, and older API shapes next to current ones.

Every object is built from Stripe's own sample objects (`specs/stripe/fixtures3.json` for the current
shape, `specs/stripe/samples-2023.json` for the 2023 shapes) with ids, amounts, currencies, times,
statuses and nested objects varied by a seeded `random.Random`. Nothing reads global randomness or
the wall clock except through the injected `clock`, so the same arguments give byte-identical JSON.

The account also lives: a second seeded stream plans mutations over time (refunds, captures,
subscription status changes, customer edits and deletions, price deactivations and deletions; the
disputes' and invoices' lifecycles, generators/), applied as the clock passes them, each recording
the event Stripe would emit (stripe_events.py; `events`, `current` and `mutate` are the ground
truth for tests).

The resources, their object names, id prefixes and filter columns come from the catalog
(`stripe_aep.catalog`); each resource's objects are made through its generator module
(`stripe_aep/emulators/generators/<name>.py`, the catalog's `emulator_module`).

Objects are serialized once, at generation, into compact JSON bytes (through `JsonTemplate`, which
splices pre-serialized fragments of the sample object with the varying values), so that serving a
page is a `b",".join(...)` of stored bytes rather than a `json.dumps` per request.
"""

from __future__ import annotations

import bisect
import datetime as dt
import gc
import importlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson

from stripe_aep.catalog import RESOURCE_NAMES, STRIPE_RESOURCES, stripe_resource
from stripe_aep.emulators.stripe_events import (
    EventQuery,
    EventVersions,
    Mutation,
    Timeline,
    dump_object,
)
from stripe_aep.specs import stripe as stripe_specs

__all__ = ["StripeAccount"]

DAY = 86_400

# Currencies and their weights in generated charges. Minor-unit rules (Stripe's currencies page):
# JPY/KRW are zero-decimal; KWD/BHD three-decimal with the last digit 0; ISK/UGX are represented
# with two decimals that are always 00; HUF is an ordinary two-decimal currency for charges.
CURRENCY_WEIGHTS = (
    ("usd", 38),
    ("eur", 14),
    ("gbp", 10),
    ("jpy", 6),
    ("krw", 5),
    ("kwd", 5),
    ("bhd", 4),
    ("isk", 6),
    ("ugx", 6),
    ("huf", 6),
)
CURRENCY_EXPONENT = {"jpy": 0, "krw": 0, "kwd": 3, "bhd": 3}  # others: 2
AMOUNT_STEP = {"isk": 100, "ugx": 100, "kwd": 10, "bhd": 10}  # others: 1
# Currencies the account settles in; the others are converted to USD with these rates (USD per unit).
SETTLEMENT_CURRENCIES = ("usd", "eur", "gbp")
USD_RATE = {
    "jpy": 0.0067,
    "krw": 0.00074,
    "kwd": 3.25,
    "bhd": 2.65,
    "isk": 0.0072,
    "ugx": 0.00027,
    "huf": 0.0028,
}
# Minimum and maximum amounts in major units, per currency.
AMOUNT_RANGE_MAJOR = {
    "usd": (1, 2_500),
    "eur": (1, 2_500),
    "gbp": (1, 2_000),
    "jpy": (100, 300_000),
    "krw": (1_000, 3_000_000),
    "kwd": (1, 800),
    "bhd": (1, 900),
    "isk": (100, 300_000),
    "ugx": (2_000, 9_000_000),
    "huf": (200, 900_000),
}

BNPL_TYPES = ("klarna", "afterpay_clearpay", "affirm", "zip")
BNPL_CURRENCIES = {
    "klarna": ("eur", "gbp", "usd"),
    "afterpay_clearpay": ("usd", "gbp"),
    "affirm": ("usd",),
    "zip": ("usd",),
}
SUBSCRIPTION_STATUS_PATTERN = (
    ("active", 8),
    ("canceled", 5),
    ("trialing", 2),
    ("past_due", 2),
    ("incomplete", 1),
    ("incomplete_expired", 1),
    ("unpaid", 1),
)  # per 20 subscriptions: 25% canceled
FAILURES = (
    ("card_declined", "Your card was declined.", "generic_decline"),
    ("insufficient_funds", "Your card has insufficient funds.", "insufficient_funds"),
    ("expired_card", "Your card has expired.", "expired_card"),
    ("incorrect_cvc", "Your card's security code is incorrect.", "incorrect_cvc"),
    ("processing_error", "An error occurred while processing your card.", "processing_error"),
)
FIRST_NAMES = (
    "Jenny", "Ahmed", "Yuki", "Min-jun", "Sigríður", "Okello", "Zoë", "Jürgen", "Łukasz", "Aisha",
    "Carlos", "Fatima", "Oliver", "Amara", "Hiroshi", "Noor", "Eszter", "Liam", "Chloé", "Dmitri",
)  # fmt: skip
LAST_NAMES = (
    "Rosen", "Al-Sabah", "Tanaka", "Kim", "Jónsdóttir", "Mugisha", "Müller", "Nowak", "Khan",
    "García", "Haddad", "Smith", "Okafor", "Sato", "Nagy", "O'Brien", "Dubois", "Ivanov", "Silva",
)  # fmt: skip
CITIES = (
    ("San Francisco", "US", "CA", "94103"), ("London", "GB", None, "EC1A 1BB"),
    ("Berlin", "DE", None, "10115"), ("Tokyo", "JP", None, "100-0001"),
    ("Seoul", "KR", None, "04524"), ("Kuwait City", "KW", None, "13001"),
    ("Manama", "BH", None, "317"), ("Reykjavík", "IS", None, "101"),
    ("Kampala", "UG", None, None), ("Budapest", "HU", None, "1051"), ("Paris", "FR", None, "75001"),
)  # fmt: skip
METADATA_KEYS = ("order_id", "campaign", "plan", "source_system", "note", "region")
CARD_BRANDS = ("visa", "mastercard", "amex", "discover", "jcb", "unionpay")
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# --------------------------------------------------------------------------------------------
# JSON templates: pre-serialized fragments of a sample object with slots for the varying values


class Slot:
    """Marks a value of a template that varies per object."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class RawJSON(str):
    """A string that already is JSON; spliced verbatim into a rendered template."""

    __slots__ = ()


_encode_str = json.encoder.encode_basestring_ascii  # the C implementation when available
_encode_compound = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
# Maps each random byte to an alphanumeric character (ids need not be uniform, only unique-ish).
_ID_TABLE = bytes((ALNUM * 5)[:256], "ascii")
_SLOT_RE = re.compile(r'"@@slot:([A-Za-z0-9_]+)@@"')


def encode_json_value(value: Any) -> str:
    """Compact JSON for one value, with fast paths for the common scalar types."""
    kind = type(value)
    if kind is RawJSON:
        return value
    if kind is str:
        return _encode_str(value)
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return _encode_compound(value)


class JsonTemplate:
    """A JSON document with named slots, rendered by concatenating fixed fragments and values.

    Why: `json.dumps` of a 2–4 KB Stripe object costs 30–50 µs; splicing ~25 values into the
    pre-serialized sample costs a fraction of that, which is what makes ≥ 30,000 objects/s possible.
    Key order is the order of the sample object, as in Stripe's responses.
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        names: list[str] = []

        def mark(value: Any) -> Any:
            if isinstance(value, Slot):
                names.append(value.name)
                return f"@@slot:{value.name}@@"
            if isinstance(value, dict):
                return {key: mark(item) for key, item in value.items()}
            if isinstance(value, list):
                return [mark(item) for item in value]
            return value

        text = json.dumps(mark(document), separators=(",", ":"))
        parts = _SLOT_RE.split(text)
        if parts[1::2] != names:
            raise ValueError(f"template slots out of order or clashing with content: {names}")
        self.slot_names = tuple(names)
        self._head = parts[0]
        self._fragments = tuple(parts[2::2])

    def render_text(self, values: Mapping[str, Any]) -> str:
        encoded = map(encode_json_value, map(values.__getitem__, self.slot_names))
        return self._head + "".join(chain.from_iterable(zip(encoded, self._fragments, strict=True)))

    def render(self, values: Mapping[str, Any]) -> bytes:
        return self.render_text(values).encode()


def _template(sample: Mapping[str, Any], slots: Iterable[str], **constants: Any) -> JsonTemplate:
    """A template from a sample object: top-level `slots` vary, `constants` replace sample values.

    A constant equal to `DROP` removes the key. Every slot must exist in the sample (so the shape
    stays the sample's shape), which catches typos.
    """
    document = dict(sample)
    for name in slots:
        if name not in document:
            raise KeyError(f"slot {name!r} is not a field of the sample object")
        document[name] = Slot(name)
    for name, value in constants.items():
        if value is DROP:
            document.pop(name, None)
        else:
            document[name] = value
    return JsonTemplate(document)


DROP = object()
EMPTY_OBJECT = RawJSON("{}")
EMPTY_ARRAY = RawJSON("[]")
NULL_ADDRESS = {
    "city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None,
}  # fmt: skip


def load_samples() -> tuple[dict[str, Any], dict[str, Any]]:
    """Fresh copies of Stripe's current sample objects and of the 2023 samples, by object name."""
    current: dict[str, Any] = {}
    older: dict[str, Any] = {}
    for line in _SAMPLES.strip().splitlines():
        key, document = line.split(" ", 1)
        version, name = key.split(".")
        (current if version == "current" else older)[name] = json.loads(document)
    return current, older


CARD_COUNTRIES = tuple(city[1] for city in CITIES)
WALLETS = (None, None, None, RawJSON('{"dynamic_last4":null,"type":"apple_pay"}'))
CARD_CHECKS = {
    (postal_checked, cvc_failed): RawJSON(
        _encode_compound(
            {
                "address_line1_check": None,
                "address_postal_code_check": "pass" if postal_checked else None,
                "cvc_check": "fail" if cvc_failed else "pass",
            }
        )
    )
    for postal_checked in (False, True)
    for cvc_failed in (False, True)
}


# --------------------------------------------------------------------------------------------
# Index of one resource: sorted newest first, with pre-serialized JSON and filter columns


@dataclass
class ResourceIndex:
    """Objects of one resource, newest first (created desc, then id desc).

    `neg_created` is the negated `created` of each position (ascending), so `bisect` finds
    created ranges; `blobs` holds each object's compact JSON; `columns` the filterable fields.
    """

    resource: str
    neg_created: list[int]
    ids: list[str]
    blobs: list[bytes]
    columns: dict[str, list[Any]]
    position: dict[str, int] = field(default_factory=dict)
    _value_positions: dict[tuple[str, frozenset], list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def first_visible(self, now: float | None) -> int:
        """Position of the first object with `created <= now` (all objects when now is None)."""
        if now is None:
            return 0
        return bisect.bisect_left(self.neg_created, -int(now))

    def created_range(
        self,
        gte: int | None = None,
        gt: int | None = None,
        lte: int | None = None,
        lt: int | None = None,
    ) -> tuple[int, int]:
        """Positions [lo, hi) of the objects whose `created` satisfies all the given bounds."""
        lo, hi = 0, len(self.neg_created)
        neg = self.neg_created
        if gte is not None:
            hi = min(hi, bisect.bisect_right(neg, -gte))
        if gt is not None:
            hi = min(hi, bisect.bisect_left(neg, -gt))
        if lte is not None:
            lo = max(lo, bisect.bisect_left(neg, -lte))
        if lt is not None:
            lo = max(lo, bisect.bisect_right(neg, -lt))
        return lo, max(lo, hi)

    def invalidate(self) -> None:
        """Forget the cached filter positions (a filter column changed)."""
        self._value_positions.clear()

    def remove(self, object_ids: set[str]) -> None:
        """Take objects out of the list (deleted customers and prices are not listed)."""
        keep = [i for i, object_id in enumerate(self.ids) if object_id not in object_ids]
        self.neg_created = [self.neg_created[i] for i in keep]
        self.ids = [self.ids[i] for i in keep]
        self.blobs = [self.blobs[i] for i in keep]
        self.columns = {name: [values[i] for i in keep] for name, values in self.columns.items()}
        self.position = {object_id: i for i, object_id in enumerate(self.ids)}
        self.invalidate()

    def insert(self, created: int, object_id: str, blob: bytes, columns: tuple) -> None:
        """Add an object made now (a refund and its balance transaction), in list order."""
        if object_id in self.position:
            raise ValueError(f"{object_id} already exists")
        i = bisect.bisect_left(self.neg_created, -created)
        while i < len(self.ids) and self.neg_created[i] == -created and self.ids[i] > object_id:
            i += 1
        self.neg_created.insert(i, -created)
        self.ids.insert(i, object_id)
        self.blobs.insert(i, blob)
        for values, value in zip(self.columns.values(), columns, strict=True):
            values.insert(i, value)
        self.position = {oid: p for p, oid in enumerate(self.ids)}
        self.invalidate()

    def positions_with(self, column: str, values: frozenset) -> list[int]:
        """Sorted positions whose `column` value is in `values` (cached per column and value set)."""
        key = (column, values)
        cached = self._value_positions.get(key)
        if cached is None:
            data = self.columns[column]
            cached = [i for i, value in enumerate(data) if value in values]
            self._value_positions[key] = cached
        return cached


# --------------------------------------------------------------------------------------------
# The account


class _Pattern:
    """Cycles through a shuffled multiset so proportions hold exactly per cycle (and stay seeded)."""

    def __init__(self, rng: random.Random, weighted: Iterable[tuple[Any, int]]) -> None:
        self._rng = rng
        self._items = [item for item, count in weighted for _ in range(count)]
        self._queue: list[Any] = []

    def next(self) -> Any:
        if not self._queue:
            self._queue = list(self._items)
            self._rng.shuffle(self._queue)
        return self._queue.pop()


@dataclass
class _PriceRecord:
    id: str
    created: int
    currency: str
    unit_amount: int
    interval: str
    interval_count: int
    product: str
    nickname: str | None
    lookup_key: str | None
    usage_type: str
    trial_period_days: int | None
    active: bool


@dataclass
class _CustomerRecord:
    id: str
    created: int
    name: str | None
    email: str | None
    phone: str | None
    address: dict[str, Any] | None
    billing: list[RawJSON | None] = field(default_factory=lambda: [None, None])
    invoice_prefix: str = ""  # numbers the customer's invoices


class StripeAccount:
    """A deterministic synthetic Stripe test-mode account.

    Objects are generated for the UTC days `[start, start + days)`; `start=None` means the last
    `days` days including today (by `clock`). Without `live`, no object is created after `clock()`
    at generation time. With `live=True`, the days are filled completely and an object is visible
    (to `objects`, `total` and the emulator) only once `created <= clock()`, so objects "appear" as
    the (possibly fake) clock advances. Objects' `livemode` is always false: it is a test account.
    """

    def __init__(
        self,
        seed: int = 7,
        start: dt.date | str | None = None,
        days: int = 7,
        charges_per_day: int = 200,
        live: bool = False,
        clock: Callable[[], float] = time.time,
        account_id: str = "acct_1EmulatorLocal00",
        event_api_versions: Sequence[tuple[int | str | dt.date, str]] | None = None,
    ) -> None:
        if not isinstance(days, int) or days < 1:
            raise ValueError(f"days must be a positive integer, got {days!r}")
        if not isinstance(charges_per_day, int) or charges_per_day < 0:
            raise ValueError(
                f"charges_per_day must be a non-negative integer, got {charges_per_day!r}"
            )
        if not re.fullmatch(r"acct_[A-Za-z0-9]+", account_id):
            raise ValueError(
                f"account_id must look like 'acct_<alphanumerics>', got {account_id!r}"
            )
        self.seed = seed
        self.days = days
        self.charges_per_day = charges_per_day
        self.live = live
        self.clock = clock
        self.account_id = account_id
        generated_at = clock()
        today = dt.datetime.fromtimestamp(generated_at, tz=dt.UTC).date()
        self.start = _parse_start(start, today, days)
        self.start_ts = _day_timestamp(self.start)
        self.end_ts = self.start_ts + days * DAY
        # Non-live accounts never hold objects created after the clock at generation time.
        self.horizon = self.end_ts if live else min(self.end_ts, int(generated_at) + 1)
        self._now_at_generation = int(generated_at)
        self._rng = random.Random(seed)
        self.event_versions = EventVersions(self._version_history(event_api_versions))
        self.lock = threading.RLock()
        generator = _Generator(self)
        self._indexes = generator.run()
        self._timeline = Timeline(
            self._indexes, generator.plans, int(generated_at), live, self.event_versions,
            generator.charge_creation_types,
        )  # fmt: skip
        # UTC days whose balance transactions are still pending (available_on = day + 2 days).
        self._pending_txn_days = sorted(
            day for day in range(self.start_ts // DAY, self.end_ts // DAY)
            if (day + 2) * DAY > int(generated_at)
        )  # fmt: skip
        self._runtime_rng = random.Random(f"{seed}:runtime")
        self.account_json = self._account_object()

    def _version_history(
        self, history: Sequence[tuple[int | str | dt.date, str]] | None
    ) -> list[tuple[int, str]]:
        """The account's API version over time (`event_api_versions`), as unix seconds.

        Default: the older vendored version until the middle day of the account, the newest one
        from then on, so consumers pinned to one version meet event payloads of the other."""
        if history is None:
            oldest, newest = (
                stripe_specs.vendored_versions()[0],
                stripe_specs.newest_vendored_version(),
            )
            return [(0, oldest), (self.start_ts + (self.days // 2) * DAY, newest)]
        entries = []
        for since, version in history:
            if isinstance(since, bool) or not isinstance(since, int | str | dt.date):
                raise TypeError(
                    "event_api_versions entries are (since, version) with since a unix time, a "
                    f"date or 'YYYY-MM-DD', got {since!r}"
                )
            if isinstance(since, int):
                entries.append((since, version))
            else:
                entries.append((_day_timestamp(_parse_start(since, self.start, 1)), version))
        return entries

    # ---- ground truth -------------------------------------------------------------------

    def index(self, resource: str) -> ResourceIndex:
        """The sorted index the emulator serves for `resource`."""
        if resource not in self._indexes:
            raise KeyError(
                f"unknown resource {resource!r}; expected one of {', '.join(RESOURCE_NAMES)}"
            )
        return self._indexes[resource]

    def visible_now(self) -> int | None:
        """The `created` bound of visible objects (None: everything is visible)."""
        return int(self.clock()) if self.live else None

    def objects(
        self, resource: str, gte: int | None = None, lt: int | None = None
    ) -> list[dict[str, Any]]:
        """ALL objects of `resource` visible now, in their current state (including canceled
        subscriptions and inactive prices; deleted customers and prices are gone), newest
        first, optionally restricted to `gte <= created < lt`."""
        with self.lock:
            self.sync()
            index = self.index(resource)
            lo, hi = index.created_range(gte=gte, lt=lt)
            lo = max(lo, index.first_visible(self.visible_now()))
            blobs = index.blobs[lo:hi]
        return [json.loads(blob) for blob in blobs]

    def ids(self, resource: str, gte: int | None = None, lt: int | None = None) -> list[str]:
        """The ids of `objects(resource, gte, lt)`, in the same order, without parsing any JSON
        (cheap ground truth for large accounts)."""
        with self.lock:
            self.sync()
            index = self.index(resource)
            lo, hi = index.created_range(gte=gte, lt=lt)
            lo = max(lo, index.first_visible(self.visible_now()))
            return index.ids[lo:hi]

    def deleted_ids(self, resource: str, gte: int | None = None, lt: int | None = None) -> set[str]:
        """Ids of the objects of `resource` deleted by now (customers and prices: gone from
        `ids` and the lists), optionally restricted to `gte <= created < lt`."""
        with self.lock:
            self.sync()
            return {
                object_id
                for object_id, (kind, created, _) in self._timeline.graveyard.items()
                if kind == resource
                and (gte is None or created >= gte)
                and (lt is None or created < lt)
            }

    def total(self, resource: str) -> int:
        """Number of objects of `resource` visible now."""
        with self.lock:
            self.sync()
            index = self.index(resource)
            return len(index) - index.first_visible(self.visible_now())

    # ---- change over time ---------------------------------------------------------------

    def sync(self) -> None:
        """Bring the served state to the clock's now (live accounts): apply the planned
        mutations the clock has reached and make balance transactions available once their
        `available_on` has passed (which emits no event: Stripe has none for it)."""
        if not self.live:
            return
        with self.lock:
            now = int(self.clock())
            self._timeline.sync(now)
            while self._pending_txn_days and (self._pending_txn_days[0] + 2) * DAY <= now:
                day = self._pending_txn_days.pop(0)
                index = self._indexes["balance_transactions"]
                lo, hi = index.created_range(gte=day * DAY, lt=(day + 1) * DAY)
                blobs = index.blobs
                for position in range(lo, hi):
                    blobs[position] = blobs[position].replace(
                        b'"status":"pending"', b'"status":"available"', 1
                    )

    def events(
        self, gte: int | None = None, lt: int | None = None, *, include_expired: bool = False
    ) -> list[dict[str, Any]]:
        """Ground truth: every event `GET /v1/events` serves now (created within the last 30
        days of the clock, and `gte <= created < lt`), newest first, as it renders them.
        `include_expired` adds the events older than Stripe's 30 days of retention."""
        with self.lock:
            self.sync()
            query = EventQuery(limit=10**12, created_min=gte,
                               created_max=None if lt is None else lt - 1)  # fmt: skip
            now = int(self.clock())
            timeline = self._timeline
            entries, _ = timeline.page(query, now, retention=not include_expired)
            return [orjson.loads(timeline.render(entry)) for entry in entries]

    def current(self, resource: str, object_id: str) -> dict[str, Any] | None:
        """The object as `GET /v1/<resource>/<id>` at the newest vendored version returns it
        now: None if it does not exist (yet) or is a deleted price, the deleted stub
        `{"id", "object": "customer", "deleted": true}` for a deleted customer."""
        with self.lock:
            self.sync()
            index = self.index(resource)
            position = index.position.get(object_id)
            if position is not None and position >= index.first_visible(self.visible_now()):
                return json.loads(index.blobs[position])
            if object_id in self._timeline.graveyard and resource == "customers":
                return deleted_customer(object_id)
            return None

    def mutate(self, resource: str, object_id: str, kind: str, **fields: Any) -> list[str]:
        """Apply one change to an object at the clock's now, record its event(s) and return
        their ids (creation events of objects it makes included, e.g. a refund's).

        Kinds: customers `update` (fields: email, name, phone, address, description,
        metadata) and `delete`; prices `deactivate`, `update` (nickname, metadata, active) and
        `delete`; subscriptions `cancel` and `update` (status, metadata, cancel_at_period_end);
        charges `refund` (amount: default what is left), `capture`, `dispute` (a chargeback opened
        now: the dispute, its withdrawal and the charge's `disputed`) and `update` (description,
        metadata). Disputes and invoices follow their planned lifecycle only. The object's planned
        future mutations are dropped: its fate is the caller's from now on. ValueError names
        what is wrong.
        """
        with self.lock:
            self.sync()
            return _mutate(self, resource, object_id, kind, fields)

    def totals(self) -> dict[str, int]:
        return {resource: self.total(resource) for resource in RESOURCE_NAMES}

    def __repr__(self) -> str:
        return (
            f"StripeAccount(seed={self.seed}, start={self.start.isoformat()}, days={self.days}, "
            f"charges_per_day={self.charges_per_day}, live={self.live}, "
            f"account_id={self.account_id!r})"
        )

    def _account_object(self) -> bytes:
        sample = dict(load_samples()[0]["account"])
        sample.update(
            id=self.account_id,
            email="emulator@example.com",
            created=self.start_ts - 30 * DAY,
            country="US",
            default_currency="usd",
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
            type="standard",
        )
        sample["business_profile"] = dict(sample["business_profile"], name="Stripe Emulator")
        sample["external_accounts"] = dict(
            sample["external_accounts"], url=f"/v1/accounts/{self.account_id}/external_accounts"
        )
        return json.dumps(sample, separators=(",", ":")).encode()


def deleted_customer(object_id: str) -> dict[str, Any]:
    """What retrieving a deleted customer returns: "a subset of the customer's information,
    including a deleted property that's set to true" (docs.stripe.com/api/customers/retrieve)."""
    return {"id": object_id, "object": "customer", "deleted": True}


def _parse_start(start: dt.date | str | None, today: dt.date, days: int) -> dt.date:
    if start is None:
        return today - dt.timedelta(days=days - 1)
    if isinstance(start, dt.datetime):
        raise TypeError("start must be a date or 'YYYY-MM-DD', not a datetime")
    if isinstance(start, dt.date):
        return start
    if isinstance(start, str):
        try:
            return dt.date.fromisoformat(start)
        except ValueError:
            raise ValueError(f"start must be a date 'YYYY-MM-DD', got {start!r}") from None
    raise TypeError(f"start must be a date, 'YYYY-MM-DD' or None, got {type(start).__name__}")


def _day_timestamp(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def _round_to_step(amount: int, currency: str) -> int:
    step = AMOUNT_STEP.get(currency, 1)
    return max(step, amount // step * step)


# --------------------------------------------------------------------------------------------
# Generation


class _Generator:
    """Builds all objects of one account, day by day, in one pass with one seeded RNG."""

    def __init__(self, account: StripeAccount) -> None:
        self.account = account
        self.rng = account._rng
        self.horizon = account.horizon
        self.now = account._now_at_generation
        current, older = load_samples()
        self._build_templates(current, older)
        rng = self.rng
        self.rows: dict[str, list[tuple]] = {resource: [] for resource in RESOURCE_NAMES}
        self.customers: list[_CustomerRecord] = []
        self.customer_created: list[int] = []
        self.recurring_prices: list[_PriceRecord] = []
        self.recurring_created: list[int] = []
        self.products: list[str] = []
        currencies, weights = zip(*CURRENCY_WEIGHTS, strict=True)
        self._currencies = currencies
        self._currency_cum = list(_cumulative(weights))
        self.sub_status = _Pattern(rng, SUBSCRIPTION_STATUS_PATTERN)
        self.old_shape = _Pattern(rng, ((True, 1), (False, 9)))
        self.price_active = _Pattern(rng, ((True, 7), (False, 3)))
        self.price_type = _Pattern(rng, (("recurring", 3), ("one_time", 1)))
        self.charge_outcome = _Pattern(rng, (("succeeded", 90), ("failed", 8), ("uncaptured", 2)))
        self.payment_kind = _Pattern(rng, (("card", 8), ("bnpl", 2)))
        self.bnpl_kind = _Pattern(rng, ((kind, 1) for kind in BNPL_TYPES))
        self.metadata_pool = self._metadata_variants(512)
        self.outcome_cache: dict[tuple, RawJSON] = {}
        self.anonymous_billing = {
            (old_shape, variant): RawJSON(
                _encode_compound(
                    {"address": NULL_ADDRESS, "email": None, "name": name, "phone": None}
                    | ({} if old_shape else {"tax_id": None})
                )
            )
            for old_shape in (False, True)
            for variant, name in enumerate((None, "Jenny Rosen", "Okello Mugisha"))
        }
        self.refund_plan = _Pattern(
            rng, (("none", 85), ("full", 6), ("partial", 6), ("two_partial", 3))
        )
        # Mutations over time draw from their own stream, so planning them leaves the objects'
        # stream (and every object's creation state) as it was.
        self.plan_rng = random.Random(f"{account.seed}:mutations")
        self.plans: list[Mutation] = []
        self.charge_creation_types: dict[str, str] = {}
        self.prices: list[tuple[str, int, bool]] = []  # (id, created, active at creation)
        # Each catalog resource's generator module (`StripeResource.emulator_module`).
        self.generators = {
            r.name: importlib.import_module(r.emulator_module) for r in STRIPE_RESOURCES
        }
        self.dispute_maker = self.generators["disputes"].DisputeMaker(self)
        self.invoice_maker = self.generators["invoices"].InvoiceMaker(self)
        self.last_brand: str | None = None  # the card brand `card_details` drew last
        # The planned times of the last subscription's failed payment, unpaid status and end.
        self.sub_fate: dict[str, int | None] = {}

    # ---- templates from Stripe's samples ------------------------------------------------

    def _build_templates(self, current: dict[str, Any], older: dict[str, Any]) -> None:
        charge_slots = (
            "id", "amount", "amount_captured", "amount_refunded", "balance_transaction",
            "billing_details", "calculated_statement_descriptor", "captured", "created",
            "currency", "customer", "description", "failure_code", "failure_message", "metadata",
            "outcome", "paid", "payment_intent", "payment_method", "payment_method_details",
            "receipt_email", "receipt_url", "refunded", "status", "transfer_group",
        )  # fmt: skip
        # Current charges come from PaymentIntents: no legacy `source`, no Connect transfer data,
        # and `refunds` is includable only (not returned unless expanded) since 2022-11-15.
        self.charge_t = _template(
            current["charge"], charge_slots,
            source=None, transfer_data=None, shipping=None, refunds=DROP,
        )  # fmt: skip
        self.charge_old_t = _template(older["charge"], charge_slots)
        card = current["charge"]["payment_method_details"]["card"]
        card_slots = ("brand", "country", "exp_month", "exp_year", "fingerprint", "funding",
                      "last4", "network", "wallet")  # fmt: skip
        card_doc = {key: Slot(key) if key in card_slots else value for key, value in card.items()}
        card_doc["checks"] = Slot("checks")
        card_doc["overcapture"] = {"maximum_amount_capturable": Slot("capturable"),
                                   "status": "unavailable"}  # fmt: skip
        self.card_t = JsonTemplate({"card": card_doc, "type": "card"})
        old_card = older["charge"]["payment_method_details"]["card"]
        old_card_doc = {k: Slot(k) if k in card_slots else v for k, v in old_card.items()}
        old_card_doc["checks"] = Slot("checks")
        self.card_old_t = JsonTemplate({"card": old_card_doc, "type": "card"})

        refund_slots = ("id", "amount", "balance_transaction", "charge", "created", "currency",
                        "destination_details", "metadata", "payment_intent", "reason", "status",
                        "customer", "payment_method")  # fmt: skip
        self.refund_t = _template(current["refund"], refund_slots)

        txn_slots = ("id", "amount", "available_on", "created", "currency", "description",
                     "exchange_rate", "fee", "fee_details", "net", "reporting_category", "source",
                     "status", "type")  # fmt: skip
        self.txn_t = _template(current["balance_transaction"], txn_slots)

        customer_slots = ("id", "address", "balance", "created", "currency", "delinquent",
                          "description", "email", "invoice_prefix", "metadata", "name",
                          "next_invoice_sequence", "phone", "preferred_locales", "shipping",
                          "tax_exempt")  # fmt: skip
        self.customer_t = _template(current["customer"], customer_slots, discount=None)

        price_slots = ("id", "active", "created", "currency", "lookup_key", "metadata",
                       "nickname", "product", "recurring", "tax_behavior", "type", "unit_amount",
                       "unit_amount_decimal")  # fmt: skip
        self.price_t = _template(
            current["price"], price_slots,
            custom_unit_amount=None, transform_quantity=None,
        )  # fmt: skip
        self.price_old_t = _template(older["price"], price_slots)
        plan_sample = current["subscription"]["items"]["data"][0]["plan"]
        plan_slots = ("id", "active", "amount", "amount_decimal", "created", "currency",
                      "interval", "interval_count", "nickname", "product", "trial_period_days",
                      "usage_type")  # fmt: skip
        self.plan_t = _template(
            plan_sample, plan_slots,
            billing_scheme="per_unit", livemode=False, metadata={}, transform_usage=None,
        )  # fmt: skip
        old_plan_sample = older["subscription"]["items"]["data"][0]["plan"]
        self.plan_old_t = _template(old_plan_sample, plan_slots)

        sub_sample = current["subscription"]
        sub_slots = ("id", "billing_cycle_anchor", "cancel_at", "canceled_at",
                     "cancellation_details", "collection_method", "created", "currency",
                     "customer", "days_until_due", "default_payment_method", "ended_at", "items",
                     "latest_invoice", "metadata", "start_date", "status", "trial_end",
                     "trial_start", "cancel_at_period_end")  # fmt: skip
        self.sub_t = _template(
            sub_sample, sub_slots,
            billing_cycle_anchor_config=None, next_pending_invoice_item_invoice=None,
            pause_collection=None, pending_invoice_item_interval=None, pending_update=None,
            transfer_data=None, billing_thresholds=None, managed_payments={"enabled": False},
            billing_schedules=[],
        )  # fmt: skip
        item = dict(sub_sample["items"]["data"][0])
        for key in ("id", "created", "price", "plan", "subscription", "quantity",
                    "current_period_start", "current_period_end"):  # fmt: skip
            item[key] = Slot(key)
        item["billing_thresholds"] = None
        self.sub_item_t = JsonTemplate(item)
        old_sub_sample = older["subscription"]
        self.sub_old_t = _template(
            old_sub_sample, sub_slots + ("current_period_start", "current_period_end", "quantity")
        )
        old_item = dict(old_sub_sample["items"]["data"][0])
        for key in ("id", "created", "price", "plan", "subscription", "quantity"):
            old_item[key] = Slot(key)
        self.sub_item_old_t = JsonTemplate(old_item)

    # ---- helpers ------------------------------------------------------------------------

    def pick(self, options: tuple | list) -> Any:
        """A uniformly chosen element (cheaper than `rng.choice`, same seeded stream)."""
        return options[int(self.rng.random() * len(options))]

    def new_id(self, prefix: str, length: int = 24) -> str:
        return prefix + self.rng.randbytes(length).translate(_ID_TABLE).decode()

    def currency(self) -> str:
        return self._currencies[
            bisect.bisect_right(self._currency_cum, self.rng.random() * self._currency_cum[-1])
        ]

    def amount(self, currency: str) -> int:
        low, high = AMOUNT_RANGE_MAJOR[currency]
        exponent = CURRENCY_EXPONENT.get(currency, 2)
        minor = self.rng.randint(low * 10**exponent, high * 10**exponent)
        return _round_to_step(minor, currency)

    def metadata(self, null_share: float = 0.0) -> RawJSON | None:
        """A metadata map: None (when `null_share` allows), empty (~45%) or 1–3 keys."""
        rng = self.rng
        roll = rng.random()
        if roll < null_share:
            return None
        if roll < 0.45:
            return EMPTY_OBJECT
        return self.metadata_pool[rng.randrange(len(self.metadata_pool))]

    def _metadata_variants(self, count: int) -> list[RawJSON]:
        rng = self.rng
        variants = []
        for _ in range(count):
            keys = rng.sample(METADATA_KEYS, rng.randint(1, 3))
            mapping = {key: f"{key}_{rng.randint(1, 99_999)}" for key in keys}
            variants.append(RawJSON(_encode_compound(mapping)))
        return variants

    def billing_json(self, customer: _CustomerRecord, old_shape: bool) -> RawJSON:
        """The charge's `billing_details` for a customer's payment (cached per customer)."""
        cached = customer.billing[old_shape]
        if cached is None:
            billing = {
                "address": customer.address or NULL_ADDRESS,
                "email": customer.email,
                "name": customer.name,
                "phone": customer.phone,
            }
            if not old_shape:
                billing["tax_id"] = None
            cached = customer.billing[old_shape] = RawJSON(_encode_compound(billing))
        return cached

    def outcome_json(
        self, reason: str | None, advice: str | None, risk_score: int, old_shape: bool
    ) -> RawJSON:
        """The charge's `outcome` (approved when `reason` is None), cached per variant."""
        key = (reason, advice, risk_score, old_shape)
        cached = self.outcome_cache.get(key)
        if cached is None:
            declined = reason is not None
            outcome: dict[str, Any] = {}
            if not old_shape:
                outcome.update(advice_code=advice, network_advice_code=None,
                               network_decline_code=None)  # fmt: skip
            outcome.update(
                network_status="declined_by_network" if declined else "approved_by_network",
                reason=reason,
                risk_level="normal",
                risk_score=risk_score,
                seller_message=(
                    "The bank did not return any further details with this decline."
                    if declined
                    else "Payment complete."
                ),
                type="issuer_declined" if declined else "authorized",
            )
            cached = self.outcome_cache[key] = RawJSON(_encode_compound(outcome))
        return cached

    def settle(self, currency: str, amount: int) -> tuple[str, int, float | None]:
        """Settlement currency, amount and exchange rate of a payment in `currency`."""
        if currency in SETTLEMENT_CURRENCIES:
            return currency, amount, None
        rate = USD_RATE[currency]
        major = amount / 10 ** CURRENCY_EXPONENT.get(currency, 2)
        return "usd", round(major * rate * 100), rate

    def times(self, count: int, d0: int, d1: int) -> list[int]:
        randrange = self.rng.randrange
        return sorted(randrange(d0, d1) for _ in range(count))

    def later(self, created: int, max_delay: int) -> int | None:
        """A time after `created` (by 1 s to `max_delay`), before the horizon; None if no room."""
        room = self.horizon - 1 - created
        if room < 1:
            return None
        return created + self.rng.randint(1, min(room, max_delay))

    def plan_later(self, created: int, max_delay: int, min_delay: int = 1) -> int | None:
        """A time `min_delay`..`max_delay` s after `created` before the horizon (mutation stream)."""
        room = self.horizon - 1 - created
        if room < min_delay:
            return None
        return created + self.plan_rng.randint(min_delay, min(room, max_delay))

    def plan(
        self,
        time: int,
        resource: str,
        object_id: str,
        type: str,
        changes: dict[str, Any] | None = None,
        remove: bool = False,
        rng: random.Random | None = None,
        silent: bool = False,
    ) -> None:
        """Plan a mutation of an object (applied when the clock reaches `time`); its event id
        comes from `rng` (default: the mutation stream)."""
        event_id = "evt_" + (rng or self.plan_rng).randbytes(24).translate(_ID_TABLE).decode()
        self.plans.append(
            Mutation(
                time, resource, object_id, type, changes, event_id, remove, len(self.plans), silent
            )  # fmt: skip
        )

    # ---- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, ResourceIndex]:
        account = self.account
        cpd = account.charges_per_day
        for day in range(account.days):
            d0 = account.start_ts + day * DAY
            d1 = min(d0 + DAY, self.horizon)
            if d1 <= d0:
                break  # days after the clock (non-live): nothing was created yet
            self.generate_day(d0, d1, cpd, first_day=day == 0)
        self.generators["customers"].plan_changes(self)
        self.generators["prices"].plan_changes(self)
        return {resource: self.build_index(resource) for resource in RESOURCE_NAMES}

    def generate_day(self, d0: int, d1: int, cpd: int, first_day: bool) -> None:
        rng = self.rng
        n_prices = max(1, round(cpd * 0.05))
        n_customers = max(1, round(cpd * 0.30))
        n_subscriptions = round(cpd * 0.10)
        price_times = self.times(n_prices, d0, d1)
        customer_times = self.times(n_customers, d0, d1)
        if first_day:  # subscriptions need a customer and a recurring price from the start
            price_times[0] = customer_times[0] = d0
        generators = self.generators
        make_price = generators["prices"].make
        for index, created in enumerate(price_times):
            make_price(self, created, force_recurring_active=first_day and index == 0)
        make_customer = generators["customers"].make
        for created in customer_times:
            make_customer(self, created)
        make_charge = generators["charges"].make
        for created in self.charge_times(cpd, d0, d1):
            make_charge(self, created)
        if n_subscriptions:
            first = max(self.customer_created[0], self.recurring_created[0])
            make_subscription = generators["subscriptions"].make
            for created in self.times(n_subscriptions, max(d0, first), d1):
                make_subscription(self, created)
        make_txn = generators["balance_transactions"]
        for kind in make_txn.DAILY_KINDS:
            if cpd and (kind != "adjustment" or rng.random() < 0.6):
                make_txn.make(self, kind, rng.randrange(d0, d1))

    def charge_times(self, count: int, d0: int, d1: int) -> list[int]:
        """Charge times with same-second clusters of 150–250 charges (fewer on tiny days)."""
        rng = self.rng
        times: list[int] = []
        if count >= 4:
            for _ in range(max(1, count // 2500)):
                size = min(rng.randint(150, 250), max(1, count * 3 // 4), count - len(times))
                second = rng.randrange(d0, d1)
                times.extend([second] * size)
        times.extend(rng.randrange(d0, d1) for _ in range(count - len(times)))
        times.sort()
        return times

    def add(self, resource: str, created: int, object_id: str, blob: bytes, columns: tuple) -> None:
        self.rows[resource].append((created, object_id, blob, columns))

    def build_index(self, resource: str) -> ResourceIndex:
        rows = self.rows.pop(resource)
        rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
        names = stripe_resource(resource).list_filters
        columns_by_position = list(zip(*(row[3] for row in rows), strict=True)) or [
            () for _ in names
        ]
        index = ResourceIndex(
            resource=resource,
            neg_created=[-row[0] for row in rows],
            ids=[row[1] for row in rows],
            blobs=[row[2] for row in rows],
            columns={
                name: list(values) for name, values in zip(names, columns_by_position, strict=True)
            },
        )
        index.position = {object_id: i for i, object_id in enumerate(index.ids)}
        if len(index.position) != len(index.ids):
            raise RuntimeError(f"duplicate ids generated for {resource}")
        return index

    # ---- prices -------------------------------------------------------------------------

    def make_price(self, created: int, force_recurring_active: bool = False) -> None:
        rng = self.rng
        if not self.products or rng.random() < 0.35:
            self.products.append(self.new_id("prod_", 14))
        product = rng.choice(self.products)
        active = True if force_recurring_active else self.price_active.next()
        kind = "recurring" if force_recurring_active else self.price_type.next()
        currency = "usd" if rng.random() < 0.5 else self.currency()
        unit_amount = self.amount(currency)
        interval, interval_count = rng.choice(
            (("month", 1), ("month", 1), ("year", 1), ("week", 1), ("month", 3), ("day", 7))
        )
        record = _PriceRecord(
            id=self.new_id("price_"),
            created=created,
            currency=currency,
            unit_amount=unit_amount,
            interval=interval,
            interval_count=interval_count,
            product=product,
            nickname=rng.choice((None, None, "Standard", "Pro", "Team", "Legacy plan")),
            lookup_key=(f"lk_{rng.randint(1, 10**9)}" if rng.random() < 0.3 else None),
            usage_type="metered" if rng.random() < 0.1 else "licensed",
            trial_period_days=rng.choice((None, None, None, 7, 14, 30)),
            active=active,
        )
        recurring = None
        if kind == "recurring":
            recurring = {
                "interval": interval,
                "interval_count": interval_count,
                "meter": None,
                "usage_type": record.usage_type,
                "trial_period_days": record.trial_period_days,
            }
            self.recurring_prices.append(record)
            self.recurring_created.append(created)
        blob = self.price_t.render(
            {
                "id": record.id,
                "active": active,
                "created": created,
                "currency": currency,
                "lookup_key": record.lookup_key,
                "metadata": self.metadata(),
                "nickname": record.nickname,
                "product": product,
                "recurring": recurring,
                "tax_behavior": rng.choice(("unspecified", "exclusive", "inclusive")),
                "type": kind,
                "unit_amount": unit_amount,
                "unit_amount_decimal": str(unit_amount),
            }
        )
        self.add(
            "prices",
            created,
            record.id,
            blob,
            (active, kind, currency, product, record.lookup_key),
        )
        self.prices.append((record.id, created, active and not force_recurring_active))

    # ---- customers ----------------------------------------------------------------------

    def make_customer(self, created: int) -> None:
        rng = self.rng
        object_id = self.new_id("cus_")
        name = (
            f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}" if rng.random() < 0.85 else None
        )
        email = None
        if rng.random() < 0.8:
            email = f"customer{rng.randint(1, 10**9)}@example.com"
        phone = f"+1555{rng.randint(1_000_000, 9_999_999)}" if rng.random() < 0.4 else None
        address = None
        if rng.random() < 0.6:
            city, country, state, postal_code = rng.choice(CITIES)
            address = {
                "city": city,
                "country": country,
                "line1": f"{rng.randint(1, 999)} Main Street",
                "line2": rng.choice((None, None, "Apt 4")),
                "postal_code": postal_code,
                "state": state,
            }
        record = _CustomerRecord(object_id, created, name, email, phone, address)
        shipping = None
        if address is not None and rng.random() < 0.3:
            shipping = {"address": address, "name": name, "phone": phone}
        blob = self.customer_t.render(
            {
                "id": object_id,
                "address": address,
                "balance": 0 if rng.random() < 0.9 else -rng.randint(1, 50_000),
                "created": created,
                "currency": rng.choice((None, None, "usd", "eur")),
                "delinquent": rng.random() < 0.05,
                "description": rng.choice((None, None, "VIP", "Imported from legacy CRM")),
                "email": email,
                "invoice_prefix": (prefix := "".join(rng.choices("0123456789ABCDEF", k=8))),
                "metadata": self.metadata(null_share=0.05),
                "name": name,
                "next_invoice_sequence": rng.randint(1, 40),
                "phone": phone,
                "preferred_locales": rng.choice(([], [], ["en"], ["de", "en"])),
                "shipping": shipping,
                "tax_exempt": rng.choice(("none", "none", "none", "exempt", "reverse")),
            }
        )
        record.invoice_prefix = prefix
        self.customers.append(record)
        self.customer_created.append(created)
        self.add("customers", created, object_id, blob, (email,))

    def plan_customer_changes(self) -> None:
        """About 3% of customers are edited (`customer.updated`: email, name, phone, address or
        metadata; some in their creation second, a quarter of those edits twice in one second)
        and about 1.5% deleted hours to days later (`customer.deleted`), only customers with no
        subscription and after their last charge, as an account would tidy up."""
        rng = self.plan_rng
        subscribed = {row[3][1] for row in self.rows["subscriptions"]}
        last_used: dict[str, int] = {}
        for created, _, _, columns in self.rows["charges"]:
            customer = columns[0]
            if customer is not None and last_used.get(customer, 0) < created:
                last_used[customer] = created
        for customer in self.customers:
            roll = rng.random()
            if roll < 0.03:
                delay_kind = rng.random()
                if delay_kind < 0.3:
                    edited_at = customer.created  # in the creation second: a tie
                elif delay_kind < 0.7:
                    edited_at = customer.created + rng.randint(1, 3600)
                else:
                    edited_at = customer.created + rng.randint(DAY, 5 * DAY)
                if edited_at >= self.horizon:
                    continue
                for _ in range(2 if rng.random() < 0.25 else 1):
                    self.plan(edited_at, "customers", customer.id, "customer.updated",
                              self.customer_edit())  # fmt: skip
            elif roll < 0.045 and customer.id not in subscribed:
                after = max(customer.created, last_used.get(customer.id, 0))
                deleted_at = self.plan_later(after, 6 * DAY, min_delay=3 * 3600)
                if deleted_at is not None:
                    self.plan(deleted_at, "customers", customer.id, "customer.deleted",
                              remove=True)  # fmt: skip

    def customer_edit(self) -> dict[str, Any]:
        """New values for one or two of a customer's editable fields."""
        rng = self.plan_rng
        changes: dict[str, Any] = {}
        for name in rng.sample(
            ("email", "name", "phone", "address", "metadata"), rng.randint(1, 2)
        ):
            if name == "email":
                changes["email"] = f"customer{rng.randint(1, 10**9)}@example.org"
            elif name == "name":
                changes["name"] = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            elif name == "phone":
                changes["phone"] = f"+1555{rng.randint(1_000_000, 9_999_999)}"
            elif name == "address":
                city, country, state, postal_code = rng.choice(CITIES)
                changes["address"] = {
                    "city": city, "country": country,
                    "line1": f"{rng.randint(1, 999)} Market Street", "line2": None,
                    "postal_code": postal_code, "state": state,
                }  # fmt: skip
            else:
                changes["metadata"] = {"crm_segment": rng.choice(("smb", "mid", "enterprise"))}
        return changes

    def plan_price_changes(self) -> None:
        """About 4% of active prices are deactivated (`price.updated`, `active` false) and about
        1.5% of the prices no subscription uses are deleted (`price.deleted`), within days."""
        rng = self.plan_rng
        used = {row[3][3] for row in self.rows["subscriptions"]}
        for price_id, created, deactivatable in self.prices:
            roll = rng.random()
            if roll < 0.04 and deactivatable:
                when = self.plan_later(created, 5 * DAY)
                if when is not None:
                    self.plan(when, "prices", price_id, "price.updated", {"active": False})
            elif 0.04 <= roll < 0.055 and price_id not in used and price_id != self.prices[0][0]:
                when = self.plan_later(created, 5 * DAY)
                if when is not None:
                    self.plan(when, "prices", price_id, "price.deleted", remove=True)

    def customer_before(self, created: int) -> _CustomerRecord | None:
        count = bisect.bisect_right(self.customer_created, created)
        return self.customers[int(self.rng.random() * count)] if count else None

    # ---- charges, refunds and their balance transactions --------------------------------

    def make_charge(self, created: int) -> None:
        rng = self.rng
        old_shape = self.old_shape.next()
        outcome_kind = self.charge_outcome.next()
        kind = "card" if old_shape else self.payment_kind.next()
        bnpl = self.bnpl_kind.next() if kind == "bnpl" else None
        currency = rng.choice(BNPL_CURRENCIES[bnpl]) if bnpl else self.currency()
        amount = self.amount(currency)
        charge_id = self.new_id("ch_")
        payment_intent = self.new_id("pi_")
        payment_method = self.new_id("pm_")
        rand, pick = rng.random, self.pick
        customer = self.customer_before(created) if rand() < 0.65 else None
        failed = outcome_kind == "failed"
        captured = outcome_kind == "succeeded"
        if bnpl:
            details = RawJSON(_encode_compound(self.bnpl_details(bnpl)))
            brand = None
        else:
            details = self.card_details(amount, old_shape, failed)
            brand = self.last_brand
        if customer is not None:
            email = customer.email
            billing = self.billing_json(customer, old_shape)
        else:
            email = None
            billing = self.anonymous_billing[(old_shape, int(rand() * 3))]
        if failed:
            code, message, reason = pick(FAILURES)
            advice = pick((None, "try_again_later", "do_not_try_again"))
        else:
            code = message = reason = advice = None
        outcome = self.outcome_json(reason, advice, int(rand() * 61), old_shape)

        refunds = self.plan_refunds(created, amount, currency) if captured else []
        txn_id = None
        if captured:
            txn_id = self.new_id("txn_")
        values = {
            "id": charge_id,
            "amount": amount,
            "amount_captured": amount if captured else 0,
            "amount_refunded": 0,  # refunds come later, each a `charge.refunded` mutation
            "balance_transaction": txn_id,
            "billing_details": billing,
            "calculated_statement_descriptor": "EMULATOR SHOP",
            "captured": captured,
            "created": created,
            "currency": currency,
            "customer": customer.id if customer else None,
            "description": pick((None, "Order", "Subscription update", "Gift card")),
            "failure_code": code,
            "failure_message": message,
            "metadata": self.metadata(),
            "outcome": outcome,
            "paid": not failed,
            "payment_intent": payment_intent,
            "payment_method": payment_method,
            "payment_method_details": details,
            "receipt_email": None if failed else email,
            "receipt_url": None
            if failed
            else f"https://pay.stripe.com/receipts/payment/{charge_id[3:]}",
            "refunded": False,
            "status": "failed" if failed else "succeeded",
            "transfer_group": f"group_{payment_intent[3:11]}" if rand() < 0.05 else None,
        }
        # A few buy-now-pay-later payments are confirmed asynchronously: created `pending` (not
        # yet paid), they succeed a minute or two later (`charge.succeeded` after
        # `charge.pending`). Only charges without refunds, which come after success.
        succeeded_at = None
        if bnpl and captured and not refunds and self.plan_rng.random() < 0.1:
            succeeded_at = self.plan_later(created, 120)
            if succeeded_at is not None:
                values["status"], values["paid"] = "pending", False
                self.charge_creation_types[charge_id] = "charge.pending"
        template = self.charge_old_t if old_shape else self.charge_t
        self.add(
            "charges",
            created,
            charge_id,
            template.render(values),
            (values["customer"], payment_intent, values["transfer_group"]),
        )
        if succeeded_at is not None:
            self.plan(succeeded_at, "charges", charge_id, "charge.succeeded",
                      {"status": "succeeded", "paid": True})  # fmt: skip
        if failed:
            self.charge_creation_types[charge_id] = "charge.failed"
        if not captured:
            if not failed:
                self.plan_capture(charge_id, created, amount, currency, values["description"])
            return
        disputed_at = self.plan_charge_changes(charge_id, created, amount, refunds)
        settle_currency, settle_amount, rate = self.settle(currency, amount)
        fee = self.fee(settle_currency, settle_amount)
        self.add_txn(
            txn_id,
            created,
            settle_amount,
            settle_currency,
            values["description"] or "Payment",
            rate,
            fee,
            "charge",
            charge_id,
            "charge",
        )
        if disputed_at is not None and brand is not None and not refunds:
            self.generators["disputes"].make(
                self, disputed_at,
                {"id": charge_id, "amount": amount, "currency": currency,
                 "payment_intent": payment_intent, "brand": brand},
                (settle_currency, settle_amount, rate),
            )  # fmt: skip
        make_refund = self.generators["refunds"].make
        for refund_created, refund_amount in refunds:
            make_refund(
                self,
                refund_created,
                refund_amount,
                currency,
                charge_id,
                payment_intent,
                payment_method,
                values["customer"],
                bnpl,
                rate,
            )

    def plan_charge_changes(
        self, charge_id: str, created: int, amount: int, refunds: list[tuple[int, int]]
    ) -> int | None:
        """A succeeded charge's refunds (`charge.refunded` each; the refund objects and their
        balance transactions are created at the same second) and, rarely, when a dispute is
        opened on it days later (returned; generators/disputes.py makes it)."""
        refunded = 0
        for refund_created, refund_amount in refunds:
            refunded += refund_amount
            self.plan(
                refund_created, "charges", charge_id, "charge.refunded",
                {"amount_refunded": refunded, "refunded": refunded == amount},
            )  # fmt: skip
        if self.plan_rng.random() < self.generators["disputes"].DISPUTE_SHARE:
            return self.plan_later(created, 6 * DAY, min_delay=DAY)
        return None

    def plan_capture(
        self, charge_id: str, created: int, amount: int, currency: str, description: str | None
    ) -> None:
        """Half the uncaptured (authorized) charges are captured within two days: `captured`,
        `amount_captured` and a balance transaction created at the capture (`charge.captured`)."""
        rng = self.plan_rng
        if rng.random() >= 0.5:
            return
        captured_at = self.plan_later(created, 2 * DAY)
        if captured_at is None:
            return
        txn_id = "txn_" + rng.randbytes(24).translate(_ID_TABLE).decode()
        self.plan(
            captured_at, "charges", charge_id, "charge.captured",
            {"captured": True, "amount_captured": amount, "balance_transaction": txn_id},
        )  # fmt: skip
        settle_currency, settle_amount, rate = self.settle(currency, amount)
        fee = self.fee(settle_currency, settle_amount)
        self.add_txn(txn_id, captured_at, settle_amount, settle_currency, description or "Payment",
                     rate, fee, "charge", charge_id, "charge")  # fmt: skip

    def card_details(self, amount: int, old_shape: bool, failed: bool) -> RawJSON:
        pick, rand = self.pick, self.rng.random
        brand = self.last_brand = pick(CARD_BRANDS)
        values = {
            "brand": brand,
            "country": pick(CARD_COUNTRIES),
            "exp_month": 1 + int(rand() * 12),
            "exp_year": 2026 + int(rand() * 9),
            "fingerprint": self.new_id("", 16),
            "funding": pick(("credit", "credit", "debit", "prepaid")),
            "last4": f"{int(rand() * 10_000):04d}",
            "network": brand,
            "wallet": pick(WALLETS),
            "checks": CARD_CHECKS[(rand() < 0.5, failed and rand() < 0.2)],
            "capturable": amount,
        }
        template = self.card_old_t if old_shape else self.card_t
        return RawJSON(template.render_text(values))

    def bnpl_details(self, kind: str) -> dict[str, Any]:
        rng = self.rng
        if kind == "klarna":
            country = rng.choice(("DE", "GB", "US", "SE"))
            inner: dict[str, Any] = {
                "location": None,
                "payer_details": {"address": {"country": country}},
                "payment_method_category": rng.choice(("pay_later", "pay_now", "pay_over_time")),
                "preferred_locale": {"DE": "de-DE", "GB": "en-GB", "US": "en-US", "SE": "sv-SE"}[
                    country
                ],
                "reader": None,
            }
        elif kind == "afterpay_clearpay":
            inner = {
                "order_id": f"ord_{rng.randint(10**7, 10**8)}",
                "reference": self.new_id("", 10),
            }
        elif kind == "affirm":
            inner = {
                "location": None,
                "reader": None,
                "transaction_id": self.new_id("", 12),
            }
        else:  # zip carries no details
            inner = {}
        return {kind: inner, "type": kind}

    def plan_refunds(self, created: int, amount: int, currency: str) -> list[tuple[int, int]]:
        """The (created, amount) of the refunds a succeeded charge will get, all after it."""
        plan = self.refund_plan.next()
        if plan == "none":
            return []
        rng = self.rng
        max_delay = 600 if rng.random() < 0.5 else 3 * DAY
        first = self.later(created, max_delay)
        if first is None:
            return []
        step = AMOUNT_STEP.get(currency, 1)
        if plan == "full" or amount < 3 * step:
            return [(first, amount)]
        part = _round_to_step(int(amount * rng.uniform(0.1, 0.6)), currency)
        if plan == "partial":
            return [(first, part)]
        second = self.later(first, DAY)
        if second is None:
            return [(first, part)]
        rest = amount - part
        second_amount = rest if rng.random() < 0.5 else _round_to_step(rest // 2, currency)
        return [(first, part), (second, second_amount)]

    def make_refund(
        self,
        created: int,
        amount: int,
        currency: str,
        charge_id: str,
        payment_intent: str,
        payment_method: str,
        customer: str | None,
        bnpl: str | None,
        rate: float | None,
    ) -> None:
        rng = self.rng
        refund_id = self.new_id("re_")
        txn_id = self.new_id("txn_")
        if bnpl:
            destination = {bnpl: {}, "type": bnpl}
        else:
            destination = {
                "card": {
                    "reference": str(rng.randint(10**11, 10**12 - 1)),
                    "reference_status": "available",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            }
        blob = self.refund_t.render(
            {
                "id": refund_id,
                "amount": amount,
                "balance_transaction": txn_id,
                "charge": charge_id,
                "created": created,
                "currency": currency,
                "destination_details": destination,
                "metadata": self.metadata(null_share=0.1),
                "payment_intent": payment_intent,
                "reason": rng.choice((None, "requested_by_customer", "duplicate", "fraudulent")),
                "status": "succeeded",
                "customer": customer,
                "payment_method": payment_method,
            }
        )
        self.add("refunds", created, refund_id, blob, (charge_id, payment_intent))
        if rate is None:
            settle_currency, settle_amount = currency, amount
        else:
            major = amount / 10 ** CURRENCY_EXPONENT.get(currency, 2)
            settle_currency, settle_amount = "usd", round(major * rate * 100)
        self.add_txn(
            txn_id,
            created,
            -settle_amount,
            settle_currency,
            f"REFUND FOR CHARGE ({charge_id})",
            rate,
            0,
            "refund",
            refund_id,
            "refund",
        )

    @staticmethod
    def fee(currency: str, amount: int) -> int:
        if currency == "usd":
            return round(amount * 0.029) + 30
        return round(amount * 0.015) + 25

    def add_txn(
        self,
        txn_id: str,
        created: int,
        amount: int,
        currency: str,
        description: str | None,
        rate: float | None,
        fee: int,
        kind: str,
        source: str | None,
        reporting_category: str,
        fee_description: str = "Stripe processing fees",
    ) -> bytes:
        """Render and list one balance transaction; returns its JSON."""
        available_on = (created // DAY + 2) * DAY
        fee_details = EMPTY_ARRAY
        if fee:
            fee_details = RawJSON(
                f'[{{"amount":{fee},"application":null,"currency":"{currency}",'
                f'"description":"{fee_description}","type":"stripe_fee"}}]'
            )
        blob = self.txn_t.render(
            {
                "id": txn_id,
                "amount": amount,
                "available_on": available_on,
                "created": created,
                "currency": currency,
                "description": description,
                "exchange_rate": rate,
                "fee": fee,
                "fee_details": fee_details,
                "net": amount - fee,
                "reporting_category": reporting_category,
                "source": source,
                "status": "available" if available_on <= self.now else "pending",
                "type": kind,
            }
        )
        self.add("balance_transactions", created, txn_id, blob, (kind, currency, source))
        return blob

    def make_other_txn(self, kind: str, created: int) -> None:
        rng = self.rng
        if kind == "payout":
            amount, source, category = -rng.randint(10_000, 5_000_000), self.new_id("po_"), "payout"
            description = "STRIPE PAYOUT"
        elif kind == "adjustment":
            amount = rng.choice((-1, 1)) * rng.randint(100, 50_000)
            source, category, description = self.new_id("adj_"), "other_adjustment", "Adjustment"
        else:
            amount, source, category = -rng.randint(100, 20_000), None, "fee"
            description = "Radar for Fraud Teams (usage fee)"
        self.add_txn(self.new_id("txn_"), created, amount, "usd", description, None, 0, kind,
                     source, category)  # fmt: skip

    # ---- subscriptions ------------------------------------------------------------------

    def make_subscription(self, created: int) -> None:
        rng = self.rng
        old_shape = self.old_shape.next()
        status = self.sub_status.next()
        customer = self.customer_before(created)
        count = bisect.bisect_right(self.recurring_created, created)
        price = self.recurring_prices[rng.randrange(count)]
        sub_id = self.new_id("sub_")
        trial_start = trial_end = None
        anchor = created
        if status == "trialing" or (status in ("active", "canceled") and rng.random() < 0.15):
            trial_start, trial_end = created, created + (price.trial_period_days or 14) * DAY
            anchor = trial_end
        period_start = anchor if status != "trialing" else created
        period_end = _add_interval(period_start, price.interval, price.interval_count)
        canceled_at = None
        reason = None
        scheduled_cancel = False
        if status == "canceled":
            canceled_at = self.later(created, 2 * DAY) or created
            reason = rng.choice(("cancellation_requested", "payment_failed", "payment_disputed"))
        elif status == "active" and rng.random() < 0.1:
            scheduled_cancel = True
        # The subscription is created in its first status; `status` is where it is heading.
        if trial_start is not None:
            initial = "trialing"
        elif status in ("incomplete", "incomplete_expired"):
            initial = "incomplete"
        else:
            initial = "active"
        initial = self.plan_subscription_changes(
            sub_id, created, status, initial, trial_end, canceled_at, reason, scheduled_cancel,
            period_end,
        )  # fmt: skip
        fate = self.sub_fate
        send_invoice = rng.random() < 0.15
        quantity = rng.choice((1, 1, 1, 2, 5))
        item_id = "si_" + self.new_id("")
        plan_values = {
            "id": price.id,
            "active": price.active,
            "amount": price.unit_amount,
            "amount_decimal": str(price.unit_amount),
            "created": price.created,
            "currency": price.currency,
            "interval": price.interval,
            "interval_count": price.interval_count,
            "nickname": price.nickname,
            "product": price.product,
            "trial_period_days": price.trial_period_days,
            "usage_type": price.usage_type,
        }
        price_values = {
            "id": price.id,
            "active": price.active,
            "created": price.created,
            "currency": price.currency,
            "lookup_key": price.lookup_key,
            "metadata": {},
            "nickname": price.nickname,
            "product": price.product,
            "recurring": {
                "interval": price.interval,
                "interval_count": price.interval_count,
                "meter": None,
                "usage_type": price.usage_type,
                "trial_period_days": price.trial_period_days,
            },
            "tax_behavior": "unspecified",
            "type": "recurring",
            "unit_amount": price.unit_amount,
            "unit_amount_decimal": str(price.unit_amount),
        }
        if old_shape:
            price_values["recurring"] = {
                "aggregate_usage": None,
                "interval": price.interval,
                "interval_count": price.interval_count,
                "trial_period_days": price.trial_period_days,
                "usage_type": price.usage_type,
            }
            item = self.sub_item_old_t.render_text(
                {
                    "id": item_id,
                    "created": created,
                    "price": RawJSON(self.price_old_t.render_text(price_values)),
                    "plan": RawJSON(self.plan_old_t.render_text(plan_values)),
                    "subscription": sub_id,
                    "quantity": quantity,
                }
            )
            items = {
                "object": "list",
                "data": [RawJSON(item)],
                "has_more": False,
                "total_count": 1,
                "url": f"/v1/subscription_items?subscription={sub_id}",
            }
        else:
            item = self.sub_item_t.render_text(
                {
                    "id": item_id,
                    "created": created,
                    "price": RawJSON(self.price_t.render_text(price_values)),
                    "plan": RawJSON(self.plan_t.render_text(plan_values)),
                    "subscription": sub_id,
                    "quantity": quantity,
                    "current_period_start": period_start,
                    "current_period_end": period_end,
                }
            )
            items = {
                "data": [RawJSON(item)],
                "has_more": False,
                "object": "list",
                "url": f"/v1/subscription_items?subscription={sub_id}",
            }
        values = {
            "id": sub_id,
            "billing_cycle_anchor": anchor,
            "cancel_at": period_end if initial == "active+cancel" else None,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "send_invoice" if send_invoice else "charge_automatically",
            "created": created,
            "currency": price.currency,
            "customer": customer.id,
            "days_until_due": 30 if send_invoice else None,
            "default_payment_method": None if send_invoice else self.new_id("pm_"),
            "ended_at": None,
            "items": RawJSON(_dump_with_raw(items)),
            "latest_invoice": self.new_id("in_"),
            "metadata": self.metadata(),
            "start_date": created,
            "status": initial.removesuffix("+cancel"),
            "trial_end": trial_end,
            "trial_start": trial_start,
            "cancel_at_period_end": initial == "active+cancel",
            "current_period_start": period_start,
            "current_period_end": period_end,
            "quantity": quantity,
        }
        template = self.sub_old_t if old_shape else self.sub_t
        self.add(
            "subscriptions",
            created,
            sub_id,
            template.render(values),
            (values["status"], customer.id, values["collection_method"], price.id),
        )
        self.generators["invoices"].make(self, {
            "id": sub_id, "created": created, "first_invoice": values["latest_invoice"],
            "customer": customer, "invoice_prefix": customer.invoice_prefix, "price": price,
            "quantity": quantity, "item_id": item_id,
            "collection_method": values["collection_method"], "days_until_due": 30,
            "trial_end": trial_end, "anchor": anchor, "target": status, **fate,
        })  # fmt: skip

    def plan_subscription_changes(
        self,
        sub_id: str,
        created: int,
        target: str,
        initial: str,
        trial_end: int | None,
        canceled_at: int | None,
        reason: str | None,
        scheduled_cancel: bool,
        period_end: int,
    ) -> str:
        """Plan the way from `initial` to `target` (each status change a
        `customer.subscription.updated`; an end adds `customer.subscription.deleted` in the same
        second). Returns the status the subscription is created with ("active+cancel": active,
        already scheduled to cancel at the period's end); `self.sub_fate` keeps the times of
        its failed payment, of becoming unpaid and of its end (for its invoices)."""
        updated, deleted = "customer.subscription.updated", "customer.subscription.deleted"
        plan = self.plan
        fate: dict[str, int | None] = {"failed_at": None, "unpaid_at": None, "ends_at": None}
        self.sub_fate = fate
        if scheduled_cancel:
            fate["ends_at"] = period_end
        if (
            initial == "trialing"
            and trial_end is not None
            and trial_end < self.horizon
            and (canceled_at is None or trial_end < canceled_at)
        ):
            plan(trial_end, "subscriptions", sub_id, updated, {"status": "active"})
        if target == "canceled" and canceled_at is not None:
            if reason == "payment_failed" and initial == "active" and canceled_at - created >= 2:
                failed_at = created + self.plan_rng.randint(1, canceled_at - created - 1)
                plan(failed_at, "subscriptions", sub_id, updated, {"status": "past_due"})
                fate["failed_at"] = failed_at
            fate["ends_at"] = canceled_at
            plan(canceled_at, "subscriptions", sub_id, updated, {
                "status": "canceled", "canceled_at": canceled_at, "ended_at": canceled_at,
                "cancellation_details": {"comment": None, "feedback": None, "reason": reason},
            })  # fmt: skip
            plan(canceled_at, "subscriptions", sub_id, deleted)
        elif target in ("past_due", "unpaid"):
            failed_at = self.plan_later(created, 4 * DAY)
            if failed_at is None:
                return target
            plan(failed_at, "subscriptions", sub_id, updated, {"status": "past_due"})
            fate["failed_at"] = failed_at
            unpaid_at = self.plan_later(failed_at, 2 * DAY) if target == "unpaid" else None
            fate["unpaid_at"] = unpaid_at
            if unpaid_at is not None:
                plan(unpaid_at, "subscriptions", sub_id, updated, {"status": "unpaid"})
        elif target == "incomplete_expired":
            # Stripe: an incomplete subscription whose first invoice is not paid in 23 hours
            # becomes incomplete_expired, a terminal status (docs.stripe.com/billing/subscriptions/overview).
            expired_at = created + 23 * 3600
            fate["ends_at"] = expired_at
            if expired_at < self.horizon:
                plan(expired_at, "subscriptions", sub_id, updated,
                     {"status": "incomplete_expired", "ended_at": expired_at})  # fmt: skip
                plan(expired_at, "subscriptions", sub_id, deleted)
        elif scheduled_cancel:
            scheduled_at = self.plan_later(created, 3 * DAY)
            if scheduled_at is None:
                return "active+cancel"
            plan(scheduled_at, "subscriptions", sub_id, updated,
                 {"cancel_at_period_end": True, "cancel_at": period_end})  # fmt: skip
        return initial


def _dump_with_raw(document: Mapping[str, Any]) -> str:
    """Compact JSON of a flat dict whose values may be lists of `RawJSON`."""
    parts = []
    for key, value in document.items():
        if isinstance(value, list):
            encoded = "[" + ",".join(encode_json_value(item) for item in value) + "]"
        else:
            encoded = encode_json_value(value)
        parts.append(f"{_encode_str(key)}:{encoded}")
    return "{" + ",".join(parts) + "}"


# --------------------------------------------------------------------------------------------
# Mutations made now (StripeAccount.mutate, POST /_emulator/mutate)

#: Fields each `update` kind may set, per resource.
UPDATABLE_FIELDS = {
    "customers": frozenset(("email", "name", "phone", "address", "description", "metadata")),
    "prices": frozenset(("nickname", "metadata", "active", "lookup_key")),
    "subscriptions": frozenset(("status", "metadata", "cancel_at_period_end", "cancel_at")),
    "charges": frozenset(("description", "metadata")),
}
MUTATION_KINDS = {
    "customers": ("update", "delete"),
    "prices": ("deactivate", "update", "delete"),
    "subscriptions": ("cancel", "update"),
    "charges": ("refund", "capture", "dispute", "update"),
}
ENDED_SUBSCRIPTION_STATUSES = frozenset(("canceled", "incomplete_expired"))


def _mutate(
    account: StripeAccount, resource: str, object_id: str, kind: str, fields: dict[str, Any]
) -> list[str]:
    if resource not in RESOURCE_NAMES:
        raise ValueError(
            f"unknown resource {resource!r}; expected one of {', '.join(RESOURCE_NAMES)}"
        )
    if resource == "balance_transactions":
        raise ValueError(
            "balance_transactions cannot be mutated: Stripe emits no events for them (they "
            "become available on `available_on` by themselves)"
        )
    if resource not in MUTATION_KINDS:
        raise ValueError(
            f"the emulator cannot mutate {resource} on demand: they change by their planned "
            "lifecycle (a dispute is opened with the charges' `dispute` mutation)"
        )
    if kind not in MUTATION_KINDS[resource]:
        raise ValueError(
            f"unknown mutation {kind!r} of {resource}; expected one of "
            f"{', '.join(MUTATION_KINDS[resource])}"
        )
    timeline = account._timeline
    index = account.index(resource)
    position = index.position.get(object_id)
    object_name = stripe_resource(resource).object_name
    if position is None or position < index.first_visible(account.visible_now()):
        if object_id in timeline.graveyard:
            raise ValueError(f"{object_name} {object_id} is deleted")
        raise LookupError(f"No such {object_name}: '{object_id}'")
    unknown = set(fields) - (UPDATABLE_FIELDS[resource] if kind == "update" else {"amount"}
                             if kind == "refund" else set())  # fmt: skip
    if unknown:
        raise ValueError(f"{kind} of {resource} does not take {sorted(unknown)}")
    obj = json.loads(index.blobs[position])
    now = int(account.clock())
    rng = account._runtime_rng

    def new_id(prefix: str) -> str:
        return prefix + rng.randbytes(24).translate(_ID_TABLE).decode()

    def change(type: str, changes: dict | None = None, remove: bool = False, oid: str = object_id,
               on: str = resource) -> Mutation:  # fmt: skip
        return Mutation(now, on, oid, type, changes, new_id("evt_"), remove)

    mutations: list[Mutation] = []
    created_events: list[str] = []
    if resource == "customers":
        if kind == "update":
            mutations.append(change("customer.updated", dict(fields) or {
                "email": f"customer{rng.randint(1, 10**9)}@example.org"}))  # fmt: skip
        else:
            # "Permanently deletes a customer. It cannot be undone. Also immediately cancels any
            # active subscriptions on the customer." (docs.stripe.com/api/customers/delete)
            subscriptions = account.index("subscriptions")
            for p in subscriptions.positions_with("customer", frozenset((object_id,))):
                if subscriptions.columns["status"][p] not in ENDED_SUBSCRIPTION_STATUSES:
                    sub_id = subscriptions.ids[p]
                    mutations += _cancel(change, sub_id, now, "cancellation_requested")
            mutations.append(change("customer.deleted", remove=True))
    elif resource == "prices":
        if kind == "deactivate":
            if not obj["active"]:
                raise ValueError(f"price {object_id} is already inactive")
            mutations.append(change("price.updated", {"active": False}))
        elif kind == "update":
            if not fields:
                raise ValueError("update of prices needs at least one field")
            mutations.append(change("price.updated", dict(fields)))
        else:
            mutations.append(change("price.deleted", remove=True))
    elif resource == "subscriptions":
        status = fields.get("status")
        if kind == "cancel" or status in ENDED_SUBSCRIPTION_STATUSES:
            if obj["status"] in ENDED_SUBSCRIPTION_STATUSES:
                raise ValueError(f"subscription {object_id} has already ended ({obj['status']})")
            extra = {k: v for k, v in fields.items() if k != "status"}
            mutations += _cancel(change, object_id, now, "cancellation_requested",
                                 status or "canceled", extra)  # fmt: skip
        else:
            if not fields:
                raise ValueError("update of subscriptions needs at least one field")
            mutations.append(change("customer.subscription.updated", dict(fields)))
    else:
        mutations, created_events = _mutate_charge(account, obj, kind, fields, change, new_id, now)
    return timeline.record(mutations) + created_events


def _cancel(
    change: Callable[..., Mutation],
    sub_id: str,
    now: int,
    reason: str,
    status: str = "canceled",
    extra: dict[str, Any] | None = None,
) -> list[Mutation]:
    """A subscription ending now: `customer.subscription.updated` (the status change) and
    `customer.subscription.deleted` ("Occurs whenever a customer's subscription ends"), in the
    same second."""
    changes: dict[str, Any] = {"status": status, "ended_at": now}
    if status == "canceled":
        changes.update(canceled_at=now, cancellation_details={
            "comment": None, "feedback": None, "reason": reason})  # fmt: skip
    changes.update(extra or {})
    return [
        change("customer.subscription.updated", changes, oid=sub_id, on="subscriptions"),
        change("customer.subscription.deleted", oid=sub_id, on="subscriptions"),
    ]


def _mutate_charge(
    account: StripeAccount,
    charge: dict[str, Any],
    kind: str,
    fields: dict[str, Any],
    change: Callable[..., Mutation],
    new_id: Callable[[str], str],
    now: int,
) -> tuple[list[Mutation], list[str]]:
    charge_id = charge["id"]
    if kind == "update":
        if not fields:
            raise ValueError("update of charges needs at least one field")
        return [change("charge.updated", dict(fields))], []
    if charge["status"] != "succeeded":
        raise ValueError(f"charge {charge_id} has status {charge['status']}: nothing to {kind}")
    currency, amount = charge["currency"], charge["amount"]
    settle_currency, settle_amount, rate = _settle(currency, amount)
    if kind == "dispute":
        if charge["disputed"]:
            raise ValueError(f"charge {charge_id} is already disputed")
        if not charge["captured"]:
            raise ValueError(f"charge {charge_id} is not captured: there is nothing to dispute")
        return _open_dispute(account, charge, change, new_id, now,
                             (settle_currency, settle_amount, rate))  # fmt: skip
    if kind == "capture":
        if charge["captured"]:
            raise ValueError(f"charge {charge_id} is already captured")
        txn_id = new_id("txn_")
        fee = _Generator.fee(settle_currency, settle_amount)
        _insert_txn(account, txn_id, now, settle_amount, settle_currency,
                    charge["description"] or "Payment", rate, fee, "charge", charge_id)  # fmt: skip
        return [change("charge.captured", {"captured": True, "amount_captured": amount,
                                           "balance_transaction": txn_id})], []  # fmt: skip
    # refund
    if not charge["captured"]:
        raise ValueError(f"charge {charge_id} is not captured: cancel its authorization instead")
    remaining = amount - charge["amount_refunded"]
    refund_amount = fields.get("amount", remaining)
    if isinstance(refund_amount, bool) or not isinstance(refund_amount, int):
        raise ValueError(f"amount must be an integer in minor units, got {refund_amount!r}")
    if not 0 < refund_amount <= remaining:
        raise ValueError(
            f"amount must be between 1 and what is left to refund ({remaining}), "
            f"got {refund_amount}"
        )
    refund_id, txn_id = new_id("re_"), new_id("txn_")
    refund = dict(load_samples()[0]["refund"])
    refund.update(
        id=refund_id, amount=refund_amount, balance_transaction=txn_id, charge=charge_id,
        created=now, currency=currency, metadata={}, payment_intent=charge["payment_intent"],
        reason="requested_by_customer", status="succeeded", customer=charge["customer"],
        payment_method=charge["payment_method"],
        destination_details={"card": {"reference": None, "reference_status": "pending",
                                      "reference_type": "acquirer_reference_number",
                                      "type": "refund"}, "type": "card"},
    )  # fmt: skip
    account.index("refunds").insert(
        now, refund_id, dump_object(refund), (charge_id, charge["payment_intent"])
    )
    if rate is None:
        settle_refund = refund_amount
    else:
        settle_refund = round(refund_amount / 10 ** CURRENCY_EXPONENT.get(currency, 2) * rate * 100)
    _insert_txn(account, txn_id, now, -settle_refund, settle_currency,
                f"REFUND FOR CHARGE ({charge_id})", rate, 0, "refund", refund_id)  # fmt: skip
    refunded = charge["amount_refunded"] + refund_amount
    mutation = change(
        "charge.refunded", {"amount_refunded": refunded, "refunded": refunded == amount}
    )
    return [mutation], [_creation_event_id("refunds", refund_id)]


def _creation_event_id(resource: str, object_id: str) -> str:
    """The id of an object's creation event (stripe_events.py: `evt_` + the id's random part)."""
    return "evt_" + object_id[len(stripe_resource(resource).id_prefix) :]


def _open_dispute(
    account: StripeAccount,
    charge: dict[str, Any],
    change: Callable[..., Mutation],
    new_id: Callable[[str], str],
    now: int,
    settle: tuple[str, int, float | None],
) -> tuple[list[Mutation], list[str]]:
    """A chargeback opened now: the dispute (`charge.dispute.created`), its withdrawal
    (`charge.dispute.funds_withdrawn`) and the charge's `disputed`, set without an event."""
    from stripe_aep.emulators.generators import disputes

    def add_txn(txn_id, created, amount, currency, description, rate, fee, kind, source,
                category, fee_description):  # fmt: skip
        return _insert_txn(account, txn_id, created, amount, currency, description, rate, fee,
                           kind, source, category, fee_description)  # fmt: skip

    dispute = disputes.open_now(charge, now, new_id, settle, add_txn)
    account.index("disputes").insert(
        now, dispute["id"], dump_object(dispute), (charge["id"], charge["payment_intent"])
    )
    silent = change("charge.dispute.created", {"disputed": True})
    silent.silent = True
    withdrawn = change("charge.dispute.funds_withdrawn", oid=dispute["id"], on="disputes")
    return [silent, withdrawn], [_creation_event_id("disputes", dispute["id"])]


def _settle(currency: str, amount: int) -> tuple[str, int, float | None]:
    if currency in SETTLEMENT_CURRENCIES:
        return currency, amount, None
    rate = USD_RATE[currency]
    major = amount / 10 ** CURRENCY_EXPONENT.get(currency, 2)
    return "usd", round(major * rate * 100), rate


def _insert_txn(
    account: StripeAccount,
    txn_id: str,
    created: int,
    amount: int,
    currency: str,
    description: str,
    rate: float | None,
    fee: int,
    kind: str,
    source: str,
    category: str | None = None,
    fee_description: str = "Stripe processing fees",
) -> dict[str, Any]:
    """A balance transaction made now: pending until `available_on` (two days later, at 00:00);
    returns it."""
    available_on = (created // DAY + 2) * DAY
    txn = dict(load_samples()[0]["balance_transaction"])
    fee_details = []
    if fee:
        fee_details = [{"amount": fee, "application": None, "currency": currency,
                        "description": fee_description, "type": "stripe_fee"}]  # fmt: skip
    txn.update(
        id=txn_id, amount=amount, available_on=available_on, created=created, currency=currency,
        description=description, exchange_rate=rate, fee=fee, fee_details=fee_details,
        net=amount - fee, reporting_category=category or kind, source=source,
        status="available" if available_on <= created else "pending", type=kind,
    )  # fmt: skip
    account.index("balance_transactions").insert(
        created, txn_id, dump_object(txn), (kind, currency, source)
    )
    day = created // DAY
    if day not in account._pending_txn_days:
        bisect.insort(account._pending_txn_days, day)
    return txn


def _add_interval(start: int, interval: str, count: int) -> int:
    if interval == "day":
        return start + count * DAY
    if interval == "week":
        return start + count * 7 * DAY
    moment = dt.datetime.fromtimestamp(start, tz=dt.UTC)
    months = count * (12 if interval == "year" else 1)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, _days_in_month(year, month))
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def _days_in_month(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


def _cumulative(weights: Iterable[int]) -> Iterable[int]:
    total = 0
    for weight in weights:
        total += weight
        yield total


# --------------------------------------------------------------------------------------------
# Stripe's sample objects, embedded so the package works without the specs folder.
# `current.*`: stripe/openapi openapi/fixtures3.json at f6c2a48f (2026-08-21), MIT licence.
# `2023.*`: the sample objects of Adobe's Experience Platform Stripe source documentation
# (Stripe API shapes of 2023). Copies of both live in the project's specs/stripe folder.
_SAMPLES = r"""
current.charge {"amount":100,"amount_captured":0,"amount_refunded":0,"application":null,"application_fee":null,"application_fee_amount":null,"balance_transaction":"txn_1PgaxNB7WZ01zgkWEV3TLf40","billing_details":{"address":{"city":null,"country":null,"line1":null,"line2":null,"postal_code":null,"state":null},"email":null,"name":"Jenny Rosen","phone":null,"tax_id":null},"calculated_statement_descriptor":null,"captured":false,"created":1234567890,"currency":"usd","customer":null,"description":"My First Test Charge (created for API docs)","disputed":false,"failure_balance_transaction":null,"failure_code":null,"failure_message":null,"fraud_details":{},"id":"ch_1PgafuB7WZ01zgkWXYmPNZs8","livemode":false,"metadata":{},"object":"charge","on_behalf_of":null,"outcome":{"advice_code":null,"network_advice_code":null,"network_decline_code":null,"network_status":null,"reason":null,"seller_message":null,"type":"type"},"paid":true,"payment_intent":null,"payment_method":"card_1PgaftB7WZ01zgkWm3waTcFp","payment_method_details":{"card":{"amount_authorized":null,"brand":"visa","checks":{"address_line1_check":null,"address_postal_code_check":null,"cvc_check":"pass"},"country":"US","exp_month":8,"exp_year":2030,"extended_authorization":{"status":"disabled"},"fingerprint":"AOB934RVNwzk6xtn","funding":"credit","incremental_authorization":{"status":"unavailable"},"installments":{"plan":{"count":null,"interval":null,"type":"fixed_count"}},"last4":"4242","mandate":null,"multicapture":{"status":"unavailable"},"network":"visa","network_token":{"used":false},"overcapture":{"maximum_amount_capturable":100,"status":"unavailable"},"three_d_secure":{"authentication_flow":null,"electronic_commerce_indicator":null,"exemption_indicator":null,"result":null,"result_reason":null,"transaction_id":null,"version":null},"wallet":{"dynamic_last4":null,"type":"link"},"authorization_code":null,"regulated_status":null,"network_transaction_id":null,"transaction_link_id":null},"type":"card"},"receipt_email":null,"receipt_number":null,"receipt_url":"https://sangeekp-15t6ai--manage-mydev.dev.stripe.me/receipts/payment/CAcaFwoVYWNjdF8xUGdhZlRCN1daMDF6Z2tXKI_ei7UGMgZv2S_KfiY6LCJrxC7awazgQA9I88krZKw5uuCkZ5Nup2tomEtAbSpdfzjVZHO3ZYP5KFZP","refunded":false,"refunds":{"data":[],"has_more":false,"object":"list","url":"/v1/charges/ch_1PgafuB7WZ01zgkWXYmPNZs8/refunds"},"review":null,"shipping":{},"source_transfer":null,"statement_descriptor":null,"statement_descriptor_suffix":null,"status":"succeeded","transfer_data":{"amount":null,"destination":{"id":"obj_123","object":"account"}},"transfer_group":null,"source":{"allow_redisplay":null,"amount":null,"client_secret":"client_secret","created":1028554472,"currency":null,"flow":"flow","id":"obj_123","livemode":true,"metadata":null,"object":"source","owner":{"address":{"city":null,"country":null,"line1":null,"line2":null,"postal_code":null,"state":null},"email":null,"name":null,"phone":null,"verified_address":{"city":null,"country":null,"line1":null,"line2":null,"postal_code":null,"state":null},"verified_email":null,"verified_name":null,"verified_phone":null},"statement_descriptor":null,"status":"status","type":"ach_credit_transfer","usage":null}}
current.subscription {"application":null,"application_fee_percent":null,"automatic_tax":{"enabled":false,"liability":{"type":"account"},"disabled_reason":null},"billing_cycle_anchor":1234567890,"billing_cycle_anchor_config":{"day_of_month":1361669285,"hour":null,"minute":null,"month":null,"second":null},"cancel_at":1234567890,"canceled_at":1234567890,"cancellation_details":{"comment":null,"feedback":null,"reason":null},"collection_method":"charge_automatically","created":1234567890,"currency":"usd","customer":"cus_QXg1o8vcGmoR32","days_until_due":null,"default_payment_method":null,"default_source":null,"default_tax_rates":[],"description":null,"discounts":[],"ended_at":1234567890,"id":"sub_1Pgc6rB7WZ01zgkWNy0Cn5nw","invoice_settings":{"account_tax_ids":null,"issuer":{"type":"self"},"custom_fields":null,"description":null,"footer":null},"items":{"data":[{"created":1721954054,"discounts":[],"id":"si_QXhVnC2h0Jczwc","metadata":{},"object":"subscription_item","price":{"active":true,"billing_scheme":"per_unit","created":1721948530,"currency":"usd","custom_unit_amount":{"maximum":null,"minimum":null,"preset":null},"id":"price_1PgafmB7WZ01zgkW6dKueIc5","livemode":false,"lookup_key":null,"metadata":{},"nickname":null,"object":"price","product":"prod_QXg1hqf4jFNsqG","recurring":{"interval":"month","interval_count":1,"meter":null,"usage_type":"licensed","trial_period_days":null},"tax_behavior":"unspecified","tiers_mode":null,"transform_quantity":{"divide_by":1592560163,"round":"down"},"type":"recurring","unit_amount":2000,"unit_amount_decimal":"2000"},"quantity":1,"subscription":"sub_1Pgc6rB7WZ01zgkWNy0Cn5nw","tax_rates":[],"plan":{"active":true,"amount":null,"amount_decimal":null,"billing_scheme":"tiered","created":1028554472,"currency":"currency","id":"obj_123","interval":"month","interval_count":797691627,"livemode":true,"metadata":null,"meter":null,"nickname":null,"object":"plan","product":null,"tiers_mode":null,"transform_usage":{"divide_by":1592560163,"round":"down"},"trial_period_days":null,"usage_type":"licensed"},"current_period_end":976287773,"current_period_start":1896570518,"billing_thresholds":{"usage_gte":null}}],"has_more":false,"object":"list","url":"/v1/subscription_items?subscription=sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"},"latest_invoice":null,"livemode":false,"metadata":{},"next_pending_invoice_item_invoice":1234567890,"object":"subscription","on_behalf_of":null,"pause_collection":{"behavior":"mark_uncollectible","resumes_at":null},"payment_settings":{"payment_method_options":{"acss_debit":{},"bancontact":{"preferred_language":"fr"},"card":{"network":null,"request_three_d_secure":null},"customer_balance":{"funding_type":null},"konbini":{},"sepa_debit":{},"us_bank_account":{},"payto":{},"pix":{},"upi":{}},"payment_method_types":null,"save_default_payment_method":null},"pending_invoice_item_interval":{"interval":"month","interval_count":797691627},"pending_setup_intent":null,"pending_update":{"billing_cycle_anchor":null,"discount":{"checkout_session":null,"customer":null,"end":null,"id":"obj_123","invoice":null,"invoice_item":null,"object":"discount","promotion_code":null,"start":109757538,"subscription":null,"subscription_item":null,"source":{"coupon":null,"type":"coupon"},"customer_account":null},"discounts":[],"expires_at":833811170,"subscription_items":null,"trial_end":null,"trial_from_plan":null,"metadata":null},"schedule":null,"start_date":1234567890,"status":"active","test_clock":null,"transfer_data":{"amount_percent":null,"destination":{"id":"obj_123","object":"account"}},"trial_end":1234567890,"trial_settings":{"end_behavior":{"missing_payment_method":"create_invoice"}},"trial_start":1234567890,"cancel_at_period_end":true,"billing_thresholds":{"amount_gte":null,"reset_billing_cycle_anchor":null},"billing_mode":{"type":"classic","flexible":{}},"customer_account":null,"managed_payments":{"enabled":true},"billing_schedules":[{"applies_to":null,"bill_until":{"computed_timestamp":2082605468,"duration":{"interval":"month","interval_count":null},"timestamp":null,"type":"duration"},"key":"key"}]}
current.refund {"amount":100,"balance_transaction":null,"charge":"ch_1PgafuB7WZ01zgkWXYmPNZs8","created":1234567890,"currency":"usd","destination_details":{"card":{"type":"reversal"},"type":"card"},"id":"re_1Pgc72B7WZ01zgkWqPvrRrPE","metadata":{},"object":"refund","payment_intent":null,"reason":null,"receipt_number":null,"source_transfer_reversal":null,"status":"succeeded","transfer_reversal":null,"customer":null,"customer_account":null,"payment_method":null}
current.balance_transaction {"amount":100,"available_on":1234567890,"created":1234567890,"currency":"usd","description":"My First Test Charge (created for API docs)","exchange_rate":null,"fee":0,"fee_details":[],"id":"txn_1PgaxNB7WZ01zgkWEV3TLf40","net":100,"object":"balance_transaction","reporting_category":"charge","source":"ch_1PgafuB7WZ01zgkWXYmPNZs8","status":"available","type":"charge","balance_type":"payments"}
current.customer {"address":{"city":null,"country":null,"line1":null,"line2":null,"postal_code":null,"state":null},"balance":0,"created":1234567890,"currency":"usd","default_source":null,"delinquent":false,"description":null,"discount":{"checkout_session":null,"customer":null,"end":null,"id":"obj_123","invoice":null,"invoice_item":null,"object":"discount","promotion_code":null,"start":109757538,"subscription":null,"subscription_item":null,"source":{"coupon":null,"type":"coupon"},"customer_account":null},"email":null,"id":"cus_QXg1o8vcGmoR32","invoice_prefix":"7FE1103","invoice_settings":{"custom_fields":null,"default_payment_method":null,"footer":null,"rendering_options":{"amount_tax_display":null,"template":null}},"livemode":false,"metadata":{},"name":null,"next_invoice_sequence":1,"object":"customer","phone":null,"preferred_locales":[],"shipping":{},"tax_exempt":"none","test_clock":null}
current.price {"active":true,"billing_scheme":"per_unit","created":1234567890,"currency":"usd","custom_unit_amount":{"maximum":null,"minimum":null,"preset":null},"id":"price_1PgafmB7WZ01zgkW6dKueIc5","livemode":false,"lookup_key":null,"metadata":{},"nickname":null,"object":"price","product":"prod_QXg1hqf4jFNsqG","recurring":{"interval":"month","interval_count":1,"meter":null,"usage_type":"licensed","trial_period_days":null},"tax_behavior":"unspecified","tiers_mode":null,"transform_quantity":{"divide_by":1592560163,"round":"down"},"type":"recurring","unit_amount":2000,"unit_amount_decimal":"2000"}
current.account {"business_profile":{"annual_revenue":{"amount":null,"currency":null,"fiscal_year_end":null},"estimated_worker_count":null,"mcc":null,"name":null,"product_description":null,"support_address":{"city":null,"country":null,"line1":null,"line2":null,"postal_code":null,"state":null},"support_email":null,"support_phone":null,"support_url":null,"url":null,"minority_owned_business_designation":null},"business_type":null,"capabilities":{"card_payments":"active","transfers":"active"},"charges_enabled":false,"controller":{"type":"account"},"country":"US","created":1234567890,"default_currency":"usd","details_submitted":false,"email":"site@stripe.com","external_accounts":{"data":[],"has_more":false,"object":"list","url":"/v1/accounts/acct_1PgafTB7WZ01zgkW/external_accounts"},"future_requirements":{"alternatives":[],"current_deadline":null,"currently_due":[],"disabled_reason":null,"errors":[],"eventually_due":[],"past_due":[],"pending_verification":[]},"id":"acct_1PgafTB7WZ01zgkW","metadata":{},"object":"account","payouts_enabled":false,"requirements":{"alternatives":[],"current_deadline":null,"currently_due":["business_profile.product_description","business_profile.support_phone","business_profile.url","external_account","tos_acceptance.date","tos_acceptance.ip"],"disabled_reason":"requirements.past_due","errors":[],"eventually_due":["business_profile.product_description","business_profile.support_phone","business_profile.url","external_account","tos_acceptance.date","tos_acceptance.ip"],"past_due":[],"pending_verification":[]},"settings":{"bacs_debit_payments":{"display_name":null,"service_user_number":null},"branding":{"icon":null,"logo":null,"primary_color":null,"secondary_color":null},"card_issuing":{"tos_acceptance":{"date":null,"ip":null}},"card_payments":{"decline_on":{"avs_failure":true,"cvc_failure":true},"statement_descriptor_prefix":null,"statement_descriptor_prefix_kana":null,"statement_descriptor_prefix_kanji":null},"dashboard":{"display_name":null,"timezone":"Etc/UTC"},"invoices":{"default_account_tax_ids":null,"hosted_payment_method_save":null},"payments":{"statement_descriptor":null,"statement_descriptor_kana":null,"statement_descriptor_kanji":null,"statement_descriptor_prefix_kana":null,"statement_descriptor_prefix_kanji":null},"payouts":{"debit_negative_balances":true,"schedule":{"delay_days":2,"interval":"daily"},"statement_descriptor":null},"sepa_debit_payments":{}},"tos_acceptance":{"date":null,"ip":null,"user_agent":null},"type":"standard"}
2023.charge {"id":"ch_3MmlLrLkdIwHu7ix0snN0B15","object":"charge","amount":1099,"amount_captured":1099,"amount_refunded":0,"application":null,"application_fee":null,"application_fee_amount":null,"balance_transaction":"txn_3MmlLrLkdIwHu7ix0uke3Ezy","billing_details":{"address":{"city":null,"country":null,"line1":null,"line2":null,"postal_code":null,"state":null},"email":null,"name":null,"phone":null},"calculated_statement_descriptor":"Stripe","captured":true,"created":1679090539,"currency":"usd","customer":null,"description":null,"disputed":false,"failure_balance_transaction":null,"failure_code":null,"failure_message":null,"fraud_details":{},"invoice":null,"livemode":false,"metadata":{},"on_behalf_of":null,"outcome":{"network_status":"approved_by_network","reason":null,"risk_level":"normal","risk_score":32,"seller_message":"Payment complete.","type":"authorized"},"paid":true,"payment_intent":null,"payment_method":"card_1MmlLrLkdIwHu7ixIJwEWSNR","payment_method_details":{"card":{"brand":"visa","checks":{"address_line1_check":null,"address_postal_code_check":null,"cvc_check":null},"country":"US","exp_month":3,"exp_year":2024,"fingerprint":"mToisGZ01V71BCos","funding":"credit","installments":null,"last4":"4242","mandate":null,"network":"visa","three_d_secure":null,"wallet":null},"type":"card"},"receipt_email":null,"receipt_number":null,"receipt_url":"https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8xTTJKVGtMa2RJd0h1N2l4KOvG06AGMgZfBXyr1aw6LBa9vaaSRWU96d8qBwz9z2J_CObiV_H2-e8RezSK_sw0KISesp4czsOUlVKY","refunded":false,"review":null,"shipping":null,"source_transfer":null,"statement_descriptor":null,"statement_descriptor_suffix":null,"status":"succeeded","transfer_data":null,"transfer_group":null}
2023.subscription {"id":"sub_1MowQVLkdIwHu7ixeRlqHVzs","object":"subscription","application":null,"application_fee_percent":null,"automatic_tax":{"enabled":false,"liability":null},"billing_cycle_anchor":1679609767,"billing_thresholds":null,"cancel_at":null,"cancel_at_period_end":false,"canceled_at":null,"cancellation_details":{"comment":null,"feedback":null,"reason":null},"collection_method":"charge_automatically","created":1679609767,"currency":"usd","current_period_end":1682288167,"current_period_start":1679609767,"customer":"cus_Na6dX7aXxi11N4","days_until_due":null,"default_payment_method":null,"default_source":null,"default_tax_rates":[],"description":null,"discount":null,"ended_at":null,"invoice_settings":{"issuer":{"type":"self"}},"items":{"object":"list","data":[{"id":"si_Na6dzxczY5fwHx","object":"subscription_item","billing_thresholds":null,"created":1679609768,"metadata":{},"plan":{"id":"price_1MowQULkdIwHu7ixraBm864M","object":"plan","active":true,"aggregate_usage":null,"amount":1000,"amount_decimal":"1000","billing_scheme":"per_unit","created":1679609766,"currency":"usd","interval":"month","interval_count":1,"livemode":false,"metadata":{},"nickname":null,"product":"prod_Na6dGcTsmU0I4R","tiers_mode":null,"transform_usage":null,"trial_period_days":null,"usage_type":"licensed"},"price":{"id":"price_1MowQULkdIwHu7ixraBm864M","object":"price","active":true,"billing_scheme":"per_unit","created":1679609766,"currency":"usd","custom_unit_amount":null,"livemode":false,"lookup_key":null,"metadata":{},"nickname":null,"product":"prod_Na6dGcTsmU0I4R","recurring":{"aggregate_usage":null,"interval":"month","interval_count":1,"trial_period_days":null,"usage_type":"licensed"},"tax_behavior":"unspecified","tiers_mode":null,"transform_quantity":null,"type":"recurring","unit_amount":1000,"unit_amount_decimal":"1000"},"quantity":1,"subscription":"sub_1MowQVLkdIwHu7ixeRlqHVzs","tax_rates":[]}],"has_more":false,"total_count":1,"url":"/v1/subscription_items?subscription=sub_1MowQVLkdIwHu7ixeRlqHVzs"},"latest_invoice":"in_1MowQWLkdIwHu7ixuzkSPfKd","livemode":false,"metadata":{},"next_pending_invoice_item_invoice":null,"on_behalf_of":null,"pause_collection":null,"payment_settings":{"payment_method_options":null,"payment_method_types":null,"save_default_payment_method":"off"},"pending_invoice_item_interval":null,"pending_setup_intent":null,"pending_update":null,"quantity":1,"schedule":null,"start_date":1679609767,"status":"active","test_clock":null,"transfer_data":null,"trial_end":null,"trial_settings":{"end_behavior":{"missing_payment_method":"create_invoice"}},"trial_start":null}
2023.price {"id":"price_1MoBy5LkdIwHu7ixZhnattbh","object":"price","active":true,"billing_scheme":"per_unit","created":1679431181,"currency":"usd","custom_unit_amount":null,"livemode":false,"lookup_key":null,"metadata":{},"nickname":null,"product":"prod_NZKdYqrwEYx6iK","recurring":{"aggregate_usage":null,"interval":"month","interval_count":1,"trial_period_days":null,"usage_type":"licensed"},"tax_behavior":"unspecified","tiers_mode":null,"transform_quantity":null,"type":"recurring","unit_amount":1000,"unit_amount_decimal":"1000"}
"""


def settle_heap() -> None:
    """Take the generated account out of the garbage collector's sight (`gc.freeze`).

    Why: a large account is millions of long-lived Python objects, and every full collection walks
    them all, stopping the emulator's event loop for hundreds of milliseconds. Requests that queue
    during such a pause are all stamped at the moment it ends, so the arrival log shows bursts
    (30 requests in one second of an endpoint whose client sent on a 24/s grid) that Stripe's own
    edge, which stamps requests as they arrive, never sees. Call once, after generating the account.
    """
    gc.collect()
    gc.freeze()
