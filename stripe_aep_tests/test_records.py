"""The typed records layers hand each other: what is written is what is read back, and a record
that is not whole is refused with the field named."""

from __future__ import annotations

import json

import pytest

from stripe_aep.records import (
    DeliverySummary,
    RawIdentity,
    RecordError,
    XdmManifest,
    XdmPart,
)

MANIFEST = XdmManifest(
    raw="changes/customers/2026-11-20/1795132800-1795219200.jsonl.zst",
    layer="changes",
    tenant="stripeaep",
    mapping="v3-0123456789ab",
    raw_identity=RawIdentity(objects=4, bytes=1234, written_at=1795219300),
    input_records=4,
    rows=2,
    quarantined=1,
    parts=(
        XdmPart("xdm/customers/2026-11-20/changes-1795132800-1795219200.part0.parquet", 2, 999),
    ),
    duplicates=1,
    duplicate_ids=("cus_1",),
    versions=2,
    tombstones=1,
    reasons={"unknown_currency": 1},
    quarantine="quarantine/customers/2026-11-20/changes-1795132800-1795219200.jsonl",
    converted_at=1795219400,
)


def test_manifest_round_trips_through_json_text():
    text = json.dumps(MANIFEST.to_json())
    assert XdmManifest.from_json(json.loads(text)) == MANIFEST
    assert MANIFEST.bytes == 999


def test_manifest_keys_are_the_on_disk_format():
    assert list(MANIFEST.to_json()) == [
        "raw",
        "layer",
        "raw_identity",
        "tenant",
        "mapping",
        "input_records",
        "rows",
        "quarantined",
        "duplicates",
        "duplicate_ids",
        "versions",
        "tombstones",
        "reasons",
        "quarantine",
        "parts",
        "converted_at",
    ]
    assert MANIFEST.to_json()["parts"] == [
        {"path": MANIFEST.parts[0].path, "rows": 2, "bytes": 999}
    ]


def test_layer_of_a_manifest_without_one_comes_from_the_raw_path():
    old = {k: v for k, v in MANIFEST.to_json().items() if k != "layer"}
    assert XdmManifest.from_json(old).layer == "changes"
    old["raw"] = "stripe/customers/2026-11-20/1795132800-1795219200.jsonl.zst"
    assert XdmManifest.from_json(old).layer == "stripe"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"raw": None}, "'raw'"),
        ({"rows": 2.5}, "'rows'"),
        ({"tenant": 7}, "'tenant'"),
        ({"parts": [{"path": "x", "rows": 1}]}, "'bytes'"),
        ({"duplicate_ids": [1]}, "'duplicate_ids'"),
        ({"raw_identity": {"objects": -4}}, "'objects'"),
    ],
)
def test_malformed_manifest_names_the_field(change, named):
    with pytest.raises(RecordError, match=named):
        XdmManifest.from_json({**MANIFEST.to_json(), **change})
    with pytest.raises(RecordError, match="not a JSON object"):
        XdmManifest.from_json([MANIFEST.to_json()])


def test_raw_identity_compares_a_sidecar_with_what_a_manifest_recorded():
    sidecar = {"objects": 4, "bytes": 1234, "written_at": 1795219300, "api_version": "2025"}
    assert RawIdentity.from_meta(sidecar) == MANIFEST.raw_identity
    assert RawIdentity.from_meta({**sidecar, "written_at": 1795219301}) != MANIFEST.raw_identity


def test_delivery_summary_round_trips_and_counts_are_numbers():
    summary = DeliverySummary(
        dataset_id="ds1",
        batch_ids=("b1", "b2"),
        files_sent=3,
        rows_sent=30,
        bytes_sent=3000,
        rows_confirmed=20,
        records_written=20,
        statuses={"b1": "success", "b2": "processing"},
        pending_batches=("b2",),
        changed_after_delivery=("xdm/charges/2026-11-20/a.part0.parquet",),
        adopted_batches=1,
    )
    data = json.loads(json.dumps(summary.to_json()))
    assert DeliverySummary.from_json(data) == summary
    assert summary.counts()["rows_sent"] == 30
    assert set(summary.counts()) == set(DeliverySummary.COUNTS)
    assert all(isinstance(v, int) for v in summary.counts().values())
    with pytest.raises(RecordError, match="'statuses'"):
        DeliverySummary.from_json({**data, "statuses": {"b1": 1}})
    with pytest.raises(RecordError, match="'dataset_id'"):
        DeliverySummary.from_json({k: v for k, v in data.items() if k != "dataset_id"})
