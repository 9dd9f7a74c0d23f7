"""The Stripe client against the emulator: paging, windows, hidden defaults, retries, errors, budget."""

import pytest

from stripe_aep.catalog import DEFAULT_RESOURCES, EVENTS, RESOURCE_NAMES, stripe_resource
from stripe_aep.config import DEFAULT_RATE_SAFETY_FACTOR, StripeSettings
from stripe_aep.stripe.client import (
    StripeAuthenticationError,
    StripeClient,
    StripeError,
    StripeInvalidRequestError,
    StripePermissionError,
    StripeRetriesExhausted,
    events_listing,
    list_passes,
    permission_hint,
)
from stripe_aep.stripe.rawstore import day_bounds
from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY


def _client(settings, **kw):
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("shared_limiter", False)
    return StripeClient(settings, **kw)


def _biggest_same_second_cluster(objects):
    counts = {}
    for o in objects:
        counts[o["created"]] = counts.get(o["created"], 0) + 1
    return max(counts.values())


@pytest.mark.parametrize("resource", ["charges", "balance_transactions"])
def test_paging_across_same_second_ties(stripe_settings, stripe_account, resource):
    gte, lt = day_bounds(ACCOUNT_START)
    truth = stripe_account.objects(resource, gte=gte, lt=lt)
    assert _biggest_same_second_cluster(truth) > 100  # ties straddle a page boundary
    client = _client(stripe_settings)
    got = list(client.iter_window(resource, gte, lt))
    ids = [o["id"] for o in got]
    assert len(ids) == len(set(ids)) == len(truth)
    assert set(ids) == {o["id"] for o in truth}
    assert client.stats.pages == -(-len(truth) // 100)  # ceil: no extra empty page


def test_object_at_window_end_belongs_to_next_window(stripe_settings, stripe_account):
    gte, lt = day_bounds(ACCOUNT_START)
    truth = stripe_account.objects("charges", gte=gte, lt=lt)
    boundary = truth[len(truth) // 2]["created"]  # a second that holds at least one object
    client = _client(stripe_settings)
    first = {o["id"] for o in client.iter_window("charges", gte, boundary)}
    second = {o["id"] for o in client.iter_window("charges", boundary, lt)}
    at_boundary = {o["id"] for o in truth if o["created"] == boundary}
    assert at_boundary and at_boundary <= second and not (at_boundary & first)
    assert first | second == {o["id"] for o in truth} and not (first & second)


def test_hidden_defaults_are_lifted(stripe_settings, stripe_account):
    from stripe_aep.catalog import RESOURCE_NAMES  # noqa: F401 - the emulator's list

    gte, lt = day_bounds(ACCOUNT_START)
    client = _client(stripe_settings)
    subs = list(client.iter_window("subscriptions", gte, lt))
    prices = list(client.iter_window("prices", gte, lt))
    assert any(s["status"] == "canceled" for s in subs)
    assert any(p["active"] is False for p in prices) and any(p["active"] for p in prices)
    assert {s["id"] for s in subs} == {
        o["id"] for o in stripe_account.objects("subscriptions", gte=gte, lt=lt)
    }
    assert {p["id"] for p in prices} == {
        o["id"] for o in stripe_account.objects("prices", gte=gte, lt=lt)
    }


def test_pinned_version_and_account_headers(stripe_emulator, stripe_settings):
    client = _client(stripe_settings)
    client.list_page("customers", {})
    assert client._session.headers["Stripe-Version"] == stripe_settings.api_version


@pytest.mark.parametrize(
    "fault,expect_429",
    [
        ("rate_limited_429", 1),
        ("server_errors_500", 0),
        ("dropped_connections", 0),
        ("truncated_bodies", 0),
    ],
)
def test_retry_paths_recover(stripe_emulator, stripe_settings, fault, expect_429):
    setattr(stripe_emulator.faults, fault, 2)
    client = _client(stripe_settings)
    page = client.list_page("charges", {})
    assert len(page.objects) == 100
    assert client.stats.retries == 2
    assert client.stats.rate_limited == 2 * expect_429
    assert client.stats.requests == 3


def test_429_with_should_retry_false_is_not_retried(stripe_emulator, stripe_settings):
    stripe_emulator.faults.should_not_retry_429 = 1
    client = _client(stripe_settings)
    with pytest.raises(StripeError) as exc:
        client.list_page("charges", {})
    assert client.stats.requests == 1
    assert "Stripe-Should-Retry: false" in str(exc.value)
    assert "Request-Id: req_" in str(exc.value)


def test_retries_are_bounded(stripe_emulator, stripe_settings):
    stripe_emulator.faults.server_errors_500 = 100
    client = _client(stripe_settings, max_retries=3)
    with pytest.raises(StripeRetriesExhausted) as exc:
        client.list_page("charges", {})
    assert client.stats.requests == 4
    assert "HTTP 500" in str(exc.value)


def test_401_names_cause_and_fix_without_the_key(stripe_emulator):
    bad = "sk_live_" + "9" * 24
    settings = StripeSettings.build(api_key=bad, api_base=stripe_emulator.url, max_rps="500")
    client = _client(settings)
    with pytest.raises(StripeAuthenticationError) as exc:
        client.list_page("charges", {})
    message = str(exc.value)
    assert "invalid" in message and "STRIPE_API_KEY" in message and "Request-Id: req_" in message
    assert bad not in message and bad not in repr(client)
    assert client.stats.requests == 1  # never retried


def test_403_names_the_missing_permission(stripe_account):
    from stripe_aep.emulators.stripe_api import StripeEmulator

    key = "rk_test_" + "R" * 24
    with StripeEmulator(
        stripe_account, rate_limit_rps=0, restricted_keys={key: {"charges"}}
    ) as emu:
        settings = StripeSettings.build(api_key=key, api_base=emu.url, max_rps="500")
        client = _client(settings)
        assert client.list_page("charges", {}).objects
        with pytest.raises(StripePermissionError) as exc:
            client.list_page("subscriptions", {"status": "all"})
    message = str(exc.value)
    assert "Subscriptions: Read" in message and "Request-Id: req_" in message
    assert key not in message


HAMMER = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from stripe_aep.config import StripeSettings
from stripe_aep.stripe.client import StripeClient
from stripe_aep.stripe.ratelimit import RateBudget
key, url, budget = sys.argv[1], sys.argv[2], float(sys.argv[3])
settings = StripeSettings.build(api_key=key, api_base=url, max_rps=str(budget))
client = StripeClient(settings, limiter=RateBudget(budget, endpoint_rps=budget), backoff_base=0.01)
# 20 threads hammering at once: 60 requests that would all arrive within a few ms unthrottled.
with ThreadPoolExecutor(20) as pool:
    list(pool.map(lambda _: client.list_page("charges", {}), range(60)))
print(json.dumps(client.stats.as_dict()))
"""


def test_observed_request_rate_never_exceeds_the_budget(external_stripe_emulator):
    """Stripe's view: arrivals at the emulator, whose own rate limit equals the budget. Client and
    emulator each run in their own process, as a Dagster step and Stripe do (a test process holding
    a large heap would add garbage-collector pauses that neither has)."""
    import json
    import subprocess
    import sys

    import requests

    budget = 40
    # One endpoint at 40/s: an account whose limits Stripe raised (the default is 25/s/endpoint).
    url = external_stripe_emulator(
        "--rate-limit", str(budget), "--endpoint-limit", f"charges={budget}",
        "--days", "2", "--charges-per-day", "300",
    )  # fmt: skip
    # The client's budget is the limit × the default safety factor, as `StripeSettings` sets it:
    # arrivals carry network and scheduling jitter that an exact budget would turn into 429s.
    client_budget = budget * DEFAULT_RATE_SAFETY_FACTOR
    out = subprocess.run(
        [sys.executable, "-c", HAMMER, TEST_KEY, url, str(client_budget)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    stats = json.loads(out.strip().splitlines()[-1])
    log = requests.get(f"{url}/_emulator/log", timeout=10).json()
    arrivals = sorted(r["t"] for r in log if r["path"] == "/v1/charges")
    assert stats["rate_limited_429"] == 0
    assert stats["requests"] == 60
    worst = max(sum(1 for a in arrivals if t <= a < t + 1) for t in arrivals)
    assert worst <= budget
    assert len(arrivals) == 60
    assert arrivals[-1] - arrivals[0] >= (60 - 1) / client_budget - 0.05


# -- retrieve (GET /v1/<resource>/<id>) and the events type set --------------------------------


def test_retrieve_returns_the_object_through_its_own_endpoint_budget(
    stripe_emulator, stripe_settings, stripe_account, monkeypatch
):
    gte, lt = day_bounds(ACCOUNT_START)
    truth = stripe_account.objects("customers", gte=gte, lt=lt)[3]
    client = _client(stripe_settings)
    endpoints = []
    acquire = client.limiter.acquire
    monkeypatch.setattr(
        client.limiter,
        "acquire",
        lambda ep, demand=0.0: endpoints.append(ep) or acquire(ep, demand),
    )
    got = client.retrieve("customers", truth["id"])
    assert got["id"] == truth["id"] and got["object"] == "customer"
    assert got["email"] == truth["email"]
    # Stripe counts a retrieve against its own endpoint, not the list's
    assert endpoints == ["GET /v1/customers/{id}"]
    assert client.stats.requests == 1 and client.stats.objects == 1
    assert stripe_emulator.log[-1].path == f"/v1/customers/{truth['id']}"


def test_retrieve_of_an_unknown_id_is_stripes_own_404(stripe_emulator, stripe_settings):
    client = _client(stripe_settings)
    with pytest.raises(StripeInvalidRequestError) as exc:
        client.retrieve("charges", "ch_doesnotexist")
    message = str(exc.value)
    assert exc.value.status == 404 and exc.value.code == "resource_missing"
    assert "No such charge: 'ch_doesnotexist'" in message  # Stripe's own words
    assert "Request-Id: req_" in message and exc.value.request_id
    assert client.stats.requests == 1  # a 404 is not retried


def test_retrieve_refuses_what_is_not_an_id(stripe_settings):
    client = _client(stripe_settings)
    with pytest.raises(ValueError):
        client.retrieve("charges", "ch_1/refunds")
    assert client.stats.requests == 0


AEP_SIX = ("charges", "subscriptions", "refunds", "balance_transactions", "customers", "prices")


@pytest.mark.parametrize("selection, filtered", [(AEP_SIX, True), (DEFAULT_RESOURCES, False)])
def test_events_are_one_request_keeping_the_selections_types_and_no_wildcard(selection, filtered):
    """AEP's six: one `types[]` pass with their 20 types. The default eight (32 types, more than
    a request's 20): one unfiltered pass, the same types kept (dropped by the extractor)."""
    (got,) = list_passes(EVENTS, selection)
    _, types = events_listing(selection)
    if filtered:
        assert set(got) == {"types[]"} and got["types[]"] == list(types) and len(types) == 20
    else:
        assert got == {} and len(types) > 20
    assert len(set(types)) == len(types)
    assert not any("*" in t for t in types)
    wanted = {t for r in selection for t in stripe_resource(r).requested_event_types}
    assert set(types) == wanted
    assert "charge.dispute.created" in types  # the charge's `disputed` flips (a subject event)
    assert not any(t.startswith("invoice.") for t in types) or "invoices" in selection


def test_no_event_types_is_refused_rather_than_no_pass():
    with pytest.raises(ValueError, match="no event types"):
        list_passes(EVENTS, ["balance_transactions"])


def test_resource_passes_and_permission_hints_come_from_the_catalog():
    assert list_passes("prices") == ({"active": "true"}, {"active": "false"})
    assert list_passes("subscriptions") == ({"status": "all"},)
    assert list_passes("charges") == ({},)
    assert permission_hint(EVENTS) == "Events: Read (rak_event_read)"
    assert permission_hint("account") == "Account: Read"
    assert permission_hint("refunds") == "Charges and Refunds: Read (rak_refund_read)"
    for name in RESOURCE_NAMES:
        assert permission_hint(name) == stripe_resource(name).permission_hint
    assert permission_hint("v1") is None
