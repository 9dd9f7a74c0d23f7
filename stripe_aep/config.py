"""Configuration read from the environment, validated once, with errors that name the variable.

Why: a pipeline that starts with a malformed setting fails hours later in a confusing place. Every setting
is parsed here, at start, and a bad one raises `ConfigError` whose message names the variable and says
how to fix it. Secrets are never part of an error message, a repr or a log line.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stripe_aep.catalog import DEFAULT_RESOURCES, RESOURCE_NAMES, stripe_resource

DEFAULT_STRIPE_API_BASE = "https://api.stripe.com"
#: Pinned so object shapes never change under us when the account's default version moves: the
#: newest version whose object shapes are vendored (stripe_aep/specs/stripe) and checked against
#: the XDM mapping (stripe_aep_tests/xdm/test_version_shapes.py). Refunds carry `customer` from it on.
DEFAULT_STRIPE_API_VERSION = "2026-07-29.dahlia"
#: Fixed (not "N days ago") so the partition set of a deployment never shifts from one day to the next.
DEFAULT_STRIPE_START_DATE = "2025-01-01"
#: Below Stripe's limits (25 requests/s for test keys, 100 for live keys) to leave room for other clients.
DEFAULT_MAX_RPS_TEST = 20.0
#: Objects can take a moment to become visible in list results (tap-stripe observed it), so the
#: newest part of "now" is left for the next run instead of being marked as covered.
DEFAULT_VISIBILITY_LAG_SECONDS = 120
DEFAULT_CONCURRENCY = 24
DEFAULT_DATA_DIR = "data"

# Bounds of the numeric settings (README "Configuration"). A value outside them cannot work: NaN or
# infinity would disable the rate budget, a budget far above Stripe's limits (25 requests/s in test
# mode, 100 in live mode; raised limits are rare and still well below 1,000) only buys 429s, thousands
# of threads exhaust the process, and a visibility lag over a day would leave whole days uncovered.
MAX_RPS_BOUNDS = (0.1, 1000.0)
CONCURRENCY_BOUNDS = (1, 128)
VISIBILITY_LAG_BOUNDS = (0, 86_400)
#: Stripe opened in 2011; an earlier start date only adds empty partitions by the thousand.
EARLIEST_START_DATE = dt.date(2010, 1, 1)
#: Object stores `Lake` reaches through `pyarrow.fs` (S3 and Google Cloud Storage).
OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs")

_KEY_RE = re.compile(r"(sk|rk)_(test|live)_[A-Za-z0-9_]+")
_ACCOUNT_RE = re.compile(r"acct_[A-Za-z0-9]+")
_API_VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}(\.[a-z_]+)?")
# S3 and GCS bucket names: lowercase letters, digits, dots, hyphens (GCS also underscores), 3-222 long.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


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
    if not re.fullmatch(r"[a-z]{2}_[a-z]+_", prefix):
        prefix = ""  # not a key's type prefix: it could be part of the secret itself
    tail = key[-4:]
    if len(key) <= 12 or not tail.isascii() or not tail.isalnum():
        return f"{prefix}…"
    return f"{prefix}…{tail}"


def _char_name(char: str) -> str:
    names = {"\n": "newline", "\r": "carriage return", "\t": "tab", " ": "space"}
    if char in names:
        return names[char]
    if char.isspace():
        return f"whitespace character U+{ord(char):04X}"
    if not char.isascii() and unicodedata.category(char)[0] != "C":
        return f"non-ASCII character U+{ord(char):04X}"
    if unicodedata.category(char) == "Cf":
        return f"invisible format character U+{ord(char):04X}"
    return f"control character U+{ord(char):04X}"


def _is_bad_char(char: str, *, ascii_only: bool, allow_inner_space: bool) -> bool:
    if char == " " and allow_inner_space:
        return False
    if char.isspace() or unicodedata.category(char)[0] == "C":  # Cc, Cf (zero-width), Co, Cn, Cs
        return True
    return ascii_only and not char.isascii()


def bad_character(
    value: str, *, ascii_only: bool = True, allow_inner_space: bool = False
) -> str | None:
    """Where `value` holds whitespace, a control character (or, with `ascii_only`, non-ASCII), said
    without showing the value: "a trailing newline (character 33 of 33)". None when clean."""
    n = len(value)
    for index, char in enumerate(value):
        edge = index in (0, n - 1) and char.isspace()
        if (
            not _is_bad_char(char, ascii_only=ascii_only, allow_inner_space=allow_inner_space)
            and not edge
        ):
            continue
        where = "leading " if index == 0 else "trailing " if index == n - 1 else ""
        return f"a {where}{_char_name(char)} (character {index + 1} of {n})"
    return None


def check_text(
    variable: str,
    value: str,
    *,
    secret: bool,
    fix: str | None = None,
    ascii_only: bool = True,
    allow_inner_space: bool = False,
) -> str:
    """Refuse whitespace and control characters in a setting, naming the variable and the position.

    A secret is never shown (at most its `redact_key` hint); a trailing newline is the usual culprit
    (a key pasted from a file or `echo` into a Kubernetes secret). Returns `value` unchanged.
    """
    problem = bad_character(value, ascii_only=ascii_only, allow_inner_space=allow_inner_space)
    if problem is None:
        return value
    shown = "the value" if secret else repr(value)
    raise ConfigError(
        variable,
        f"{shown} contains {problem}",
        fix
        or f"Remove it: {variable} must be set without whitespace or control characters (check "
        "the file or secret it comes from for a final newline, e.g. use `printf %s` instead of "
        "`echo`)",
    )


def check_http_url(variable: str, value: str, example: str) -> str:
    """An http(s) base URL with a host, a valid port, and no credentials, query or fragment."""
    check_text(variable, value, secret=False)
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError when out of range or not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(variable, f"{value!r} is not an http(s) URL", f"Use e.g. {example}")
    if parts.username is not None or parts.password is not None:
        shown = f"{parts.scheme}://…@{parts.hostname}"  # the user info may be a secret: not shown
        raise ConfigError(
            variable,
            f"{shown} carries credentials in the URL",
            f"Remove the user:password part (credentials go in their own variables), e.g. {example}",
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            variable, f"{value!r} has a query or fragment", f"Use the bare base URL, e.g. {example}"
        )
    return value.rstrip("/")


def parse_start_date(value: str | None, today: dt.date | None = None) -> dt.date:
    """The first UTC day to extract: a real date, not before 2010 and not after today (UTC)."""
    raw = (value or DEFAULT_STRIPE_START_DATE).strip()
    fix = "Set it to the first UTC day to extract, e.g. STRIPE_START_DATE=2024-01-01"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise ConfigError("STRIPE_START_DATE", f"{raw!r} is not a date in YYYY-MM-DD form", fix)
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(
            "STRIPE_START_DATE", f"{raw!r} is not a date in YYYY-MM-DD form", fix
        ) from None
    today = today or dt.datetime.now(dt.UTC).date()
    if day > today:
        raise ConfigError(
            "STRIPE_START_DATE",
            f"{raw} is in the future (today is {today.isoformat()} UTC)",
            "Set it to today or an earlier day; Stripe has no objects created in the future",
        )
    if day < EARLIEST_START_DATE:
        raise ConfigError(
            "STRIPE_START_DATE",
            f"{raw} is before {EARLIEST_START_DATE.isoformat()}, when no Stripe account existed",
            f"Set it to {EARLIEST_START_DATE.isoformat()} or later, ideally the account's first day",
        )
    return day


def start_date_from_env(environ: Mapping[str, str] | None = None) -> dt.date:
    env = os.environ if environ is None else environ
    return parse_start_date(env.get("STRIPE_START_DATE"))


def _bounded_float(
    env: Mapping[str, str],
    name: str,
    default: float | None,
    bounds: tuple[float, float],
    unit: str,
) -> float | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    low, high = bounds
    unset = "" if default is None else f" ({default:g})"
    fix = f"Set {name} to a number of {unit} from {low:g} to {high:g}, or leave it unset{unset}"
    shown = repr(raw[:40])
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"{shown} is not a number", fix) from None
    if not math.isfinite(value):
        raise ConfigError(name, f"{shown} is not a finite number", fix)
    if not low <= value <= high:
        raise ConfigError(name, f"{shown} is outside {low:g}..{high:g}", fix)
    return value


def _bounded_int(
    env: Mapping[str, str], name: str, default: int | None, bounds: tuple[int, int], unit: str
) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    low, high = bounds
    unset = "" if default is None else f" ({default})"
    fix = f"Set {name} to a whole number of {unit} from {low} to {high}, or leave it unset{unset}"
    shown = repr(raw[:40])
    if not re.fullmatch(r"\s*[+-]?\d{1,12}\s*", raw):
        raise ConfigError(name, f"{shown} is not a whole number (or is absurdly large)", fix)
    value = int(raw)
    if not low <= value <= high:
        raise ConfigError(name, f"{shown} is outside {low}..{high}", fix)
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
        check_text(
            "STRIPE_API_KEY",
            api_key,
            secret=True,
            fix=f"Remove it: the key ({redact_key(api_key)}) must be set exactly, without whitespace "
            "or control characters (a final newline usually comes from `echo` or a file; use "
            "`printf %s` or strip the file)",
        )
        if not _KEY_RE.fullmatch(api_key):
            raise ConfigError(
                "STRIPE_API_KEY",
                f"{redact_key(api_key)} does not look like a Stripe secret or restricted key",
                "Use a key starting with sk_test_, sk_live_, rk_test_ or rk_live_ (publishable pk_ keys "
                "cannot read these resources)",
            )
        base = check_http_url(
            "STRIPE_API_BASE", api_base or DEFAULT_STRIPE_API_BASE, DEFAULT_STRIPE_API_BASE
        )
        if account:
            check_text("STRIPE_ACCOUNT", account, secret=True)
            if not _ACCOUNT_RE.fullmatch(account):
                raise ConfigError(
                    "STRIPE_ACCOUNT",
                    f"{redact_key(account)} is not a Stripe account id",
                    "Use a connected account id like acct_1AbC…, or leave it unset",
                )
        version = api_version or DEFAULT_STRIPE_API_VERSION
        check_text("STRIPE_API_VERSION", version, secret=False)
        if not _API_VERSION_RE.fullmatch(version):
            raise ConfigError(
                "STRIPE_API_VERSION",
                f"{version!r} is not a Stripe API version",
                f"Use a dated version like {DEFAULT_STRIPE_API_VERSION}, or leave it unset",
            )
        env = _as_env(
            STRIPE_MAX_RPS=max_rps,
            STRIPE_VISIBILITY_LAG_SECONDS=visibility_lag_seconds,
            STRIPE_CONCURRENCY=concurrency,
        )
        live = "_live_" in api_key
        rates = rates or StripeRateSettings()
        rps = _float_setting(env, "STRIPE_MAX_RPS", rates.default_account_rps(live))
        lag = _bounded_int(
            env,
            "STRIPE_VISIBILITY_LAG_SECONDS",
            DEFAULT_VISIBILITY_LAG_SECONDS,
            VISIBILITY_LAG_BOUNDS,
            "seconds",
        )
        conc = _bounded_int(
            env, "STRIPE_CONCURRENCY", DEFAULT_CONCURRENCY, CONCURRENCY_BOUNDS, "parallel requests"
        )
        return cls(
            api_key=api_key,
            api_base=base,
            api_version=version,
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
    """`STRIPE_AEP_DATA_DIR` (default `data`), its shape checked; the folder itself is checked by
    `check_data_dir` at run start (not here: loading the code location must not create folders)."""
    env = os.environ if environ is None else environ
    raw = env.get("STRIPE_AEP_DATA_DIR")
    root = raw if raw and raw.strip() else DEFAULT_DATA_DIR
    check_text("STRIPE_AEP_DATA_DIR", root, secret=False, ascii_only=False, allow_inner_space=True)
    if "://" in root:
        _check_object_store_uri(root, "STRIPE_AEP_DATA_DIR")
    return root


def _check_object_store_uri(root: str, variable: str) -> None:
    fix = f"Use s3://bucket/prefix or gs://bucket/prefix, or a local folder path for {variable}"
    scheme, _, rest = root.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme not in OBJECT_STORE_SCHEMES:
        raise ConfigError(variable, f"{root!r} is not a supported object-store URI", fix)
    if "@" in bucket or ":" in bucket:
        raise ConfigError(
            variable,
            f"{scheme}://… carries credentials or a port in the URI",
            "Give object-store credentials through the provider's own variables (AWS_*, "
            f"GOOGLE_APPLICATION_CREDENTIALS), not in the URI. {fix}",
        )
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(variable, f"{bucket!r} is not a valid bucket name in {root!r}", fix)
    if "//" in rest or "?" in rest or "#" in rest:
        raise ConfigError(
            variable, f"{root!r} has an empty path segment, a query or a fragment", fix
        )


def check_data_dir(root: str, variable: str = "STRIPE_AEP_DATA_DIR") -> str:
    """The data folder can be used: an existing or creatable, writable local folder (created here),
    or a well-formed object-store URI (`s3://bucket/prefix`, `gs://…`; only its shape: reaching the
    bucket needs credentials that the first write proves). Run at run start, before any API call,
    so a bad folder fails the run naming the variable instead of after an hour of extraction.
    Returns the absolute local path (or the URI)."""
    if not root or not root.strip():
        raise ConfigError(variable, "is empty", f"Set {variable} to a folder path, or unset it")
    check_text(variable, root, secret=False, ascii_only=False, allow_inner_space=True)
    if "://" in root:
        if root.startswith("file://"):
            root = root[len("file://") :] or "/"
        else:
            _check_object_store_uri(root, variable)
            return root
    path = os.path.abspath(root)
    fix_folder = (
        f"Set {variable} to a folder this process can create and write, or fix its permissions"
    )
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(
            variable,
            f"{path} exists and is not a folder",
            f"Point {variable} at a folder (e.g. {os.path.join(os.path.dirname(path), 'data')}), "
            "or move that file away",
        )
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            variable, f"cannot create the folder {path}: {exc.strerror or exc}", fix_folder
        ) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".stripe-aep-write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            variable, f"the folder {path} is not writable: {exc.strerror or exc}", fix_folder
        ) from None
    return path


# ---- Rate model: Stripe's published limits, enforced by the client ----------------------------------
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
RATE_SAFETY_FACTOR_BOUNDS = (0.05, 1.0)
MAX_IN_FLIGHT_BOUNDS = (1, 1000)
#: Stripe allocates at least 10,000 reads a month; 10^12 is far beyond any account.
READ_ALLOCATION_BOUNDS = (1, 10**12)

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
        rate = _bounded_float({name: value}, name, 0.0, MAX_RPS_BOUNDS, "requests per second")
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
    #: PostgreSQL URL (STRIPE_AEP_LEDGER_URL) through which every process on every machine shares
    #: the budgets; None: the flock'ed files shared by the processes of one machine
    budget_url: str | None = field(default=None, repr=False)

    def default_account_rps(self, live: bool) -> float:
        return STRIPE_ACCOUNT_LIMITS["live" if live else "test"] * self.safety_factor

    def in_flight_cap(self, live: bool) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        return DEFAULT_MAX_IN_FLIGHT["live" if live else "test"]

    @classmethod
    def build(
        cls,
        *,
        safety_factor: str | float | None = None,
        endpoint_rps: str | float | None = None,
        endpoint_rps_overrides: str | None = None,
        max_in_flight: str | int | None = None,
        read_allocation: str | int | None = None,
        ledger_url: str | None = None,
    ) -> StripeRateSettings:
        """Validate raw values (strings from the environment, typed values from resource config);
        None or blank means unset. Each error names the variable."""
        env = _as_env(
            STRIPE_RATE_SAFETY_FACTOR=safety_factor,
            STRIPE_ENDPOINT_RPS=endpoint_rps,
            STRIPE_MAX_IN_FLIGHT=max_in_flight,
            STRIPE_READ_ALLOCATION=read_allocation,
        )
        # Bounded like every number (finite; a factor above 1 would ask for more than Stripe allows).
        safety = _float_setting(env, "STRIPE_RATE_SAFETY_FACTOR", DEFAULT_RATE_SAFETY_FACTOR)
        rps = _float_setting(env, "STRIPE_ENDPOINT_RPS", DEFAULT_ENDPOINT_RPS)
        overrides = _endpoint_overrides(endpoint_rps_overrides)
        in_flight = _bounded_int(
            env, "STRIPE_MAX_IN_FLIGHT", None, MAX_IN_FLIGHT_BOUNDS, "requests in flight"
        )
        allocation = _bounded_int(
            env, "STRIPE_READ_ALLOCATION", None, READ_ALLOCATION_BOUNDS, "reads per month"
        )
        budget_url = None
        if (ledger_url or "").strip():
            ledger = parse_ledger_url(ledger_url or "")
            budget_url = ledger.url if ledger.is_postgres else None
        return cls(
            safety_factor=safety,
            endpoint_rps=rps,
            endpoint_rps_overrides=overrides,
            max_in_flight=in_flight,
            read_allocation=allocation,
            budget_url=budget_url,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StripeRateSettings:
        env = os.environ if environ is None else environ
        return cls.build(
            safety_factor=env.get("STRIPE_RATE_SAFETY_FACTOR"),
            endpoint_rps=env.get("STRIPE_ENDPOINT_RPS"),
            endpoint_rps_overrides=env.get("STRIPE_ENDPOINT_RPS_OVERRIDES"),
            max_in_flight=env.get("STRIPE_MAX_IN_FLIGHT"),
            read_allocation=env.get("STRIPE_READ_ALLOCATION"),
            ledger_url=env.get(LEDGER_URL_VARIABLE),
        )


#: The settings that take a fraction, with their bounds and unit. Dagster's `EnvVar` resolves only
#: strings, integers (`EnvVar.int`) and booleans at run time, so the code location reads these when it
#: loads (`float_setting`) and the builders check them again, with the same bounds, at run start.
FLOAT_SETTINGS: dict[str, tuple[tuple[float, float], str]] = {
    "STRIPE_MAX_RPS": (MAX_RPS_BOUNDS, "requests per second"),
    "STRIPE_RATE_SAFETY_FACTOR": (RATE_SAFETY_FACTOR_BOUNDS, "a share of Stripe's limit"),
    "STRIPE_ENDPOINT_RPS": (MAX_RPS_BOUNDS, "requests per second"),
}


def _float_setting(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    bounds, unit = FLOAT_SETTINGS[name]
    return _bounded_float(env, name, default, bounds, unit)


def float_setting(name: str, environ: Mapping[str, str] | None = None) -> float | None:
    """A float setting of `FLOAT_SETTINGS` from the environment, bounded; None when unset or blank."""
    env = os.environ if environ is None else environ
    return _float_setting(env, name, None)


def _as_env(**values: str | float | None) -> dict[str, str]:
    """Typed or raw values as the builders' parsers read them: None becomes unset (blank)."""
    return {name: "" if value is None else str(value) for name, value in values.items()}


