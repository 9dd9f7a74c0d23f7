"""IMS token flow and the gateway's header checks, as Adobe documents them (reference §1 and §6)."""
# ruff: noqa: F811  (pytest fixtures are imported from aep_fixtures and used as arguments)

from __future__ import annotations

import json
import logging

import pytest
import requests

from stripe_aep.emulators.aep_api import AepEmulator, AepFaults
from stripe_aep_tests.emulators.aep_fixtures import (  # noqa: F401
    CLIENT_ID,
    CLIENT_SECRET,
    ORG_ID,
    SR,
    Platform,
    aep,
    charge_table,
    fetch_token,
    ingest,
    parquet_bytes,
    platform,
    setup_dataset,
    token_form,
)


def test_token_is_opaque_bearer_with_expiry_in_seconds(aep):
    first = requests.post(f"{aep.url}/ims/token/v3", data=token_form(), timeout=10)
    second = requests.post(f"{aep.url}/ims/token/v3", data=token_form(), timeout=10)
    assert first.status_code == second.status_code == 200
    body = first.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86399
    assert len(body["access_token"]) >= 32
    assert body["access_token"] != second.json()["access_token"]
    assert aep.state.tokens_issued == 2
    assert aep.state.tokens_valid == 2


def test_token_fields_may_come_in_the_query_string(aep):
    resp = requests.post(f"{aep.url}/ims/token/v3", params=token_form(), timeout=10)
    assert resp.status_code == 200
    assert resp.json()["token_type"] == "bearer"


