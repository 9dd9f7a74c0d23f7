"""Fixtures for the AEP layer: the AEP emulator, a client for it, a dataset, XDM-like Parquet files.

The payloads here are a minimal stand-in for `stripe_aep.xdm.schema_registry_payloads` (one tenant
field group on the ExperienceEvent class, a primary identity, a dataset), so these tests exercise
setup and delivery independently of the mapping.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.deliver import XdmFile
from stripe_aep.aep.ledger import BatchLedger
from stripe_aep.aep.settings import AepSettings
from stripe_aep.aep.setup import run_setup
from stripe_aep.emulators.aep_api import AepEmulator, AepFaults

TENANT = "stripeaep"
EE_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"
PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"


def minimal_payloads(resource: str, tenant: str = TENANT, class_id: str = EE_CLASS) -> dict:
    ns = f"_{tenant}"
    return {
        "class_id": class_id,
        "field_group": {
            "title": f"Stripe {resource} (test)",
            "description": f"Stripe {resource} fields",
            "type": "object",
            "meta:intendedToExtend": [class_id],
            "definitions": {
                resource: {
                    "properties": {
                        ns: {
                            "type": "object",
                            "properties": {
                                "stripe": {
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "string", "title": "Stripe id"},
                                        "amount": {
                                            "type": "integer",
                                            "title": "Amount",
                                            "minimum": -9007199254740991,
                                            "maximum": 9007199254740991,
                                        },
                                        "customer": {"type": "string", "title": "Customer"},
                                    },
                                }
                            },
                        }
                    }
                }
            },
            "allOf": [{"$ref": f"#/definitions/{resource}"}],
        },
        "schema": {
            "title": f"Stripe {resource} schema (test)",
            "description": "test schema",
            "type": "object",
            "allOf": [{"$ref": class_id}, {"$ref": f"{{{{fieldgroup:{resource}}}}}"}],
        },
        "descriptors": [
            {
                "@type": "xdm:descriptorIdentity",
                "xdm:sourceSchema": f"{{{{schema:{resource}}}}}",
                "xdm:sourceVersion": 1,
                "xdm:sourceProperty": f"/{ns}/stripe/customer",
                "xdm:namespace": "StripeCustomerId",
                "xdm:property": "xdm:code",
                "xdm:isPrimary": True,
            }
        ],
        "dataset": {
            "name": f"Stripe {resource} (test)",
            "description": "test dataset",
            "schemaRef": {
                "id": f"{{{{schema:{resource}}}}}",
                "contentType": "application/vnd.adobe.xed+json;version=1",
            },
        },
    }


def write_xdm_file(root: Path, key: str, start: int, rows: int, tenant: str = TENANT) -> XdmFile:
    """A Parquet file conforming to `minimal_payloads` with ids `ch_<start>`..`ch_<start+rows-1>`."""
    ids = [f"ch_{i:08d}" for i in range(start, start + rows)]
    base = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    table = pa.table(
        {
            "_id": pa.array(ids, pa.string()),
            "timestamp": pa.array(
                [base + dt.timedelta(seconds=i) for i in range(start, start + rows)],
                pa.timestamp("ms", tz="UTC"),
            ),
            f"_{tenant}": pa.array(
                [
                    {"stripe": {"id": i, "amount": n, "customer": f"cus_{n % 7}"}}
                    for n, i in zip(range(start, start + rows), ids, strict=True)
                ],
                pa.struct(
                    [
                        (
                            "stripe",
                            pa.struct(
                                [
                                    ("id", pa.string()),
                                    ("amount", pa.int64()),
                                    ("customer", pa.string()),
                                ]
                            ),
                        )
                    ]
                ),
            ),
        }
    )
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return XdmFile.from_path(path, key)


def make_files(
    root: Path, count: int, rows: int, *, prefix="xdm/charges/2026-11-20"
) -> list[XdmFile]:
    return [
        write_xdm_file(
            root,
            f"{prefix}/{1763596800 + i * 3600}-{1763596800 + (i + 1) * 3600}.part0.parquet",
            i * rows,
            rows,
        )
        for i in range(count)
    ]


@pytest.fixture
def aep():
    with AepEmulator(faults=AepFaults(processing_delay_s=0.05)) as emulator:
        yield emulator


def settings_for(aep: AepEmulator, **overrides) -> AepSettings:
    ident = aep.identity
    values = {
        "client_id": ident.client_id,
        "client_secret": ident.client_secret,
        "org_id": ident.org_id,
        "sandbox": ident.sandbox,
        "tenant_id": TENANT,
        "ims_url": aep.url,
        "platform_url": aep.url,
    }
    values.update(overrides)
    return AepSettings(**values)


def env_for(aep: AepEmulator) -> dict[str, str]:
    return aep.client_environment(TENANT)


@pytest.fixture
def aep_client(aep):
    client = AepClient(settings_for(aep), backoff_base_s=0.01, backoff_max_s=0.05)
    yield client
    client.close()


@pytest.fixture
def dataset_id(aep_client) -> str:
    return run_setup(
        aep_client, tenant=TENANT, payloads={"charges": minimal_payloads("charges")}, environ={}
    )["charges"]


@pytest.fixture
def ledger(tmp_path):
    ledger = BatchLedger.for_data_dir(tmp_path / "data")
    yield ledger
    ledger.close()


@pytest.fixture
def lake(tmp_path) -> Path:
    root = tmp_path / "lake"
    os.makedirs(root, exist_ok=True)
    return root


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_env(request) -> dict[str, str]:
    """The environment selecting each ledger backend: the embedded SQLite file (no setting), or a
    fresh database on the tests' real PostgreSQL server (`STRIPE_AEP_LEDGER_URL`)."""
    if request.param == "sqlite":
        return {}
    return {"STRIPE_AEP_LEDGER_URL": request.getfixturevalue("postgres_url")}
