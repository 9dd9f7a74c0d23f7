"""Catalog datasets and the batch lifecycle: create → PUT → COMPLETE → processing → success → read back."""
# ruff: noqa: F811  (pytest fixtures are imported from aep_fixtures and used as arguments)

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import requests

from stripe_aep.emulators.aep_api import AepEmulator, AepFaults
from stripe_aep_tests.emulators.aep_fixtures import (
    CATALOG,
    EXPORT,
    IMPORT,
    ORG_ID,
    Platform,
    aep,  # noqa: F401
    catalog_batch,
    charge_table,
    complete,
    create_batch,
    fetch_token,
    ingest,
    parquet_bytes,
    platform,  # noqa: F401
    put_file,
    setup_dataset,
    wait_final,
)


def test_dataset_create_get_and_list_by_name(platform):
    ds = setup_dataset(platform, "charges")
    other = setup_dataset(platform, "refunds")
    got = platform.get(f"{CATALOG}/dataSets/{ds.dataset_id}")
    assert got.status_code == 200
    body = got.json()
    assert list(body) == [ds.dataset_id]
    entry = body[ds.dataset_id]
    assert entry["name"] == "charges"
    assert entry["imsOrg"] == ORG_ID
    assert entry["schemaRef"]["id"] == ds.schema["$id"]
    assert entry["files"] == f"@/dataSetFiles?dataSetId={ds.dataset_id}"
    by_name = platform.get(f"{CATALOG}/dataSets", params={"name": "refunds", "limit": 10}).json()
    assert list(by_name) == [other.dataset_id]
    everything = platform.get(f"{CATALOG}/dataSets").json()
    assert set(everything) == {ds.dataset_id, other.dataset_id}
    projected = platform.get(f"{CATALOG}/dataSets", params={"properties": "name"}).json()
    assert projected[ds.dataset_id] == {"name": "charges"}
    paged = platform.get(f"{CATALOG}/dataSets", params={"limit": 1, "start": 1}).json()
    assert list(paged) == [other.dataset_id]
    assert platform.get(f"{CATALOG}/dataSets/000000000000000000000000").status_code == 404


def test_dataset_create_errors_name_the_cause(platform):
    resp = platform.post(f"{CATALOG}/dataSets", json={"name": "x"})
    assert resp.status_code == 400
    assert "schemaRef" in resp.json()["detail"]
    resp = platform.post(
        f"{CATALOG}/dataSets",
        json={"name": "x", "schemaRef": {"id": "https://ns.adobe.com/stripeaep/schemas/none"}},
    )
    assert resp.status_code == 400
    assert "create the schema first" in resp.json()["detail"]


