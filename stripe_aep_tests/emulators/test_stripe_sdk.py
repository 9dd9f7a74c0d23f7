"""The official `stripe` SDK against the emulator: auto-paging, retrieve, and its error classes."""
# ruff: noqa: F811  (pytest fixtures are imported from stripe_fixtures and used as arguments)

from __future__ import annotations

import pytest
import stripe

from stripe_aep.config import DEFAULT_STRIPE_API_VERSION
from stripe_aep.emulators.stripe_api import StripeEmulator
from stripe_aep.specs import stripe as stripe_specs
from stripe_aep_tests.emulators.stripe_fixtures import (
    KEY,
    account,  # noqa: F401 - fixture
    emulator,  # noqa: F401 - fixture
    ids,
)

#: A fake live key, assembled at run time so no live-looking literal sits in the repository.
LIVE_KEY = "sk_live_" + "51NotAcceptedHere9999"


def _client(emulator, key: str = KEY, **options) -> stripe.StripeClient:
    # The project pins its version (as every integration should); the SDK's own default is newer
    # than the object shapes the emulator has vendored, which the emulator refuses (test below).
    options.setdefault("stripe_version", DEFAULT_STRIPE_API_VERSION)
    return stripe.StripeClient(key, base_addresses={"api": emulator.url}, **options)


def _all(list_object) -> list[str]:
    return [item.id for item in list_object.auto_paging_iter()]


@pytest.mark.parametrize(
    ("resource", "params"),
    [
        ("charges", {}),
        ("refunds", {}),
        ("balance_transactions", {}),
        ("customers", {}),
        ("subscriptions", {"status": "all"}),
        ("disputes", {}),
        ("invoices", {}),
    ],
)
def test_auto_paging_lists_every_object(emulator, account, resource, params):
    client = _client(emulator)
    service = getattr(client.v1, resource)
    got = _all(service.list(params={**params, "limit": 100}))
    assert got == ids(account.objects(resource))
    assert len(got) == len(set(got)) == account.total(resource)


def test_auto_paging_prices_in_two_passes_and_hidden_defaults(emulator, account):
    client = _client(emulator)
    active = _all(client.v1.prices.list(params={"limit": 100, "active": True}))
    inactive = _all(client.v1.prices.list(params={"limit": 100, "active": False}))
    assert sorted(active + inactive) == sorted(ids(account.objects("prices")))
    default = _all(client.v1.prices.list(params={"limit": 100}))
    assert default == active
    not_canceled = _all(client.v1.subscriptions.list(params={"limit": 100}))
    everything = account.objects("subscriptions")
    assert not_canceled == [s["id"] for s in everything if s["status"] != "canceled"]


def test_auto_paging_with_created_range_and_small_pages(emulator, account):
    charges = account.objects("charges")
    gte, lt = charges[-1]["created"], charges[len(charges) // 3]["created"]
    client = _client(emulator)
    got = _all(client.v1.charges.list(params={"created": {"gte": gte, "lt": lt}, "limit": 13}))
    assert got == [c["id"] for c in charges if gte <= c["created"] < lt]


def test_auto_paging_backwards_from_ending_before(emulator, account):
    charges = ids(account.objects("charges"))
    client = _client(emulator)
    got = _all(client.v1.charges.list(params={"ending_before": charges[-1], "limit": 100}))
    assert got == list(reversed(charges[:-1]))  # the SDK yields backwards pages oldest first


def test_retrieve_and_account(emulator, account):
    client = _client(emulator)
    charge = account.objects("charges")[7]
    retrieved = client.v1.charges.retrieve(charge["id"])
    assert retrieved.id == charge["id"] and retrieved.amount == charge["amount"]
    assert retrieved.last_response.request_id.startswith("req_")
    assert client.v1.accounts.retrieve_current().id == account.account_id
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_missing")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_sdk_error_classes(account):
    restricted = "rk_test_51SdkRestrictedKeyWxyz"
    with StripeEmulator(
        account, rate_limit_rps=0, restricted_keys={restricted: {"charges"}}
    ) as emu:
        with pytest.raises(stripe.AuthenticationError) as bad_key:
            _client(emu, LIVE_KEY).v1.charges.list()
        assert LIVE_KEY not in str(bad_key.value)
        with pytest.raises(stripe.PermissionError) as denied:
            _client(emu, restricted).v1.subscriptions.list()
        assert "rak_subscription_read" in str(denied.value)
        emu.faults.rate_limited_429 = 1
        with pytest.raises(stripe.RateLimitError):
            _client(emu).v1.charges.list()
        with pytest.raises(stripe.InvalidRequestError) as invalid:
            _client(emu).v1.charges.list(params={"limit": 1000})
        assert invalid.value.param == "limit"
        emu.faults.server_errors_500 = 1
        with pytest.raises(stripe.APIError):
            _client(emu).v1.charges.list()


def test_sdk_retries_through_500s_and_dropped_connections(account):
    with StripeEmulator(account, rate_limit_rps=0) as emu:
        emu.faults.server_errors_500 = 1
        emu.faults.dropped_connections = 1
        page = _client(emu, max_network_retries=3).v1.charges.list(params={"limit": 3})
        assert ids(page.data) == ids(account.objects("charges")[:3])
        assert [record.status for record in emu.log] == [0, 500, 200]


def test_sdk_versions_render_or_are_refused_like_stripe(emulator, account):
    """At the SDK's pinned older version a refund has no `customer` (it arrived in
    2026-07-29.dahlia); at the project's pinned version it has; a version Stripe does not know is
    Stripe's 400; the SDK's own newer default is a real version the emulator cannot render."""
    refund_id = account.objects("refunds")[0]["id"]
    old = _client(emulator, stripe_version="2026-06-24.dahlia").v1.refunds.retrieve(refund_id)
    assert "customer" not in old and "payment_method" not in old and old.charge
    new = _client(emulator).v1.refunds.retrieve(refund_id)
    assert "customer" in new and new.id == old.id
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        _client(emulator, stripe_version="2026-13-01.dahlia").v1.charges.list()
    assert unknown.value.http_status == 400
    assert str(unknown.value.user_message) == "Invalid Stripe API version: 2026-13-01.dahlia"
    sdk_default = stripe.StripeClient(KEY, base_addresses={"api": emulator.url})
    assert stripe_specs.is_api_version(stripe.api_version)  # a real version, newer than vendored
    with pytest.raises(stripe.InvalidRequestError) as newer:
        sdk_default.v1.charges.list()
    assert stripe.api_version in str(newer.value) and "vendor" in str(newer.value)
