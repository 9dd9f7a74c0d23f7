"""The Stripe emulator over HTTP: paging, filters, hidden defaults, errors, auth, limits, faults."""
# ruff: noqa: F811  (pytest fixtures are imported from stripe_fixtures and used as arguments)

from __future__ import annotations

import base64
import datetime as dt
import http.client
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from stripe_aep.catalog import RESOURCE_NAMES, stripe_resource
from stripe_aep.emulators.stripe_account import StripeAccount
from stripe_aep.emulators.stripe_api import (
    SlidingWindowLimiter,
    StripeEmulator,
    StripeFaults,
    redact_key,
)
from stripe_aep_tests.emulators.stripe_fixtures import (
    HEADERS,
    KEY,
    START,
    account,  # noqa: F401 - fixture
    day_bounds,
    emulator,  # noqa: F401 - fixture
    get,
    ids,
    make_account,
    page_all,
)


def _biggest_cluster(objects) -> tuple[int, int]:
    counts: dict[int, int] = {}
    for obj in objects:
        counts[obj["created"]] = counts.get(obj["created"], 0) + 1
    second = max(counts, key=counts.get)
    return second, counts[second]


# ---- paging ---------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["charges", "balance_transactions"])
def test_starting_after_pages_through_same_second_clusters_exactly_once(
    emulator, account, resource
):
    gte, lt = day_bounds(START)
    truth = account.objects(resource, gte=gte, lt=lt)
    second, size = _biggest_cluster(truth)
    assert size > 100  # the tie spans at least one page boundary at limit=100
    got, pages = page_all(emulator, resource, {"created[gte]": gte, "created[lt]": lt})
    assert ids(got) == ids(truth)  # same order, every object exactly once
    assert pages == -(-len(truth) // 100)
    # a small page size puts many boundaries inside the cluster
    got_small, _ = page_all(emulator, resource, {"created": second}, limit=7)
    assert ids(got_small) == [o["id"] for o in truth if o["created"] == second]


def test_every_resource_pages_to_all_objects(emulator, account):
    hidden_lifted = {"subscriptions": {"status": "all"}}
    for resource in ("charges", "refunds", "balance_transactions", "customers", "subscriptions"):
        got, _ = page_all(emulator, resource, hidden_lifted.get(resource))
        assert ids(got) == ids(account.objects(resource)), resource
    active, _ = page_all(emulator, "prices", {"active": "true"})
    inactive, _ = page_all(emulator, "prices", {"active": "false"})
    assert sorted(ids(active) + ids(inactive)) == sorted(ids(account.objects("prices")))


def test_ending_before_returns_the_newer_neighbours(emulator, account):
    charges = account.objects("charges")
    anchor = 250
    body = get(emulator, "/v1/charges", {"ending_before": charges[anchor]["id"], "limit": 5}).json()
    assert ids(body["data"]) == ids(charges[anchor - 5 : anchor]) and body["has_more"] is True
    top = get(emulator, "/v1/charges", {"ending_before": charges[3]["id"], "limit": 10}).json()
    assert ids(top["data"]) == ids(charges[:3]) and top["has_more"] is False
    # backwards paging from the oldest object reaches the newest, without repeats
    seen, cursor = [], charges[-1]["id"]
    while True:
        page = get(emulator, "/v1/charges", {"ending_before": cursor, "limit": 100}).json()
        seen = ids(page["data"]) + seen
        if not page["has_more"]:
            break
        cursor = page["data"][0]["id"]
    assert seen == ids(charges[:-1])


def test_ending_before_with_a_filter(emulator, account):
    subs = [s for s in account.objects("subscriptions") if s["status"] == "canceled"]
    body = get(
        emulator,
        "/v1/subscriptions",
        {"status": "canceled", "ending_before": subs[4]["id"], "limit": 2},
    ).json()
    assert ids(body["data"]) == ids(subs[2:4]) and body["has_more"] is True


def test_limit_default_and_bounds(emulator):
    body = get(emulator, "/v1/charges").json()
    assert body["object"] == "list" and body["url"] == "/v1/charges"
    assert len(body["data"]) == 10 and body["has_more"] is True
    assert len(get(emulator, "/v1/charges", {"limit": 1}).json()["data"]) == 1
    assert len(get(emulator, "/v1/charges", {"limit": 100}).json()["data"]) == 100
    for bad in ("0", "101", "-3", "ten"):
        response = get(emulator, "/v1/charges", {"limit": bad})
        assert response.status_code == 400, bad
        error = response.json()["error"]
        assert error["param"] == "limit" and error["code"] == "parameter_invalid_integer"
        assert error["type"] == "invalid_request_error"


def test_cursor_errors(emulator, account):
    first, second = ids(account.objects("charges")[:2])
    both = get(emulator, "/v1/charges", {"starting_after": first, "ending_before": second})
    assert both.status_code == 400 and "only specify one" in both.json()["error"]["message"]
    missing = get(emulator, "/v1/charges", {"starting_after": "ch_doesnotexist"})
    error = missing.json()["error"]
    assert missing.status_code == 400 and error["code"] == "resource_missing"
    assert error["param"] == "starting_after" and "ch_doesnotexist" in error["message"]
    foreign = get(emulator, "/v1/refunds", {"ending_before": first})  # a charge id on refunds
    assert foreign.status_code == 400 and foreign.json()["error"]["param"] == "ending_before"


def test_unknown_and_unsupported_parameters_are_rejected(emulator):
    response = get(emulator, "/v1/charges", {"colour": "blue"})
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "colour"
    assert "unknown parameter: colour" in error["message"]
    assert get(emulator, "/v1/charges", {"created[after]": "1"}).status_code == 400
    assert get(emulator, "/v1/charges", {"status": "all"}).status_code == 400  # not a charge filter
    unsupported = get(emulator, "/v1/subscriptions", {"test_clock": "clock_1"})
    assert unsupported.status_code == 400
    assert "does not implement" in unsupported.json()["error"]["message"]
    expand = get(emulator, "/v1/charges", {"expand[]": "data.customer", "limit": 2})
    assert expand.status_code == 200 and len(expand.json()["data"]) == 2


# ---- created filters ------------------------------------------------------------------------


def test_created_filters_gte_inclusive_lt_exclusive_and_exact(emulator, account):
    charges = account.objects("charges")
    second, _ = _biggest_cluster(charges)
    at = [o for o in charges if o["created"] == second]
    exact, _ = page_all(emulator, "charges", {"created": second})
    assert ids(exact) == ids(at)
    gte, _ = page_all(emulator, "charges", {"created[gte]": second})
    assert ids(gte) == [o["id"] for o in charges if o["created"] >= second]
    lt, _ = page_all(emulator, "charges", {"created[lt]": second})
    assert ids(lt) == [o["id"] for o in charges if o["created"] < second]
    gt, _ = page_all(emulator, "charges", {"created[gt]": second})
    lte, _ = page_all(emulator, "charges", {"created[lte]": second})
    assert ids(gt) + ids(lte) == ids(charges)
    assert set(ids(at)) <= set(ids(lte)) and not set(ids(at)) & set(ids(gt))
    bad = get(emulator, "/v1/charges", {"created[gte]": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "created[gte]"


# ---- hidden defaults and resource filters ---------------------------------------------------


def test_subscriptions_hide_canceled_unless_status_all(emulator, account):
    everything = account.objects("subscriptions")
    default, _ = page_all(emulator, "subscriptions")
    assert ids(default) == [s["id"] for s in everything if s["status"] != "canceled"]
    assert any(s["status"] == "incomplete_expired" for s in default)
    canceled, _ = page_all(emulator, "subscriptions", {"status": "canceled"})
    assert ids(canceled) == [s["id"] for s in everything if s["status"] == "canceled"]
    ended, _ = page_all(emulator, "subscriptions", {"status": "ended"})
    assert {s["status"] for s in ended} == {"canceled", "incomplete_expired"}
    assert get(emulator, "/v1/subscriptions", {"status": "gone"}).status_code == 400


def test_prices_hide_inactive_unless_asked(emulator, account):
    prices = account.objects("prices")
    default, _ = page_all(emulator, "prices")
    assert ids(default) == [p["id"] for p in prices if p["active"]]
    inactive, _ = page_all(emulator, "prices", {"active": "false"})
    assert ids(inactive) == [p["id"] for p in prices if not p["active"]] and inactive
    one_time, _ = page_all(emulator, "prices", {"type": "one_time", "active": "false"})
    assert ids(one_time) == [p["id"] for p in prices if not p["active"] and p["type"] == "one_time"]
    assert get(emulator, "/v1/prices", {"active": "maybe"}).status_code == 400


def test_resource_filters(emulator, account):
    charges = account.objects("charges")
    customer = next(c["customer"] for c in charges if c["customer"])
    got, _ = page_all(emulator, "charges", {"customer": customer})
    assert ids(got) == [c["id"] for c in charges if c["customer"] == customer]
    refund = account.objects("refunds")[0]
    got, _ = page_all(emulator, "refunds", {"charge": refund["charge"]})
    assert refund["id"] in ids(got) and all(r["charge"] == refund["charge"] for r in got)
    payouts, _ = page_all(emulator, "balance_transactions", {"type": "payout"})
    assert payouts and all(t["type"] == "payout" for t in payouts)
    assert len(payouts) == sum(
        1 for t in account.objects("balance_transactions") if t["type"] == "payout"
    )
    customer_obj = next(c for c in account.objects("customers") if c["email"])
    got, _ = page_all(emulator, "customers", {"email": customer_obj["email"]})
    assert ids(got) == [customer_obj["id"]]
    assert page_all(emulator, "customers", {"email": customer_obj["email"].upper()})[0] == []
    usd, _ = page_all(emulator, "prices", {"currency": "usd"})
    assert usd and all(p["currency"] == "usd" and p["active"] for p in usd)


def test_filters_combine_with_created_and_cursor(emulator, account):
    charges = account.objects("charges")
    customer = next(c["customer"] for c in reversed(charges) if c["customer"])
    expected = [c["id"] for c in charges if c["customer"] == customer]
    gte = min(c["created"] for c in charges if c["id"] in expected)
    got, _ = page_all(emulator, "charges", {"customer": customer, "created[gte]": gte}, limit=1)
    assert ids(got) == expected


# ---- retrieve, account ----------------------------------------------------------------------


def test_retrieve_each_resource_and_404(emulator, account):
    for resource in RESOURCE_NAMES:
        objects = account.objects(resource)
        assert objects, resource
        obj = objects[min(3, len(objects) - 1)]
        response = get(emulator, f"/v1/{resource}/{obj['id']}")
        assert response.status_code == 200 and response.json() == obj
    missing = get(emulator, "/v1/charges/ch_missing")
    error = missing.json()["error"]
    assert missing.status_code == 404 and error["code"] == "resource_missing"
    assert get(emulator, "/v1/payouts").status_code == 404
    assert get(emulator, "/v1/payouts/po_1").status_code == 404
    for resource in RESOURCE_NAMES:
        missing = get(emulator, f"/v1/{resource}/{stripe_resource(resource).id_prefix}missing")
        name = stripe_resource(resource).object_name
        assert missing.status_code == 404 and missing.json()["error"] == {
            "type": "invalid_request_error", "message": f"No such {name}: '{missing.url.rsplit('/', 1)[1]}'",
            "code": "resource_missing", "param": "id",
            "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        }, resource  # fmt: skip


def test_account_endpoint(emulator, account):
    body = get(emulator, "/v1/account").json()
    assert body["id"] == account.account_id and body["object"] == "account"


def test_writes_are_refused(emulator):
    response = requests.post(emulator.url + "/v1/charges", headers=HEADERS, data={"amount": 1})
    assert response.status_code == 405 and "read-only" in response.json()["error"]["message"]


# ---- headers --------------------------------------------------------------------------------


def test_request_ids_are_unique_and_version_is_echoed(emulator):
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: get(emulator, "/v1/charges", {"limit": 1}), range(40)))
    request_ids = [r.headers["Request-Id"] for r in responses]
    assert all(rid.startswith("req_") for rid in request_ids)
    assert len(set(request_ids)) == 40
    pinned = get(emulator, "/v1/charges", headers={**HEADERS, "Stripe-Version": "2024-06-20"})
    assert pinned.headers["Stripe-Version"] == "2024-06-20"
    assert get(emulator, "/v1/charges").headers["Stripe-Version"]
    error = get(emulator, "/v1/charges", {"limit": 0})
    assert error.headers["Request-Id"].startswith("req_")


def test_stripe_account_header(emulator, account):
    same = get(emulator, "/v1/charges", headers={**HEADERS, "Stripe-Account": account.account_id})
    assert same.status_code == 200
    other = get(emulator, "/v1/charges", headers={**HEADERS, "Stripe-Account": "acct_other"})
    error = other.json()["error"]
    assert other.status_code == 403 and error["code"] == "account_invalid"
    assert "acct_other" in error["message"] and KEY not in other.text


# ---- authentication and permissions ---------------------------------------------------------


def test_missing_bad_and_live_keys_get_401_without_echoing_the_key(emulator):
    missing = get(emulator, "/v1/charges", headers={})
    assert missing.status_code == 401 and "did not provide an API key" in missing.text
    secret = "sk_test_thisIsNotAValidKey!9876"
    bad = get(emulator, "/v1/charges", headers={"Authorization": f"Bearer {secret}"})
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "invalid_request_error"
    assert secret not in bad.text and "Invalid API Key provided" in bad.text
    live = "sk_live_" + "51AbCdEfGhIjKlMnOp4321"  # built at run time: no live-looking literal
    response = get(emulator, "/v1/charges", headers={"Authorization": f"Bearer {live}"})
    assert response.status_code == 401 and live not in response.text
    assert "sk_live_****4321" in response.text and "test keys" in response.text
    junk = get(emulator, "/v1/charges", headers={"Authorization": "Bearer pk_test_abc"})
    assert junk.status_code == 401
    assert all(KEY not in repr(record) for record in emulator.log)
    assert all(secret not in record.key_hint and live not in record.key_hint
               for record in emulator.log)  # fmt: skip


def test_basic_auth_with_the_key_as_username(emulator):
    token = base64.b64encode(f"{KEY}:".encode()).decode()
    response = get(emulator, "/v1/charges", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 200
    assert requests.get(emulator.url + "/v1/charges", auth=(KEY, ""), timeout=10).ok


def test_redact_key_shows_at_most_the_last_four_characters():
    assert redact_key("sk_test_51AbCdEfGhIjKl1234") == "sk_test_****1234"
    assert redact_key("sk_test_x") == "sk_test_****"  # a short key shows nothing
    assert redact_key("whatever") == "****"


def test_restricted_key_gets_403_naming_the_permission(account):
    key = "rk_test_51RestrictedKeyAbCdWxyz"
    with StripeEmulator(account, rate_limit_rps=0, restricted_keys={key: {"charges"}}) as emu:
        headers = {"Authorization": f"Bearer {key}"}
        assert get(emu, "/v1/charges", headers=headers).status_code == 200
        denied = get(emu, "/v1/subscriptions", {"status": "all"}, headers=headers)
        other = get(emu, "/v1/prices/price_x", headers=headers)
        unlisted = get(emu, "/v1/subscriptions", headers={"Authorization": "Bearer rk_test_any"})
    error = denied.json()["error"]
    assert denied.status_code == 403 and "'rak_subscription_read' permission" in error["message"]
    assert "does not have the required permissions" in error["message"] and key not in denied.text
    assert other.status_code == 403 and "rak_plan_read" in other.text
    assert unlisted.status_code == 200  # restricted keys not configured can read everything


def test_restricted_keys_are_validated(account):
    with pytest.raises(ValueError, match="not a test restricted key"):
        StripeEmulator(account, restricted_keys={"sk_test_abc": {"charges"}})
    with pytest.raises(ValueError, match="unknown resources"):
        StripeEmulator(account, restricted_keys={"rk_test_abc": {"payouts"}})


# ---- rate limit -----------------------------------------------------------------------------


def test_sliding_window_limiter_counts_admitted_arrivals_of_the_last_second():
    limiter = SlidingWindowLimiter(3)
    assert [limiter.admit(t) for t in (0.0, 0.1, 0.2, 0.3, 0.9)] == [True, True, True, False, False]
    assert limiter.admit(1.0)  # 0.0 left the window
    assert not limiter.admit(1.05)
    assert limiter.admit(1.25) and limiter.admit(1.3)  # 0.1 and 0.2 left
    assert SlidingWindowLimiter(0).admit(0.0)
    with pytest.raises(ValueError, match="rate_limit_rps"):
        SlidingWindowLimiter(-1)


def test_rate_limiter_answers_429_with_the_reason_header(account):
    with StripeEmulator(account, rate_limit_rps=3) as emu:
        with requests.Session() as session:
            responses = [
                session.get(emu.url + "/v1/charges", headers=HEADERS, params={"limit": 1})
                for _ in range(20)
            ]
        log = list(emu.log)
    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    limited = [r for r in responses if r.status_code == 429]
    assert limited
    for response in limited:
        assert response.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
        assert response.json()["error"]["code"] == "rate_limit"
    admitted = sorted(record.t for record in log if record.status == 200)
    assert all(sum(1 for a in admitted if t <= a < t + 1) <= 3 for t in admitted)


# ---- faults ---------------------------------------------------------------------------------


@pytest.fixture
def faulty(account):
    with StripeEmulator(account, rate_limit_rps=0) as emu:
        yield emu


def test_fault_429_rate_limited(faulty):
    faulty.faults.rate_limited_429 = 2
    statuses = [get(faulty, "/v1/charges") for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    assert statuses[0].json()["error"]["code"] == "rate_limit"


def test_fault_429_should_not_retry(faulty):
    faulty.faults.should_not_retry_429 = 1
    response = get(faulty, "/v1/charges")
    assert response.status_code == 429 and response.headers["Stripe-Should-Retry"] == "false"
    assert "Stripe-Rate-Limited-Reason" not in response.headers
    assert response.json()["error"]["code"] == "lock_timeout"
    assert get(faulty, "/v1/charges").status_code == 200


def test_fault_500(faulty):
    faulty.faults.server_errors_500 = 1
    response = get(faulty, "/v1/charges")
    assert response.status_code == 500 and response.json()["error"]["type"] == "api_error"
    assert response.headers["Request-Id"].startswith("req_")
    assert get(faulty, "/v1/charges").status_code == 200


def test_fault_dropped_connection(faulty):
    faulty.faults.dropped_connections = 1
    parts = urlsplit(faulty.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", "/v1/charges", headers=HEADERS)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        connection.getresponse()
    connection.close()
    assert get(faulty, "/v1/charges").status_code == 200
    assert [record.status for record in faulty.log] == [0, 200]


def test_fault_truncated_body(faulty, account):
    faulty.faults.truncated_bodies = 1
    parts = urlsplit(faulty.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", "/v1/charges?limit=50", headers=HEADERS)
    response = connection.getresponse()
    assert response.status == 200
    declared = int(response.headers["Content-Length"])
    with pytest.raises(http.client.IncompleteRead) as truncated:
        response.read()
    connection.close()
    assert 0 < len(truncated.value.partial) < declared
    assert get(faulty, "/v1/charges").status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        faulty.faults.truncated_bodies = 1
        get(faulty, "/v1/charges")


def test_fault_error_rate_is_seeded(account):
    def statuses(seed):
        faults = StripeFaults(error_rate=0.5, error_seed=seed)
        with StripeEmulator(account, rate_limit_rps=0, faults=faults) as emu:
            return [get(emu, "/v1/charges", {"limit": 1}).status_code for _ in range(30)]

    first, again = statuses(1), statuses(1)
    assert first == again and set(first) == {200, 500}


# ---- control endpoints ----------------------------------------------------------------------


def test_control_endpoints(faulty, account):
    health = requests.get(faulty.url + "/_emulator/health", timeout=10).json()
    assert health["status"] == "ok" and health["totals"]["charges"] == account.total("charges")
    get(faulty, "/v1/charges", {"limit": 2, "expand[]": "data.customer"})
    get(faulty, "/v1/prices", {"active": "false"})
    log = requests.get(faulty.url + "/_emulator/log", timeout=10).json()
    assert [(r["path"], r["status"]) for r in log] == [("/v1/charges", 200), ("/v1/prices", 200)]
    assert log[0]["query"] == {"limit": "2", "expand[]": "data.customer"}
    assert log[0]["key_hint"] == redact_key(KEY) and KEY not in str(log)
    since = requests.get(faulty.url + "/_emulator/log", params={"since": 1}, timeout=10).json()
    assert [r["path"] for r in since] == ["/v1/prices"]
    changed = requests.post(
        faulty.url + "/_emulator/faults", json={"server_errors_500": 1}, timeout=10
    )
    assert changed.json()["server_errors_500"] == 1 and faulty.faults.server_errors_500 == 1
    assert get(faulty, "/v1/charges").status_code == 500
    bad = requests.post(faulty.url + "/_emulator/faults", json={"explode": 1}, timeout=10)
    assert bad.status_code == 400 and "explode" in bad.json()["error"]
    negative = requests.post(faulty.url + "/_emulator/faults", json={"error_rate": -1}, timeout=10)
    assert negative.status_code == 400
    reset = requests.post(faulty.url + "/_emulator/reset", timeout=10).json()
    assert reset["cleared"] == 3 and faulty.log == []


# ---- live mode ------------------------------------------------------------------------------


def test_live_mode_objects_appear_as_the_clock_advances():
    day = dt.date(2026, 4, 2)
    start, end = day_bounds(day)
    now = [start + 8 * 3600]
    live = StripeAccount(seed=9, start=day, days=1, charges_per_day=120, live=True,
                         clock=lambda: now[0])  # fmt: skip
    with StripeEmulator(live, rate_limit_rps=0) as emu:
        early, _ = page_all(emu, "charges")
        assert ids(early) == ids(live.objects("charges")) and 0 < len(early) < 120
        assert all(c["created"] <= now[0] for c in early)
        future = live.index("charges").ids[0]  # the newest charge of the day, not yet created
        assert get(emu, f"/v1/charges/{future}").status_code == 404
        assert get(emu, "/v1/charges", {"ending_before": future}).status_code == 400
        now[0] = end
        later, _ = page_all(emu, "charges")
        assert len(later) == 120 and set(ids(early)) < set(ids(later))
        assert get(emu, f"/v1/charges/{future}").status_code == 200


def test_emulator_defaults_to_a_fresh_account():
    account = make_account(days=1, charges_per_day=20)
    with StripeEmulator(account) as emu:
        assert emu.url.startswith("http://127.0.0.1:")
        assert get(emu, "/v1/charges", {"limit": 100}).json()["data"][0]["object"] == "charge"
        assert "127.0.0.1" in repr(emu)
