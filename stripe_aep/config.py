"""Configuration read from the environment, validated once, with errors that name the variable.

Why: a pipeline that starts with a malformed setting fails hours later in a confusing place. Every setting
is parsed here, at start, and a bad one raises `ConfigError` whose message names the variable and says
how to fix it. Secrets are never part of an error message, a repr or a log line.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The six Stripe resources the pipeline moves (the ones AEP's own Stripe source supports).
RESOURCES: tuple[str, ...] = (
    "charges",
    "subscriptions",
    "refunds",
    "balance_transactions",
    "customers",
    "prices",
)

#: The `object` name Stripe gives one item of each list resource (`"object": "charge"`).
OBJECT_NAMES: dict[str, str] = {
    "charges": "charge",
    "subscriptions": "subscription",
    "refunds": "refund",
    "balance_transactions": "balance_transaction",
    "customers": "customer",
    "prices": "price",
}

DEFAULT_STRIPE_API_BASE = "https://api.stripe.com"
#: Pinned so object shapes never change under us when the account's default version moves.
DEFAULT_STRIPE_API_VERSION = "2026-06-24.dahlia"
#: Fixed (not "N days ago") so the partition set of a deployment never shifts from one day to the next.
DEFAULT_STRIPE_START_DATE = "2025-01-01"
#: Below Stripe's limits (25 requests/s for test keys, 100 for live keys) to leave room for other clients.
DEFAULT_MAX_RPS_TEST = 20.0
DEFAULT_MAX_RPS_LIVE = 80.0
#: Objects can take a moment to become visible in list results (tap-stripe observed it), so the
#: newest part of "now" is left for the next run instead of being marked as covered.
DEFAULT_VISIBILITY_LAG_SECONDS = 120
DEFAULT_CONCURRENCY = 24
DEFAULT_DATA_DIR = "data"

_KEY_RE = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]+$")
_ACCOUNT_RE = re.compile(r"^acct_[A-Za-z0-9]+$")


class ConfigError(ValueError):
    """A setting is missing or malformed. The message names the variable and the fix."""

    def __init__(self, variable: str, problem: str, fix: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}. {fix}")


def redact_key(key: str) -> str:
    """`sk_test_…1234`: enough to tell keys apart, never enough to use one."""
    if not key:
        return "<empty>"
    prefix = "_".join(key.split("_")[:2]) + "_" if key.count("_") >= 2 else ""
    return f"{prefix}…{key[-4:]}" if len(key) > 12 else f"{prefix}…"


def parse_start_date(value: str | None) -> dt.date:
    raw = (value or DEFAULT_STRIPE_START_DATE).strip()
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(
            "STRIPE_START_DATE",
            f"{raw!r} is not a date in YYYY-MM-DD form",
            "Set it to the first UTC day to extract, e.g. STRIPE_START_DATE=2024-01-01",
        ) from None


def start_date_from_env(environ: Mapping[str, str] | None = None) -> dt.date:
    env = os.environ if environ is None else environ
    return parse_start_date(env.get("STRIPE_START_DATE"))


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            name, f"{raw!r} is not a number", f"Set {name} to a positive number"
        ) from None
    if value <= 0:
        raise ConfigError(name, f"{raw!r} is not positive", f"Set {name} to a positive number")
    return value


def _non_negative_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            name, f"{raw!r} is not an integer", f"Set {name} to a whole number"
        ) from None
    if value < 0:
        raise ConfigError(name, f"{raw!r} is negative", f"Set {name} to 0 or more")
    return value


@dataclass(frozen=True)
class StripeSettings:
    """Everything the Stripe client and extractor need. `api_key` is kept out of the repr."""

    api_key: str = field(repr=False)
    api_base: str = DEFAULT_STRIPE_API_BASE
    api_version: str = DEFAULT_STRIPE_API_VERSION
    account: str | None = None
    max_rps: float = DEFAULT_MAX_RPS_TEST
    visibility_lag_seconds: int = DEFAULT_VISIBILITY_LAG_SECONDS
    concurrency: int = DEFAULT_CONCURRENCY
    rates: StripeRateSettings = field(default_factory=lambda: StripeRateSettings())

    @property
    def key_hint(self) -> str:
        return redact_key(self.api_key)

    @property
    def livemode(self) -> bool:
        return "_live_" in self.api_key

    @classmethod
    def build(
        cls,
        *,
        api_key: str | None,
        api_base: str | None = None,
        api_version: str | None = None,
        account: str | None = None,
        max_rps: str | float | None = None,
        visibility_lag_seconds: str | int | None = None,
        concurrency: str | int | None = None,
        rates: StripeRateSettings | None = None,
    ) -> StripeSettings:
        """Validate raw values (strings from the environment or resource config)."""
        if not api_key:
            raise ConfigError(
                "STRIPE_API_KEY",
                "not set",
                "Set it to a secret key (sk_…) or a restricted key (rk_…) with read access; for a "
                "local run without credentials use `make demo`, which points the pipeline at the emulator",
            )
        if not _KEY_RE.match(api_key):
            raise ConfigError(
                "STRIPE_API_KEY",
                f"{redact_key(api_key)} does not look like a Stripe secret or restricted key",
                "Use a key starting with sk_test_, sk_live_, rk_test_ or rk_live_ (publishable pk_ keys "
                "cannot read these resources)",
            )
        base = (api_base or DEFAULT_STRIPE_API_BASE).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base):
            raise ConfigError(
                "STRIPE_API_BASE",
                f"{base!r} is not an http(s) URL",
                "Use e.g. https://api.stripe.com",
            )
        if account and not _ACCOUNT_RE.match(account):
            raise ConfigError(
                "STRIPE_ACCOUNT",
                f"{account!r} is not a Stripe account id",
                "Use a connected account id like acct_1AbC…, or leave it unset",
            )
        env = {
            "STRIPE_MAX_RPS": "" if max_rps is None else str(max_rps),
            "STRIPE_VISIBILITY_LAG_SECONDS": ""
            if visibility_lag_seconds is None
            else str(visibility_lag_seconds),
            "STRIPE_CONCURRENCY": "" if concurrency is None else str(concurrency),
        }
        live = "_live_" in api_key
        rates = rates or StripeRateSettings()
        rps = _positive_float(env, "STRIPE_MAX_RPS", rates.default_account_rps(live))
        lag = _non_negative_int(
            env, "STRIPE_VISIBILITY_LAG_SECONDS", DEFAULT_VISIBILITY_LAG_SECONDS
        )
        conc = _non_negative_int(env, "STRIPE_CONCURRENCY", DEFAULT_CONCURRENCY)
        if conc < 1:
            raise ConfigError("STRIPE_CONCURRENCY", "must be at least 1", "Set it to 1 or more")
        return cls(
            api_key=api_key,
            api_base=base,
            api_version=(api_version or DEFAULT_STRIPE_API_VERSION).strip(),
            account=account or None,
            max_rps=rps,
            visibility_lag_seconds=lag,
            concurrency=conc,
            rates=rates,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StripeSettings:
        env = os.environ if environ is None else environ
        return cls.build(
            api_key=env.get("STRIPE_API_KEY"),
            api_base=env.get("STRIPE_API_BASE"),
            api_version=env.get("STRIPE_API_VERSION"),
            account=env.get("STRIPE_ACCOUNT"),
            max_rps=env.get("STRIPE_MAX_RPS"),
            visibility_lag_seconds=env.get("STRIPE_VISIBILITY_LAG_SECONDS"),
            concurrency=env.get("STRIPE_CONCURRENCY"),
            rates=StripeRateSettings.from_env(env),
        )


def data_dir_from_env(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("STRIPE_AEP_DATA_DIR") or DEFAULT_DATA_DIR


# ---- Rate model (issue 8): Stripe's published limits, enforced by the client -----------------------
# Kept in its own block: docs.stripe.com/rate-limits publishes 100 requests/s per account in live mode
# and 25 in a sandbox, 25 requests/s per endpoint unless raised for the account, a concurrency limiter,
# and a monthly read allocation (500 reads per transaction over 30 days, at least 10,000).

#: Stripe's published account limits (requests/s) by mode.
STRIPE_ACCOUNT_LIMITS = {"live": 100.0, "test": 25.0}
#: Share of the account limit the pipeline uses by default (the rest is left to other integrations;
#: the client also backs off when Stripe says the account is busy).
DEFAULT_RATE_SAFETY_FACTOR = 0.95
#: Stripe's default per-endpoint limit.
DEFAULT_ENDPOINT_RPS = 25.0
#: Requests in flight (or about to leave) machine-wide. Little's law: 95 requests/s × 0.45 s (a slow
#: list page) ≈ 43 in flight, plus the ones waiting for their send slot; below Stripe's concurrency
#: limiter (the emulator allows one second of the rate: 100 live, 25 in a sandbox).
DEFAULT_MAX_IN_FLIGHT = {"live": 80, "test": 20}

_ENDPOINT_OVERRIDE_RE = re.compile(r"^(?:GET )?(/v1/[a-z_]+(?:/[a-z_]+)*)$")


def _endpoint_overrides(raw: str | None) -> dict[str, float]:
    """`STRIPE_ENDPOINT_RPS_OVERRIDES="/v1/charges=50,GET /v1/refunds=40"` → {"GET /v1/charges": 50, ...}."""
    name = "STRIPE_ENDPOINT_RPS_OVERRIDES"
    fix = (
        f"Set {name} to comma-separated ENDPOINT=RATE pairs, e.g. "
        f'{name}="/v1/charges=50,/v1/refunds=40" (the raised limits Stripe granted the account)'
    )
    out: dict[str, float] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        endpoint, sep, value = item.partition("=")
        match = _ENDPOINT_OVERRIDE_RE.match(endpoint.strip())
        if not sep or not match:
            raise ConfigError(name, f"{item.strip()!r} is not ENDPOINT=RATE", fix)
        rate = _positive_float({name: value}, name, 0.0)
        if rate <= 0:
            raise ConfigError(name, f"{item.strip()!r} has no rate", fix)
        out[f"GET {match.group(1)}"] = rate
    return out


@dataclass(frozen=True)
class StripeRateSettings:
    """How much of Stripe's limits the pipeline may use (see stripe_aep/stripe/ratelimit.py)."""

    safety_factor: float = DEFAULT_RATE_SAFETY_FACTOR
    endpoint_rps: float = DEFAULT_ENDPOINT_RPS
    endpoint_rps_overrides: Mapping[str, float] = field(default_factory=dict)
    max_in_flight: int | None = None  # None: the mode's default
    read_allocation: int | None = None  # reads per month Stripe allocates the account, if known

    def default_account_rps(self, live: bool) -> float:
        return STRIPE_ACCOUNT_LIMITS["live" if live else "test"] * self.safety_factor

    def in_flight_cap(self, live: bool) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        return DEFAULT_MAX_IN_FLIGHT["live" if live else "test"]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StripeRateSettings:
        env = os.environ if environ is None else environ
        safety = _positive_float(env, "STRIPE_RATE_SAFETY_FACTOR", DEFAULT_RATE_SAFETY_FACTOR)
        if safety > 1:
            raise ConfigError(
                "STRIPE_RATE_SAFETY_FACTOR",
                f"{safety} is above 1 (more than Stripe allows)",
                "Set it to a share of Stripe's limit between 0 and 1, e.g. 0.95",
            )
        endpoint_rps = _positive_float(env, "STRIPE_ENDPOINT_RPS", DEFAULT_ENDPOINT_RPS)
        overrides = _endpoint_overrides(env.get("STRIPE_ENDPOINT_RPS_OVERRIDES"))
        in_flight = None
        if (env.get("STRIPE_MAX_IN_FLIGHT") or "").strip():
            in_flight = _non_negative_int(env, "STRIPE_MAX_IN_FLIGHT", 0)
            if in_flight < 1:
                raise ConfigError(
                    "STRIPE_MAX_IN_FLIGHT", "must be at least 1", "Set it to 1 or more"
                )
        allocation = None
        if (env.get("STRIPE_READ_ALLOCATION") or "").strip():
            allocation = _non_negative_int(env, "STRIPE_READ_ALLOCATION", 0)
            if allocation < 1:
                raise ConfigError(
                    "STRIPE_READ_ALLOCATION",
                    "must be at least 1",
                    "Set it to the monthly read allocation Stripe gives the account (at least "
                    "10000), or leave it unset",
                )
        return cls(
            safety_factor=safety,
            endpoint_rps=endpoint_rps,
            endpoint_rps_overrides=overrides,
            max_in_flight=in_flight,
            read_allocation=allocation,
        )
