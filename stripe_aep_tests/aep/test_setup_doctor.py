"""Setup (idempotent, spec-valid requests), dataset resolution and doctor, against the AEP emulator."""

from __future__ import annotations

import copy
import json
import logging
from urllib.parse import urlsplit

import pytest

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.deliver import deliver
from stripe_aep.aep.doctor import doctor_aep
from stripe_aep.aep.errors import ConfigError
from stripe_aep.aep.setup import dataset_env_var, resolve_dataset_id, run_setup
from stripe_aep.catalog import RESOURCE_NAMES as RESOURCES
from stripe_aep.xdm import schema_registry_payloads
from stripe_aep_tests.aep.conftest import (
    PROFILE_CLASS,
    TENANT,
    make_files,
    minimal_payloads,
    settings_for,
)
from stripe_aep_tests.aep_spec import validate_request

PAYLOADS = {
    "charges": minimal_payloads("charges"),
    "customers": minimal_payloads("customers", class_id=PROFILE_CLASS),
}

#: our URL prefix → (spec, its path template) for every JSON body the client sends
SPEC_ROUTES = [
    ("POST", "/data/foundation/import/batches", "batch-ingestion", "/batches"),
    ("POST", "/data/foundation/catalog/dataSets", "catalog", "/dataSets"),
    (
        "POST",
        "/data/foundation/schemaregistry/tenant/fieldgroups",
        "schema-registry",
        "/tenant/fieldgroups",
    ),
    (
        "POST",
        "/data/foundation/schemaregistry/tenant/schemas",
        "schema-registry",
        "/tenant/schemas",
    ),
    (
        "POST",
        "/data/foundation/schemaregistry/tenant/classes",
        "schema-registry",
        "/tenant/classes",
    ),
    (
        "POST",
        "/data/foundation/schemaregistry/tenant/descriptors",
        "schema-registry",
        "/tenant/descriptors",
    ),
    (
        "PATCH",
        "/data/foundation/schemaregistry/tenant/schemas/",
        "schema-registry",
        "/tenant/schemas/{SCHEMA_ID}",
    ),
]


def counts(aep) -> dict[str, int]:
    s = aep.state
    return {
        "field_groups": len(s.field_groups),
        "schemas": len(s.schemas),
        "descriptors": len(s.descriptors),
        "datasets": len(s.datasets),
        "namespaces": len(s.identity_namespaces),
        "unions": sum(1 for x in s.schemas.values() if "union" in x.get("meta:immutableTags", [])),
    }


@pytest.fixture
def recorded(aep_client, monkeypatch):
    """Every (method, path, json body) the client sends."""
    sent: list[tuple[str, str, object]] = []
    real = aep_client._session.request

    def record(method, url, **kw):
        sent.append((method, urlsplit(url).path, kw.get("json")))
        return real(method, url, **kw)

    monkeypatch.setattr(aep_client._session, "request", record)
    return sent


def test_setup_creates_everything_once_and_a_second_run_creates_nothing(aep, aep_client):
    before = counts(aep)
    first = run_setup(aep_client, tenant=TENANT, payloads=PAYLOADS, environ={})
    after_first = counts(aep)
    assert after_first["field_groups"] - before["field_groups"] == 2
    assert after_first["schemas"] - before["schemas"] == 2
    assert after_first["descriptors"] - before["descriptors"] == 2
    assert after_first["datasets"] - before["datasets"] == 2
    assert after_first["namespaces"] - before["namespaces"] == 1
    assert set(first) == {"charges", "customers"}
    state = aep.state
    for resource, dataset_id in first.items():
        ds = state.datasets[dataset_id]
        assert ds["name"] == PAYLOADS[resource]["dataset"]["name"]
        assert ds.get("enableErrorDiagnostics") is True
        assert ds["schemaRef"]["id"] in state.schemas  # placeholder replaced by the real $id
        assert "unifiedProfile" not in (ds.get("tags") or {})  # profile off by default

    second = run_setup(aep_client, tenant=TENANT, payloads=PAYLOADS, environ={})
    assert second == first
    assert counts(aep) == after_first


def validate_recorded(recorded) -> set[str]:
    validated = set()
    for method, path, body in recorded:
        if body is None:
            continue
        route = next(
            (
                r
                for r in SPEC_ROUTES
                if r[0] == method
                and (path == r[1] or (r[1].endswith("/") and path.startswith(r[1])))
            ),
            None,
        )
        if route is None:
            assert path == "/data/core/idnamespace/identities"  # Identity Service: no spec here
            continue
        assert validate_request(route[2], method.lower(), route[3], body), (method, path)
        validated.add(route[3])
    return validated