# ---- Dagster executor ---------------------------------------------------------------------------

#: `multiprocess` (Dagster's default: a process per step, steps in parallel) or `in_process` (every
#: step in the run's own process, one after another: no process start per step, which on a small
#: machine costs more than the steps of a small partition).
EXECUTORS = ("multiprocess", "in_process")


def executor_from_env(environ: Mapping[str, str] | None = None) -> str:
    """`STRIPE_AEP_EXECUTOR`, checked when the code location loads."""
    env = os.environ if environ is None else environ
    value = (env.get("STRIPE_AEP_EXECUTOR") or "multiprocess").strip()
    if value not in EXECUTORS:
        raise ConfigError(
            "STRIPE_AEP_EXECUTOR",
            f"{value[:40]!r} is not an executor",
            f"Set it to one of {', '.join(EXECUTORS)}, or leave it unset (multiprocess)",
        )
    return value


# -- the ledger database (STRIPE_AEP_LEDGER_URL) -------------------------------------------------

LEDGER_URL_VARIABLE = "STRIPE_AEP_LEDGER_URL"
_LEDGER_URL_EXAMPLES = (
    "postgresql://user:password@host:5432/database or sqlite:////absolute/path/ledger.sqlite"
)


@dataclass(frozen=True)
class LedgerUrl:
    """Where the delivery ledger (and, on PostgreSQL, the partition locks and Stripe budgets) live.

    `url` may carry a password: it is only handed to the database driver. Everything that shows the
    setting (`shown`, `repr`, error messages) uses the masked form `postgresql://user:***@host/db`.
    """

    kind: str  # "postgresql" or "sqlite"
    url: str = field(repr=False)
    shown: str
    path: str | None = None  # the SQLite file
    password: str | None = field(default=None, repr=False)

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgresql"

    def mask(self, text: str) -> str:
        """`text` with the password (in every form it may take) masked."""
        if not self.password:
            return text
        from stripe_aep.secrets import SecretMasker

        return SecretMasker([self.password]).mask(text)


