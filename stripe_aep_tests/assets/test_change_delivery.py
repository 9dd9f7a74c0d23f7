"""Versions through xdm/<r> → aep/<r> into the AEP emulator: a delivered day gains a change file, the
next run delivers only its rows, a re-run sends nothing, and the "latest state" query of
docs/change-capture.md, run over what AEP received, gives each object's final state.

Change files are built with `RawPartition(..., layer="changes").write` in the line format of
docs/change-capture.md (stripe_aep/stripe/changes.py writes them in the pipeline).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterable

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.settings import AepSettings
from stripe_aep.aep.setup import run_setup
from stripe_aep.assets.aep import aep_assets
from stripe_aep.assets.xdm import xdm_assets
from stripe_aep.definitions import resources_from_env
from stripe_aep.emulators.aep_api import AepEmulator, AepFaults
from stripe_aep.lake import Lake
from stripe_aep.resources import LakeResource, XdmResource
from stripe_aep.stripe.rawstore import RawPartition, day_bounds
from stripe_aep.xdm import schema_registry_payloads
from stripe_aep_tests.aep.conftest import env_for
from stripe_aep_tests.xdm.conftest import API_VERSION, jsonl, run_convert, sample

TENANT = "stripeaep"
EXPORT = "/data/foundation/export"
DAY = dt.date(2026, 11, 20)
START, END = day_bounds(DAY)
RESOURCE = "customers"
ASSETS = [
    next(a for a in xdm_assets if a.key == dg.AssetKey(["xdm", RESOURCE])),
    next(a for a in aep_assets if a.key == dg.AssetKey(["aep", RESOURCE])),
]


@pytest.fixture
def aep_setup(monkeypatch):
    with AepEmulator(faults=AepFaults(processing_delay_s=0.05)) as emulator:
        env = env_for(emulator)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        client = AepClient(AepSettings.from_env(env))
        payloads = {RESOURCE: schema_registry_payloads(RESOURCE, TENANT)}
        datasets = run_setup(client, tenant=TENANT, payloads=payloads, environ={})
        yield client, datasets[RESOURCE]
        client.close()


def customer(oid: str, created: int, **fields) -> dict:
    c = sample(RESOURCE)
    c.update(id=oid, created=created, **fields)
    return c


def change(obj: dict, time: int, event_type: str, deleted: bool = False) -> bytes:
    facts = {
        "time": time,
        "event_id": f"evt_{obj['id']}_{time}",
        "event_type": event_type,
        "source": "event",
        "deleted": deleted,
    }
    return json.dumps({**obj, "_change": facts}, separators=(",", ":")).encode()


def materialize(root, instance) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        ASSETS,
        resources={
            "lake": LakeResource(root=str(root)),
            "xdm": XdmResource(tenant=TENANT),
            "aep": resources_from_env()["aep"],  # the AEP_* variables, as deployed
        },
        instance=instance,
        partition_key=DAY.isoformat(),
        run_config={"ops": {f"aep__{RESOURCE}": {"config": {"poll_interval_seconds": 0.05}}}},
    )
    assert result.success
    return result


def batch_tables(client: AepClient, dataset_id: str) -> dict[str, pa.Table]:
    """Every successful batch of the dataset, read back through Data Access: batch id → rows."""
    out = {}
    for batch in client.list_batches(dataset_id=dataset_id):
        if batch.status != "success":
            continue
        tables = []
        listing = client.request("GET", f"{EXPORT}/batches/{batch.batch_id}/files", retry=True)
        for entry in listing.json()["data"]:
            href = entry["_links"]["self"]["href"]
            for f in client.request("GET", href[href.index(EXPORT) :], retry=True).json()["data"]:
                link = f["_links"]["self"]["href"]
                data = client.request("GET", link[link.index(EXPORT) :], retry=True).content
                tables.append(pq.read_table(io.BytesIO(data)))
        out[batch.batch_id] = pa.concat_tables(tables)
    return out


def flat(table: pa.Table) -> pa.Table:
    """The columns the latest-state query reads, flattened as Query Service names them."""
    stripe = table.column(f"_{TENANT}").combine_chunks().field("stripe")
    customer_obj = table.column(f"_{TENANT}").combine_chunks().field("customer")
    return pa.table(
        {
            "_id": table.column("_id"),
            "id": stripe.field("id"),
            "versionTime": stripe.field("versionTime"),
            "deleted": stripe.field("deleted"),
            "email": customer_obj.field("email"),
        }
    )


def latest_per_id(rows: pa.Table) -> pa.Table:
    """docs/change-capture.md, "Reading the latest state", in pyarrow:

        row_number() over (partition by id order by versionTime desc nulls last, _id desc) = 1

    Sorted by (id, versionTime desc with nulls last, _id desc), the first row of each id wins.
    """
    order = pc.sort_indices(
        rows,
        sort_keys=[
            ("id", "ascending", "at_end"),
            ("versionTime", "descending", "at_end"),
            ("_id", "descending", "at_end"),
        ],
    )
    ordered = rows.take(order)
    ids = ordered.column("id").to_pylist()
    first = [i == 0 or ids[i] != ids[i - 1] for i in range(len(ids))]
    return ordered.filter(pa.array(first))


def current_objects(rows: pa.Table) -> pa.Table:
    """The second query: the latest state of each object, tombstones left out."""
    latest = latest_per_id(rows)
    return latest.filter(pc.invert(pc.fill_null(latest.column("deleted"), False)))


#: What tells one version of an object's record from another, rather than the object's state
#: (`deleted`: a canceled subscription's last record is a tombstone of a still-listed object).
VERSION_FIELDS = (
    "versionTime",
    "versionSource",
    "versionEventId",
    "versionEventType",
    "apiVersion",
    "deleted",
)


def latest_records(tables: Iterable[pa.Table], tenant: str = TENANT) -> dict[str, dict]:
    """Per Stripe id, its latest record (greatest versionTime, then `_id`: docs/change-capture.md,
    "Reading the latest state"), after checking that no record (`_id`) came twice."""
    rows = [row for table in tables for row in table.to_pylist()]
    record_ids = [row["_id"] for row in rows]
    assert len(record_ids) == len(set(record_ids)), "a record was delivered twice"
    latest: dict[str, dict] = {}
    for row in rows:
        stripe = row[f"_{tenant}"]["stripe"]
        held = latest.get(stripe["id"])
        if held is None or _version_key(row, tenant) > _version_key(held, tenant):
            latest[stripe["id"]] = row
    return latest


def _version_key(row: dict, tenant: str) -> tuple:
    time = row[f"_{tenant}"]["stripe"]["versionTime"]
    return (time is not None, time or 0, row["_id"])


def object_state(row: dict, tenant: str = TENANT) -> dict:
    """A record without what identifies its version: equal for two records of one state."""
    row = {k: v for k, v in row.items() if k != "_id"}
    fields = dict(row[f"_{tenant}"])
    fields["stripe"] = {k: v for k, v in fields["stripe"].items() if k not in VERSION_FIELDS}
    row[f"_{tenant}"] = fields
    return row


def record_of(tmp_path, obj: dict, resource: str, account: str | None) -> dict:
    """The XDM record the mapping makes of `obj` (a Stripe object as the API returns it)."""
    [row] = run_convert(tmp_path, jsonl([obj]), resource, account=account).rows()
    return row


def test_change_file_of_a_delivered_day_is_delivered_once_and_latest_state_wins(
    aep_setup, tmp_path
):
    client, dataset_id = aep_setup
    lake = Lake(str(tmp_path))
    listing = RawPartition(lake, RESOURCE, DAY)
    listing.write(
        START,
        START + 3600,
        [
            json.dumps(customer(f"cus_{i}", START + i, email=f"v0-{i}@example.com")).encode()
            for i in range(1, 5)
        ],
        {"api_version": API_VERSION, "fetched_at": START + 4000},
    )
    with dg.instance_for_test() as instance:
        first = materialize(tmp_path, instance)
        [(first_batch, batch0)] = batch_tables(client, dataset_id).items()
        assert batch0.num_rows == 4
        xdm_meta = first.get_asset_materialization_events()[0].materialization.metadata
        assert xdm_meta["version_rows"].value == 0

        # Events of the day revealed versions: cus_1 changed twice (two events windows → two
        # change files), cus_2 was deleted, and cus_old (created 40 days ago, never in this day's
        # listing) changed too.
        changes = RawPartition(lake, RESOURCE, DAY, layer="changes")
        old = START - 40 * 86400
        changes.write(
            START + 5000,
            START + 6000,
            [
                change(
                    customer("cus_1", START + 1, email="v1-1@example.com"),
                    START + 5100,
                    "customer.updated",
                ),
                change(
                    customer("cus_2", START + 2, email="v0-2@example.com"),
                    START + 5200,
                    "customer.deleted",
                    deleted=True,
                ),
                change(
                    customer("cus_old", old, email="v1-old@example.com"),
                    START + 5300,
                    "customer.updated",
                ),
            ],
            {"api_version": API_VERSION},
        )
        changes.write(
            START + 6000,
            START + 7000,
            [
                change(
                    customer("cus_1", START + 1, email="v2-1@example.com"),
                    START + 6500,
                    "customer.updated",
                )
            ],
            {"api_version": API_VERSION},
        )
        second = materialize(tmp_path, instance)
        xdm_meta = second.get_asset_materialization_events()[0].materialization.metadata
        assert (xdm_meta["version_rows"].value, xdm_meta["tombstones"].value) == (4, 1)
        assert xdm_meta["dagster/row_count"].value == 8
        checks = [
            e.event_specific_data
            for e in second.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        assert checks and all(c.passed for c in checks), [c.check_name for c in checks]
        batches = batch_tables(client, dataset_id)
        [new_batch] = set(batches) - {first_batch}
        delivered = batches[new_batch]
        # Only the change rows went out in the second run.
        assert sorted(flat(delivered).column("id").to_pylist()) == [
            "cus_1",
            "cus_1",
            "cus_2",
            "cus_old",
        ]

        # A re-run sends nothing.
        materialize(tmp_path, instance)
        assert len(client.list_batches(dataset_id=dataset_id)) == 2

    everything = pa.concat_tables([flat(t) for t in batch_tables(client, dataset_id).values()])
    assert everything.num_rows == 8
    assert len(set(everything.column("_id").to_pylist())) == 8  # nothing delivered twice
    latest = {r["id"]: r for r in latest_per_id(everything).to_pylist()}
    assert {k: (v["email"], v["deleted"]) for k, v in latest.items()} == {
        "cus_1": ("v2-1@example.com", False),
        "cus_2": ("v0-2@example.com", True),
        "cus_3": ("v0-3@example.com", False),
        "cus_4": ("v0-4@example.com", False),
        "cus_old": ("v1-old@example.com", False),
    }
    assert sorted(current_objects(everything).column("id").to_pylist()) == [
        "cus_1",
        "cus_3",
        "cus_4",
        "cus_old",
    ]


def test_latest_state_query_puts_rows_without_version_time_last_and_breaks_ties_by_id():
    """Rows delivered before the version fields existed have a null versionTime: `nulls last`
    keeps them behind every version (PostgreSQL sorts NULLs first in a DESC order otherwise)."""
    t = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    rows = pa.table(
        {
            "_id": ["cus_1-1", "cus_1-2", "cus_2-9", "cus_2-3", "cus_3-1"],
            "id": ["cus_1", "cus_1", "cus_2", "cus_2", "cus_3"],
            "versionTime": pa.array([None, t, t, t, None], pa.timestamp("ms", tz="UTC")),
            "deleted": [None, True, False, False, None],
            "email": ["old", "new", "b", "a", "only"],
        }
    )
    latest = {r["id"]: r["email"] for r in latest_per_id(rows).to_pylist()}
    assert latest == {"cus_1": "new", "cus_2": "b", "cus_3": "only"}
    assert current_objects(rows).column("id").to_pylist() == ["cus_2", "cus_3"]
