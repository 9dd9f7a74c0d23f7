"""The real XDM mapping (`stripe_aep.xdm`) sets up and ingests cleanly into the emulator.

This is the test that ties the two halves together: for every resource, the Schema Registry payloads
from `schema_registry_payloads` are created through the emulator's HTTP API exactly as documented
(identity namespace, custom class, field group, schema, identity descriptors, dataset), Stripe's own
sample objects are converted with `convert_jsonl`, and the Parquet parts are ingested. A mapping that
writes a column its schema does not declare, or a Parquet type AEP does not document, fails here.
"""
# ruff: noqa: F811  (pytest fixtures are imported from aep_fixtures and used as arguments)

from __future__ import annotations

import io
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stripe_aep.catalog import STRIPE_RESOURCES
from stripe_aep.xdm import RESOURCES, convert_jsonl, schema_registry_payloads
from stripe_aep.xdm.convert import listing_version
from stripe_aep_tests.aep_spec import validate_request
from stripe_aep_tests.emulators.aep_fixtures import (
    CATALOG,
    SR,
    TENANT,
    aep,  # noqa: F401
    ingest,
    platform,  # noqa: F401
)
from stripe_aep_tests.paths import STRIPE_SPECS

STRIPE_SAMPLES = STRIPE_SPECS
OBJECT_OF = {r.name: r.object_name for r in STRIPE_RESOURCES}
PLACEHOLDER = re.compile(r"\{\{(class|fieldgroup|schema):([a-z_]+)\}\}")


def _substitute(payload, ids: dict[str, str]):
    text = json.dumps(payload)
    text = PLACEHOLDER.sub(lambda m: ids[f"{m.group(1)}:{m.group(2)}"], text)
    return json.loads(text)


def _set_up(platform, resource: str) -> str:
    payloads = schema_registry_payloads(resource, TENANT)
    ids: dict[str, str] = {}
    namespace = payloads["identity_namespace"]
    if namespace:
        codes = {n["code"] for n in platform.get("/data/core/idnamespace/identities").json()}
        if namespace["code"] not in codes:
            resp = platform.post("/data/core/idnamespace/identities", json=namespace)
            assert resp.status_code == 200, resp.text
    if payloads["class"]:
        resp = platform.post(f"{SR}/tenant/classes", json=payloads["class"])
        assert resp.status_code == 201, resp.text
        ids[f"class:{resource}"] = resp.json()["$id"]
    field_group = _substitute(payloads["field_group"], ids)
    assert validate_request("schema-registry", "post", "/tenant/fieldgroups", field_group)
    resp = platform.post(f"{SR}/tenant/fieldgroups", json=field_group)
    assert resp.status_code == 201, resp.text
    ids[f"fieldgroup:{resource}"] = resp.json()["$id"]
    schema = _substitute(payloads["schema"], ids)
    assert validate_request("schema-registry", "post", "/tenant/schemas", schema)
    resp = platform.post(f"{SR}/tenant/schemas", json=schema)
    assert resp.status_code == 201, resp.text
    ids[f"schema:{resource}"] = resp.json()["$id"]
    for descriptor in payloads["descriptors"]:
        body = _substitute(descriptor, ids)
        assert validate_request("schema-registry", "post", "/tenant/descriptors", body)
        resp = platform.post(f"{SR}/tenant/descriptors", json=body)
        assert resp.status_code == 201, resp.text
    dataset = _substitute(payloads["dataset"], ids)
    assert validate_request("catalog", "post", "/dataSets", dataset)
    resp = platform.post(f"{CATALOG}/dataSets", json=dataset)
    assert resp.status_code == 201, resp.text
    return resp.json()[0].rsplit("/", 1)[-1]


def _stripe_samples(resource: str) -> list[dict]:
    out = []
    for name in ("fixtures3.json", "samples-2023.json"):
        resources = json.loads((STRIPE_SAMPLES / name).read_text())["resources"]
        if OBJECT_OF[resource] in resources:
            out.append(resources[OBJECT_OF[resource]])
    return out


def _convert(resource: str, objects: list[dict]) -> tuple[list[bytes], int]:
    parts: list[pa.BufferOutputStream] = []

    def open_output(i: int) -> pa.NativeFile:
        parts.append(pa.BufferOutputStream())
        return _KeepOpen(parts[-1])

    quarantine = io.BytesIO()
    data = ("\n".join(json.dumps(o) for o in objects) + "\n").encode()
    result = convert_jsonl(
        pa.BufferReader(data),
        resource=resource,
        tenant=TENANT,
        account=None,
        api_version="2026-06-24.dahlia",
        open_output=open_output,
        quarantine=quarantine,
        version=listing_version(1_700_000_000),
    )
    assert result.rows + result.quarantined == len(objects), quarantine.getvalue()
    return [p.getvalue().to_pybytes() for p in parts], result.rows


class _KeepOpen:
    """Wraps a BufferOutputStream so that `close()` by the writer keeps the bytes readable."""

    def __init__(self, stream: pa.BufferOutputStream) -> None:
        self._stream = stream
        self.closed = False

    def write(self, data) -> int:
        return self._stream.write(data)

    def tell(self) -> int:
        return self._stream.tell()

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def __getattr__(self, name):
        return getattr(self._stream, name)


@pytest.mark.parametrize("resource", RESOURCES)
def test_real_mapping_sets_up_and_ingests(aep, platform, resource):
    dataset_id = _set_up(platform, resource)
    parts, rows = _convert(resource, _stripe_samples(resource))
    assert rows >= 1
    files = {f"{resource}/part-{i:05d}.parquet": data for i, data in enumerate(parts)}
    _, batch = ingest(platform, dataset_id, files, enableErrorDiagnostics=True)
    assert batch["status"] == "success", batch["errors"]
    assert batch["recordCount"] == rows
    ingested = aep.rows(dataset_id)
    expected = pa.concat_tables([pq.read_table(io.BytesIO(d)) for d in parts])
    assert ingested.equals(expected)