def _mask_url_password(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    netloc, slash, tail = rest.partition("/")
    if "@" not in netloc:
        return value
    userinfo, _, hostport = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}{':***' if ':' in userinfo else ''}@{hostport}{slash}{tail}"


def parse_ledger_url(value: str, variable: str = LEDGER_URL_VARIABLE) -> LedgerUrl:
    """Validate a ledger URL; the error names `variable` and never shows the password."""
    shown = _mask_url_password(value)
    fix = f"Set {variable} to {_LEDGER_URL_EXAMPLES}, or unset it for the embedded SQLite ledger"
    problem = bad_character(value, ascii_only=True, allow_inner_space=False)
    if problem is not None:
        # the character may sit in the password: name the problem, never the value
        raise ConfigError(variable, f"the value contains {problem}", fix)
    scheme = value.partition("://")[0].lower()
    if scheme == "sqlite":
        if not value.startswith("sqlite:////"):
            raise ConfigError(
                variable,
                f"{shown!r} is not an absolute SQLite path (it needs four slashes: sqlite:////…)",
                fix,
            )
        path = value[len("sqlite:///") :]
        if path.endswith("/") or "?" in path or "#" in path:
            raise ConfigError(variable, f"{shown!r} does not name a file", fix)
        return LedgerUrl(kind="sqlite", url=value, shown=shown, path=path)
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            variable, f"{shown!r} is neither a postgresql:// nor a sqlite:// URL", fix
        )
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError when out of range or not a number
    except ValueError:
        raise ConfigError(variable, f"{shown!r} has an invalid port", fix) from None
    if not parts.hostname:
        raise ConfigError(variable, f"{shown!r} names no host", fix)
    database = parts.path.lstrip("/")
    if not database or "/" in database:
        raise ConfigError(variable, f"{shown!r} names no database (…/database)", fix)
    if parts.fragment:
        raise ConfigError(variable, f"{shown!r} has a fragment", fix)
    from urllib.parse import unquote

    password = unquote(parts.password) if parts.password else None
    return LedgerUrl(kind="postgresql", url=value, shown=shown, password=password)