def test_setup_with_the_xdm_payloads_of_every_resource(aep, aep_client, recorded):
    payloads = {r: schema_registry_payloads(r, TENANT) for r in RESOURCES}
    ids = run_setup(aep_client, tenant=TENANT, payloads=payloads, environ={}, profile=True)
    n = len(RESOURCES)
    assert set(ids) == set(RESOURCES) and len(set(ids.values())) == n
    after = counts(aep)
    assert after["datasets"] == n and after["schemas"] == n and after["field_groups"] == n
    assert after["unions"] >= 1
    assert validate_recorded(recorded) >= {
        "/tenant/classes",
        "/tenant/fieldgroups",
        "/tenant/schemas",
        "/tenant/descriptors",
        "/dataSets",
    }
    assert run_setup(aep_client, tenant=TENANT, payloads=payloads, environ={}, profile=True) == ids
    assert counts(aep) == after
    # the default dataset lookup uses the payloads' names
    env = {"AEP_TENANT_ID": TENANT}
    assert {r: resolve_dataset_id(aep_client, r, env) for r in RESOURCES} == ids
    checks = doctor_aep(aep_client, tenant=TENANT, resources=list(RESOURCES), environ=env)
    assert all(c.ok for c in checks), "\n".join(map(str, checks))


def test_setup_requests_conform_to_adobes_specs(aep, aep_client, recorded, tmp_path, ledger):
    ids = run_setup(aep_client, tenant=TENANT, payloads=PAYLOADS, environ={}, profile=True)
    deliver(
        aep_client,
        ledger,
        dataset_id=ids["charges"],
        files=make_files(tmp_path / "lake", 1, 3),
        wait_timeout_s=5,
        poll_interval_s=0.02,
    )
    validated = validate_recorded(recorded)
    assert validated == {r[3] for r in SPEC_ROUTES} - {"/tenant/classes"}


def test_profile_setup_tags_schema_and_dataset_when_the_class_allows(aep, aep_client):
    payloads = copy.deepcopy(PAYLOADS)
    payloads["customers"]["descriptors"][0]["xdm:isPrimary"] = False  # no primary identity
    ids = run_setup(aep_client, tenant=TENANT, payloads=payloads, environ={}, profile=True)
    state = aep.state
    charges = state.datasets[ids["charges"]]
    customers = state.datasets[ids["customers"]]
    assert charges["tags"]["unifiedProfile"] == ["enabled:true"]
    assert "union" in state.schemas[charges["schemaRef"]["id"]]["meta:immutableTags"]
    assert "unifiedProfile" not in (customers.get("tags") or {})
    assert "union" not in state.schemas[customers["schemaRef"]["id"]].get("meta:immutableTags", [])
    before = counts(aep)
    run_setup(aep_client, tenant=TENANT, payloads=payloads, environ={}, profile=True)
    assert counts(aep) == before


def test_pinned_dataset_wins_and_is_not_created(aep, aep_client):
    ids = run_setup(
        aep_client, tenant=TENANT, payloads={"charges": PAYLOADS["charges"]}, environ={}
    )
    env = {"AEP_DATASET_CUSTOMERS": ids["charges"]}
    before = counts(aep)["datasets"]
    ids2 = run_setup(aep_client, tenant=TENANT, payloads=PAYLOADS, environ=env)
    assert ids2["customers"] == ids["charges"]
    assert counts(aep)["datasets"] == before


def test_pinned_dataset_that_does_not_exist_names_the_variable(aep, aep_client):
    with pytest.raises(ConfigError) as err:
        run_setup(
            aep_client,
            tenant=TENANT,
            payloads=PAYLOADS,
            environ={"AEP_DATASET_CHARGES": "5c8c3c555033b814b69f947f"},
        )
    assert err.value.variable == "AEP_DATASET_CHARGES"


def test_resolve_dataset_id_prefers_the_variable_then_the_name(aep, aep_client):
    name = PAYLOADS["charges"]["dataset"]["name"]
    with pytest.raises(ConfigError) as err:
        resolve_dataset_id(aep_client, "charges", {}, dataset_name=name)
    assert "stripe-aep setup" in str(err.value) and err.value.variable == "AEP_DATASET_CHARGES"
    ids = run_setup(aep_client, tenant=TENANT, payloads=PAYLOADS, environ={})
    assert resolve_dataset_id(aep_client, "charges", {}, dataset_name=name) == ids["charges"]
    pinned = {"AEP_DATASET_CHARGES": ids["customers"]}
    assert resolve_dataset_id(aep_client, "charges", pinned, dataset_name=name) == ids["customers"]
    assert dataset_env_var("balance_transactions") == "AEP_DATASET_BALANCE_TRANSACTIONS"


