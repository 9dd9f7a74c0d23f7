"""The Stripe emulator enforces Stripe's published limits (docs.stripe.com/rate-limits): the
account rate (100/s live, 25/s test), 25/s per endpoint, the concurrency caps, each 429 naming its
limiter in `Stripe-Rate-Limited-Reason`, and an arrival log that shows which requests were refused
and why, so that tests can audit every one-second window."""
# ruff: noqa: F811  (pytest fixtures are imported from stripe_fixtures and used as arguments)

from __future__ import annotations

import argparse
import threading
from collections import defaultdict

import pytest
import requests

from stripe_aep.emulators.stripe_api import (
    LIVE_PROFILE,
    StripeEmulator,
    StripeLimits,
    add_limit_arguments,
    app_options,
    create_app,
    endpoint_of,
)
from stripe_aep.emulators.stripe_limits import ModeLimiter, busiest_second
from stripe_aep_tests.emulators.stripe_fixtures import (  # noqa: F401 - fixtures
    HEADERS,
    KEY,
    LIVE_HEADERS,
    LIVE_KEY,
    account,
    live_profile,
    start_emulator,
)


def audit(log) -> dict[str, dict[str, int]]:
    """Per mode: the worst one-second window of admitted requests, for the account and for each
    endpoint (what Stripe's limiters count)."""
    by_mode: dict[str, list[float]] = defaultdict(list)
    by_endpoint: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in log:
        if record.limited_by is None:
            by_mode[record.mode].append(record.t)
            by_endpoint[(record.mode, record.endpoint)].append(record.t)
    result: dict[str, dict[str, int]] = {}
    for mode, times in by_mode.items():
        result[mode] = {"account": busiest_second(times)}
        for (m, endpoint), endpoint_times in by_endpoint.items():
            if m == mode:
                result[mode][endpoint] = busiest_second(endpoint_times)
    return result


# ---- the limiter itself, on a synthetic clock (Stripe's published defaults) -----------------


def test_endpoints_are_named_operations():
    assert endpoint_of("GET", "/v1/charges") == "GET /v1/charges"
    assert endpoint_of("GET", "/v1/refunds") == "GET /v1/refunds"
    assert endpoint_of("GET", "/v1/charges/ch_1") == "GET /v1/charges/{id}"
    assert endpoint_of("GET", "/v1/charges/ch_2") == "GET /v1/charges/{id}"
    assert endpoint_of("POST", "/v1/charges") == "POST /v1/charges"
    assert endpoint_of("GET", "/v1/account") == "GET /v1/account"


def test_live_defaults_25_per_endpoint_and_100_per_account():
    limiter = ModeLimiter(StripeLimits(), "live")
    charges = [limiter.admit("GET /v1/charges", 0.001 * i) for i in range(30)]
    assert charges[:25] == [None] * 25
    assert set(charges[25:]) == {"endpoint-rate"}
    # Other endpoints have their own 25 but share the account's 100.
    outcomes = [limiter.admit(f"GET /v1/r{i % 4}", 0.1 + 0.001 * i) for i in range(100)]
    assert outcomes.count(None) == 75  # 25 of charges + 75 = the account's 100 in the second
    assert outcomes[-1] == "global-rate"
    # Their responses done, a second later the window has moved on: admitted again.
    assert limiter.in_flight == 100
    limiter.release("GET /v1/charges")
    assert limiter.admit("GET /v1/charges", 1.2) is None


def test_test_mode_account_allows_25_per_second_across_endpoints():
    limiter = ModeLimiter(StripeLimits(), "test")
    outcomes = [limiter.admit(("GET /v1/charges", "GET /v1/refunds")[i % 2], 0.01 * i)
                for i in range(40)]  # fmt: skip
    assert outcomes.count(None) == 25 and set(outcomes[25:]) == {"global-rate"}


def test_concurrency_limits_count_requests_in_flight():
    limiter = ModeLimiter(
        StripeLimits(account_rps=0, endpoint_rps=0, account_concurrency=25), "test"
    )
    admitted = [limiter.admit("GET /v1/charges", 0.0) for _ in range(25)]
    assert admitted == [None] * 25
    assert limiter.admit("GET /v1/charges", 0.0) == "global-concurrency"
    limiter.release("GET /v1/charges")
    assert limiter.admit("GET /v1/refunds", 0.0) is None
    # By default one second of each rate may be in flight: 25 per endpoint of a live account.
    live = ModeLimiter(StripeLimits(), "live")
    admitted = [live.admit("GET /v1/charges", 0.001 * i) for i in range(25)]
    assert admitted == [None] * 25
    assert live.admit("GET /v1/charges", 1.5) == "endpoint-concurrency"  # rate fine, 25 open
    assert live.admit("GET /v1/customers", 1.5) is None