def ledger_url_from_env(
    environ: Mapping[str, str] | None = None, *, data_dir: str | None = None
) -> LedgerUrl | None:
    """`STRIPE_AEP_LEDGER_URL`, validated; None means the embedded SQLite ledger in the data dir.

    With an object-store lake (`s3://…`) there is no local data dir the run pods share, so the
    setting is then required (named in the error) instead of failing later in every `aep/*` step.
    """
    env = os.environ if environ is None else environ
    raw = (env.get(LEDGER_URL_VARIABLE) or "").strip()
    if raw:
        return parse_ledger_url(env.get(LEDGER_URL_VARIABLE) or "")
    root = data_dir if data_dir is not None else data_dir_from_env(env)
    if "://" in root:
        raise ConfigError(
            LEDGER_URL_VARIABLE,
            f"it is unset while STRIPE_AEP_DATA_DIR is an object store ({root}); the embedded "
            "SQLite ledger needs a local folder that every run shares, and run pods share no disk",
            f"Set {LEDGER_URL_VARIABLE} to a PostgreSQL database every run can reach, e.g. "
            "postgresql://user:password@host:5432/database",
        )
    return None


RESOURCES_VARIABLE = "STRIPE_AEP_RESOURCES"


def parse_resources(value: str | None) -> tuple[str, ...]:
    """The Stripe resources a deployment moves, in catalog order (stripe_aep/catalog.py).

    Unset or blank: `DEFAULT_RESOURCES` (every resource of the catalog). Otherwise a comma-separated
    list of catalog names; an unknown name, a repeated one, an empty list, or a resource without
    the resources its XDM mapping reads (`lookup_resources`: a refund takes its customer from its
    charge) is refused naming the variable and the fix.
    """
    if value is None or value.strip() == "":
        return DEFAULT_RESOURCES
    variable = RESOURCES_VARIABLE
    valid = ", ".join(RESOURCE_NAMES)
    names = [part.strip() for part in value.split(",")]
    for name in names:  # spaces around a name are fine; a tab or a control character inside not
        check_text(variable, name, secret=False)
    if any(not name for name in names):
        raise ConfigError(
            variable,
            f"{value!r} has an empty name (two commas in a row, or one at an end)",
            f"Separate resource names by single commas, e.g. {variable}=charges,customers; "
            f"the names are {valid}",
        )
    unknown = [name for name in names if name not in RESOURCE_NAMES]
    if unknown:
        raise ConfigError(
            variable,
            f"unknown Stripe resource{'s' if len(unknown) > 1 else ''} "
            + ", ".join(repr(n) for n in unknown),
            f"Use names from: {valid} (or leave it unset for all of them)",
        )
    repeated = sorted({name for name in names if names.count(name) > 1}, key=names.index)
    if repeated:
        raise ConfigError(
            variable,
            f"{', '.join(repeated)} named more than once",
            "Name each resource once",
        )
    chosen = set(names)
    for name in names:
        missing = [r for r in stripe_resource(name).lookup_resources if r not in chosen]
        if missing:
            raise ConfigError(
                variable,
                f"{name} needs {', '.join(missing)} (its XDM mapping reads the raw "
                f"{', '.join(missing)} on the lake)",
                f"Add {', '.join(missing)} to {variable}, or remove {name}",
            )
    return tuple(name for name in RESOURCE_NAMES if name in chosen)


