"""Ingestion validates every file against the dataset's XDM schema, with AEP's error codes."""
# ruff: noqa: F811  (pytest fixtures are imported from aep_fixtures and used as arguments)

from __future__ import annotations

import datetime as dt
import decimal
import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stripe_aep_tests.emulators.aep_fixtures import (
    EXPORT,
    IMPORT,
    PROFILE,
    SR,
    TENANT,
    aep,  # noqa: F401
    charge_table,
    complete,
    ingest,
    parquet_bytes,
    platform,  # noqa: F401
    put_file,
    setup_dataset,
    wait_final,
)

NS = f"_{TENANT}"


def _replace(table: pa.Table, name: str, array: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, array)


def _with_charge_field(table: pa.Table, field: str, array: pa.Array) -> pa.Table:
    """Replace `_{tenant}.charge.<field>` (or add it) with `array`."""
    charge = pc.struct_field(table.column(NS).combine_chunks(), [0])
    names = [charge.type.field(i).name for i in range(charge.type.num_fields)]
    children = [charge.field(i) for i in range(len(names))]
    if field in names:
        children[names.index(field)] = array
    else:
        names.append(field)
        children.append(array)
    new_charge = pa.StructArray.from_arrays(children, names=names)
    return _replace(table, NS, pa.StructArray.from_arrays([new_charge], names=["charge"]))


def _codes(batch: dict) -> list[str]:
    return [e["code"] for e in batch["errors"]]


def _descriptions(batch: dict) -> str:
    return " | ".join(e["description"] for e in batch["errors"])


@pytest.fixture
def dataset(platform):
    return setup_dataset(platform)


def _run(platform, dataset, table_or_bytes, **options) -> tuple[str, dict]:
    data = table_or_bytes if isinstance(table_or_bytes, bytes) else parquet_bytes(table_or_bytes)
    return ingest(platform, dataset.dataset_id, {"part-0.parquet": data}, **options)


def test_missing_id_column_fails_with_1555(aep, platform, dataset):
    _, batch = _run(platform, dataset, charge_table(3).drop_columns(["_id"]))
    assert batch["status"] == "failed"
    assert _codes(batch) == ["INGEST-1555-400"]
    assert "'_id'" in _descriptions(batch)
    assert batch["recordCount"] == 0
    assert batch["failedRecordCount"] == 3
    assert aep.rows(dataset.dataset_id).num_rows == 0


def test_null_ids_are_row_errors_with_rows_when_diagnostics_are_on(platform, dataset):
    table = _replace(charge_table(5), "_id", pa.array(["a", None, "c", None, None], pa.string()))
    _, batch = _run(platform, dataset, table, enableErrorDiagnostics=True)
    assert batch["status"] == "failed"
    assert batch["errors"] == [
        {
            "code": "INGEST-1555-400",
            "description": "required field '_id' is null",
            "rows": ["1", "3-4"],
            "recordCount": 3,
        }
    ]
    assert batch["tags"]["acp_enableErrorDiagnostics"] == ["true"]


def test_row_errors_without_diagnostics_say_to_resend_with_them(platform, dataset):
    table = _replace(
        charge_table(2), "timestamp", pa.array([None, None], pa.timestamp("ms", tz="UTC"))
    )
    _, batch = _run(platform, dataset, table)
    assert batch["status"] == "failed"
    assert _codes(batch) == ["INGEST-1211-400", "INGEST-1555-400"]
    assert "error diagnostics" in batch["errors"][0]["description"]
    assert "rows" not in batch["errors"][1]


def test_partial_ingestion_keeps_the_good_rows(aep, platform, dataset):
    table = _replace(charge_table(4), "_id", pa.array(["a", "b", None, "d"], pa.string()))
    _, batch = _run(
        platform, dataset, table, enableErrorDiagnostics=True, partialIngestionPercent=25
    )
    assert batch["status"] == "success"
    assert _codes(batch) == ["INGEST-1212-400", "INGEST-1555-400"]
    assert "Successfully ingested 3 rows" in batch["errors"][0]["description"]
    assert batch["recordCount"] == 3
    assert batch["failedRecordCount"] == 1
    assert batch["tags"]["acp_partialIngestionPercent"] == ["25"]
    assert aep.rows(dataset.dataset_id).column("_id").to_pylist() == ["a", "b", "d"]
    over = _replace(charge_table(4), "_id", pa.array([None, None, "c", "d"], pa.string()))
    _, refused = _run(
        platform, dataset, over, enableErrorDiagnostics=True, partialIngestionPercent=25
    )
    assert refused["status"] == "failed"


