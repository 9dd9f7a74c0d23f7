"""The limits Stripe publishes, as the Stripe emulator enforces them, and their CLI options.

Why: an emulator kinder than Stripe hides the costs a real account imposes (a client tuned
against a lenient emulator can have a large share of its requests answered 429 by live-mode
limits, a cost that only shows in production). This module holds what the emulator needs to be
exactly as strict as Stripe's published limits: the per-account and per-endpoint request rates,
the concurrency caps, the windows they are measured over, and the options of `stripe-aep emulate`
that raise them (accounts with raised limits) or add live-like latency and faults (benchmarks).
It imports nothing heavy, so `stripe-aep --help` stays instant. Citations and the reasoning behind each number: docs/emulators.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class SlidingWindowLimiter:
    """At most `rps` admitted requests in any one-second window of arrivals (0 = no limit).

    Rejected requests do not count, so a client that backs off gets through again. The window is
    the one the tests audit: for every admitted arrival t, the admitted arrivals in (t - 1, t]
    number at most `rps`, hence so do those of any one-second window [a, a + 1) of the log.
    """

    def __init__(self, rps: float) -> None:
        if rps < 0:
            raise ValueError(f"rate_limit_rps must be >= 0 (0 disables the limit), got {rps}")
        self.rps = rps
        self._arrivals: deque[float] = deque()

    def would_admit(self, t: float) -> bool:
        if self.rps <= 0:
            return True
        arrivals = self._arrivals
        while arrivals and arrivals[0] <= t - 1.0:
            arrivals.popleft()
        return len(arrivals) + 1 <= self.rps

    def record(self, t: float) -> None:
        if self.rps > 0:
            self._arrivals.append(t)

    def admit(self, t: float) -> bool:
        if not self.would_admit(t):
            return False
        self.record(t)
        return True


# ---- Stripe's published limits ---------------------------------------------------------------
# docs.stripe.com/rate-limits ("Rate limiter"): the global limit per account is 100 operations/s
# in live mode and 25/s in a sandbox (test mode); "API endpoints have a default limit of 25
# requests per second", and calls to an endpoint also count against the global limit. "Each named
# API operation" is its own endpoint (`GET /v1/charges` and `GET /v1/charges/{id}` are two).
# Live-mode and test-mode limits are separate. A 429 from a limiter carries
# `Stripe-Rate-Limited-Reason` (global-rate, endpoint-rate, global-concurrency,
# endpoint-concurrency, resource-specific); "a 429 without these headers wasn't the result of a
# rate limiter". The concurrency limiter caps requests in flight; Stripe publishes no number for
# the list endpoints (the only one we found, for payout creation, allows 30 in flight for 15/s,
# i.e. two seconds of its rate). The emulator allows one second of the rate in flight: 25 per
# endpoint and 25 (test) / 100 (live) per account by default, following raised rates. That is
# stricter than the Payouts analogue, refuses a client that keeps more requests open than it may
# send in a second, and still lets a client at the rate limit through while latencies stay under
# one second, as Stripe says problems with this limiter are "less common" than with the rate one.
ACCOUNT_RATE_LIMITS = {"live": 100.0, "test": 25.0}
ENDPOINT_RATE_LIMIT = 25.0
#: Requests in flight allowed per request/s of the rate limit (see above).
CONCURRENCY_SECONDS = 1.0
RATE_LIMIT_REASONS = ("global-rate", "endpoint-rate", "global-concurrency", "endpoint-concurrency")
_ENDPOINT_RE = re.compile(r"(GET|POST|PUT|PATCH|DELETE) /v1(/[a-z_]+)*(/\{id\})?")


@dataclass(frozen=True)
class StripeLimits:
    """The limits the emulator enforces; each 0 disables that limiter.

    `account_rps` None means Stripe's published figure for the mode the emulator serves (live
    100, test 25). `endpoint_rps_overrides` raises (or lowers) the limit of named endpoints, as
    Stripe does for accounts with raised limits: {"GET /v1/charges": 50}. The concurrency caps,
    when None, allow `CONCURRENCY_SECONDS` of the corresponding rate in flight.
    """

    account_rps: float | None = None
    endpoint_rps: float = ENDPOINT_RATE_LIMIT
    endpoint_rps_overrides: Mapping[str, float] = dataclasses.field(default_factory=dict)
    account_concurrency: int | None = None
    endpoint_concurrency: int | None = None

    @classmethod
    def off(cls) -> StripeLimits:
        """No limiter at all (tests that hammer the emulator on purpose)."""
        return cls(account_rps=0, endpoint_rps=0, account_concurrency=0, endpoint_concurrency=0)

    def __post_init__(self) -> None:
        numbers = {
            "account_rps": self.account_rps, "endpoint_rps": self.endpoint_rps,
            "account_concurrency": self.account_concurrency,
            "endpoint_concurrency": self.endpoint_concurrency,
            **{f"endpoint_rps_overrides[{k!r}]": v for k, v in self.endpoint_rps_overrides.items()},
        }  # fmt: skip
        for name, value in numbers.items():
            if value is not None and (isinstance(value, bool) or not value >= 0):
                raise ValueError(f"{name} must be >= 0 (0 disables that limit), got {value!r}")
        for endpoint in self.endpoint_rps_overrides:
            if not _ENDPOINT_RE.fullmatch(endpoint):
                raise ValueError(
                    f"endpoint_rps_overrides: {endpoint!r} is not an endpoint; expected "
                    "'METHOD /v1/resource' or 'METHOD /v1/resource/{id}', e.g. 'GET /v1/charges'"
                )

    def account_rate(self, mode: str) -> float:
        return ACCOUNT_RATE_LIMITS[mode] if self.account_rps is None else self.account_rps

    def account_in_flight(self, mode: str) -> int:
        if self.account_concurrency is None:
            return math.ceil(self.account_rate(mode) * CONCURRENCY_SECONDS)
        return self.account_concurrency

    def endpoint_rate(self, endpoint: str) -> float:
        return self.endpoint_rps_overrides.get(endpoint, self.endpoint_rps)

    def endpoint_in_flight(self, endpoint: str) -> int:
        if self.endpoint_concurrency is None:
            return math.ceil(self.endpoint_rate(endpoint) * CONCURRENCY_SECONDS)
        return self.endpoint_concurrency


def busiest_second(arrivals: Iterable[float]) -> int:
    """The most arrivals in any one-second window: what a per-second limit counts, and how the
    tests and benchmarks audit an arrival log against Stripe's limits. Arrivals one second apart
    (to within 1 ns, for fake clocks that add up floats) fall in different windows."""
    times, first, busiest = sorted(arrivals), 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - 1.0 + 1e-9:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


def endpoint_of(method: str, path: str) -> str:
    """The named operation a request belongs to, as Stripe's endpoint limits count it:
    `GET /v1/charges`, `GET /v1/charges/{id}` (every id shares one), `GET /v1/account`."""
    parts = path.rstrip("/").split("/")
    if len(parts) == 4:
        return f"{method} /{parts[1]}/{parts[2]}/{{id}}"
    return f"{method} {path}"


class ModeLimiter:
    """The four limiters of one mode (live or test) of the account; limits are per mode.

    `admit` returns None (admitted: counted against every limiter, in flight until `release`) or
    the `Stripe-Rate-Limited-Reason` of the first limiter that refuses, checked in the order
    global-rate, endpoint-rate, global-concurrency, endpoint-concurrency. A refused request counts
    against none of them.
    """

    def __init__(self, limits: StripeLimits, mode: str) -> None:
        self.limits = limits
        self.account = SlidingWindowLimiter(limits.account_rate(mode))
        self.account_cap = limits.account_in_flight(mode)
        self.endpoints: dict[str, SlidingWindowLimiter] = {}
        self.endpoint_caps: dict[str, int] = {}
        self.in_flight = 0
        self.in_flight_by_endpoint: Counter[str] = Counter()

    def admit(self, endpoint: str, t: float) -> str | None:
        window = self.endpoints.get(endpoint)
        if window is None:
            window = self.endpoints[endpoint] = SlidingWindowLimiter(
                self.limits.endpoint_rate(endpoint)
            )
            self.endpoint_caps[endpoint] = self.limits.endpoint_in_flight(endpoint)
        if not self.account.would_admit(t):
            return "global-rate"
        if not window.would_admit(t):
            return "endpoint-rate"
        if self.account_cap and self.in_flight >= self.account_cap:
            return "global-concurrency"
        endpoint_cap = self.endpoint_caps[endpoint]
        if endpoint_cap and self.in_flight_by_endpoint[endpoint] >= endpoint_cap:
            return "endpoint-concurrency"
        self.account.record(t)
        window.record(t)
        self.in_flight += 1
        self.in_flight_by_endpoint[endpoint] += 1
        return None

    def release(self, endpoint: str) -> None:
        self.in_flight -= 1
        self.in_flight_by_endpoint[endpoint] -= 1


def parse_latency(value: float | tuple[float, float] | str) -> tuple[float, float]:
    """Latency in ms as (low, high): a number, a (low, high) pair or a "250-450" string."""
    if isinstance(value, str):
        low_text, sep, high_text = value.partition("-")
        try:
            low = float(low_text)
            high = float(high_text) if sep else low
        except ValueError:
            raise ValueError(
                f"latency must be milliseconds or a range like 250-450, got {value!r}"
            ) from None
    elif isinstance(value, tuple | list):
        low, high = (float(v) for v in value)
    else:
        low = high = float(value)
    if low < 0 or high < low:
        raise ValueError(f"latency_ms must be >= 0 and low <= high, got {value!r}")
    return low, high


#: "Live limits" profile for benchmarks: a live-mode account (100 requests/s, 25 per endpoint)
#: answering list requests in 250–450 ms with 1 % of requests failing with a 500: the conditions
#: a production account's list requests meet (docs/benchmarks.md).
LIVE_PROFILE: dict[str, Any] = {"livemode": True, "latency_ms": "250-450", "error_rate": 0.01}


def add_limit_arguments(parser: argparse.ArgumentParser, rate_flag: str = "--rate-limit") -> None:
    """The limit and realism options shared by `stripe-aep emulate` and this module's `main`."""
    group = parser.add_argument_group("Stripe limits and realism (docs/emulators.md)")
    group.add_argument(
        rate_flag, dest="rate_limit", type=float, default=None,
        help="account requests/s (default: Stripe's, 25 test / 100 live); 0 turns every limit off",
    )  # fmt: skip
    group.add_argument(
        "--endpoint-rate-limit", type=float, default=None,
        help=f"requests/s per endpoint (default {ENDPOINT_RATE_LIMIT:g}; 0 = off)",
    )  # fmt: skip
    group.add_argument(
        "--endpoint-limit", action="append", default=[], metavar="ENDPOINT=RPS",
        help="a raised limit for one endpoint, e.g. charges=50 or 'GET /v1/charges/{id}=40' "
        "(repeatable)",
    )  # fmt: skip
    group.add_argument(
        "--concurrency-limit", type=int, default=None,
        help="account requests in flight (default: one second of its rate; 0 = off)",
    )  # fmt: skip
    group.add_argument(
        "--endpoint-concurrency-limit", type=int, default=None,
        help="requests in flight per endpoint (default: one second of its rate; 0 = off)",
    )  # fmt: skip
    group.add_argument(
        "--latency-ms", default=None, help="added to every request: ms, or a range like 250-450"
    )
    group.add_argument(
        "--error-rate", type=float, default=None, help="share of requests answered 500 (0..1)"
    )
    group.add_argument(
        "--livemode", action="store_true",
        help="serve the account in live mode: live keys (sk_live_/rk_live_), live limits",
    )  # fmt: skip
    group.add_argument(
        "--profile", choices=("sandbox", "live"), default="sandbox",
        help="live: --livemode --latency-ms 250-450 --error-rate 0.01 (flags given override it)",
    )  # fmt: skip


