"""A small Stripe REST client for list endpoints: the contract of DESIGN.md layer 1.

Why not the `stripe` SDK: the SDK does not retry rate-limit 429s, has no client-side budget, and hides
the request accounting (requests, retries, 429s) that the pipeline reports as metadata. This client is
plain `requests` with a pooled session and does exactly what an extractor needs:

- Bearer auth, a pinned `Stripe-Version`, optional `Stripe-Account`, timeouts;
- `limit=100` + `starting_after` paging inside a fixed `created[gte]`/`created[lt]` window;
- the hidden-default filters (`status=all` for subscriptions; active *and* inactive prices);
- retries with exponential backoff and jitter on 429/409/424/5xx, dropped connections and truncated
  bodies, honouring `Stripe-Should-Retry` and `Retry-After`;
- no retry on 400/401/403/404, but an error that names the cause and the fix and carries the Request-Id;
- Stripe's rate model on the client (stripe_aep/stripe/ratelimit.py): an account and a per-endpoint
  budget and an in-flight cap shared machine-wide; a 429's `Stripe-Rate-Limited-Reason` cuts the
  budget that fired, so the client settles below the limit instead of retrying into it.

The API key is only ever placed in the Authorization header; it is redacted from every message, and no
`requests`/`urllib3` exception (which may quote the header, the URL or the body) leaves `get`: it becomes a
`StripeError` with the key masked in every encoding (`stripe_aep.secrets`), raised `from None`.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter

from stripe_aep.catalog import (
    EVENTS,
    EVENTS_PERMISSION,
    EVENTS_PERMISSION_LABEL,
    RESOURCE_NAMES,
    event_type_passes,
    stripe_resource,
)
from stripe_aep.config import StripeSettings, redact_key
from stripe_aep.secrets import SecretMasker, describe_exception
from stripe_aep.stripe.ratelimit import RATE_REASONS, RateBudget, default_limiter_path

PAGE_LIMIT = 100


def events_listing(selection: Iterable[str]) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...]]:
    """How `stripe/events` lists the events of `selection`: (its passes, the types it keeps).

    The kept types are the explicit types of the selected resources (`event_type_passes`,
    stripe_aep/catalog.py); a wildcard would not do (`customer.*` also matches discount, source,
    tax-id and subscription events). When they fit one request (at most 20, Stripe's limit; AEP's
    six resources ask 20), that request asks them as `types[]`. When they need more, ONE
    unfiltered pass is made instead (without `types`/`type` Stripe returns every event type: API
    reference "List all events") and the extractor drops every event of another type before
    writing: an idle fresh tick then still costs one events request, not one per group of 20
    (docs/operations.md, "Change capture: events, freshness and reads", weighs the extra pages a
    busy account's other events cost).
    """
    selection = tuple(selection)
    groups = event_type_passes(selection)
    if not groups:
        # No pass at all would page nothing and still claim the window as covered.
        raise ValueError(f"no event types to list for the resources {list(selection)}")
    kept = tuple(t for types in groups for t in types)
    if len(groups) == 1:
        # `requests` sends a list as repeated `types[]=…` parameters, the form Stripe reads
        return ({"types[]": list(groups[0])},), kept
    return ({},), kept


def list_passes(resource: str, selection: Iterable[str] = ()) -> tuple[dict[str, Any], ...]:
    """The list calls (extra query parameters each) that see every object of `resource`.

    A catalog resource: its `filter_passes` (Stripe hides some objects by default: canceled
    subscriptions, inactive prices). `events`: the one pass of `events_listing(selection)`.
    docs/operations.md ("Change capture: events, freshness and reads") says why each omitted
    event type is safe.
    """
    if resource == EVENTS:
        return events_listing(selection)[0]
    return tuple(dict(extra) for extra in stripe_resource(resource).filter_passes)


def permission_hint(resource: str) -> str | None:
    """The restricted-key permission that reads `/v1/<resource>`, as the Dashboard names it."""
    if resource == EVENTS:
        return f"{EVENTS_PERMISSION_LABEL} ({EVENTS_PERMISSION})"
    if resource == "account":
        return "Account: Read"
    if resource in RESOURCE_NAMES:
        return stripe_resource(resource).permission_hint
    return None


RETRYABLE_STATUS = {409, 424, 429, 500, 502, 503, 504}

#: Keys of the 429 counters: Stripe's limiter names plus "none" (a 429 that is not a rate limit).
REASON_KEYS = (*RATE_REASONS, "none")


def endpoint_of(path: str) -> str:
    """The named operation Stripe's per-endpoint limit counts: `GET /v1/charges`, and
    `GET /v1/charges/{id}` for a retrieve (a different endpoint)."""
    parts = path.split("?")[0].rstrip("/").split("/")
    if len(parts) > 3:  # /v1/<resource>/<id>
        parts = [*parts[:3], "{id}", *parts[4:]]
    return "GET " + "/".join(parts)


class StripeError(Exception):
    """A Stripe call failed for good. The message names the cause and the fix."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.error_type = error_type
        self.code = code
        self.request_id = request_id
        suffix = f" (Request-Id: {request_id})" if request_id else ""
        super().__init__(message + suffix)


class StripeAuthenticationError(StripeError):
    """401: the key is invalid or revoked."""


class StripePermissionError(StripeError):
    """403: a restricted key lacks a read permission."""


class StripeInvalidRequestError(StripeError):
    """400/404: the request itself is wrong (a bug, a version mismatch or a wrong base URL)."""


class StripeRetriesExhausted(StripeError):
    """A retryable failure persisted past the retry budget."""


class StripeTransportError(StripeError):
    """The request could not be sent or its answer not read (and retrying would not help)."""


@dataclass
class RequestStats:
    """Counters for one extraction; thread-safe increments."""

    requests: int = 0
    pages: int = 0
    retries: int = 0
    rate_limited: int = 0
    objects: int = 0
    throttled_seconds: float = 0.0
    request_seconds: float = 0.0  # time spent waiting for Stripe's answers (not for the budget)
    #: 429s by `Stripe-Rate-Limited-Reason`; "none" is a 429 without one (not a rate limit).
    by_reason: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASON_KEYS, 0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def add_429(self, reason: str | None) -> None:
        key = reason if reason in RATE_REASONS else "none"
        with self._lock:
            self.rate_limited += 1
            self.by_reason[key] += 1

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "pages": self.pages,
            "retries": self.retries,
            "rate_limited_429": self.rate_limited,
            "objects": self.objects,
            "throttled_seconds": round(self.throttled_seconds, 3),
            "request_seconds": round(self.request_seconds, 3),
            **{f"rate_limited_429[{k}]": v for k, v in self.by_reason.items()},
        }

    def mean_latency(self) -> float | None:
        with self._lock:
            return self.request_seconds / self.requests if self.requests else None