def test_nested_required_field_null_only_counts_when_the_parent_exists(platform, dataset):
    table = _with_charge_field(charge_table(3), "id", pa.array(["ch_1", None, "ch_3"], pa.string()))
    _, batch = _run(platform, dataset, table, enableErrorDiagnostics=True)
    assert batch["status"] == "failed"
    assert batch["errors"][0]["description"] == f"required field '{NS}.charge.id' is null"
    assert batch["errors"][0]["rows"] == ["1"]
    no_charge = charge_table(2)
    no_charge = _replace(no_charge, NS, pa.array([None, None], no_charge.schema.field(NS).type))
    _, ok = _run(platform, dataset, no_charge)
    assert ok["status"] == "success"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: _replace(t, "_id", pa.array(range(t.num_rows), pa.int64())), "'_id' is int64"),
        (
            lambda t: _with_charge_field(t, "amount", pa.array(["x"] * t.num_rows)),
            "cannot be converted to XDM integer",
        ),
        (
            lambda t: _with_charge_field(t, "amount", pa.array([True] * t.num_rows)),
            f"'{NS}.charge.amount' is bool",
        ),
        (
            lambda t: _with_charge_field(t, "paid", pa.array(["true"] * t.num_rows)),
            "XDM field is boolean",
        ),
        (
            lambda t: _with_charge_field(t, "created", pa.array(["yesterday"] * t.num_rows)),
            "cannot be converted to XDM date-time",
        ),
        (
            lambda t: _with_charge_field(t, "refunds", pa.array(["re_1"] * t.num_rows)),
            "the XDM field is an array",
        ),
        (
            lambda t: _with_charge_field(
                t, "metadata", pa.array([[(1, "v")]] * t.num_rows, pa.map_(pa.int64(), pa.string()))
            ),
            "keys must be strings",
        ),
    ],
)
def test_type_problems_fail_with_1211(platform, dataset, change, words):
    _, batch = _run(platform, dataset, change(charge_table(3)))
    assert batch["status"] == "failed"
    assert "INGEST-1211-400" in _codes(batch)
    assert words in _descriptions(batch)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.append_column("extra", pa.array([1] * t.num_rows)), "'extra' is not a field"),
        (
            lambda t: _with_charge_field(t, "nickname", pa.array(["n"] * t.num_rows)),
            f"'{NS}.charge.nickname' is not a field",
        ),
        (
            lambda t: _with_charge_field(
                t,
                "amountMajor",
                pa.array([decimal.Decimal("1.25")] * t.num_rows, pa.decimal128(9, 2)),
            ),
            "DECIMAL",
        ),
        (
            lambda t: _with_charge_field(
                t, "amountMajor", pa.array([1.5] * t.num_rows, pa.float32())
            ),
            "FLOAT",
        ),
        (
            lambda t: _with_charge_field(
                t, "currency", pa.array([b"usd"] * t.num_rows, pa.binary())
            ),
            "unannotated BINARY",
        ),
        (
            lambda t: _replace(
                t, "timestamp", t.column("timestamp").cast(pa.timestamp("us", tz="UTC"))
            ),
            "microseconds",
        ),
        (
            lambda t: _with_charge_field(t, "amount", pa.array([1] * t.num_rows, pa.uint32())),
            "unsigned",
        ),
    ],
)
def test_unknown_columns_and_undocumented_parquet_types_fail_with_1211(
    platform, dataset, change, words
):
    _, batch = _run(platform, dataset, change(charge_table(2)))
    assert batch["status"] == "failed"
    assert "INGEST-1211-400" in _codes(batch)
    assert words in _descriptions(batch)


def test_int96_timestamps_fail(platform, dataset):
    table = charge_table(2).select(["_id", "timestamp"])
    data = parquet_bytes(table, use_deprecated_int96_timestamps=True)
    _, batch = _run(platform, dataset, data)
    assert batch["status"] == "failed"
    assert _codes(batch)[0] == "INGEST-1211-400"
    assert "INT96" in batch["errors"][0]["description"]
    assert "'timestamp'" in batch["errors"][0]["description"]


def test_unreadable_and_empty_files(platform, dataset):
    _, corrupt = _run(platform, dataset, b"this is not parquet")
    assert corrupt["status"] == "failed"
    assert _codes(corrupt) == ["INGEST-1401-400"]
    _, empty = _run(platform, dataset, b"")
    assert empty["status"] == "failed"
    assert _codes(empty) == ["106"]


def test_conversions_adobe_allows(aep, platform, dataset):
    table = charge_table(2)
    table = _with_charge_field(
        table, "created", pa.array(["2024-03-01T10:00:00Z", "2024-03-02T11:30:00+01:00"])
    )
    table = _with_charge_field(table, "amount", pa.array([1.0, 2.0], pa.float64()))
    table = _with_charge_field(table, "day", pa.array(["2024-03-01", "2024-03-02"]))
    table = _replace(table, "timestamp", pa.array([1709287200000, 1709373600000], pa.int64()))
    _, batch = _run(platform, dataset, table)
    assert batch["status"] == "success", batch["errors"]
    assert aep.rows(dataset.dataset_id).num_rows == 2


def test_a_subset_of_the_schema_is_enough(platform, dataset):
    _, batch = _run(platform, dataset, charge_table(3).select(["_id", "timestamp"]))
    assert batch["status"] == "success"
    assert batch["recordCount"] == 3