@pytest.mark.parametrize(
    ("override", "status", "error", "words"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", "client_secret"),
        ({"client_id": "somebody-else"}, 400, "invalid_client", "client_id"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", "client_credentials"),
        ({"client_secret": None, "scope": None}, 400, "invalid_request", "client_secret, scope"),
    ],
)
def test_bad_token_requests_get_ims_errors(aep, override, status, error, words):
    resp = requests.post(f"{aep.url}/ims/token/v3", data=token_form(**override), timeout=10)
    assert resp.status_code == status
    body = resp.json()
    assert body["error"] == error
    assert words in body["error_description"]
    assert "wrong" not in resp.text  # a rejected secret is never echoed
    assert aep.state.tokens_issued == 0


def test_expired_tokens_are_rejected_with_401013(aep):
    aep.faults.token_expires_in = 0
    resp = requests.post(f"{aep.url}/ims/token/v3", data=token_form(), timeout=10)
    assert resp.json()["expires_in"] == 0
    stale = Platform(aep.url, resp.json()["access_token"])
    answer = stale.get(f"{SR}/stats")
    assert answer.status_code == 401
    assert answer.json() == {"error_code": "401013", "message": "Oauth token is not valid"}
    aep.faults.token_expires_in = 86399
    fresh = Platform(aep.url, fetch_token(aep.url))
    assert fresh.get(f"{SR}/stats").status_code == 200


def test_expire_all_tokens_invalidates_every_token_issued_so_far(aep):
    old = Platform(aep.url, fetch_token(aep.url))
    assert old.get(f"{SR}/stats").status_code == 200
    aep.faults.expire_all_tokens = True
    assert old.get(f"{SR}/stats").json()["error_code"] == "401013"
    assert aep.faults.expire_all_tokens is False  # consumed by that request
    new = Platform(aep.url, fetch_token(aep.url))
    assert new.get(f"{SR}/stats").status_code == 200
    assert old.get(f"{SR}/stats").status_code == 401
    assert aep.state.tokens_valid == 1


def _without(headers: dict, name: str) -> dict:
    return {k: v for k, v in headers.items() if k.lower() != name.lower()}


@pytest.mark.parametrize(
    ("change", "status", "code", "message"),
    [
        (lambda h: _without(h, "Authorization"), 401, "403010", "Oauth token is missing."),
        (lambda h: {**h, "Authorization": "Basic abc"}, 401, "403010", "Oauth token is missing."),
        (
            lambda h: {**h, "Authorization": "Bearer forged"},
            401,
            "401013",
            "Oauth token is not valid",
        ),
        (lambda h: _without(h, "x-api-key"), 403, "403000", "Api Key is required"),
        (lambda h: {**h, "x-api-key": "other-client"}, 403, "403003", "Api Key is invalid"),
        (
            lambda h: _without(h, "x-gw-ims-org-id"),
            400,
            "400003",
            "Missing header: x-gw-ims-org-id",
        ),
        (
            lambda h: {**h, "x-gw-ims-org-id": "FFFFFFFFFFFFFFFFFFFFFFFF@AdobeOrg"},
            403,
            "403025",
            "Profile is not valid",
        ),
    ],
)
def test_gateway_errors(platform, change, status, code, message):
    headers = change(platform.headers())
    resp = requests.get(f"{platform.url}{SR}/stats", headers=headers, timeout=10)
    assert resp.status_code == status
    assert resp.json() == {"error_code": code, "message": message}


def test_missing_sandbox_header_is_a_400_naming_it(platform):
    resp = requests.get(
        f"{platform.url}{SR}/stats",
        headers=_without(platform.headers(), "x-sandbox-name"),
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "400003"
    assert "x-sandbox-name" in resp.json()["message"]


def test_unknown_sandbox_is_a_403_naming_the_served_one(platform):
    resp = requests.get(
        f"{platform.url}{SR}/stats",
        headers={**platform.headers(), "x-sandbox-name": "dev"},
        timeout=10,
    )
    assert resp.status_code == 403
    assert "'dev'" in resp.json()["detail"]
    assert "'prod'" in resp.json()["detail"]


def test_every_platform_service_is_behind_the_gateway(aep):
    for method, path in [
        ("GET", f"{SR}/tenant/schemas"),
        ("GET", "/data/core/idnamespace/identities"),
        ("GET", "/data/foundation/catalog/dataSets"),
        ("POST", "/data/foundation/import/batches"),
        ("GET", "/data/foundation/export/batches/x/files"),
    ]:
        resp = requests.request(method, f"{aep.url}{path}", timeout=10)
        assert resp.status_code == 401, path
        assert resp.json()["error_code"] == "403010", path


def test_control_endpoints_need_no_auth_and_set_faults(aep):
    assert requests.get(f"{aep.url}/_emulator/health", timeout=10).json()["status"] == "ok"
    resp = requests.post(
        f"{aep.url}/_emulator/faults", json={"put_5xx": 2, "processing_delay_s": 1.5}, timeout=10
    )
    assert resp.status_code == 200
    assert resp.json()["put_5xx"] == 2
    assert aep.faults.put_5xx == 2
    assert aep.faults.processing_delay_s == 1.5
    bad = requests.post(f"{aep.url}/_emulator/faults", json={"nope": 1}, timeout=10)
    assert bad.status_code == 400
    assert "nope" in bad.json()["detail"]
    wrong_type = requests.post(f"{aep.url}/_emulator/faults", json={"put_5xx": "x"}, timeout=10)
    assert wrong_type.status_code == 400
    assert aep.faults.put_5xx == 2
    state = requests.get(f"{aep.url}/_emulator/state", timeout=10).json()
    assert state["faults"]["put_5xx"] == 2
    assert state["datasets"] == {}


def test_secrets_never_leak(tmp_path, caplog):
    secret = "s3cr3t-client-secret-value"
    caplog.set_level(logging.DEBUG)
    with AepEmulator(
        client_secret=secret, state_dir=tmp_path, faults=AepFaults(processing_delay_s=0)
    ) as aep:
        form = token_form(client_secret=secret)
        token = requests.post(f"{aep.url}/ims/token/v3", data=form, timeout=10).json()[
            "access_token"
        ]
        platform = Platform(aep.url, token)
        ds = setup_dataset(platform)
        ingest(platform, ds.dataset_id, {"a.parquet": parquet_bytes(charge_table(3))})
        platform.get(f"{SR}/stats", headers={"x-api-key": "wrong"})
        texts = [
            repr(aep),
            repr(aep.identity),
            repr(aep.state),
            json.dumps(requests.get(f"{aep.url}/_emulator/state", timeout=10).json()),
            caplog.text,
        ]
        texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*.json")]
    assert (tmp_path / "state.json").exists()
    for text in texts:
        assert secret not in text
        assert token not in text
    with AepEmulator() as default:
        assert CLIENT_SECRET not in repr(default)
        assert CLIENT_SECRET not in repr(default.state)