def selected_resources(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """`STRIPE_AEP_RESOURCES`, validated (see `parse_resources`): the resources whose assets the
    code location defines and that setup, doctor, the sensors, the schedules and the demo cover."""
    env = os.environ if environ is None else environ
    return parse_resources(env.get(RESOURCES_VARIABLE))


# -- the AEP tenant (AEP_TENANT_ID) ----------------------------------------------------------------

TENANT_VARIABLE = "AEP_TENANT_ID"


def check_tenant(value: str | None) -> str:
    """`AEP_TENANT_ID`: set, free of whitespace and control characters, and of the shape
    `stripe_aep.xdm.schemas.validate_tenant` accepts (the one rule, also applied to every schema and
    row built for a tenant). Used by the XDM resource, `AepSettings` and the `setup` command alike."""
    # imported here: the XDM package (its mappings, pyarrow) is heavy and imports this module
    from stripe_aep.xdm.schemas import validate_tenant

    if value is None or not value.strip():
        raise ConfigError(
            "AEP_TENANT_ID",
            "not set",
            "Set it to your AEP tenant id without the leading underscore (GET /stats on the "
            "Schema Registry shows it as tenantId); the local emulator uses `stripeaep`",
        )
    check_text(TENANT_VARIABLE, value, secret=False)
    try:
        return validate_tenant(value)
    except ValueError:
        fix = "Use the tenant id without the leading underscore: lowercase letters, digits and "
        fix += "underscores, e.g. acmecorp"
        if value.startswith("_"):
            fix = f"Drop the leading underscore: {TENANT_VARIABLE}={value.lstrip('_')}"
        raise ConfigError(TENANT_VARIABLE, f"{value!r} is not a tenant id", fix) from None


# -- the fresh-data schedule (STRIPE_AEP_FRESH_CRON) -----------------------------------------------

FRESH_CRON_VARIABLE = "STRIPE_AEP_FRESH_CRON"
DEFAULT_FRESH_CRON = "*/15 * * * *"


def fresh_cron_from_env(environ: Mapping[str, str] | None = None) -> str:
    """`STRIPE_AEP_FRESH_CRON` (default every 15 minutes), checked when the code location loads with
    the cron parser Dagster's schedules use, so a typo fails the load naming the variable instead of
    Dagster's "invalid cron schedule" that names only the schedule."""
    # Dagster's own check, so the two can never disagree (a private helper: dagster is pinned in
    # pyproject.toml, and test_resource_settings fails if it moves).
    from dagster._utils.schedules import is_valid_cron_string

    env = os.environ if environ is None else environ
    raw = env.get(FRESH_CRON_VARIABLE)
    if raw is None or not raw.strip():
        return DEFAULT_FRESH_CRON
    check_text(FRESH_CRON_VARIABLE, raw, secret=False, allow_inner_space=True)
    if not is_valid_cron_string(raw):
        raise ConfigError(
            FRESH_CRON_VARIABLE,
            f"{raw[:60]!r} is not a cron expression",
            f"Set it to five fields (minute hour day month weekday), e.g. {DEFAULT_FRESH_CRON!r} "
            "for every 15 minutes, or leave it unset",
        )
    return raw