def test_dataset_patch_enables_profile_tags(platform):
    ds = setup_dataset(platform)
    resp = platform.call(
        "PATCH",
        f"{CATALOG}/dataSets/{ds.dataset_id}",
        json=[{"op": "add", "path": "/tags/unifiedProfile", "value": ["enabled:true"]}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert resp.status_code == 200
    assert resp.json() == [f"@/dataSets/{ds.dataset_id}"]
    tags = platform.get(f"{CATALOG}/dataSets/{ds.dataset_id}").json()[ds.dataset_id]["tags"]
    assert tags["unifiedProfile"] == ["enabled:true"]


def test_batch_lifecycle_and_read_back(aep, platform):
    aep.faults.processing_delay_s = 3600.0  # stays processing until we shorten the delay
    ds = setup_dataset(platform)
    created = platform.post(
        f"{IMPORT}/batches",
        json={
            "datasetId": ds.dataset_id,
            "inputFormat": {"format": "parquet"},
            "externalId": "run-1",
            "tags": {"source": ["test"]},
        },
    )
    assert created.status_code == 201
    batch = created.json()
    assert batch["status"] == "loading"
    assert batch["externalId"] == "run-1"
    assert batch["relatedObjects"] == [{"type": "dataSet", "id": ds.dataset_id}]
    assert batch["inputFormat"] == {"format": "parquet"}
    batch_id = batch["id"]
    first, second = charge_table(5), charge_table(4, start=5)
    files = {
        "part-0.parquet": parquet_bytes(first),
        "day=2024-03-01/part-1.parquet": parquet_bytes(second),
    }
    for name, data in files.items():
        assert put_file(platform, batch_id, ds.dataset_id, name, data).status_code == 200
    assert catalog_batch(platform, batch_id)["status"] == "loading"
    done = complete(platform, batch_id)
    assert done.status_code == 200
    assert done.json()["status"] == "processing"
    assert catalog_batch(platform, batch_id)["status"] == "processing"
    assert aep.rows(ds.dataset_id).num_rows == 0
    aep.faults.processing_delay_s = 0.0
    assert (
        complete(platform, batch_id).json()["status"] == "processing"
    )  # deadline was set at COMPLETE
    assert aep.finish_processing() == 1
    final = wait_final(platform, batch_id)
    assert final["status"] == "success"
    assert final["recordCount"] == 9
    assert final["failedRecordCount"] == 0
    assert final["errors"] == []
    assert final["metrics"]["inputFileCount"] == 2
    assert final["metrics"]["inputRecordCount"] == 9
    assert final["metrics"]["outputRecordCount"] == 9
    assert final["metrics"]["inputByteSize"] == sum(len(d) for d in files.values())
    assert final["created"] <= final["started"] <= final["completed"]
    dataset = platform.get(f"{CATALOG}/dataSets/{ds.dataset_id}").json()[ds.dataset_id]
    assert dataset["lastBatchId"] == batch_id
    assert dataset["lastBatchStatus"] == "success"
    assert dataset["lastSuccessfulBatch"] == batch_id

    # read back through Data Access, as a user would
    listing = platform.get(f"{EXPORT}/batches/{batch_id}/files").json()
    assert listing["_page"]["count"] == 2
    read_back = {}
    for entry in listing["data"]:
        href = entry["_links"]["self"]["href"].replace(platform.url, "")
        files_of = platform.get(href).json()["data"]
        assert len(files_of) == 1
        download = files_of[0]["_links"]["self"]["href"].replace(platform.url, "")
        resp = platform.get(download)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/octet-stream"
        assert int(files_of[0]["length"]) == len(resp.content)
        read_back[files_of[0]["name"]] = resp.content
    assert read_back == files
    expected = pa.concat_tables([second, first])  # "day=..." sorts before "part-0"
    assert aep.rows(ds.dataset_id).equals(expected)
    table = pq.read_table(io.BytesIO(read_back["part-0.parquet"]))
    assert table.equals(first)


def test_range_download(platform):
    ds = setup_dataset(platform)
    data = parquet_bytes(charge_table(3))
    batch_id, final = ingest(platform, ds.dataset_id, {"a.parquet": data})
    assert final["status"] == "success"
    resp = platform.get(
        f"{EXPORT}/files/{batch_id}-1", params={"path": "a.parquet"}, headers={"Range": "bytes=0-9"}
    )
    assert resp.status_code == 206
    assert resp.content == data[:10]
    assert resp.headers["content-range"] == f"bytes 0-9/{len(data)}"
    missing = platform.get(f"{EXPORT}/files/{batch_id}-1", params={"path": "other.parquet"})
    assert missing.status_code == 404
    assert platform.get(f"{EXPORT}/files/{batch_id}-2").status_code == 404


def test_reput_replaces_the_file(aep, platform):
    ds = setup_dataset(platform)
    batch_id = create_batch(platform, ds.dataset_id)
    assert (
        put_file(
            platform, batch_id, ds.dataset_id, "a.parquet", parquet_bytes(charge_table(7))
        ).status_code
        == 200
    )
    assert (
        put_file(
            platform, batch_id, ds.dataset_id, "a.parquet", parquet_bytes(charge_table(2))
        ).status_code
        == 200
    )
    assert complete(platform, batch_id).status_code == 200
    final = wait_final(platform, batch_id)
    assert final["recordCount"] == 2
    assert aep.state.batches[batch_id]["files"] == {
        "a.parquet": len(parquet_bytes(charge_table(2)))
    }
    assert aep.rows(ds.dataset_id).num_rows == 2


def test_complete_is_idempotent(aep, platform):
    ds = setup_dataset(platform)
    batch_id, final = ingest(platform, ds.dataset_id, {"a.parquet": parquet_bytes(charge_table(3))})
    assert final["status"] == "success"
    again = complete(platform, batch_id)
    assert again.status_code == 200
    assert again.json()["status"] == "success"
    assert again.json()["completed"] == final["completed"]
    assert aep.rows(ds.dataset_id).num_rows == 3


def test_abort_and_what_an_aborted_batch_refuses(aep, platform):
    aep.faults.processing_delay_s = 3600.0
    ds = setup_dataset(platform)
    loading = create_batch(platform, ds.dataset_id)
    put_file(platform, loading, ds.dataset_id, "a.parquet", parquet_bytes(charge_table(2)))
    aborted = complete(platform, loading, "ABORT")
    assert aborted.status_code == 200
    assert aborted.json()["status"] == "aborted"
    assert catalog_batch(platform, loading)["status"] == "aborted"
    assert complete(platform, loading, "ABORT").status_code == 200  # repeated ABORT: same answer
    refused = complete(platform, loading)
    assert refused.status_code == 400
    assert "aborted" in refused.json()["detail"]
    late = put_file(platform, loading, ds.dataset_id, "b.parquet", parquet_bytes(charge_table(1)))
    assert late.status_code == 400
    assert "loading" in late.json()["detail"]

    processing = create_batch(platform, ds.dataset_id)
    put_file(platform, processing, ds.dataset_id, "a.parquet", parquet_bytes(charge_table(2)))
    assert complete(platform, processing).json()["status"] == "processing"
    assert complete(platform, processing, "ABORT").json()["status"] == "aborted"
    assert aep.finish_processing() == 0
    assert catalog_batch(platform, processing)["status"] == "aborted"  # abort won the race

    aep.faults.processing_delay_s = 0.0
    done, final = ingest(platform, ds.dataset_id, {"a.parquet": parquet_bytes(charge_table(1))})
    assert final["status"] == "success"
    too_late = complete(platform, done, "ABORT")
    assert too_late.status_code == 400
    assert "REVERT" in too_late.json()["detail"]
    assert aep.rows(ds.dataset_id).num_rows == 1


def test_revert_hides_a_batch_and_replay_replaces_one(aep, platform):
    ds = setup_dataset(platform)
    first, _ = ingest(platform, ds.dataset_id, {"a.parquet": parquet_bytes(charge_table(3))})
    second, _ = ingest(
        platform, ds.dataset_id, {"a.parquet": parquet_bytes(charge_table(2, start=3))}
    )
    assert aep.rows(ds.dataset_id).num_rows == 5
    assert complete(platform, first, "REVERT").json()["status"] == "inactive"
    assert aep.rows(ds.dataset_id).column("_id").to_pylist() == ["evt-3", "evt-4"]
    replacement, final = ingest(
        platform,
        ds.dataset_id,
        {"a.parquet": parquet_bytes(charge_table(1, start=9))},
        replay={"predecessors": [f"${second}"], "reason": "replace"},
    )
    assert final["status"] == "success"
    assert catalog_batch(platform, second)["status"] == "inactive"
    assert aep.rows(ds.dataset_id).column("_id").to_pylist() == ["evt-9"]


def test_upload_errors(aep, platform):
    ds = setup_dataset(platform)
    other = setup_dataset(platform, "other")
    batch_id = create_batch(platform, ds.dataset_id)
    wrong_type = platform.call(
        "PUT",
        f"{IMPORT}/batches/{batch_id}/datasets/{ds.dataset_id}/files/a.parquet",
        data=b"PAR1",
        headers={"Content-Type": "multipart/form-data"},
    )
    assert wrong_type.status_code == 415
    wrong_dataset = put_file(platform, batch_id, other.dataset_id, "a.parquet", b"x")
    assert wrong_dataset.status_code == 400
    assert ds.dataset_id in wrong_dataset.json()["detail"]
    assert put_file(platform, "nope", ds.dataset_id, "a.parquet", b"x").status_code == 404
    assert put_file(platform, batch_id, "nope", "a.parquet", b"x").status_code == 404
    unknown = platform.post(
        f"{IMPORT}/batches", json={"datasetId": "nope", "inputFormat": {"format": "parquet"}}
    )
    assert unknown.status_code == 400
    assert "dataset nope does not exist" in unknown.json()["detail"]
    csv = platform.post(
        f"{IMPORT}/batches", json={"datasetId": ds.dataset_id, "inputFormat": {"format": "csv"}}
    )
    assert csv.status_code == 400
    assert complete(platform, batch_id, "FLY").status_code == 400
    assert platform.post(f"{IMPORT}/batches/{batch_id}").status_code == 400
    long_url = platform.get(f"{CATALOG}/batches/{'x' * 2100}")
    assert long_url.status_code == 414


def test_file_larger_than_the_put_limit_is_413():
    with AepEmulator(max_file_bytes=1000) as aep:
        platform = Platform(aep.url, fetch_token(aep.url))
        ds = setup_dataset(platform)
        batch_id = create_batch(platform, ds.dataset_id)
        resp = put_file(platform, batch_id, ds.dataset_id, "big.parquet", b"x" * 1001)
        assert resp.status_code == 413
        assert "split" in resp.json()["detail"]
        assert aep.state.batches[batch_id]["files"] == {}
        assert (
            put_file(platform, batch_id, ds.dataset_id, "ok.parquet", b"x" * 1000).status_code
            == 200
        )


def test_list_batches_filters_and_orders(platform):
    ds = setup_dataset(platform)
    other = setup_dataset(platform, "other")
    a, _ = ingest(
        platform, ds.dataset_id, {"a.parquet": parquet_bytes(charge_table(1))}, externalId="ext-a"
    )
    b = create_batch(platform, ds.dataset_id, externalId="ext-b")
    c = create_batch(platform, other.dataset_id)
    by_dataset = platform.get(
        f"{CATALOG}/batches", params={"dataSet": ds.dataset_id, "orderBy": "desc:created"}
    ).json()
    assert list(by_dataset) == [b, a]
    assert list(platform.get(f"{CATALOG}/batches", params={"externalId": "ext-a"}).json()) == [a]
    assert list(platform.get(f"{CATALOG}/batches", params={"status": "loading"}).json()) == [b, c]
    assert list(platform.get(f"{CATALOG}/batches", params={"limit": 1, "start": 2}).json()) == [c]
    too_many = platform.get(f"{CATALOG}/batches", params={"limit": 101})
    assert too_many.status_code == 400
    assert "100" in too_many.json()["detail"]
    assert platform.get(f"{CATALOG}/batches/nope").status_code == 404


def test_list_batches_by_tags_as_adobe_documents(platform):
    """`tags={NAME}:{VALUE}` (Adobe "Filter Catalog data using query parameters" > "Filter by tag"):
    exact value, `value*` prefix, `*` alone for presence, comma = AND; a value keeps its colons."""
    ds = setup_dataset(platform)
    day1 = create_batch(platform, ds.dataset_id, tags={"grp": ["xdm/c/2026-11-20"], "v": ["1"]})
    day2 = create_batch(platform, ds.dataset_id, tags={"grp": ["xdm/c/2026-11-21"]})
    colon = create_batch(platform, ds.dataset_id, tags={"flag": ["enabled:true"]})
    untagged = create_batch(platform, ds.dataset_id)

    def listed(tags: str, **extra) -> list[str]:
        resp = platform.get(f"{CATALOG}/batches", params={"tags": tags, **extra})
        assert resp.status_code == 200, resp.text
        return list(resp.json())

    assert listed("grp:xdm/c/2026-11-20") == [day1]
    assert listed("grp:xdm/c/2026-11-2") == []  # exact, not a prefix, without a wildcard
    assert listed("grp:xdm/c/2026-11-2*") == [day1, day2]
    assert listed("grp:*") == [day1, day2]
    assert listed("grp:*,v:1") == [day1]  # AND
    assert listed("grp:xdm/c/2026-11-21,v:1") == []
    assert listed("flag:enabled:true") == [colon]
    assert listed("grp:*", dataSet=ds.dataset_id, orderBy="desc:created") == [day2, day1]
    assert untagged not in listed("grp:*")
    for bad in ("grp", ":x", "grp:"):
        resp = platform.get(f"{CATALOG}/batches", params={"tags": bad})
        assert resp.status_code == 400 and "TAG_NAME" in resp.json()["detail"]


def test_list_batches_simple_filters_and_unemulated_parameters(platform):
    ds = setup_dataset(platform)
    a = create_batch(platform, ds.dataset_id, externalId="ext-a")
    b = create_batch(platform, ds.dataset_id, externalId="ext-b")
    c = create_batch(platform, ds.dataset_id, externalId="ext-c")
    get = lambda **p: platform.get(f"{CATALOG}/batches", params=p)  # noqa: E731
    assert list(get(externalId="ext-a,ext-c").json()) == [a, c]  # a list matches any value
    assert list(get(externalId="!ext-a,ext-c").json()) == [b]  # `!` negates the list
    # a filter the emulator does not implement is refused, never silently ignored
    resp = get(property="externalId~^ext")
    assert resp.status_code == 400 and "property" in resp.json()["detail"]
    # batch tags must be arrays of strings (SPEC-BI IngestBatch.tags)
    bad = platform.post(
        f"{IMPORT}/batches",
        json={"datasetId": ds.dataset_id, "inputFormat": {"format": "parquet"}, "tags": {"t": "x"}},
    )
    assert bad.status_code == 400 and "arrays of strings" in bad.json()["detail"]


def test_put_and_complete_5xx_faults(aep, platform):
    ds = setup_dataset(platform)
    batch_id = create_batch(platform, ds.dataset_id)
    data = parquet_bytes(charge_table(2))
    aep.faults.put_5xx = 1
    assert put_file(platform, batch_id, ds.dataset_id, "a.parquet", data).status_code == 503
    assert aep.state.batches[batch_id]["files"] == {}
    assert put_file(platform, batch_id, ds.dataset_id, "a.parquet", data).status_code == 200
    aep.faults.complete_5xx = 2
    assert complete(platform, batch_id).status_code == 503
    assert complete(platform, batch_id).status_code == 503
    assert catalog_batch(platform, batch_id)["status"] == "loading"
    assert complete(platform, batch_id).status_code == 200
    assert wait_final(platform, batch_id)["status"] == "success"
    assert (aep.faults.put_5xx, aep.faults.complete_5xx) == (0, 0)


def test_fail_next_batches_fault(aep, platform):
    ds = setup_dataset(platform)
    aep.faults.fail_next_batches = 1
    _, failed = ingest(platform, ds.dataset_id, {"a.parquet": parquet_bytes(charge_table(2))})
    assert failed["status"] == "failed"
    assert [e["code"] for e in failed["errors"]] == ["INGEST-EMULATOR-FAULT"]
    assert "fail_next_batches" in failed["errors"][0]["description"]
    _, ok = ingest(platform, ds.dataset_id, {"a.parquet": parquet_bytes(charge_table(2))})
    assert ok["status"] == "success"
    assert aep.rows(ds.dataset_id).num_rows == 2


def test_faults_over_http_from_another_process_view(aep, platform):
    ds = setup_dataset(platform)
    requests.post(f"{aep.url}/_emulator/faults", json={"fail_next_batches": 1}, timeout=10)
    batch_id, final = ingest(platform, ds.dataset_id, {"a.parquet": parquet_bytes(charge_table(1))})
    assert final["status"] == "failed"
    summary = requests.get(f"{aep.url}/_emulator/state", timeout=10).json()
    assert summary["batches"][batch_id]["status"] == "failed"
    assert summary["batches"][batch_id]["errors"] == ["INGEST-EMULATOR-FAULT"]


def test_state_survives_a_restart(tmp_path):
    faults = AepFaults(processing_delay_s=0.0)
    with AepEmulator(state_dir=tmp_path, faults=faults) as aep:
        platform = Platform(aep.url, fetch_token(aep.url))
        ds = setup_dataset(platform)
        batch_id, _ = ingest(platform, ds.dataset_id, {"a.parquet": parquet_bytes(charge_table(4))})
        pending = create_batch(platform, ds.dataset_id)
        put_file(
            platform, pending, ds.dataset_id, "b.parquet", parquet_bytes(charge_table(1, start=4))
        )
        old_token = platform.token
    with AepEmulator(state_dir=tmp_path, faults=AepFaults(processing_delay_s=0.0)) as again:
        stale = Platform(again.url, old_token)
        assert (
            stale.get(f"{CATALOG}/batches/{batch_id}").status_code == 401
        )  # tokens are not persisted
        platform = Platform(again.url, fetch_token(again.url))
        assert catalog_batch(platform, batch_id)["status"] == "success"
        assert again.rows(ds.dataset_id).num_rows == 4
        assert complete(platform, pending).status_code == 200
        assert wait_final(platform, pending)["status"] == "success"
        assert again.rows(ds.dataset_id).column("_id").to_pylist() == [f"evt-{i}" for i in range(5)]
        assert platform.get(f"{CATALOG}/dataSets", params={"name": "test charges"}).json()
    assert (tmp_path / "files" / batch_id / "a.parquet").exists()


def test_default_processing_delay_resolves_by_polling():
    with AepEmulator() as aep:  # default faults: processing_delay_s=0.2
        assert aep.faults.processing_delay_s == 0.2
        platform = Platform(aep.url, fetch_token(aep.url))
        ds = setup_dataset(platform)
        batch_id = create_batch(platform, ds.dataset_id)
        put_file(platform, batch_id, ds.dataset_id, "a.parquet", parquet_bytes(charge_table(2)))
        assert complete(platform, batch_id).json()["status"] == "processing"
        final = wait_final(platform, batch_id)
        assert final["status"] == "success"
        assert final["completed"] - final["started"] == 200  # the deadline, not the read time
