"""Schema Registry and identity namespaces: create, list, look up, patch, descriptors."""
# ruff: noqa: F811  (pytest fixtures are imported from aep_fixtures and used as arguments)

from __future__ import annotations

from urllib.parse import quote

import pytest

from stripe_aep_tests.emulators.aep_fixtures import (
    EXPERIENCE_EVENT,
    ORG_ID,
    PROFILE,
    SR,
    TENANT,
    XED_ID,
    XED_V1,
    aep,  # noqa: F401
    charge_field_group,
    charge_schema,
    platform,  # noqa: F401
    setup_dataset,
)

IDNS = "/data/core/idnamespace/identities"


def test_stats_names_tenant_and_org(platform):
    setup_dataset(platform)
    stats = platform.get(f"{SR}/stats").json()
    assert stats["tenantId"] == TENANT
    assert stats["imsOrg"] == ORG_ID
    assert stats["counts"]["schemas"] == 1
    assert stats["counts"]["mixins"] == 1
    assert stats["classUsage"][0]["$id"] == EXPERIENCE_EVENT
    assert stats["classUsage"][0]["schemas"][0]["title"] == "test charges"


def test_field_group_create_returns_ids_under_tenant(platform):
    resp = platform.post(f"{SR}/tenant/fieldgroups", json=charge_field_group())
    assert resp.status_code == 201
    fg = resp.json()
    hexid = fg["$id"].rsplit("/", 1)[-1]
    assert fg["$id"] == f"https://ns.adobe.com/{TENANT}/mixins/{hexid}"
    assert fg["meta:altId"] == f"_{TENANT}.mixins.{hexid}"
    assert fg["meta:resourceType"] == "mixins"
    assert fg["meta:tenantNamespace"] == f"_{TENANT}"
    assert fg["version"] == "1.0"
    assert fg["meta:intendedToExtend"] == [EXPERIENCE_EVENT]
    assert fg["definitions"] == charge_field_group()["definitions"]


def test_schema_create_and_lookup_by_alt_id_and_encoded_id(platform):
    fg = platform.post(f"{SR}/tenant/fieldgroups", json=charge_field_group()).json()
    resp = platform.post(f"{SR}/tenant/schemas", json=charge_schema(fg["$id"]))
    assert resp.status_code == 201
    schema = resp.json()
    assert schema["$id"].startswith(f"https://ns.adobe.com/{TENANT}/schemas/")
    assert schema["meta:class"] == EXPERIENCE_EVENT
    assert schema["meta:extends"] == [
        EXPERIENCE_EVENT,
        "https://ns.adobe.com/xdm/data/time-series",
        fg["$id"],
    ]
    assert schema["version"] == "1.0"
    for ident in (schema["meta:altId"], quote(schema["$id"], safe="")):
        got = platform.get(f"{SR}/tenant/schemas/{ident}", headers={"Accept": XED_V1})
        assert got.status_code == 200
        assert got.json()["$id"] == schema["$id"]
        assert got.json()["allOf"] == schema["allOf"]
    full = platform.get(
        f"{SR}/tenant/schemas/{schema['meta:altId']}",
        headers={"Accept": "application/vnd.adobe.xed-full+json; version=1"},
    ).json()
    assert {"_id", "timestamp", "eventType", f"_{TENANT}"} <= set(full["properties"])
    assert full["required"] == ["_id", "timestamp"]
    charge = full["properties"][f"_{TENANT}"]["properties"]["charge"]
    assert charge["properties"]["created"]["format"] == "date-time"
    notext = platform.get(
        f"{SR}/tenant/schemas/{schema['meta:altId']}",
        headers={"Accept": "application/vnd.adobe.xed-full-notext+json; version=1"},
    ).json()
    assert "title" not in notext
    assert (
        "title"
        not in notext["properties"][f"_{TENANT}"]["properties"]["charge"]["properties"]["id"]
    )