def test_raised_endpoint_limits_and_validation():
    raised = ModeLimiter(StripeLimits(endpoint_rps_overrides={"GET /v1/charges": 40}), "live")
    outcomes = [raised.admit("GET /v1/charges", 0.001 * i) for i in range(45)]
    assert outcomes.count(None) == 40 and outcomes[-1] == "endpoint-rate"
    with pytest.raises(ValueError, match="endpoint_rps_overrides"):
        StripeLimits(endpoint_rps_overrides={"charges": 40})
    with pytest.raises(ValueError, match="account_rps must be >= 0"):
        StripeLimits(account_rps=-1)


# ---- over HTTP: the reason header and the arrival log ---------------------------------------


def test_endpoint_rate_429_names_the_endpoint_limiter_and_spares_other_endpoints(account):
    limits = StripeLimits(endpoint_rps=4)  # live mode: the account's 100/s stays out of the way
    with StripeEmulator(account, limits=limits, livemode=True) as emu, requests.Session() as s:
        live = {"Authorization": f"Bearer {LIVE_KEY}"}
        charges = [s.get(emu.url + "/v1/charges", headers=live, params={"limit": 1})
                   for _ in range(12)]  # fmt: skip
        refunds = [s.get(emu.url + "/v1/refunds", headers=live, params={"limit": 1})
                   for _ in range(3)]  # fmt: skip
        log = list(emu.log)
    assert [r.status_code for r in charges[:4]] == [200] * 4
    refused = [r for r in charges if r.status_code == 429]
    assert refused, "12 requests to one endpoint within seconds must exceed 4/s"
    for response in refused:
        assert response.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
        error = response.json()["error"]
        assert error["code"] == "rate_limit" and error["type"] == "invalid_request_error"
    assert [r.status_code for r in refunds] == [200] * 3
    assert charges[0].json()["data"][0]["livemode"] is True  # a live-mode account's object
    # The log says who was refused and why; the admitted ones respect the limit in every window.
    assert {(r.endpoint, r.limited_by) for r in log if r.status == 429} == {
        ("GET /v1/charges", "endpoint-rate")
    }
    assert sum(r.status == 429 for r in log) == len(refused)
    assert all(r.mode == "live" for r in log)
    assert audit(log)["live"]["GET /v1/charges"] <= 4


def test_global_rate_429_when_the_account_is_over_its_limit(account):
    limits = StripeLimits(account_rps=6, endpoint_rps=5)
    paths = ("/v1/charges", "/v1/refunds", "/v1/customers")
    with StripeEmulator(account, limits=limits) as emu, requests.Session() as session:
        responses = [session.get(emu.url + paths[i % 3], headers=HEADERS, params={"limit": 1})
                     for i in range(24)]  # fmt: skip
        log = list(emu.log)
    assert [r.status_code for r in responses[:6]] == [200] * 6
    reasons = {
        r.headers.get("Stripe-Rate-Limited-Reason") for r in responses if r.status_code != 200
    }
    assert reasons == {"global-rate"}
    assert {r.limited_by for r in log if r.status == 429} == {"global-rate"}
    result = audit(log)["test"]
    assert result["account"] <= 6 and all(result[f"GET {p}"] <= 5 for p in paths)


def test_concurrency_429s_over_http(account):
    """Requests held 1.5 s by latency overlap: 2 per endpoint and 3 per account may be in flight."""
    limits = StripeLimits(account_rps=0, endpoint_rps=0, account_concurrency=3,
                          endpoint_concurrency=2)  # fmt: skip
    with StripeEmulator(account, limits=limits, latency_ms=1500) as emu:

        def burst(paths: list[str]) -> list[requests.Response]:
            barrier = threading.Barrier(len(paths))
            results: list = [None] * len(paths)

            def one(i: int) -> None:
                barrier.wait()
                results[i] = requests.get(emu.url + paths[i], headers=HEADERS, timeout=30)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(paths))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return results

        same = burst(["/v1/charges"] * 3)
        spread = burst(["/v1/charges", "/v1/charges", "/v1/refunds", "/v1/customers"])
        log = list(emu.log)
    assert sorted(r.status_code for r in same) == [200, 200, 429]
    assert [r.headers["Stripe-Rate-Limited-Reason"] for r in same if r.status_code == 429] == [
        "endpoint-concurrency"
    ]
    assert sorted(r.status_code for r in spread) == [200, 200, 200, 429]
    assert [r.headers["Stripe-Rate-Limited-Reason"] for r in spread if r.status_code == 429] == [
        "global-concurrency"
    ]
    assert sorted(r.limited_by for r in log if r.limited_by) == [
        "endpoint-concurrency",
        "global-concurrency",
    ]


