"""A Stripe-compatible HTTP API over a synthetic `StripeAccount`: the local Stripe emulator.

Why: the extractor, the official `stripe` SDK, the tests and the benchmarks need a Stripe that
behaves like the real one where extraction is concerned — newest-first lists, `starting_after` /
`ending_before` id cursors, `created` ranges, hidden defaults (canceled subscriptions, inactive
prices), Stripe's error bodies and status codes, restricted keys, `Request-Id`, objects rendered at
the request's `Stripe-Version` (specs vendored in stripe_aep/specs/stripe), Stripe's published
account, per-endpoint and concurrency limits with the `Stripe-Rate-Limited-Reason` header
(stripe_limits.py) — plus faults on demand (429s, 500s, dropped connections, truncated bodies) and
latency, all on 127.0.0.1 and fast enough for benchmarks. It is never kinder than Stripe: every
behaviour relied upon is cited in docs/emulators.md.
stripe-mock cannot do this: it is stateless and always returns one fixture with `has_more: false`.

Layout: `create_app` builds a Starlette app whose `_StripeGateway` middleware does what every
`/v1` request shares (request id, log record, limits, latency, faults, authentication, API
version, permissions, `Stripe-Account`), and whose routes list and retrieve the account's objects from the
pre-sorted, pre-serialized `ResourceIndex` of each resource (in their state at the clock's now) and
serve its events (`/v1/events`, stripe_events.py). `StripeEmulator` runs that app in a background
thread; `python -m stripe_aep.emulators.stripe_api` runs it as its own process. Control endpoints
under `/_emulator/` (no auth) expose the log, the faults and mutations to other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import bisect
import dataclasses
import itertools
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stripe_aep.catalog import (
    EVENTS,
    EVENTS_PERMISSION,
    RESOURCE_NAMES,
    STRIPE_RESOURCES,
    stripe_resource,
)
from stripe_aep.config import DEFAULT_STRIPE_API_VERSION
from stripe_aep.emulators._server import BackgroundServer, bind_socket
from stripe_aep.emulators.stripe_account import (
    ResourceIndex,
    StripeAccount,
    deleted_customer,
    settle_heap,
)
from stripe_aep.emulators.stripe_events import (
    EventQueryError,
    add_event_version_argument,
    event_versions_option,
    parse_event_query,
)
from stripe_aep.emulators.stripe_limits import (
    ACCOUNT_RATE_LIMITS,
    CONCURRENCY_SECONDS,
    ENDPOINT_RATE_LIMIT,
    LIVE_PROFILE,
    RATE_LIMIT_REASONS,
    ModeLimiter,
    SlidingWindowLimiter,
    StripeLimits,
    add_limit_arguments,
    endpoint_of,
    limit_options,
    parse_latency,
)
from stripe_aep.specs import stripe as stripe_specs

__all__ = [
    "ACCOUNT_RATE_LIMITS", "CONCURRENCY_SECONDS",
    "ENDPOINT_RATE_LIMIT", "LIVE_PROFILE", "RATE_LIMIT_REASONS", "RequestRecord",
    "SlidingWindowLimiter", "StripeEmulator", "StripeFaults", "StripeLimits",
    "add_limit_arguments", "app_options", "create_app", "endpoint_of", "live_profile",
    "redact_key",
]  # fmt: skip

#: The account's default version: what renders a request that sends no `Stripe-Version`.
DEFAULT_API_VERSION = DEFAULT_STRIPE_API_VERSION

#: Permission a restricted key needs for each resource and for the events: the catalog's (ids as
#: seen in Dashboard links; those of prices, balance transactions, disputes and invoices are not
#: officially documented).
READ_PERMISSIONS = {
    **{r.name: r.permission for r in STRIPE_RESOURCES},
    EVENTS: EVENTS_PERMISSION,
}
#: What a restricted key can be granted: each catalog resource and the events.
GRANTABLE = (*RESOURCE_NAMES, EVENTS)

SUBSCRIPTION_STATUSES = frozenset(
    ("active", "canceled", "incomplete", "incomplete_expired", "past_due", "paused", "trialing",
     "unpaid")
)  # fmt: skip
#: `status` values of the subscription list and the statuses each selects. Without `status`,
#: Stripe returns "all subscriptions that have not been canceled": only `canceled` is hidden
#: (`incomplete_expired` stays visible, like the docs say literally).
SUBSCRIPTION_STATUS_FILTERS = {
    **{status: frozenset((status,)) for status in SUBSCRIPTION_STATUSES},
    "all": None,
    "ended": frozenset(("canceled", "incomplete_expired")),
}
DEFAULT_SUBSCRIPTION_STATUSES = SUBSCRIPTION_STATUSES - {"canceled"}

#: Query parameters named otherwise than their filter column: the price list takes `lookup_keys[]`
#: (not `lookup_key`), the subscription list also takes `plan`, the older name of `price`.
RENAMED_PARAMETERS: dict[str, dict[str, str]] = {"prices": {"lookup_key": "lookup_keys"}}
EXTRA_PARAMETERS: dict[str, dict[str, str]] = {"subscriptions": {"plan": "price"}}
#: Filters the emulator implements, per resource: query parameter → filter column. The columns are
#: the catalog's `list_filters` (Stripe's API reference of each list endpoint).
LIST_FILTERS: dict[str, dict[str, str]] = {
    r.name: {RENAMED_PARAMETERS.get(r.name, {}).get(c, c): c for c in r.list_filters}
    | EXTRA_PARAMETERS.get(r.name, {})
    for r in STRIPE_RESOURCES
}
#: `status` values of the invoice list ("The status of the invoice, one of draft, open, paid,
#: uncollectible, or void", API reference "List all invoices"); no status is hidden by default.
INVOICE_STATUSES = frozenset(("draft", "open", "paid", "uncollectible", "void"))
#: `collection_method` values of the subscription and invoice lists.
COLLECTION_METHODS = frozenset(("charge_automatically", "send_invoice"))
#: Parameters real Stripe accepts on these lists that the emulator does not implement: they get a
#: 400 that says so, rather than being silently ignored (which would return wrong data).
UNSUPPORTED_FILTERS: dict[str, frozenset[str]] = {
    "charges": frozenset(),
    "subscriptions": frozenset(("automatic_tax", "current_period_end", "current_period_start",
                                "customer_account", "test_clock")),
    "refunds": frozenset(),
    "balance_transactions": frozenset(("payout",)),
    "customers": frozenset(("test_clock",)),
    "prices": frozenset(("recurring",)),
    "disputes": frozenset(),
    "invoices": frozenset(("due_date", "customer_account")),
}  # fmt: skip
CREATED_OPERATORS = ("gt", "gte", "lt", "lte")
_PARAM_RE = re.compile(r"([a-z_]+)(?:\[([a-z_]*|\d+)\])?")
_TEST_KEY_RE = re.compile(r"(sk|rk)_test_[A-Za-z0-9_]+")
_LIVE_KEY_RE = re.compile(r"(sk|rk)_live_[A-Za-z0-9_]+")
_KEY_PREFIX_RE = re.compile(r"((?:sk|rk|pk)_(?:test|live)_)(.*)", re.DOTALL)


@dataclass
class StripeFaults:
    """Faults to inject; counters mean "the next N `/v1` requests". Mutable while running.

    At most one fault applies per request, checked in this order: dropped connection, truncated
    body, 500, rate-limit 429, should-not-retry 429, then the random `error_rate` 500.
    """

    rate_limited_429: int = 0  # 429 + Stripe-Rate-Limited-Reason: global-rate, code rate_limit
    should_not_retry_429: int = 0  # 429 + Stripe-Should-Retry: false, code lock_timeout
    server_errors_500: int = 0  # 500 api_error
    dropped_connections: int = 0  # connection closed without any response
    truncated_bodies: int = 0  # the real response, cut in the middle (Content-Length too large)
    error_rate: float = 0.0  # probability of a random 500 (seeded by error_seed)
    error_seed: int = 0

    def take(self, rng: random.Random) -> str | None:
        """The fault for the next request (and count it down), or None."""
        for name in ("dropped_connections", "truncated_bodies", "server_errors_500",
                     "rate_limited_429", "should_not_retry_429"):  # fmt: skip
            remaining = getattr(self, name)
            if remaining > 0:
                setattr(self, name, remaining - 1)
                return name
        if self.error_rate > 0 and rng.random() < self.error_rate:
            return "server_errors_500"
        return None


@dataclass(frozen=True)
class RequestRecord:
    """One `/v1` request as the emulator saw it. `status` 0 means no response was sent."""

    t: float  # time.monotonic() at arrival
    method: str
    path: str
    query: dict[str, Any]
    status: int
    key_hint: str  # the redacted key (e.g. "sk_test_****1234"), never the key itself
    endpoint: str = ""  # the named operation the limits count, e.g. "GET /v1/charges/{id}"
    mode: str = "test"  # "live" or "test": the key's mode, whose limits it counts against
    limited_by: str | None = None  # the Stripe-Rate-Limited-Reason of a limiter's 429, else None
    fault: str | None = None  # the injected fault (StripeFaults field name), else None
    api_version: str = ""  # the Stripe-Version the request was rendered at (or refused for)


def redact_key(key: str) -> str:
    """The key as Stripe shows it in errors: its prefix, stars and at most the last 4 characters.

    Short keys show no tail at all, so the redaction never reveals most of a key.
    """
    match = _KEY_PREFIX_RE.fullmatch(key)
    prefix, rest = (match.group(1), match.group(2)) if match else ("", key)
    tail = rest[-4:] if len(rest) >= 12 and rest[-4:].isalnum() else ""
    return f"{prefix}****{tail}"


# --------------------------------------------------------------------------------------------
# Errors


def stripe_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A response with Stripe's error body `{"error": {...}}`."""
    error: dict[str, Any] = {"type": type, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    body = json.dumps({"error": error}, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class _BadRequest(Exception):
    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.code, self.param = code, param

    def response(self) -> Response:
        return stripe_error(400, str(self), code=self.code, param=self.param)


def _rate_limited(reason: str = "global-rate") -> Response:
    """Stripe's 429 of a limiter. Stripe publishes one body for all of them (code `rate_limit`);
    `Stripe-Rate-Limited-Reason` says which limiter fired (docs.stripe.com/rate-limits)."""
    return stripe_error(
        429,
        "Request rate limit exceeded. You can learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit",
        headers={"Stripe-Rate-Limited-Reason": reason},
    )


def _lock_timeout() -> Response:
    return stripe_error(
        429,
        "This object cannot be accessed right now because another API request or Stripe "
        "process is currently accessing it. If you see this error intermittently, retry the "
        "request.",
        code="lock_timeout",
        headers={"Stripe-Should-Retry": "false"},
    )


def _server_error() -> Response:
    return stripe_error(500, "An unknown error occurred", type="api_error")


# --------------------------------------------------------------------------------------------
# List queries


@dataclass
class ListQuery:
    """A validated list request: paging, `created` bounds and column filters."""

    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    created: dict[str, int] = dataclasses.field(default_factory=dict)  # gt/gte/lt/lte/eq
    filters: list[tuple[str, frozenset]] = dataclasses.field(default_factory=list)


def _parse_int(value: str, param: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _BadRequest(
            f"Invalid integer: {value}", code="parameter_invalid_integer", param=param
        ) from None


def parse_list_query(resource: str, items: list[tuple[str, str]]) -> ListQuery:
    """Validate the query string of `GET /v1/<resource>` like Stripe does (400 on anything odd)."""
    query = ListQuery()
    filters = LIST_FILTERS[resource]
    values: dict[str, list[str]] = {}
    for key, value in items:
        match = _PARAM_RE.fullmatch(key)
        base, sub = (match.group(1), match.group(2)) if match else (key, None)
        if match and base == "created" and sub is not None:
            if sub not in CREATED_OPERATORS:
                raise _BadRequest(
                    f"Received unknown parameter: {key}", code="parameter_unknown", param=key
                )
            query.created[sub] = _parse_int(value, key)
        elif match and base == "created":
            query.created["eq"] = _parse_int(value, key)
        elif match and base in ("expand", "lookup_keys") and (sub is None or sub == "" or
                                                              sub.isdigit()):  # fmt: skip
            if base == "lookup_keys" and resource != "prices":
                raise _BadRequest(
                    f"Received unknown parameter: {key}", code="parameter_unknown", param=key
                )
            values.setdefault(base, []).append(value)  # expand[] is accepted and ignored
        elif match and base in UNSUPPORTED_FILTERS[resource]:
            raise _BadRequest(
                f"The parameter {key} is valid on Stripe's /v1/{resource} but the Stripe emulator "
                "does not implement it; filter on the client side or extend the emulator.",
                code="parameter_unknown",
                param=key,
            )
        elif (
            match
            and sub is None
            and (base in ("limit", "starting_after", "ending_before") or base in filters)
        ):
            values.setdefault(base, []).append(value)
        else:
            raise _BadRequest(
                f"Received unknown parameter: {key}", code="parameter_unknown", param=key
            )
    if "limit" in values:
        raw = values["limit"][-1]
        limit = _parse_int(raw, "limit")
        if not 1 <= limit <= 100:
            raise _BadRequest(
                f"Invalid limit: must be between 1 and 100 (got {raw})",
                code="parameter_invalid_integer",
                param="limit",
            )
        query.limit = limit
    for cursor in ("starting_after", "ending_before"):
        if cursor in values:
            if not values[cursor][-1]:
                raise _BadRequest(
                    f"Invalid {cursor}: must be an object id", code="parameter_invalid_empty",
                    param=cursor,
                )  # fmt: skip
            setattr(query, cursor, values[cursor][-1])
    if query.starting_after and query.ending_before:
        raise _BadRequest(
            "You may only specify one of these parameters: ending_before, starting_after.",
            code="parameter_unknown",
            param="ending_before",
        )
    if "eq" in query.created and len(query.created) > 1:
        raise _BadRequest(
            "created is either an integer (one exact second) or a hash of gt/gte/lt/lte, not both.",
            code="parameter_invalid_integer",
            param="created",
        )
    _add_filters(resource, query, values, filters)
    return query


def _add_filters(
    resource: str, query: ListQuery, values: dict[str, list[str]], filters: dict[str, str]
) -> None:
    for param, column in filters.items():
        if param in ("status", "active", "lookup_keys"):
            continue
        if param in values:
            query.filters.append((column, frozenset((values[param][-1],))))
    if resource == "subscriptions":
        status = values.get("status", [None])[-1]
        if status is None:
            query.filters.append(("status", DEFAULT_SUBSCRIPTION_STATUSES))
        elif status not in SUBSCRIPTION_STATUS_FILTERS:
            choices = ", ".join(sorted(SUBSCRIPTION_STATUS_FILTERS))
            raise _BadRequest(
                f"Invalid status: must be one of {choices}", code="invalid_request_error",
                param="status",
            )  # fmt: skip
        elif SUBSCRIPTION_STATUS_FILTERS[status] is not None:
            query.filters.append(("status", SUBSCRIPTION_STATUS_FILTERS[status]))
    if resource == "invoices" and "status" in values:
        status = values["status"][-1]
        if status not in INVOICE_STATUSES:
            raise _BadRequest(
                f"Invalid status: must be one of {', '.join(sorted(INVOICE_STATUSES))}",
                code="invalid_request_error", param="status",
            )  # fmt: skip
        query.filters.append(("status", frozenset((status,))))
    if resource in ("invoices", "subscriptions") and "collection_method" in values:
        method = values["collection_method"][-1]
        if method not in COLLECTION_METHODS:
            raise _BadRequest(
                "Invalid collection_method: must be one of charge_automatically or send_invoice",
                code="invalid_request_error", param="collection_method",
            )  # fmt: skip
    if resource == "prices":
        active = values.get("active", ["true"])[-1]
        if active not in ("true", "false"):
            raise _BadRequest(
                f"Invalid boolean: {active}", code="parameter_invalid_boolean", param="active"
            )
        query.filters.append(("active", frozenset((active == "true",))))
        if "type" in values and values["type"][-1] not in ("one_time", "recurring"):
            raise _BadRequest(
                "Invalid type: must be one of one_time or recurring", param="type",
                code="parameter_invalid_string",
            )  # fmt: skip
        if "lookup_keys" in values:
            if len(values["lookup_keys"]) > 10:
                raise _BadRequest(
                    "lookup_keys takes at most 10 keys", param="lookup_keys",
                    code="parameter_invalid_array",
                )  # fmt: skip
            query.filters.append(("lookup_key", frozenset(values["lookup_keys"])))


def list_page(
    index: ResourceIndex, query: ListQuery, visible_from: int
) -> tuple[list[bytes], bool]:
    """The page of `index` that `query` asks for: (JSON of each object, has_more)."""
    created = query.created
    if "eq" in created:
        lo, hi = index.created_range(gte=created["eq"], lte=created["eq"])
    else:
        lo, hi = index.created_range(
            gte=created.get("gte"), gt=created.get("gt"), lte=created.get("lte"),
            lt=created.get("lt"),
        )  # fmt: skip
    lo = max(lo, visible_from)
    limit = query.limit
    candidates: list[int] | None = None
    residual: list[tuple[list[Any], frozenset]] = []
    if query.filters:
        lists = [(index.positions_with(column, values), column, values)
                 for column, values in query.filters]  # fmt: skip
        lists.sort(key=lambda item: len(item[0]))
        candidates = lists[0][0]
        residual = [(index.columns[column], values) for _, column, values in lists[1:]]

    def matches(position: int) -> bool:
        return all(column[position] in values for column, values in residual)

    if query.ending_before is not None:
        end = min(hi, _cursor_position(index, query.ending_before, visible_from, "ending_before"))
        if candidates is None:
            first = max(lo, end - limit - 1)
            positions = list(range(first, end))
        else:
            positions = []
            i = bisect.bisect_left(candidates, end) - 1
            while i >= 0 and candidates[i] >= lo and len(positions) <= limit:
                if matches(candidates[i]):
                    positions.append(candidates[i])
                i -= 1
            positions.reverse()
        has_more = len(positions) > limit
        if has_more:
            positions = positions[1:]
        return [index.blobs[p] for p in positions], has_more

    start = lo
    if query.starting_after is not None:
        after = _cursor_position(index, query.starting_after, visible_from, "starting_after")
        start = max(lo, after + 1)
    if candidates is None:
        stop = min(hi, start + limit + 1)
        blobs = index.blobs[start:stop] if stop > start else []
    else:
        blobs = []
        i = bisect.bisect_left(candidates, start)
        while i < len(candidates) and candidates[i] < hi and len(blobs) <= limit:
            if matches(candidates[i]):
                blobs.append(index.blobs[candidates[i]])
            i += 1
    has_more = len(blobs) > limit
    return blobs[:limit], has_more


def _cursor_position(index: ResourceIndex, object_id: str, visible_from: int, param: str) -> int:
    position = index.position.get(object_id)
    if position is None or position < visible_from:
        raise _BadRequest(
            f"No such {stripe_resource(index.resource).object_name}: '{object_id}'",
            code="resource_missing",
            param=param,
        )
    return position


# --------------------------------------------------------------------------------------------
# The app


class _EmulatorState:
    """Everything the routes and the gateway share."""

    def __init__(
        self,
        account: StripeAccount,
        limits: StripeLimits,
        latency_ms: float | tuple[float, float] | str,
        faults: StripeFaults,
        restricted_keys: dict[str, set[str]],
        log: list[RequestRecord],
        livemode: bool = False,
        latency_seed: int = 0,
        default_api_version: str = DEFAULT_API_VERSION,
    ) -> None:
        self.latency_low, self.latency_high = (ms / 1000.0 for ms in parse_latency(latency_ms))
        if self.version_error(default_api_version) is not None:
            raise ValueError(
                f"default_api_version {default_api_version!r} cannot be rendered: expected one of "
                f"the Stripe API versions up to {stripe_specs.newest_vendored_version()}"
            )
        self.default_api_version = default_api_version
        self.livemode = livemode
        self.mode = "live" if livemode else "test"
        prefix = f"rk_{self.mode}_"
        for key, allowed in restricted_keys.items():
            if not key.startswith(prefix) or not _key_re(self.mode).fullmatch(key):
                raise ValueError(
                    f"restricted_keys: {redact_key(key)!r} is not a {self.mode} restricted key "
                    f"(expected '{prefix}<alphanumerics>')"
                )
            unknown = set(allowed) - set(GRANTABLE)
            if unknown:
                raise ValueError(
                    f"restricted_keys[{redact_key(key)!r}]: unknown resources {sorted(unknown)}; "
                    f"expected a subset of {list(GRANTABLE)}"
                )
        self.account = account
        self.limits = limits
        # Live and test limits are separate (docs.stripe.com/rate-limits).
        self.limiters = {mode: ModeLimiter(limits, mode) for mode in ("live", "test")}
        self.latency_rng = random.Random(latency_seed)
        self.faults = faults
        self.fault_rng = random.Random(faults.error_seed)
        self.restricted_keys = {key: frozenset(allowed) for key, allowed in restricted_keys.items()}
        self.log = log
        self._request_prefix = os.urandom(5).hex()
        self._request_counter = itertools.count(1)

    def next_request_id(self) -> str:
        return f"req_{self._request_prefix}{next(self._request_counter):06d}"

    def latency(self) -> float:
        """Seconds to hold this request: fixed, or uniform in the configured range."""
        if self.latency_high <= self.latency_low:
            return self.latency_low
        return self.latency_rng.uniform(self.latency_low, self.latency_high)

    @staticmethod
    def version_error(version: str) -> Response | None:
        """Stripe's 400 for a version it does not know; the emulator's 400 for a real version
        newer than every vendored shape (it cannot know what that version returns)."""
        if not stripe_specs.is_api_version(version):
            # Stripe's body for an unknown Stripe-Version: type and message only (no code).
            return stripe_error(400, f"Invalid Stripe API version: {version}")
        newest = stripe_specs.newest_vendored_version()
        if stripe_specs.version_key(version) > stripe_specs.version_key(newest):
            return stripe_error(
                400,
                f"The Stripe emulator cannot render API version {version}: it is a real Stripe "
                f"version, but newer than the newest vendored object shapes ({newest}). Send "
                f"Stripe-Version: {newest} or older, or vendor Stripe's fixtures3.json of that "
                "version into stripe_aep/specs/stripe/.",
            )
        return None

    def render(self, blobs: list[bytes], resource: str | None, version: str) -> list[bytes]:
        """Objects as the request's version and the served mode show them: fields newer than
        the version are absent, and a live-mode account's objects say `livemode: true`."""
        if resource is not None:
            newer = stripe_specs.fields_newer_than(stripe_resource(resource).object_name, version)
            if newer:
                blobs = [_without(blob, newer) for blob in blobs]
        if self.livemode:
            blobs = [blob.replace(b'"livemode":false', b'"livemode":true') for blob in blobs]
        return blobs

    def visible_from(self, index: ResourceIndex) -> int:
        return index.first_visible(self.account.visible_now())


def _state(request: Request) -> _EmulatorState:
    return request.app.state.emulator


def _version(request: Request) -> str:
    """The request's API version (validated by the gateway)."""
    return request.scope["stripe_version"]


def _without(blob: bytes, fields: frozenset[str]) -> bytes:
    document = orjson.loads(blob)
    for name in fields:
        document.pop(name, None)
    return orjson.dumps(document)


def _unrecognized(request: Request) -> Response:
    return stripe_error(
        404,
        f"Unrecognized request URL ({request.method}: {request.url.path}). Please see "
        "https://stripe.com/docs or we can help at https://support.stripe.com/.",
    )


def _read_only(request: Request) -> Response:
    return stripe_error(
        405,
        f"The Stripe emulator is read-only: {request.method} {request.url.path} is not "
        "supported (only GET on the list, retrieve and account endpoints).",
    )


def _list_response(blobs: list[bytes], has_more: bool, url: str) -> Response:
    """Stripe's list object around serialized items (joined, never re-encoded)."""
    body = b"".join(
        (
            b'{"object":"list","data":[',
            b",".join(blobs),
            b'],"has_more":',
            b"true" if has_more else b"false",
            b',"url":"',
            url.encode(),
            b'"}',
        )
    )
    return Response(body, media_type="application/json")


async def _list_objects(request: Request) -> Response:
    resource = request.path_params["resource"]
    if resource not in RESOURCE_NAMES:
        return _unrecognized(request)
    if request.method != "GET":
        return _read_only(request)
    state = _state(request)
    account = state.account
    try:
        query = parse_list_query(resource, request.query_params.multi_items())
        with account.lock:
            account.sync()
            index = account.index(resource)
            blobs, has_more = list_page(index, query, state.visible_from(index))
    except _BadRequest as error:
        return error.response()
    blobs = state.render(blobs, resource, _version(request))
    return _list_response(blobs, has_more, f"/v1/{resource}")


async def _retrieve_object(request: Request) -> Response:
    resource = request.path_params["resource"]
    if resource not in RESOURCE_NAMES:
        return _unrecognized(request)
    if request.method != "GET":
        return _read_only(request)
    state = _state(request)
    account = state.account
    object_id = request.path_params["object_id"]
    with account.lock:
        account.sync()
        index = account.index(resource)
        position = index.position.get(object_id)
        visible = position is not None and position >= state.visible_from(index)
        blob = index.blobs[position] if visible else None
        if blob is None and resource == "customers" and account.current(resource, object_id):
            # A deleted customer: Stripe returns the deleted stub, not a 404.
            return JSONResponse(deleted_customer(object_id))
    if blob is None:
        # Deleted prices too: the emulator answers like for an id that never existed.
        return stripe_error(
            404,
            f"No such {stripe_resource(resource).object_name}: '{object_id}'",
            code="resource_missing",
            param="id",
        )
    (blob,) = state.render([blob], resource, _version(request))
    return Response(blob, media_type="application/json")


async def _list_events(request: Request) -> Response:
    """`GET /v1/events`: newest first, 30 days, each event at its own API version."""
    if request.method != "GET":
        return _read_only(request)
    state = _state(request)
    account = state.account
    try:
        query = parse_event_query(request.query_params.multi_items())
        with account.lock:
            account.sync()
            timeline = account._timeline
            entries, has_more = timeline.page(query, int(account.clock()))
            blobs = [timeline.render(entry, state.livemode) for entry in entries]
    except EventQueryError as error:
        return stripe_error(400, str(error), code=error.code, param=error.param)
    return _list_response(blobs, has_more, "/v1/events")


async def _retrieve_event(request: Request) -> Response:
    """`GET /v1/events/<id>`: an event of the last 30 days, else 404."""
    if request.method != "GET":
        return _read_only(request)
    state = _state(request)
    account = state.account
    event_id = request.path_params["event_id"]
    with account.lock:
        account.sync()
        entry = account._timeline.find(event_id, int(account.clock()))
        blob = account._timeline.render(entry, state.livemode) if entry else None
    if blob is None:
        return stripe_error(
            404, f"No such event: '{event_id}'", code="resource_missing", param="id"
        )
    return Response(blob, media_type="application/json")


async def _account(request: Request) -> Response:
    if request.method != "GET":
        return _read_only(request)
    state = _state(request)
    (blob,) = state.render([state.account.account_json], None, _version(request))
    return Response(blob, media_type="application/json")


async def _not_found(request: Request) -> Response:
    return _unrecognized(request)


# ---- control endpoints (no auth; for benchmarks and `stripe-aep emulate`) -------------------


async def _control_health(request: Request) -> Response:
    account = _state(request).account
    return JSONResponse(
        {"status": "ok", "account": account.account_id, "live": account.live,
         "totals": account.totals()}
    )  # fmt: skip


async def _control_log(request: Request) -> Response:
    since_raw = request.query_params.get("since", "0")
    try:
        since = int(since_raw)
        if since < 0:
            raise ValueError
    except ValueError:
        return JSONResponse(
            {"error": f"since must be a non-negative integer index, got {since_raw!r}"}, 400
        )
    log = _state(request).log
    return JSONResponse([dataclasses.asdict(record) for record in log[since:]])


async def _control_faults(request: Request) -> Response:
    state = _state(request)
    if request.method == "POST":
        try:
            changes = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError as error:
            return JSONResponse({"error": f"the body must be a JSON object: {error}"}, 400)
        fields = {f.name: f.type for f in dataclasses.fields(StripeFaults)}
        if not isinstance(changes, dict):
            return JSONResponse({"error": "the body must be a JSON object of fault fields"}, 400)
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            return JSONResponse(
                {"error": f"unknown fault fields {unknown}; expected some of {sorted(fields)}"},
                400,
            )
        for name, value in changes.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if not numeric or value < 0 or (name != "error_rate" and value != int(value)):
                return JSONResponse(
                    {"error": f"{name} must be a non-negative number, got {value!r}"}, 400
                )
            setattr(state.faults, name, float(value) if name == "error_rate" else int(value))
        if "error_seed" in changes:
            state.fault_rng.seed(state.faults.error_seed)
    return JSONResponse(dataclasses.asdict(state.faults))


async def _control_mutate(request: Request) -> Response:
    """Apply one mutation now: `{"resource", "id", "kind", "fields": {...}}` →
    `{"event_ids": [...]}` (StripeAccount.mutate over HTTP, for tests in other processes)."""
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as error:
        return JSONResponse({"error": f"the body must be a JSON object: {error}"}, 400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, 400)
    unknown = sorted(set(body) - {"resource", "id", "kind", "fields"})
    missing = [name for name in ("resource", "id", "kind") if not isinstance(body.get(name), str)]
    fields = body.get("fields", {})
    if unknown or missing or not isinstance(fields, dict):
        return JSONResponse(
            {"error": "expected {\"resource\": str, \"id\": str, \"kind\": str, \"fields\": "
                      f"{{...}}}}; unknown keys {unknown}, missing or not strings {missing}"},
            400,
        )  # fmt: skip
    account = _state(request).account
    try:
        event_ids = account.mutate(body["resource"], body["id"], body["kind"], **fields)
    except LookupError as error:
        return JSONResponse({"error": str(error).strip("'\"")}, 404)
    except (ValueError, TypeError) as error:
        return JSONResponse({"error": str(error)}, 400)
    return JSONResponse({"event_ids": event_ids})


async def _control_reset(request: Request) -> Response:
    log = _state(request).log
    cleared = len(log)
    log.clear()
    return JSONResponse({"cleared": cleared})


# ---- the gateway: what every /v1 request goes through ---------------------------------------


class _StripeGateway:
    """Pure ASGI middleware for `/v1`: request id, log, limits, latency, faults, auth, version."""

    def __init__(self, app, state: _EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/v1" or path.startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        state = self.state
        arrival = time.monotonic()
        request_id = state.next_request_id().encode()
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        sent_version = headers.get(b"stripe-version")
        version = (
            sent_version.decode("latin-1").strip() if sent_version else state.default_api_version
        )
        scope["stripe_version"] = version
        key, key_hint, auth_error = _authenticate(headers.get(b"authorization"), state.mode)
        method = scope.get("method", "")
        endpoint = endpoint_of(method, path)
        # Limits are per account and mode; the key's prefix names the mode (an invalid key is
        # counted against the mode it claims, so a storm of bad keys is refused too).
        mode = "live" if key_hint.startswith(("sk_live_", "rk_live_")) else "test"
        limiter = state.limiters[mode]
        limited_by = limiter.admit(endpoint, arrival)
        fault = state.faults.take(state.fault_rng) if limited_by is None else None
        status = [0]
        recorded = [False]

        def record() -> None:
            # Logged before the response leaves, so a client that has its answer finds it in the log.
            if not recorded[0]:
                recorded[0] = True
                state.log.append(
                    RequestRecord(
                        t=arrival,
                        method=method,
                        path=path,
                        query=_query_dict(scope.get("query_string", b"")),
                        status=status[0],
                        key_hint=key_hint,
                        endpoint=endpoint,
                        mode=mode,
                        limited_by=limited_by,
                        fault=fault,
                        api_version=version,
                    )
                )

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                record()
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", []),
                    (b"request-id", request_id),
                    (b"stripe-version", version.encode("latin-1")),
                ]
            await send(message)

        try:
            latency = state.latency()
            if latency:
                await asyncio.sleep(latency)
            response: Response | None = None
            if limited_by is not None:
                response = _rate_limited(limited_by)
            elif fault == "rate_limited_429":
                response = _rate_limited("global-rate")
            elif fault == "should_not_retry_429":
                response = _lock_timeout()
            elif fault == "server_errors_500":
                response = _server_error()
            elif fault == "dropped_connections":
                record()
                await _drop_connection(receive)
                return
            else:
                response = (
                    auth_error
                    or state.version_error(version)
                    or self._authorize(key, path, headers)
                )
            if fault == "truncated_bodies":
                await self._send_truncated(scope, receive, send_with_headers, response)
            elif response is not None:
                await response(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            record()  # requests that never got a response (dropped connections): status 0
            if limited_by is None:
                limiter.release(endpoint)

    def _authorize(
        self, key: str | None, path: str, headers: dict[bytes, bytes]
    ) -> Response | None:
        """403 for a restricted key without the read permission or a foreign Stripe-Account."""
        state = self.state
        if key is None:
            raise RuntimeError("_authorize needs an authenticated key")
        connected = headers.get(b"stripe-account")
        if connected is not None and connected.decode(errors="replace") != state.account.account_id:
            shown = connected.decode(errors="replace")[:64]
            return stripe_error(
                403,
                f"The provided key '{redact_key(key)}' does not have access to account "
                f"'{shown}' (or that account does not exist). The Stripe emulator serves only "
                f"account '{state.account.account_id}'.",
                code="account_invalid",
            )
        allowed = state.restricted_keys.get(key)
        resource = path.split("/")[2] if path.count("/") >= 2 else ""
        if allowed is not None and resource in READ_PERMISSIONS and resource not in allowed:
            return stripe_error(
                403,
                f"The provided key '{redact_key(key)}' does not have the required permissions "
                f"for this endpoint on account '{state.account.account_id}'. Having the "
                f"'{READ_PERMISSIONS[resource]}' permission would allow this request to continue.",
            )
        return None

    async def _send_truncated(self, scope, receive, send, response: Response | None) -> None:
        """Send the real response's headers (full Content-Length) and half its body, then close."""
        messages: list[dict] = []

        async def capture(message) -> None:
            messages.append(message)

        if response is not None:
            await response(scope, receive, capture)
        else:
            await self.app(scope, receive, capture)
        start = messages[0]
        body = b"".join(m.get("body", b"") for m in messages[1:])
        await send(start)
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        await _drop_connection(receive)


def _key_re(mode: str) -> re.Pattern:
    return _LIVE_KEY_RE if mode == "live" else _TEST_KEY_RE


def _authenticate(
    authorization: bytes | None, mode: str = "test"
) -> tuple[str | None, str, Response | None]:
    """(key, redacted key, 401 response or None) from an Authorization header.

    The emulator serves one mode of its account: test keys, or live keys when it runs as a
    live-mode account (`livemode=True`)."""
    if not authorization:
        return None, "", stripe_error(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details.",
        )  # fmt: skip
    text = authorization.decode("latin-1").strip()
    scheme, _, credentials = text.partition(" ")
    credentials = credentials.strip()
    key = ""
    if scheme.lower() == "bearer":
        key = credentials
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    hint = redact_key(key) if key else ""
    if _key_re(mode).fullmatch(key):
        return key, hint, None
    other = "test" if mode == "live" else "live"
    if _KEY_PREFIX_RE.fullmatch(key) and f"_{other}_" in key[:8]:
        message = (
            f"Invalid API Key provided: {hint}. The Stripe emulator serves a {mode}-mode account "
            f"and accepts only {mode} keys (sk_{mode}_... or rk_{mode}_...)."
        )
    elif not key:
        message = (
            "Invalid API Key provided: the Authorization header must be 'Bearer <key>' or "
            "HTTP Basic with the key as the username."
        )
    else:
        message = f"Invalid API Key provided: {hint}"
    return None, hint, stripe_error(401, message)


async def _drop_connection(receive) -> None:
    """Close the client connection without (or in the middle of) a response.

    ASGI has no message for this, so it closes uvicorn's transport, reached through the bound
    `receive` method of uvicorn's request cycle, then waits for uvicorn to notice the disconnect
    (which stops uvicorn from sending a 500 of its own).
    """
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError(
            "the dropped_connections and truncated_bodies faults need the emulator to run under "
            "uvicorn (StripeEmulator or `python -m stripe_aep.emulators.stripe_api`)"
        )
    transport.close()

    async def until_disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    await asyncio.wait_for(until_disconnected(), timeout=5)


def _query_dict(query_string: bytes) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key in result:
            previous = result[key]
            result[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[key] = value
    return result


def resolve_limits(rate_limit_rps: float | None, limits: StripeLimits | None) -> StripeLimits:
    """The limits from the two ways to give them: `limits`, or the shorthand `rate_limit_rps`
    (the account's rate; 0 turns every limiter off, None keeps Stripe's published defaults)."""
    if limits is not None:
        if rate_limit_rps is not None:
            raise ValueError("pass either rate_limit_rps or limits, not both")
        return limits
    if rate_limit_rps is None:
        return StripeLimits()
    if rate_limit_rps < 0:
        raise ValueError(
            f"rate_limit_rps must be >= 0 (0 disables the limits), got {rate_limit_rps}"
        )
    return StripeLimits.off() if rate_limit_rps == 0 else StripeLimits(account_rps=rate_limit_rps)


def create_app(
    account: StripeAccount,
    *,
    rate_limit_rps: float | None = None,
    limits: StripeLimits | None = None,
    latency_ms: float | tuple[float, float] | str = 0.0,
    latency_seed: int = 0,
    livemode: bool = False,
    default_api_version: str = DEFAULT_API_VERSION,
    faults: StripeFaults | None = None,
    restricted_keys: dict[str, set[str]] | None = None,
    log: list | None = None,
) -> Starlette:
    """The emulator as a Starlette app (serve it with uvicorn, or use `StripeEmulator`).

    Limits: Stripe's published ones for the served mode unless `limits` (or the `rate_limit_rps`
    shorthand) say otherwise. `latency_ms` holds every `/v1` request that long (a number, or a
    (low, high) range drawn uniformly with `latency_seed`). `livemode=True` serves the account as
    live mode: live keys, live limits, `livemode: true` objects.
    """
    state = _EmulatorState(
        account,
        resolve_limits(rate_limit_rps, limits),
        latency_ms,
        faults if faults is not None else StripeFaults(),
        restricted_keys or {},
        log if log is not None else [],
        livemode=livemode,
        latency_seed=latency_seed,
        default_api_version=default_api_version,
    )
    any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/_emulator/health", _control_health, methods=["GET"]),
        Route("/_emulator/log", _control_log, methods=["GET"]),
        Route("/_emulator/faults", _control_faults, methods=["GET", "POST"]),
        Route("/_emulator/reset", _control_reset, methods=["POST"]),
        Route("/_emulator/mutate", _control_mutate, methods=["POST"]),
        Route("/v1/account", _account, methods=any_method),
        Route("/v1/events", _list_events, methods=any_method),
        Route("/v1/events/{event_id}", _retrieve_event, methods=any_method),
        Route("/v1/{resource}", _list_objects, methods=any_method),
        Route("/v1/{resource}/{object_id}", _retrieve_object, methods=any_method),
        Route("/v1/{rest:path}", _not_found, methods=any_method),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_StripeGateway, state=state)])
    app.state.emulator = state
    return app


class StripeEmulator:
    """The emulator on 127.0.0.1 in a background thread; a context manager.

    `log`, `faults` and `account` are the live objects the server uses: tests read the log and
    change faults while it runs.
    """

    def __init__(
        self,
        account: StripeAccount | None = None,
        *,
        rate_limit_rps: float | None = None,
        limits: StripeLimits | None = None,
        latency_ms: float | tuple[float, float] | str = 0.0,
        latency_seed: int = 0,
        livemode: bool = False,
        default_api_version: str = DEFAULT_API_VERSION,
        faults: StripeFaults | None = None,
        restricted_keys: dict[str, set[str]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.account = account if account is not None else StripeAccount()
        self.faults = faults if faults is not None else StripeFaults()
        self.log: list[RequestRecord] = []
        self.app = create_app(
            self.account,
            rate_limit_rps=rate_limit_rps,
            limits=limits,
            latency_ms=latency_ms,
            latency_seed=latency_seed,
            livemode=livemode,
            default_api_version=default_api_version,
            faults=self.faults,
            restricted_keys=restricted_keys,
            log=self.log,
        )
        self._server = BackgroundServer(self.app, host=host, port=port)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> StripeEmulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> StripeEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"StripeEmulator(url={self.url!r}, account={self.account!r})"


# --------------------------------------------------------------------------------------------
# Own process: python -m stripe_aep.emulators.stripe_api


def _parse_restricted(values: list[str]) -> dict[str, set[str]]:
    restricted: dict[str, set[str]] = {}
    for value in values:
        key, sep, resources = value.partition("=")
        if not sep:
            raise SystemExit(f"--restricted-key expects KEY=resource[,resource...], got {value!r}")
        restricted[key] = {name for name in resources.split(",") if name}
    return restricted


def live_profile(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """`StripeEmulator` / `create_app` keyword arguments of the "live limits" profile (a live-mode
    account: 100 requests/s, 25 per endpoint, 250–450 ms per request, 1 % of requests answered
    500), e.g. `StripeEmulator(account, **live_profile(limits=StripeLimits(...)))`."""
    options: dict[str, Any] = {
        "livemode": LIVE_PROFILE["livemode"],
        "latency_ms": parse_latency(LIVE_PROFILE["latency_ms"]),
        "latency_seed": seed,
        "faults": StripeFaults(error_rate=LIVE_PROFILE["error_rate"], error_seed=seed),
    }
    options.update(overrides)
    return options


def app_options(args: argparse.Namespace, seed: int = 0) -> dict[str, Any]:
    """`create_app` keyword arguments from `add_limit_arguments` options (ValueError if bad)."""
    options = limit_options(args, seed)
    error_rate = options.pop("error_rate")
    return {**options, "faults": StripeFaults(error_rate=error_rate, error_seed=seed)}


def main(argv: list[str] | None = None, clock: Callable[[], float] = time.time) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_aep.emulators.stripe_api",
        description="Serve a synthetic Stripe account on a Stripe-compatible API (127.0.0.1).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", default=None, help="first day YYYY-MM-DD (default: days ago)")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--charges-per-day", type=int, default=200)
    parser.add_argument("--live", action="store_true", help="objects appear as time passes")
    add_event_version_argument(parser)
    add_limit_arguments(parser, rate_flag="--rate-limit-rps")
    parser.add_argument(
        "--restricted-key", action="append", default=[], metavar="KEY=RES[,RES]",
        help="a restricted test key limited to these resources (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        options = app_options(args, seed=args.seed)
        versions = event_versions_option(args)
    except ValueError as error:
        parser.error(str(error))
    began = time.perf_counter()
    account = StripeAccount(
        seed=args.seed, start=args.start, days=args.days, charges_per_day=args.charges_per_day,
        live=args.live, clock=clock, event_api_versions=versions,
    )  # fmt: skip
    settle_heap()
    generated = time.perf_counter() - began
    app = create_app(account, restricted_keys=_parse_restricted(args.restricted_key), **options)
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    total = sum(account.totals().values())
    print(
        f"Stripe emulator on http://{host}:{port} — {account!r}: {total} objects generated in "
        f"{generated:.1f}s",
        flush=True,
    )
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30,
        backlog=2048,
    )  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