def test_lists_honour_accept_and_find_by_title(platform):
    first = setup_dataset(platform, "alpha")
    setup_dataset(platform, "beta")
    ids = platform.get(f"{SR}/tenant/schemas", headers={"Accept": XED_ID}).json()
    assert [r["title"] for r in ids["results"]] == ["alpha", "beta"]
    assert set(ids["results"][0]) == {"$id", "meta:altId", "version", "title"}
    assert ids["_page"]["count"] == 2
    assert ids["_page"]["next"] is None
    full = platform.get(
        f"{SR}/tenant/schemas", headers={"Accept": "application/vnd.adobe.xed+json"}
    ).json()
    assert full["results"][0]["allOf"] == first.schema["allOf"]
    found = platform.get(
        f"{SR}/tenant/schemas", params={"property": "title==alpha"}, headers={"Accept": XED_ID}
    ).json()
    assert [r["$id"] for r in found["results"]] == [first.schema["$id"]]
    groups = platform.get(
        f"{SR}/tenant/fieldgroups",
        params={"property": f"meta:intendedToExtend=={EXPERIENCE_EVENT}"},
        headers={"Accept": XED_ID},
    ).json()
    assert sorted(r["title"] for r in groups["results"]) == ["alpha fields", "beta fields"]
    assert platform.get(f"{SR}/global/schemas", headers={"Accept": XED_ID}).json()["results"] == []
    classes = platform.get(f"{SR}/global/classes", headers={"Accept": XED_ID}).json()
    assert {c["$id"] for c in classes["results"]} == {EXPERIENCE_EVENT, PROFILE}


def test_list_paging_follows_next(platform):
    for title in ("a", "b", "c"):
        fg = charge_field_group(title)
        assert platform.post(f"{SR}/tenant/fieldgroups", json=fg).status_code == 201
    page = platform.get(
        f"{SR}/tenant/fieldgroups",
        params={"orderby": "title", "limit": 2},
        headers={"Accept": XED_ID},
    ).json()
    assert [r["title"] for r in page["results"]] == ["a", "b"]
    assert page["_page"]["next"] == "b"
    rest = platform.get(
        page["_links"]["next"].replace(platform.url, ""), headers={"Accept": XED_ID}
    ).json()
    assert [r["title"] for r in rest["results"]] == ["c"]
    assert rest["_links"]["next"] is None


@pytest.mark.parametrize(
    ("path", "accept", "status"),
    [
        (f"{SR}/tenant/schemas", "application/json", 400),
        (f"{SR}/tenant/schemas", None, 400),
        (f"{SR}/tenant/schemas/x", "application/vnd.adobe.xed+json", 406),
    ],
)
def test_bad_accept_headers(platform, path, accept, status):
    resp = platform.get(path, headers={"Accept": accept})
    assert resp.status_code == status
    assert "Accept" in resp.json()["title"]
    assert resp.json()["type"].endswith(f"XDM-1006-{status}")


def test_unknown_schema_is_404(platform):
    resp = platform.get(f"{SR}/tenant/schemas/_{TENANT}.schemas.nope", headers={"Accept": XED_V1})
    assert resp.status_code == 404
    assert resp.json()["type"] == "http://ns.adobe.com/aep/errors/XDM-1012-404"


def test_field_group_rules(platform):
    outside = charge_field_group()
    outside["definitions"]["charge"]["properties"]["amount"] = {"type": "number"}
    resp = platform.post(f"{SR}/tenant/fieldgroups", json=outside)
    assert resp.status_code == 400
    assert f"nested under '_{TENANT}'" in resp.json()["detail"]
    no_type = charge_field_group()
    charge = no_type["definitions"]["charge"]["properties"][f"_{TENANT}"]["properties"]["charge"]
    charge["properties"]["amount"] = {"title": "Amount"}
    resp = platform.post(f"{SR}/tenant/fieldgroups", json=no_type)
    assert resp.status_code == 400
    assert "/amount" in resp.json()["detail"]
    missing = {"title": "x", "type": "object", "definitions": {}}
    resp = platform.post(f"{SR}/tenant/fieldgroups", json=missing)
    assert resp.status_code == 400
    assert "meta:intendedToExtend" in resp.json()["detail"]
    assert platform.post(f"{SR}/tenant/fieldgroups", json=charge_field_group()).status_code == 201
    duplicate = platform.post(f"{SR}/tenant/fieldgroups", json=charge_field_group())
    assert duplicate.status_code == 409