def _parse_endpoint_limits(values: list[str]) -> dict[str, float]:
    overrides: dict[str, float] = {}
    for value in values:
        endpoint, sep, rps = value.rpartition("=")
        if not sep or not endpoint:
            raise ValueError(f"--endpoint-limit expects ENDPOINT=RPS, got {value!r}")
        endpoint = endpoint.strip()
        if " " not in endpoint:  # "charges" is short for "GET /v1/charges"
            endpoint = f"GET /v1/{endpoint.strip('/')}"
        try:
            overrides[endpoint] = float(rps)
        except ValueError:
            raise ValueError(f"--endpoint-limit {value!r}: {rps!r} is not a number") from None
    return overrides


def limit_options(args: argparse.Namespace, seed: int = 0) -> dict[str, Any]:
    """Emulator settings from `add_limit_arguments` options (ValueError naming the bad one)."""
    profile = LIVE_PROFILE if args.profile == "live" else {}
    tuned = (args.endpoint_rate_limit, args.concurrency_limit, args.endpoint_concurrency_limit)
    if args.rate_limit == 0:
        if any(value is not None for value in tuned) or args.endpoint_limit:
            raise ValueError("--rate-limit 0 turns every limit off; drop the other limit options")
        limits = StripeLimits.off()
    else:
        limits = StripeLimits(
            account_rps=args.rate_limit,
            endpoint_rps=(
                ENDPOINT_RATE_LIMIT if args.endpoint_rate_limit is None
                else args.endpoint_rate_limit
            ),
            endpoint_rps_overrides=_parse_endpoint_limits(args.endpoint_limit),
            account_concurrency=args.concurrency_limit,
            endpoint_concurrency=args.endpoint_concurrency_limit,
        )  # fmt: skip
    error_rate = profile.get("error_rate", 0.0) if args.error_rate is None else args.error_rate
    if not 0 <= error_rate <= 1:
        raise ValueError(f"--error-rate must be between 0 and 1, got {error_rate}")
    latency = profile.get("latency_ms", 0.0) if args.latency_ms is None else args.latency_ms
    return {
        "limits": limits,
        "latency_ms": parse_latency(latency),
        "latency_seed": seed,
        "livemode": bool(args.livemode or profile.get("livemode", False)),
        "error_rate": error_rate,
    }
