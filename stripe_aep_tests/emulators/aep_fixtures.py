"""Fixtures and helpers for tests against the AEP emulator.

Tests talk to the emulator over HTTP with plain `requests`, the way a user's client would, so that the
emulator is tested as a black box (the AEP client has its own tests). `Platform` bundles a token and
the four Adobe headers; `setup_dataset` builds a small hand-made XDM field group, schema and dataset;
`ingest` runs one batch end to end.

Import the fixtures into a test module explicitly:
`from stripe_aep_tests.emulators.aep_fixtures import aep, platform  # noqa: F401`.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from stripe_aep.emulators.aep_api import AepEmulator, AepFaults

CLIENT_ID = "stripe-aep-local"
CLIENT_SECRET = "local-secret"
ORG_ID = "0000000000000000000000AA@AdobeOrg"
TENANT = "stripeaep"
EXPERIENCE_EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
SR = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
IMPORT = "/data/foundation/import"
EXPORT = "/data/foundation/export"
XED_ID = "application/vnd.adobe.xed-id+json"
XED_V1 = "application/vnd.adobe.xed+json; version=1"


def token_form(**overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "openid,AdobeID,read_organizations,additional_info.projectedProductContext",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def fetch_token(url: str) -> str:
    resp = requests.post(f"{url}/ims/token/v3", data=token_form(), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


@dataclass
class Platform:
    """Calls to the emulated Platform gateway with a valid token and the four Adobe headers."""

    url: str
    token: str = field(repr=False)  # access tokens never appear in reprs (or test failure output)
    sandbox: str = "prod"

    def headers(self, **extra: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "x-api-key": CLIENT_ID,
            "x-gw-ims-org-id": ORG_ID,
            "x-sandbox-name": self.sandbox,
            **extra,
        }

    def call(
        self, method: str, path: str, *, headers: dict | None = None, **kw
    ) -> requests.Response:
        return requests.request(
            method, f"{self.url}{path}", headers=self.headers(**(headers or {})), timeout=30, **kw
        )

    def get(self, path: str, **kw) -> requests.Response:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.call("POST", path, **kw)


@pytest.fixture
def aep():
    with AepEmulator(faults=AepFaults(processing_delay_s=0.0)) as emulator:
        yield emulator


@pytest.fixture
def platform(aep) -> Platform:
    return Platform(aep.url, fetch_token(aep.url))


# ---------------------------------------------------------------------------------------------------
# A small hand-made XDM model: an ExperienceEvent schema with one tenant field group.


def charge_field_group(title: str = "Test charge fields") -> dict:
    return {
        "title": title,
        "description": "Hand-made test field group",
        "type": "object",
        "meta:intendedToExtend": [EXPERIENCE_EVENT],
        "definitions": {
            "charge": {
                "properties": {
                    f"_{TENANT}": {
                        "type": "object",
                        "properties": {
                            "charge": {
                                "type": "object",
                                "required": ["id"],
                                "properties": {
                                    "id": {"title": "ID", "type": "string"},
                                    "amount": {"title": "Amount", "type": "integer"},
                                    "amountMajor": {"title": "Amount (major)", "type": "number"},
                                    "currency": {"title": "Currency", "type": "string"},
                                    "paid": {"title": "Paid", "type": "boolean"},
                                    "created": {
                                        "title": "Created",
                                        "type": "string",
                                        "format": "date-time",
                                    },
                                    "day": {"title": "Day", "type": "string", "format": "date"},
                                    "metadata": {
                                        "title": "Metadata",
                                        "type": "object",
                                        "meta:xdmType": "map",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "refunds": {
                                        "title": "Refunds",
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {"id": {"type": "string"}},
                                        },
                                    },
                                },
                            }
                        },
                    }
                }
            }
        },
        "allOf": [{"$ref": "#/definitions/charge"}],
    }


def charge_schema(field_group_id: str, title: str = "Test charges") -> dict:
    return {
        "title": title,
        "description": "Hand-made test schema",
        "type": "object",
        "allOf": [{"$ref": EXPERIENCE_EVENT}, {"$ref": field_group_id}],
    }


@dataclass
class DatasetSetup:
    field_group: dict
    schema: dict
    dataset_id: str


def setup_dataset(platform: Platform, name: str = "test charges") -> DatasetSetup:
    fg = platform.post(f"{SR}/tenant/fieldgroups", json=charge_field_group(f"{name} fields"))
    assert fg.status_code == 201, fg.text
    schema = platform.post(f"{SR}/tenant/schemas", json=charge_schema(fg.json()["$id"], name))
    assert schema.status_code == 201, schema.text
    ds = platform.post(
        f"{CATALOG}/dataSets",
        json={
            "name": name,
            "schemaRef": {
                "id": schema.json()["$id"],
                "contentType": "application/vnd.adobe.xed+json;version=1",
            },
        },
    )
    assert ds.status_code == 201, ds.text
    return DatasetSetup(fg.json(), schema.json(), ds.json()[0].rsplit("/", 1)[-1])


CHARGE_TYPE = pa.struct(
    [
        ("id", pa.string()),
        ("amount", pa.int64()),
        ("amountMajor", pa.float64()),
        ("currency", pa.string()),
        ("paid", pa.bool_()),
        ("created", pa.timestamp("ms", tz="UTC")),
        ("day", pa.date32()),
        ("metadata", pa.map_(pa.string(), pa.string())),
        ("refunds", pa.list_(pa.struct([("id", pa.string())]))),
    ]
)


def charge_table(n: int, start: int = 0) -> pa.Table:
    """n valid ExperienceEvent rows with the tenant charge object."""
    base = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    charges = [
        {
            "id": f"ch_{i:05d}",
            "amount": 100 * i + 1,
            "amountMajor": (100 * i + 1) / 100,
            "currency": "usd",
            "paid": i % 2 == 0,
            "created": base + dt.timedelta(minutes=i),
            "day": (base + dt.timedelta(minutes=i)).date(),
            "metadata": [("order", str(i))],
            "refunds": [{"id": f"re_{i}"}] if i % 3 == 0 else [],
        }
        for i in range(start, start + n)
    ]
    return pa.table(
        {
            "_id": pa.array([f"evt-{i}" for i in range(start, start + n)], pa.string()),
            "timestamp": pa.array(
                [base + dt.timedelta(minutes=i) for i in range(start, start + n)],
                pa.timestamp("ms", tz="UTC"),
            ),
            "eventType": pa.array(["commerce.purchases"] * n, pa.string()),
            f"_{TENANT}": pa.array(
                [{"charge": c} for c in charges], pa.struct([("charge", CHARGE_TYPE)])
            ),
        }
    )


def parquet_bytes(table: pa.Table, **kw) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kw)
    return buf.getvalue()


def create_batch(platform: Platform, dataset_id: str, **extra) -> str:
    resp = platform.post(
        f"{IMPORT}/batches",
        json={"datasetId": dataset_id, "inputFormat": {"format": "parquet"}, **extra},
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def put_file(platform: Platform, batch_id: str, dataset_id: str, name: str, data: bytes):
    return platform.call(
        "PUT",
        f"{IMPORT}/batches/{batch_id}/datasets/{dataset_id}/files/{quote(name, safe='/=')}",
        headers={"Content-Type": "application/octet-stream"},
        data=data,
    )


def complete(platform: Platform, batch_id: str, action: str = "COMPLETE") -> requests.Response:
    return platform.post(f"{IMPORT}/batches/{batch_id}", params={"action": action})


def catalog_batch(platform: Platform, batch_id: str) -> dict:
    resp = platform.get(f"{CATALOG}/batches/{batch_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()[batch_id]


def wait_final(platform: Platform, batch_id: str, timeout_s: float = 20.0) -> dict:
    """Poll Catalog until the batch leaves loading/processing (fails the test on timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        batch = catalog_batch(platform, batch_id)
        if batch["status"] not in ("loading", "processing"):
            return batch
        if time.monotonic() > deadline:
            pytest.fail(f"batch {batch_id} still {batch['status']} after {timeout_s}s")
        time.sleep(0.02)


def ingest(
    platform: Platform, dataset_id: str, files: dict[str, bytes], **batch_options
) -> tuple[str, dict]:
    """Create a batch, PUT the files, COMPLETE, and wait for the final Catalog status."""
    batch_id = create_batch(platform, dataset_id, **batch_options)
    for name, data in files.items():
        resp = put_file(platform, batch_id, dataset_id, name, data)
        assert resp.status_code == 200, resp.text
    resp = complete(platform, batch_id)
    assert resp.status_code == 200, resp.text
    return batch_id, wait_final(platform, batch_id)