def test_schema_rules(platform):
    fg = platform.post(f"{SR}/tenant/fieldgroups", json=charge_field_group()).json()
    no_class = {"title": "t", "type": "object", "allOf": [{"$ref": fg["$id"]}]}
    resp = platform.post(f"{SR}/tenant/schemas", json=no_class)
    assert resp.status_code == 400
    assert "exactly one class" in resp.json()["detail"]
    wrong_class = charge_schema(fg["$id"])
    wrong_class["allOf"][0] = {"$ref": PROFILE}
    resp = platform.post(f"{SR}/tenant/schemas", json=wrong_class)
    assert resp.status_code == 400
    assert "not intended to extend" in resp.json()["detail"]
    missing_group = charge_schema(f"https://ns.adobe.com/{TENANT}/mixins/0000")
    resp = platform.post(f"{SR}/tenant/schemas", json=missing_group)
    assert resp.status_code == 400
    assert "does not exist" in resp.json()["detail"]
    with_standard_group = charge_schema(fg["$id"])
    with_standard_group["allOf"].append(
        {"$ref": "https://ns.adobe.com/xdm/context/experienceevent-commerce"}
    )
    assert platform.post(f"{SR}/tenant/schemas", json=with_standard_group).status_code == 201


def test_patch_enables_profile_union_and_adds_field_groups(platform):
    ds = setup_dataset(platform)
    schema_id = quote(ds.schema["$id"], safe="")
    resp = platform.call(
        "PATCH",
        f"{SR}/tenant/schemas/{schema_id}",
        json=[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}],
    )
    assert resp.status_code == 200
    assert resp.json()["meta:immutableTags"] == ["union"]
    assert resp.json()["version"] == "1.1"
    other = charge_field_group("more fields")
    other_fg = platform.post(f"{SR}/tenant/fieldgroups", json=other).json()
    resp = platform.call(
        "PATCH",
        f"{SR}/tenant/schemas/{schema_id}",
        json=[
            {"op": "add", "path": "/allOf/-", "value": {"$ref": other_fg["$id"]}},
            {"op": "add", "path": "/meta:extends/-", "value": other_fg["$id"]},
        ],
    )
    assert resp.status_code == 200
    assert resp.json()["meta:extends"][-1] == other_fg["$id"]
    assert resp.json()["version"] == "1.2"
    undo = platform.call(
        "PATCH",
        f"{SR}/tenant/schemas/{schema_id}",
        json=[{"op": "remove", "path": "/meta:immutableTags"}],
    )
    assert undo.status_code == 400
    bad = platform.call("PATCH", f"{SR}/tenant/schemas/{schema_id}", json={"op": "add"})
    assert bad.status_code == 400
    assert platform.get(f"{SR}/stats").json()["counts"]["unions"] == 1


def test_identity_namespaces_list_and_create(platform):
    codes = {n["code"] for n in platform.get(IDNS).json()}
    assert {"Email", "ECID", "Phone"} <= codes
    body = {
        "name": "Stripe customer",
        "code": "StripeCustomer",
        "idType": "CROSS_DEVICE",
        "description": "Stripe customer id",
    }
    resp = platform.post(IDNS, json=body)
    assert resp.status_code == 200
    created = resp.json()
    assert created["code"] == "StripeCustomer"
    assert created["custom"] is True
    assert created["status"] == "ACTIVE"
    assert isinstance(created["id"], int)
    assert platform.get(f"{IDNS}/{created['id']}").json()["code"] == "StripeCustomer"
    assert platform.post(IDNS, json=body).status_code == 409
    bad = platform.post(IDNS, json={**body, "code": "X", "idType": "NOPE"})
    assert bad.status_code == 400
    assert "idType" in bad.json()["detail"]
    missing = platform.post(IDNS, json={"name": "n"})
    assert missing.status_code == 400
    assert "code" in missing.json()["detail"]


