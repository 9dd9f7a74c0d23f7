"""`stripe-aep setup` over field groups created by an earlier mapping: the fields added since (the
version fields of `_{TENANT}.stripe`) are added with one JSON Patch, idempotently, and the AEP
emulator refuses the changes AEP refuses on a field group in use."""

from __future__ import annotations

import copy
import io
import json
from urllib.parse import urlsplit

import pyarrow as pa
import pytest

from stripe_aep.aep.deliver import XdmFile, deliver
from stripe_aep.aep.errors import AepBatchFailed, AepError
from stripe_aep.aep.setup import run_setup
from stripe_aep.xdm import convert_jsonl, schema_registry_payloads
from stripe_aep.xdm.convert import listing_version
from stripe_aep_tests.aep.conftest import TENANT
from stripe_aep_tests.aep_spec import validate_request
from stripe_aep_tests.xdm.conftest import API_VERSION, sample

VERSION_FIELDS = {"versionTime", "versionSource", "versionEventId", "versionEventType", "deleted"}
RESOURCE = "customers"


def stripe_properties(field_group: dict) -> dict:
    [definition] = field_group["definitions"].values()
    return definition["properties"][f"_{TENANT}"]["properties"]["stripe"]["properties"]


def old_payloads() -> dict:
    """The customers payloads as the mapping made them before the version fields existed."""
    payloads = copy.deepcopy(schema_registry_payloads(RESOURCE, TENANT))
    props = stripe_properties(payloads["field_group"])
    for name in VERSION_FIELDS:
        del props[name]
    return {RESOURCE: payloads}


def field_group(aep) -> dict:
    [fg] = [
        g
        for g in aep.state.field_groups.values()
        if g["title"] == schema_registry_payloads(RESOURCE, TENANT)["titles"]["field_group"]
    ]
    return fg


@pytest.fixture
def sent(aep_client, monkeypatch):
    calls: list[tuple[str, str, object]] = []
    real = aep_client._session.request

    def record(method, url, **kw):
        calls.append((method, urlsplit(url).path, kw.get("json")))
        return real(method, url, **kw)

    monkeypatch.setattr(aep_client._session, "request", record)
    return calls


def converted_part(tmp_path) -> XdmFile:
    parts: list[pa.BufferOutputStream] = []

    def open_output(i):
        parts.append(pa.BufferOutputStream())
        return parts[-1]

    line = (json.dumps(sample(RESOURCE)) + "\n").encode()
    result = convert_jsonl(
        pa.BufferReader(line),
        resource=RESOURCE,
        tenant=TENANT,
        account=None,
        api_version=API_VERSION,
        open_output=open_output,
        quarantine=io.BytesIO(),
        version=listing_version(1_780_000_000),
    )
    assert result.rows == 1
    path = tmp_path / "customers.part0.parquet"
    path.write_bytes(parts[0].getvalue().to_pybytes())
    return XdmFile.from_path(path, key="xdm/customers/2026-11-20/1-2.part0.parquet")


def test_setup_adds_the_version_fields_to_an_older_field_group_once(
    aep, aep_client, sent, tmp_path, ledger
):
    datasets = run_setup(aep_client, tenant=TENANT, payloads=old_payloads(), environ={})
    assert not VERSION_FIELDS & set(stripe_properties(field_group(aep)))
    # Before the upgrade, a part with the version fields is refused as AEP would (INGEST-1211).
    part = converted_part(tmp_path)
    with pytest.raises(AepBatchFailed, match="not a field"):
        deliver(
            aep_client,
            ledger,
            dataset_id=datasets[RESOURCE],
            files=[part],
            wait_timeout_s=5,
            poll_interval_s=0.02,
        )

    sent.clear()
    payloads = {RESOURCE: schema_registry_payloads(RESOURCE, TENANT)}
    assert run_setup(aep_client, tenant=TENANT, payloads=payloads, environ={}) == datasets
    patches = [(path, body) for method, path, body in sent if method == "PATCH"]
    [(path, ops)] = patches
    assert "/tenant/fieldgroups/" in path
    assert validate_request("schema-registry", "patch", "/tenant/fieldgroups/{FIELD_GROUP_ID}", ops)
    assert {op["op"] for op in ops} == {"add"}
    assert {op["path"].rsplit("/", 1)[1] for op in ops} == VERSION_FIELDS
    added = stripe_properties(field_group(aep))
    assert set(added) >= VERSION_FIELDS
    assert added["versionTime"] == {
        **stripe_properties(payloads[RESOURCE]["field_group"])["versionTime"]
    }
    assert field_group(aep)["version"] == "1.1"
    # No new dataset, schema or field group; a second run sends no PATCH.
    sent.clear()
    assert run_setup(aep_client, tenant=TENANT, payloads=payloads, environ={}) == datasets
    assert not [1 for method, _, _ in sent if method == "PATCH"]
    assert len(aep.state.field_groups) == 1 and len(aep.state.datasets) == 1

    # Now the part is accepted (a new key: the refused batch was recorded as failed).
    fresh = XdmFile.from_path(
        tmp_path / "customers.part0.parquet", key="xdm/customers/2026-11-20/1-3.part0.parquet"
    )
    report = deliver(
        aep_client,
        ledger,
        dataset_id=datasets[RESOURCE],
        files=[fresh],
        wait_timeout_s=5,
        poll_interval_s=0.02,
    )
    assert report.delivered_rows == 1


@pytest.mark.parametrize(
    "op, refusal",
    [
        ({"op": "remove", "path": "{stripe}/livemode"}, "cannot be removed"),
        (
            {"op": "replace", "path": "{stripe}/livemode/type", "value": "string"},
            "cannot be redefined",
        ),
        ({"op": "add", "path": "{stripe}/livemode/enum", "value": [True]}, "enum"),
        (
            {"op": "add", "path": "{stripe_obj}/required/-", "value": "livemode"},
            "cannot be made required",
        ),
    ],
)
def test_emulator_refuses_breaking_field_group_patches(aep, aep_client, op, refusal):
    run_setup(aep_client, tenant=TENANT, payloads=old_payloads(), environ={})
    fg = field_group(aep)
    [name] = fg["definitions"]
    stripe_obj = f"/definitions/{name}/properties/_{TENANT}/properties/stripe"
    op = {**op, "path": op["path"].format(stripe=f"{stripe_obj}/properties", stripe_obj=stripe_obj)}
    with pytest.raises(AepError, match=refusal):
        aep_client.patch_field_group(fg["$id"], [op])
    assert field_group(aep)["version"] == "1.0"