def test_live_mode_serves_live_keys_only(account):
    with StripeEmulator(account, livemode=True, rate_limit_rps=0) as emu:
        ok = requests.get(emu.url + "/v1/charges", headers={"Authorization": f"Bearer {LIVE_KEY}"},
                          timeout=10)  # fmt: skip
        test_key = requests.get(emu.url + "/v1/charges", headers=HEADERS, timeout=10)
        account_object = requests.get(
            emu.url + "/v1/account", headers={"Authorization": f"Bearer {LIVE_KEY}"}, timeout=10
        )
    assert ok.status_code == 200 and all(c["livemode"] is True for c in ok.json()["data"])
    assert test_key.status_code == 401 and "live keys" in test_key.json()["error"]["message"]
    assert KEY not in test_key.text
    assert account_object.status_code == 200
    with pytest.raises(ValueError, match="live restricted key"):
        StripeEmulator(account, livemode=True, restricted_keys={"rk_test_abc": {"charges"}})


def test_the_control_log_shows_refusals_and_their_reason(account):
    with StripeEmulator(account, limits=StripeLimits(endpoint_rps=1)) as emu:
        for _ in range(3):
            requests.get(emu.url + "/v1/prices", headers=HEADERS, timeout=10)
        log = requests.get(emu.url + "/_emulator/log", timeout=10).json()
    assert [r["status"] for r in log][:1] == [200]
    refused = [r for r in log if r["status"] == 429]
    assert refused and all(r["limited_by"] == "endpoint-rate" for r in refused)
    assert all(r["endpoint"] == "GET /v1/prices" and r["fault"] is None for r in log)


def test_injected_429_faults_are_logged_as_faults_not_limiter_refusals(account):
    with StripeEmulator(account, rate_limit_rps=0) as emu:
        emu.faults.rate_limited_429 = 1
        first = requests.get(emu.url + "/v1/charges", headers=HEADERS, timeout=10)
        log = list(emu.log)
    assert first.status_code == 429
    assert first.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    assert (log[0].fault, log[0].limited_by) == ("rate_limited_429", None)


# ---- configuration: CLI options and the live profile ----------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_limit_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_defaults_are_stripes_published_limits():
    options = app_options(parse())
    assert options["limits"] == StripeLimits()
    assert options["livemode"] is False and options["latency_ms"] == (0.0, 0.0)
    assert options["faults"].error_rate == 0


def test_cli_live_profile_and_raised_limits():
    options = app_options(parse("--profile", "live", "--endpoint-limit", "charges=50",
                                "--endpoint-limit", "GET /v1/charges/{id}=40"), seed=3)  # fmt: skip
    assert options["livemode"] is True and LIVE_PROFILE["livemode"] is True
    assert options["latency_ms"] == (250.0, 450.0)
    assert options["faults"].error_rate == 0.01 and options["faults"].error_seed == 3
    assert options["limits"].endpoint_rps_overrides == {
        "GET /v1/charges": 50.0,
        "GET /v1/charges/{id}": 40.0,
    }
    assert options["limits"].account_rate("live") == 100
    overridden = app_options(parse("--profile", "live", "--latency-ms", "10", "--error-rate", "0"))
    assert overridden["latency_ms"] == (10.0, 10.0) and overridden["faults"].error_rate == 0
    assert app_options(parse("--rate-limit", "0"))["limits"] == StripeLimits.off()
    with pytest.raises(ValueError, match="turns every limit off"):
        app_options(parse("--rate-limit", "0", "--endpoint-rate-limit", "5"))
    with pytest.raises(ValueError, match="ENDPOINT=RPS"):
        app_options(parse("--endpoint-limit", "charges"))
    with pytest.raises(ValueError, match="range like 250-450"):
        app_options(parse("--latency-ms", "fast"))


def test_latency_range_is_seeded_and_within_bounds(account):
    def draws(seed: int) -> list[float]:
        state = create_app(account, latency_ms=(250, 450), latency_seed=seed).state.emulator
        return [state.latency() for _ in range(50)]

    first = draws(1)
    assert first == draws(1) and first != draws(2)
    assert all(0.25 <= d <= 0.45 for d in first) and max(first) - min(first) > 0.1
    with pytest.raises(ValueError, match="low <= high"):
        create_app(account, latency_ms=(450, 250))


def test_live_profile_fixture_serves_live_limits(account, start_emulator):
    emu = start_emulator(account, **live_profile(seed=4, latency_ms=0))
    response = requests.get(emu.url + "/v1/customers", headers=LIVE_HEADERS, timeout=10)
    assert response.status_code in (200, 500)  # 1 % of requests fail, as in the profile
    state = emu.app.state.emulator
    assert state.livemode and state.faults.error_rate == 0.01
    assert state.limiters["live"].account.rps == 100
    assert state.limits.endpoint_rate("GET /v1/customers") == 25


def test_busiest_second_counts_what_a_per_second_limit_counts():
    """Arrivals less than a second apart share a window; exactly one second apart they do not."""
    assert busiest_second([]) == 0
    assert busiest_second([0.0, 0.5, 0.999, 1.0, 1.5]) == 3
    assert busiest_second([2.0, 0.0, 1.0]) == 1
    assert busiest_second([0.1 * i for i in range(30)]) == 10  # float sums: 0.1 * 10 != 1.0