def _identity(schema_id: str, prop: str, namespace: str = "Email", primary: bool = True) -> dict:
    return {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": schema_id,
        "xdm:sourceVersion": 1,
        "xdm:sourceProperty": prop,
        "xdm:namespace": namespace,
        "xdm:property": "xdm:code",
        "xdm:isPrimary": primary,
    }


def test_descriptors_create_and_list_in_every_accept_form(platform):
    ds = setup_dataset(platform)
    schema_id = ds.schema["$id"]
    prop = f"/_{TENANT}/charge/id"
    resp = platform.post(f"{SR}/tenant/descriptors", json=_identity(schema_id, prop))
    assert resp.status_code == 201
    descriptor = resp.json()
    assert descriptor["xdm:sourceProperty"] == prop
    assert descriptor["meta:containerId"] == "tenant"
    ident = descriptor["@id"]
    forms = {
        "application/vnd.adobe.xdm-id+json": {"xdm:descriptorIdentity": [ident]},
        "application/vnd.adobe.xdm-link+json": {
            "xdm:descriptorIdentity": [f"/descriptors/{ident}"]
        },
    }
    for accept, expected in forms.items():
        got = platform.get(f"{SR}/tenant/descriptors", headers={"Accept": accept})
        assert got.json() == expected
    full = platform.get(
        f"{SR}/tenant/descriptors", headers={"Accept": "application/vnd.adobe.xdm+json"}
    ).json()
    assert full["xdm:descriptorIdentity"][0]["xdm:namespace"] == "Email"
    v2 = platform.get(
        f"{SR}/tenant/descriptors", headers={"Accept": "application/vnd.adobe.xdm-v2+json"}
    ).json()
    assert v2["results"][0]["@id"] == ident
    assert platform.get(f"{SR}/tenant/descriptors/{ident}").json()["@id"] == ident


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"xdm:sourceProperty": f"/_{TENANT}/charge/nope"}, "not a field"),
        ({"xdm:namespace": "NoSuchNamespace"}, "does not exist"),
        ({"xdm:sourceSchema": "https://ns.adobe.com/x/schemas/0"}, "not a schema"),
        ({"@type": "xdm:whatever"}, "@type"),
    ],
)
def test_bad_descriptors_are_rejected(platform, change, words):
    ds = setup_dataset(platform)
    body = {**_identity(ds.schema["$id"], f"/_{TENANT}/charge/id"), **change}
    resp = platform.post(f"{SR}/tenant/descriptors", json=body)
    assert resp.status_code == 400
    assert words in resp.json()["detail"]


def test_only_one_primary_identity_per_schema(platform):
    ds = setup_dataset(platform)
    schema_id = ds.schema["$id"]
    first = platform.post(
        f"{SR}/tenant/descriptors", json=_identity(schema_id, f"/_{TENANT}/charge/id")
    )
    assert first.status_code == 201
    second = platform.post(f"{SR}/tenant/descriptors", json=_identity(schema_id, "/_id"))
    assert second.status_code == 400
    assert "already has a primary identity" in second.json()["detail"]
    secondary = _identity(schema_id, "/_id", primary=False)
    assert platform.post(f"{SR}/tenant/descriptors", json=secondary).status_code == 201


def test_json_bodies_need_a_json_content_type(platform):
    resp = platform.post(
        f"{SR}/tenant/fieldgroups", data=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert resp.status_code == 415
    no_type = platform.post(f"{SR}/tenant/fieldgroups", data=b"{}")
    assert no_type.status_code == 400
    assert no_type.json()["detail"] == "A valid content-type must be specified"
