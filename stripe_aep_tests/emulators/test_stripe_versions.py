"""Version-true objects: the emulator renders each object at the request's `Stripe-Version` (fields
newer than it are absent), answers a version Stripe does not know with Stripe's 400, and its
generated shapes are exactly the vendored shapes of the newest vendored version."""
# ruff: noqa: F811  (pytest fixtures are imported from stripe_fixtures and used as arguments)

from __future__ import annotations

import json

import pytest

from stripe_aep.catalog import RESOURCE_NAMES as RESOURCES
from stripe_aep.catalog import STRIPE_RESOURCES
from stripe_aep.config import DEFAULT_STRIPE_API_VERSION
from stripe_aep.emulators.stripe_account import load_samples
from stripe_aep.emulators.stripe_api import StripeEmulator
from stripe_aep.specs import stripe as stripe_specs
from stripe_aep_tests.emulators.stripe_fixtures import (
    HEADERS,
    account,  # noqa: F401 - fixture
    emulator,  # noqa: F401 - fixture
    get,
    ids,
)

OLDER = "2026-06-24.dahlia"  # the refund has no customer yet
REFUND_FIELDS_OF_2026_07_29 = {"customer", "customer_account", "payment_method"}


def at(version: str | None) -> dict[str, str]:
    return HEADERS if version is None else {**HEADERS, "Stripe-Version": version}


def list_all(emulator, resource: str, version: str) -> list[dict]:
    """Every object of a list at `version` (subscriptions: all statuses)."""
    params = {"status": "all"} if resource == "subscriptions" else {}
    objects, cursor = [], None
    while True:
        query = {**params, "limit": 100, **({"starting_after": cursor} if cursor else {})}
        response = get(emulator, f"/v1/{resource}", query, headers=at(version))
        assert response.status_code == 200, response.text
        assert response.headers["Stripe-Version"] == version
        body = response.json()
        objects.extend(body["data"])
        if not body["has_more"]:
            return objects
        cursor = body["data"][-1]["id"]


def test_the_pinned_default_is_the_newest_vendored_version():
    assert stripe_specs.newest_vendored_version() == DEFAULT_STRIPE_API_VERSION
    assert stripe_specs.vendored_versions() == ("2026-06-24.dahlia", "2026-07-29.dahlia")
    assert stripe_specs.is_api_version(DEFAULT_STRIPE_API_VERSION)
    assert stripe_specs.fields_newer_than("refund", OLDER) == REFUND_FIELDS_OF_2026_07_29
    for resource in STRIPE_RESOURCES:
        newer = stripe_specs.fields_newer_than(resource.object_name, DEFAULT_STRIPE_API_VERSION)
        assert newer == frozenset()


def test_generated_shapes_are_the_vendored_shapes_of_the_newest_version():
    """The account builds its objects from embedded samples: they must be the vendored ones.
    The generators of disputes and invoices read the vendored samples themselves."""
    current, _ = load_samples()
    embedded = [r.object_name for r in STRIPE_RESOURCES if r.object_name in current]
    assert {r.object_name for r in STRIPE_RESOURCES} - set(embedded) == {"dispute", "invoice"}
    for name in embedded:
        assert current[name] == stripe_specs.sample_object(name, DEFAULT_STRIPE_API_VERSION), name


def test_without_a_version_the_account_default_renders_refunds_with_customer(emulator, account):
    response = get(emulator, "/v1/refunds", {"limit": 100})
    assert response.headers["Stripe-Version"] == DEFAULT_STRIPE_API_VERSION
    refunds = response.json()["data"]
    assert refunds and all(set(r) >= REFUND_FIELDS_OF_2026_07_29 for r in refunds)
    truth = {r["id"]: r for r in account.objects("refunds")}
    assert refunds == [truth[r["id"]] for r in refunds]
    assert any(r["customer"] for r in refunds)


@pytest.mark.parametrize("version", [OLDER, "2025-03-31.basil", "2022-11-15"])
def test_fields_newer_than_the_requested_version_are_absent(emulator, account, version):
    """Every object of every resource, listed and retrieved: at an older version the refund has
    none of the fields 2026-07-29.dahlia added, and nothing else changes."""
    for resource in RESOURCES:
        object_name = next(r.object_name for r in STRIPE_RESOURCES if r.name == resource)
        newer = stripe_specs.fields_newer_than(object_name, version)
        rendered = list_all(emulator, resource, version)
        truth = {o["id"]: o for o in account.objects(resource)}
        assert rendered and set(ids(rendered)) <= set(truth)
        for obj in rendered:
            expected = {k: v for k, v in truth[obj["id"]].items() if k not in newer}
            assert obj == expected
    refunds = list_all(emulator, "refunds", version)
    assert refunds and not any(REFUND_FIELDS_OF_2026_07_29 & set(r) for r in refunds)
    one = get(emulator, f"/v1/refunds/{refunds[0]['id']}", headers=at(version))
    assert one.status_code == 200 and "customer" not in one.json()
    assert one.headers["Stripe-Version"] == version


def test_an_unknown_version_gets_stripes_400(emulator):
    for version in ("2026-13-01.dahlia", "2024-06-20.acacia", "latest", "2026-07-29"):
        response = get(emulator, "/v1/charges", headers=at(version))
        assert response.status_code == 400, version
        assert response.json() == {
            "error": {
                "type": "invalid_request_error",
                "message": f"Invalid Stripe API version: {version}",
            }
        }
        assert response.headers["Request-Id"].startswith("req_")
    assert [r.status for r in emulator.log[-4:]] == [400] * 4


def test_a_real_version_newer_than_the_vendored_shapes_is_refused_not_guessed(emulator):
    newer = [
        v
        for v in stripe_specs.api_versions()
        if stripe_specs.version_key(v) > stripe_specs.version_key(DEFAULT_STRIPE_API_VERSION)
    ]
    assert newer, "Stripe knows versions newer than the pinned one"
    response = get(emulator, "/v1/refunds", headers=at(newer[-1]))
    error = response.json()["error"]
    assert response.status_code == 400 and error["type"] == "invalid_request_error"
    assert newer[-1] in error["message"] and "stripe_aep/specs/stripe" in error["message"]


def test_the_account_default_version_is_configurable_and_checked(account):
    with StripeEmulator(account, rate_limit_rps=0, default_api_version=OLDER) as emu:
        response = get(emu, "/v1/refunds", {"limit": 5})
        assert response.headers["Stripe-Version"] == OLDER
        assert all("customer" not in r for r in response.json()["data"])
    with pytest.raises(ValueError, match="default_api_version"):
        StripeEmulator(account, default_api_version="2099-01-01.zebra")


def test_api_versions_are_stripes_own_list():
    versions = stripe_specs.api_versions()
    assert versions[0] == "2011-01-01" and len(versions) == len(set(versions)) > 100
    assert {"2022-11-15", "2025-03-31.basil", OLDER, DEFAULT_STRIPE_API_VERSION} <= set(versions)
    assert list(versions) == sorted(versions)
    source = json.loads((stripe_specs._HERE / "api_versions.json").read_text())["source"]
    assert "stripe-python" in source