def test_setup_refuses_a_tenant_that_is_not_the_organizations(aep, aep_client):
    with pytest.raises(ConfigError) as err:
        run_setup(aep_client, tenant="othertenant", payloads=PAYLOADS, environ={})
    assert err.value.variable == "AEP_TENANT_ID" and f"AEP_TENANT_ID={TENANT}" in str(err.value)
    assert counts(aep)["schemas"] == 0


def test_unknown_placeholder_is_a_clear_error(aep, aep_client):
    payloads = {"charges": copy.deepcopy(PAYLOADS["charges"])}
    payloads["charges"]["schema"]["allOf"][1]["$ref"] = "{{fieldgroup:refunds}}"
    with pytest.raises(ValueError, match=r"\{\{fieldgroup:refunds\}\}"):
        run_setup(aep_client, tenant=TENANT, payloads=payloads, environ={})


# -- doctor ---------------------------------------------------------------------------------


def names_ok(checks) -> dict[str, bool]:
    return {c.name: c.ok for c in checks}


def test_doctor_all_green_after_setup(aep, aep_client):
    run_setup(aep_client, tenant=TENANT, payloads=PAYLOADS, environ={})
    checks = doctor_aep(
        aep_client,
        tenant=TENANT,
        resources=["charges", "customers"],
        environ={},
        dataset_names={r: p["dataset"]["name"] for r, p in PAYLOADS.items()},
    )
    assert all(c.ok for c in checks), "\n".join(map(str, checks))
    assert [c.name for c in checks] == [
        "AEP token",
        "AEP access",
        "AEP tenant id",
        "AEP identity namespace",
        "AEP dataset charges",
        "AEP dataset customers",
    ]


def test_doctor_before_setup_says_to_run_setup(aep, aep_client):
    checks = doctor_aep(
        aep_client,
        tenant=TENANT,
        resources=["charges"],
        environ={},
        dataset_names={"charges": "Stripe charges (test)"},
    )
    by = {c.name: c for c in checks}
    assert by["AEP token"].ok and by["AEP access"].ok and by["AEP tenant id"].ok
    assert (
        not by["AEP identity namespace"].ok
        and "stripe-aep setup" in by["AEP identity namespace"].fix
    )
    assert not by["AEP dataset charges"].ok
    assert "stripe-aep setup" in by["AEP dataset charges"].fix
    assert "AEP_DATASET_CHARGES" in by["AEP dataset charges"].fix


def test_doctor_wrong_secret_stops_at_the_token_and_names_the_variable(aep, caplog):
    client = AepClient(settings_for(aep, client_secret="not-the-secret-123"))
    with caplog.at_level(logging.DEBUG):
        checks = doctor_aep(client, tenant=TENANT, resources=["charges"], environ={})
    assert names_ok(checks) == {"AEP token": False, "AEP access": False}
    assert "AEP_CLIENT_SECRET" in checks[0].fix
    text = "\n".join(map(str, checks)) + caplog.text + repr(client)
    assert "not-the-secret-123" not in text and aep.identity.client_secret not in text


def test_doctor_wrong_sandbox_and_org(aep):
    checks = doctor_aep(
        AepClient(settings_for(aep, sandbox="dev")), tenant=TENANT, resources=[], environ={}
    )
    access = checks[1]
    assert checks[0].ok and not access.ok and "AEP_SANDBOX" in access.fix
    checks = doctor_aep(
        AepClient(settings_for(aep, org_id="FFFFFFFFFFFFFFFFFFFFFFFF@AdobeOrg")),
        tenant=TENANT,
        resources=[],
        environ={},
    )
    assert not checks[1].ok and "AEP_ORG_ID" in checks[1].fix


def test_doctor_tenant_missing_or_wrong(aep, aep_client):
    by = {c.name: c for c in doctor_aep(aep_client, tenant=None, resources=[], environ={})}
    assert not by["AEP tenant id"].ok and by["AEP tenant id"].fix == f"Set AEP_TENANT_ID={TENANT}"
    by = {c.name: c for c in doctor_aep(aep_client, tenant="acme", resources=[], environ={})}
    assert not by["AEP tenant id"].ok and TENANT in by["AEP tenant id"].detail


def test_check_renders_without_secrets(aep, aep_client):
    checks = doctor_aep(aep_client, tenant=TENANT, resources=[], environ={})
    rendered = json.dumps([str(c) for c in checks])
    assert aep.identity.client_secret not in rendered