@dataclass(frozen=True)
class Page:
    objects: list[dict[str, Any]]
    has_more: bool
    request_id: str | None


class StripeClient:
    """List-endpoint client. Thread-safe: share one instance between extraction threads."""

    def __init__(
        self,
        settings: StripeSettings,
        *,
        limiter: RateBudget | None = None,
        shared_limiter: bool = True,
        max_retries: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        timeout: tuple[float, float] = (10.0, 80.0),
        pool_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        stats: RequestStats | None = None,
    ) -> None:
        self.settings = settings
        self._masker = SecretMasker([settings.api_key], hint=redact_key)
        if limiter is None:
            path = (
                default_limiter_path(settings.api_key, settings.api_base, settings.account)
                if shared_limiter
                else None
            )
            rates = settings.rates
            limiter = RateBudget(
                settings.max_rps,
                endpoint_rps=rates.endpoint_rps,
                endpoint_overrides=rates.endpoint_rps_overrides,
                max_in_flight=rates.in_flight_cap(settings.livemode),
                path=path,
                # PostgreSQL (STRIPE_AEP_LEDGER_URL): shared by every machine, not just this one
                shared_url=rates.budget_url if shared_limiter else None,
            )
        self.limiter = limiter
        #: Pages the caller still expects to fetch: ranks endpoints waiting for the account budget
        #: (heaviest first). The extractor sets it; 0 means "no claim".
        self.demand: Callable[[], float] = lambda: 0.0
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.timeout = timeout
        self.stats = stats or RequestStats()
        self._sleep = sleep
        self._random = random.Random()
        self._session = requests.Session()
        # With trust_env, requests looks for ~/.netrc and proxy variables on *every* request (a
        # measurable share of CPU at 100 requests/s); read the environment once instead.
        self._session.trust_env = False
        self._session.proxies.update(requests.utils.get_environ_proxies(settings.api_base))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            self._session.verify = ca_bundle
        size = pool_size or max(settings.concurrency, 10)
        adapter = HTTPAdapter(pool_connections=size, pool_maxsize=size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        headers = {
            "Authorization": f"Bearer {settings.api_key}",
            "Stripe-Version": settings.api_version,
            "User-Agent": "stripe-aep/0.1 (+https://github.com/stripe-aep)",
            "Accept": "application/json",
        }
        if settings.account:
            headers["Stripe-Account"] = settings.account
        self._session.headers.update(headers)

    def __repr__(self) -> str:
        return (
            f"StripeClient(base={self.settings.api_base!r}, key={self.settings.key_hint}, "
            f"version={self.settings.api_version!r}, max_rps={self.settings.max_rps})"
        )

    def close(self) -> None:
        self._session.close()

    # -- one request with retries -------------------------------------------------------------

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.backoff_cap, self.backoff_base * (2**attempt))
        delay *= 0.5 + self._random.random() / 2  # jitter: spread a herd of retrying threads
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        return delay

    def _redact(self, text: str) -> str:
        return self._masker.mask(text)

    def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[dict, str | None]:
        """GET a Stripe path; returns (parsed JSON body, Request-Id). Retries what is retryable."""
        url = f"{self.settings.api_base}{path}"
        endpoint = endpoint_of(path)
        last_problem = ""
        last_request_id = None
        for attempt in range(self.max_retries + 1):
            try:
                # The in-flight slot first: a send must leave at the instant the rate budget gave
                # it, or sends bunch up and one second of arrivals holds more than the budget.
                with self.limiter.in_flight():
                    waited = self.limiter.acquire(endpoint, self.demand())
                    self.stats.add(
                        throttled_seconds=waited, requests=1, retries=1 if attempt else 0
                    )
                    sent = time.monotonic()
                    response = self._session.get(url, params=params, timeout=self.timeout)
                    body = response.content  # bytes: response.text would guess a charset, slowly
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_problem = f"network error: {type(exc).__name__}"
                self._sleep(self._backoff(attempt, None))
                continue
            except requests.exceptions.ChunkedEncodingError as exc:
                last_problem = f"truncated response: {type(exc).__name__}"
                self._sleep(self._backoff(attempt, None))
                continue
            except Exception as exc:
                # InvalidHeader quotes the Authorization value, InvalidURL/proxy errors the URL,
                # decoding errors the body: re-raise masked, without the original chained to it.
                raise StripeTransportError(
                    f"GET {path} could not be sent to Stripe ({self.settings.api_base}): "
                    f"{describe_exception(exc, self._masker)}. Check STRIPE_API_KEY, STRIPE_ACCOUNT "
                    "and STRIPE_API_BASE for stray characters"
                ) from None
            self.stats.add(request_seconds=time.monotonic() - sent)
            request_id = response.headers.get("Request-Id")
            last_request_id = request_id
            status = response.status_code
            if status == 200:
                try:
                    return _loads(body), request_id
                except ValueError:
                    # A 200 with a body cut short: the connection dropped mid-transfer.
                    last_problem = "truncated JSON body"
                    self._sleep(self._backoff(attempt, None))
                    continue
            error = _error_body(body.decode("utf-8", "replace"))
            should_retry = response.headers.get("Stripe-Should-Retry")
            reason = response.headers.get("Stripe-Rate-Limited-Reason")
            if status == 429:
                self.stats.add_429(reason)
                # Back off the budget that fired (AIMD); the retry then waits for it.
                self.limiter.penalize(reason, endpoint)
            retryable = status in RETRYABLE_STATUS
            if should_retry == "false":
                retryable = False
            elif should_retry == "true":
                retryable = True
            if not retryable:
                raise self._error_for(status, error, request_id, path, should_retry)
            last_problem = f"HTTP {status}" + (f" ({reason})" if reason else "")
            self._sleep(self._backoff(attempt, response.headers.get("Retry-After")))
        raise StripeRetriesExhausted(
            f"GET {path} still failing after {self.max_retries} retries: {last_problem}. "
            "Stripe may be degraded or the rate budget too high; lower STRIPE_MAX_RPS or retry later",
            request_id=last_request_id,
        )

    def _error_for(
        self, status: int, error: dict, request_id: str | None, path: str, should_retry: str | None
    ) -> StripeError:
        message = self._redact(str(error.get("message") or "no message"))
        etype, code = error.get("type"), error.get("code")
        kwargs = {"status": status, "error_type": etype, "code": code, "request_id": request_id}
        said = f"Stripe said: {message}"
        if status == 401:
            return StripeAuthenticationError(
                f"Stripe rejected the API key {self.settings.key_hint} (401): the key is invalid, "
                f"revoked or expired. Set STRIPE_API_KEY to a valid secret (sk_…) or restricted (rk_…) "
                f"key. {said}",
                **kwargs,
            )
        if status == 403:
            resource = path.strip("/").split("/")[1] if path.count("/") >= 2 else path
            needed = permission_hint(resource) or f"read access to {path}"
            return StripePermissionError(
                f"The key {self.settings.key_hint} is not allowed to read {path} (403): grant the "
                f"restricted key the permission '{needed}' in the Stripe Dashboard (Developers → API "
                f"keys), or use a key that has it. {said}",
                **kwargs,
            )
        if status == 404 and "{id}" in endpoint_of(path):
            # A retrieve: the object is unknown to this account (never existed, or a deletion
            # Stripe does not keep); the base URL answered, so it is not a configuration problem.
            return StripeInvalidRequestError(
                f"Stripe has no object at GET {path} (404{' ' + code if code else ''}) for "
                f"STRIPE_ACCOUNT={self.settings.account or '(the key’s own account)'}. {said}",
                **kwargs,
            )
        if status == 404:
            return StripeInvalidRequestError(
                f"Stripe answered 404 for {path}: check STRIPE_API_BASE "
                f"({self.settings.api_base}) and STRIPE_ACCOUNT. {said}",
                **kwargs,
            )
        if status == 400:
            param = error.get("param")
            return StripeInvalidRequestError(
                f"Stripe rejected GET {path} (400 {etype or ''}{', param ' + param if param else ''}): "
                f"a bug in the request or an API version mismatch (STRIPE_API_VERSION="
                f"{self.settings.api_version}). {said}",
                **kwargs,
            )
        if should_retry == "false":
            return StripeError(
                f"Stripe answered {status} for GET {path} and asked not to retry "
                f"(Stripe-Should-Retry: false). {said}",
                **kwargs,
            )
        return StripeError(f"Stripe answered {status} for GET {path}. {said}", **kwargs)

    # -- listing ------------------------------------------------------------------------------

    def list_page(
        self, resource: str, params: dict[str, Any], starting_after: str | None = None
    ) -> Page:
        query = dict(params)
        query["limit"] = PAGE_LIMIT
        if starting_after:
            query["starting_after"] = starting_after
        body, request_id = self.get(f"/v1/{resource}", query)
        if body.get("object") != "list" or not isinstance(body.get("data"), list):
            raise StripeError(
                f"GET /v1/{resource} did not return a list object; is STRIPE_API_BASE "
                f"({self.settings.api_base}) a Stripe API?",
                request_id=request_id,
            )
        data = body["data"]
        self.stats.add(pages=1, objects=len(data))
        return Page(data, bool(body.get("has_more")) and bool(data), request_id)

    def iter_window(
        self, resource: str, gte: int, lt: int, selection: Iterable[str] = ()
    ) -> Iterator[dict[str, Any]]:
        """Every object with `gte <= created < lt`, all filter passes (`list_passes`; for events,
        those of the `selection`'s event types, `events_listing`), each id at most once.

        Paging keeps exactly the same filters and moves only `starting_after`, so objects that share a
        `created` second at a page boundary are neither skipped nor repeated.
        """
        seen: set[str] = set()
        kept = frozenset(events_listing(selection)[1]) if resource == EVENTS else None
        for extra in list_passes(resource, selection):
            params = {"created[gte]": gte, "created[lt]": lt, **extra}
            after = None
            while True:
                page = self.list_page(resource, params, after)
                for obj in page.objects:
                    oid = obj.get("id")
                    if oid in seen or (kept is not None and obj.get("type") not in kept):
                        continue
                    seen.add(oid)
                    yield obj
                if not page.has_more:
                    break
                after = page.objects[-1]["id"]

    def retrieve(self, resource: str, object_id: str) -> dict[str, Any]:
        """`GET /v1/<resource>/<id>`: one object as the pinned version renders it now.

        Its own endpoint for Stripe's per-endpoint limit (`GET /v1/customers/{id}`, not the list's),
        through the same account budget, in-flight cap and retries as the lists. A deleted customer
        comes back as `{"id", "object", "deleted": true}`; an unknown id is a 404 that raises
        `StripeInvalidRequestError` with Stripe's message and request id."""
        if not object_id or "/" in object_id or "?" in object_id:
            raise ValueError(f"not a Stripe object id: {object_id!r}")
        body, request_id = self.get(f"/v1/{resource}/{object_id}")
        if not isinstance(body, dict) or body.get("id") != object_id:
            raise StripeError(
                f"GET /v1/{resource}/{object_id} did not return that object; is STRIPE_API_BASE "
                f"({self.settings.api_base}) a Stripe API?",
                request_id=request_id,
            )
        self.stats.add(objects=1)
        return body

    def retrieve_account(self) -> dict[str, Any]:
        body, _ = self.get("/v1/account")
        return body


def _loads(body: bytes) -> Any:
    """orjson is several times faster than `json` on 200 KB pages; `json` handles what it cannot
    (integers beyond 64 bits), so nothing Stripe could send is refused."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _error_body(text: str) -> dict:
    try:
        body = json.loads(text)
    except ValueError:
        return {"message": text[:200]}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return {"message": text[:200]}
