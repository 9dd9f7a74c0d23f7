"""Schema Registry payloads: validated against Adobe's request schemas, consistent with Parquet."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from stripe_aep.catalog import RESOURCE_NAMES as RESOURCES
from stripe_aep.xdm import (
    CUSTOMER_NAMESPACE,
    column_schema,
    export_schemas,
    schema_registry_payloads,
    validate_tenant,
    xdm_schema_for,
)
from stripe_aep_tests.paths import AEP_SPECS as AEP_SPECS_DIR
from stripe_aep_tests.xdm.conftest import TENANT

AEP_SPECS = AEP_SPECS_DIR
SR = yaml.safe_load((AEP_SPECS / "schema-registry.yaml").read_text())
CATALOG = yaml.safe_load((AEP_SPECS / "catalog.yaml").read_text())


def sr_errors(definition: str, payload: dict) -> list[jsonschema.ValidationError]:
    schema = {"$ref": f"#/definitions/{definition}", "definitions": SR["definitions"]}
    return list(jsonschema.Draft4Validator(schema).iter_errors(payload))


@pytest.mark.parametrize("resource", RESOURCES)
def test_payloads_validate_against_schema_registry_spec(resource):
    p = schema_registry_payloads(resource, TENANT)
    assert sr_errors("createFieldGroup", p["field_group"]) == []
    assert sr_errors("createSchema", p["schema"]) == []
    if p["class"] is not None:
        assert sr_errors("createClass", p["class"]) == []
    for d in p["descriptors"]:
        errors = sr_errors("createDescriptor", d)
        # The spec's request schema types xdm:sourceVersion as a string, while Adobe's guide and
        # the spec's own example send the integer 1; we send 1. That is the only deviation.
        assert [(list(e.path), e.validator) for e in errors] == [(["xdm:sourceVersion"], "type")]
        assert d["xdm:sourceVersion"] == 1


@pytest.mark.parametrize("resource", RESOURCES)
def test_dataset_template_validates_against_catalog_spec(resource):
    p = schema_registry_payloads(resource, TENANT)
    schema = {"$ref": "#/components/schemas/dataSetRequest", "components": CATALOG["components"]}
    OAS30Validator(schema).validate(p["dataset"])
    assert p["dataset"]["name"] == f"stripe-aep {resource}"
    assert p["dataset"]["schemaRef"]["id"] == "{{schema:" + resource + "}}"


def _leaves(js: dict, prefix: str) -> set[str]:
    out: set[str] = set()
    for name, sub in js.get("properties", {}).items():
        path = f"{prefix}{name}"
        if sub["type"] == "object" and "properties" in sub:
            out |= _leaves(sub, f"{path}.")
        elif sub["type"] == "array" and "properties" in sub["items"]:
            out.add(path)
            out |= _leaves(sub["items"], f"{path}[].")
        else:
            out.add(path)
    return out


@pytest.mark.parametrize("resource", RESOURCES)
def test_field_group_and_parquet_describe_the_same_tenant_fields(resource):
    p = schema_registry_payloads(resource, TENANT)
    (definition,) = p["field_group"]["definitions"].values()
    tenant_js = definition["properties"][f"_{TENANT}"]
    from_field_group = _leaves(tenant_js, f"_{TENANT}.")
    from_columns = {n for n, _, _ in column_schema(resource, TENANT) if n.startswith(f"_{TENANT}.")}
    assert from_field_group == from_columns
    assert f"_{TENANT}.stripe.apiVersion" in from_columns
    assert xdm_schema_for(resource, TENANT).names[-1] == f"_{TENANT}"


def test_field_group_json_types():
    p = schema_registry_payloads("charges", TENANT)
    (definition,) = p["field_group"]["definitions"].values()
    charge = definition["properties"][f"_{TENANT}"]["properties"]["charge"]["properties"]
    assert charge["amount"]["type"] == "integer"
    assert charge["amount"]["maximum"] == 2**53
    assert charge["amountMajor"] == {
        "title": "Amount Major",
        "description": charge["amountMajor"]["description"],
        "type": "number",
    }
    assert charge["metadata"]["meta:xdmType"] == "map"
    assert charge["metadata"]["additionalProperties"] == {"type": "string"}
    common = definition["properties"][f"_{TENANT}"]["properties"]["stripe"]
    assert common["properties"]["created"]["format"] == "date-time"
    assert common["properties"]["object"]["enum"] == ["charge"]
    assert set(common["required"]) == {"id", "object", "created", "apiVersion"}
    assert (
        charge["status"]["meta:enum"]["succeeded"] == "succeeded" and "enum" not in charge["status"]
    )


def test_classes_identities_and_references():
    charges = schema_registry_payloads("charges", TENANT)
    assert charges["class_id"] == "https://ns.adobe.com/xdm/context/experienceevent"
    refs = [r["$ref"] for r in charges["schema"]["allOf"]]
    assert refs == [
        "https://ns.adobe.com/xdm/context/experienceevent",
        "https://ns.adobe.com/xdm/context/experienceevent-commerce",
        "{{fieldgroup:charges}}",
    ]
    (ident,) = charges["descriptors"]
    assert ident["xdm:sourceProperty"] == f"/_{TENANT}/charge/customer"
    assert ident["xdm:namespace"] == CUSTOMER_NAMESPACE and ident["xdm:isPrimary"] is True

    customers = schema_registry_payloads("customers", TENANT)
    assert customers["class_id"] == "https://ns.adobe.com/xdm/context/profile"
    assert [
        (d["xdm:sourceProperty"], d["xdm:namespace"], d["xdm:isPrimary"])
        for d in customers["descriptors"]
    ] == [
        (f"/_{TENANT}/stripe/id", "StripeCustomerId", True),
        ("/personalEmail/address", "Email", False),
    ]
    prices = schema_registry_payloads("prices", TENANT)
    assert prices["class_id"] == "{{class:prices}}"
    assert prices["field_group"]["meta:intendedToExtend"] == ["{{class:prices}}"]
    assert prices["class"]["allOf"] == [{"$ref": "https://ns.adobe.com/xdm/data/record"}]
    assert schema_registry_payloads("balance_transactions", TENANT)["descriptors"] == []
    subs = schema_registry_payloads("subscriptions", TENANT)
    assert subs["descriptors"][0]["xdm:sourceProperty"] == f"/_{TENANT}/subscription/customer"


def test_standard_fields_are_not_in_the_tenant_field_group():
    p = schema_registry_payloads("charges", TENANT)
    (definition,) = p["field_group"]["definitions"].values()
    assert list(definition["properties"]) == [f"_{TENANT}"]


def test_export_schemas_writes_every_payload(tmp_path):
    paths = export_schemas(TENANT, tmp_path / "out")
    rel = sorted(str(p.relative_to(tmp_path / "out")) for p in paths)
    expected = {"identity-namespace.json", "manifest.json", "prices/class.json"}
    for r in RESOURCES:
        expected |= {f"{r}/{n}.json" for n in ("fieldgroup", "schema", "descriptors", "dataset")}
    assert rel == sorted(expected)
    fg = json.loads((tmp_path / "out" / "refunds" / "fieldgroup.json").read_text())
    assert fg == schema_registry_payloads("refunds", TENANT)["field_group"]
    ns = json.loads((tmp_path / "out" / "identity-namespace.json").read_text())
    assert ns["code"] == "StripeCustomerId"
    again = export_schemas(TENANT, tmp_path / "again")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


@pytest.mark.parametrize("bad", ["_stripeaep", "Bad Tenant", "", "a.b", "a" * 129])
def test_bad_tenant_is_rejected_with_a_hint(bad, tmp_path):
    with pytest.raises(ValueError, match="invalid AEP tenant id"):
        schema_registry_payloads("charges", bad)
    with pytest.raises(ValueError, match="invalid AEP tenant id"):
        export_schemas(bad, tmp_path)
    if bad.startswith("_"):
        with pytest.raises(ValueError, match="without the leading underscore"):
            xdm_schema_for("charges", bad)


def test_the_longest_tenant_id_is_accepted():
    assert validate_tenant("a" * 128) == "a" * 128
    assert validate_tenant("acme_corp2") == "acme_corp2"