def test_failed_batch_files_are_listed_under_failed(platform, dataset):
    data = parquet_bytes(charge_table(2).drop_columns(["_id"]))
    batch_id, batch = _run(platform, dataset, data)
    assert batch["status"] == "failed"
    assert platform.get(f"{EXPORT}/batches/{batch_id}/files").json()["data"] == []
    failed = platform.get(f"{EXPORT}/batches/{batch_id}/failed").json()
    assert [f["name"] for f in failed["data"]] == ["part-0.parquet"]
    assert failed["data"][0]["length"] == str(len(data))
    href = failed["data"][0]["_links"]["self"]["href"].replace(platform.url, "")
    assert platform.get(href).content == data


def test_one_bad_file_fails_the_whole_batch(aep, platform, dataset):
    files = {
        "good.parquet": parquet_bytes(charge_table(3)),
        "bad.parquet": parquet_bytes(charge_table(1).drop_columns(["timestamp"])),
    }
    _, batch = ingest(platform, dataset.dataset_id, files)
    assert batch["status"] == "failed"
    assert "file 'bad.parquet'" in _descriptions(batch)
    assert batch["metrics"]["inputFileCount"] == 2
    assert aep.rows(dataset.dataset_id).num_rows == 0


def test_batch_without_files_fails(platform, dataset):
    resp = platform.post(
        f"{IMPORT}/batches",
        json={"datasetId": dataset.dataset_id, "inputFormat": {"format": "parquet"}},
    )
    batch_id = resp.json()["id"]
    assert complete(platform, batch_id).status_code == 200
    batch = wait_final(platform, batch_id)
    assert batch["status"] == "failed"
    assert "no files" in _descriptions(batch)


def test_json_batches(aep, platform, dataset):
    good = [
        {
            "_id": "e1",
            "timestamp": "2024-03-01T00:00:00Z",
            NS: {"charge": {"id": "ch_1", "amount": 5}},
        },
        {"_id": "e2", "timestamp": "2024-03-01T00:01:00Z"},
    ]
    data = "\n".join(json.dumps(r) for r in good).encode()
    _, batch = ingest(
        platform, dataset.dataset_id, {"a.json": data}, inputFormat={"format": "json"}
    )
    assert batch["status"] == "success"
    assert batch["recordCount"] == 2
    assert aep.rows(dataset.dataset_id).column("_id").to_pylist() == ["e1", "e2"]
    unknown = json.dumps({"_id": "e3", "timestamp": "2024-03-01T00:00:00Z", "other": 1}).encode()
    _, bad = ingest(
        platform, dataset.dataset_id, {"b.json": unknown}, inputFormat={"format": "json"}
    )
    assert bad["status"] == "failed"
    assert "'other' is not a field" in _descriptions(bad)
    multi = json.dumps([{"timestamp": "2024-03-01T00:00:00Z"}]).encode()
    _, missing = ingest(
        platform,
        dataset.dataset_id,
        {"c.json": multi},
        inputFormat={"format": "json", "isMultiLineJson": True},
    )
    assert missing["status"] == "failed"
    assert "INGEST-1555-400" in _codes(missing)


def test_profile_class_and_standard_field_groups(aep, platform):
    fg = {
        "title": "Profile fields",
        "type": "object",
        "meta:intendedToExtend": [PROFILE],
        "definitions": {
            "customer": {
                "properties": {NS: {"type": "object", "properties": {"email": {"type": "string"}}}}
            }
        },
    }
    fg_id = platform.post(f"{SR}/tenant/fieldgroups", json=fg).json()["$id"]
    schema = {
        "title": "Customers",
        "type": "object",
        "description": "profile",
        "allOf": [
            {"$ref": PROFILE},
            {"$ref": fg_id},
            {"$ref": "https://ns.adobe.com/xdm/context/profile-person-details"},
        ],
    }
    schema_id = platform.post(f"{SR}/tenant/schemas", json=schema).json()["$id"]
    ds = (
        platform.post(
            "/data/foundation/catalog/dataSets",
            json={"name": "customers", "schemaRef": {"id": schema_id}},
        )
        .json()[0]
        .rsplit("/", 1)[-1]
    )
    table = pa.table(
        {
            NS: pa.array([{"email": "a@example.com"}]),
            "person": pa.array([{"name": {"firstName": "Ada"}}]),  # from the standard field group
            "_repo": pa.array(
                [{"createDate": dt.datetime(2024, 1, 1)}],
                pa.struct([("createDate", pa.timestamp("ms"))]),
            ),
        }
    )
    batch_id = _create_and_put(platform, ds, parquet_bytes(table))
    batch = wait_final(platform, batch_id)
    assert batch["status"] == "success", batch["errors"]  # Profile `_id` is not required
    tenant_typo = pa.table({f"{NS}x": pa.array([1])})
    _, refused = ingest(platform, ds, {"b.parquet": parquet_bytes(tenant_typo)})
    assert refused["status"] == "failed"
    assert f"'{NS}x' is not a field" in _descriptions(refused)


def _create_and_put(platform, dataset_id: str, data: bytes) -> str:
    resp = platform.post(
        f"{IMPORT}/batches", json={"datasetId": dataset_id, "inputFormat": {"format": "parquet"}}
    )
    batch_id = resp.json()["id"]
    assert put_file(platform, batch_id, dataset_id, "a.parquet", data).status_code == 200
    assert complete(platform, batch_id).status_code == 200
    return batch_id
