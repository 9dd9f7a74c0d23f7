"""The deliverer against the AEP emulator: exactly once through retries, failures, pending batches."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from stripe_aep.aep.deliver import deliver, plan_batches
from stripe_aep.aep.errors import AepBatchFailed, AepError, FileTooLargeError
from stripe_aep.aep.ledger import AttemptState, DeliveryState
from stripe_aep_tests.aep.conftest import make_files, write_xdm_file


def ids_in_aep(aep, dataset_id) -> Counter:
    table = aep.rows(dataset_id)
    return Counter(table.column("_id").to_pylist()) if table.num_rows else Counter()


def expected_ids(files) -> set[str]:
    import pyarrow.parquet as pq

    out: set[str] = set()
    for f in files:
        with f.open() as fh:
            out.update(pq.read_table(fh).column("_id").to_pylist())
    return out


def run(client, ledger, dataset_id, files, **kw):
    kw.setdefault("wait_timeout_s", 10)
    kw.setdefault("poll_interval_s", 0.02)
    return deliver(client, ledger, dataset_id=dataset_id, files=files, **kw)


def batches_of(aep, dataset_id) -> list[dict]:
    return [b for b in aep.state.batches.values() if b["relatedObjects"][0]["id"] == dataset_id]


def test_happy_path_delivers_each_row_once_in_as_few_batches_as_allowed(
    aep, aep_client, ledger, lake, dataset_id, caplog
):
    files = make_files(lake, 5, 40)
    with caplog.at_level(logging.DEBUG):
        report = run(aep_client, ledger, dataset_id, files, max_files_per_batch=2)
    assert len(report.batch_ids) == 3  # 2 + 2 + 1
    assert report.rows == 200 and report.delivered_rows == 200
    assert sorted(report.files) == sorted(f.key for f in files)
    assert report.bytes == sum(f.size for f in files)
    assert report.records_read == 200 and report.records_written == 200
    assert report.records_failed == 0
    assert report.pending_batches == [] and report.failed == []
    assert set(report.statuses.values()) == {"success"}
    counts = ids_in_aep(aep, dataset_id)
    assert set(counts) == expected_ids(files) and set(counts.values()) == {1}
    assert ledger.delivered_rows(files) == 200
    assert all(ledger.status_of(f.key).state is DeliveryState.DELIVERED for f in files)
    # the files keep their lake-relative path inside the batch
    sent = {p for b in batches_of(aep, dataset_id) for p in b["files"]}
    assert sent == {f.key for f in files}
    # secrets stay out of the logs
    assert aep.identity.client_secret not in caplog.text
    assert "Bearer" not in caplog.text


def test_second_run_sends_nothing_and_new_files_go_in_a_new_batch(
    aep, aep_client, ledger, lake, dataset_id
):
    files = make_files(lake, 3, 10)
    run(aep_client, ledger, dataset_id, files)
    again = run(aep_client, ledger, dataset_id, files)
    assert again.batch_ids == [] and again.rows == 0
    assert sorted(again.already_delivered) == sorted(f.key for f in files)
    assert len(batches_of(aep, dataset_id)) == 1
    extra = write_xdm_file(
        lake, "xdm/charges/2026-11-21/1763683200-1763769600.part0.parquet", 1000, 7
    )
    third = run(aep_client, ledger, dataset_id, [*files, extra])
    assert third.files == [extra.key] and third.rows == 7
    assert len(batches_of(aep, dataset_id)) == 2
    counts = ids_in_aep(aep, dataset_id)
    assert sum(counts.values()) == 37 and set(counts.values()) == {1}


def test_put_503s_are_retried_inside_the_batch(aep, aep_client, ledger, lake, dataset_id):
    aep.faults.put_5xx = 3
    files = make_files(lake, 4, 10)
    report = run(aep_client, ledger, dataset_id, files)
    assert aep_client.stats["retries"] >= 3
    assert len(report.batch_ids) == 1 and report.delivered_rows == 40
    assert sum(ids_in_aep(aep, dataset_id).values()) == 40


def test_complete_503s_are_retried(aep, aep_client, ledger, lake, dataset_id):
    aep.faults.complete_5xx = 2
    report = run(aep_client, ledger, dataset_id, make_files(lake, 1, 5))
    assert report.delivered_rows == 5


def test_rejected_batch_raises_with_adobe_code_and_a_later_run_redelivers_once(
    aep, aep_client, ledger, lake, dataset_id
):
    files = make_files(lake, 3, 10)
    aep.faults.fail_next_batches = 1
    with pytest.raises(AepBatchFailed) as err:
        run(aep_client, ledger, dataset_id, files)
    exc = err.value
    assert "INGEST-EMULATOR-FAULT" in str(exc)
    [(batch_id, status, errors)] = exc.failures
    assert status == "failed" and errors[0].code == "INGEST-EMULATOR-FAULT"
    assert exc.report is not None and exc.report.failed[0].batch_id == batch_id
    assert sum(ids_in_aep(aep, dataset_id).values()) == 0
    assert all(ledger.status_of(f.key).state is DeliveryState.UNDELIVERED for f in files)
    assert ledger.status_of(files[0].key).errors[0].code == "INGEST-EMULATOR-FAULT"
    assert ledger.delivered_rows(files) == 0

    report = run(aep_client, ledger, dataset_id, files)
    assert report.delivered_rows == 30 and batch_id not in report.batch_ids
    counts = ids_in_aep(aep, dataset_id)
    assert set(counts) == expected_ids(files) and set(counts.values()) == {1}
    assert ledger.delivered_rows(files) == 30


def test_data_the_dataset_schema_rejects_fails_with_adobes_validation_code(
    aep, aep_client, ledger, lake, dataset_id
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = lake / "xdm/charges/bad.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"_id": ["a"], "notInSchema": [1.5]}), path)
    from stripe_aep.aep.deliver import XdmFile

    with pytest.raises(AepBatchFailed) as err:
        run(aep_client, ledger, dataset_id, [XdmFile.from_path(path, "xdm/charges/bad.parquet")])
    codes = {e.code for _, _, errs in err.value.failures for e in errs}
    assert codes and all(c.startswith("INGEST") for c in codes)


def test_pending_batch_is_resumed_by_the_next_call_not_resent(
    aep, aep_client, ledger, lake, dataset_id
):
    aep.faults.processing_delay_s = 0.6
    files = make_files(lake, 2, 10)
    first = run(aep_client, ledger, dataset_id, files, wait_timeout_s=0)
    assert len(first.pending_batches) == 1 and first.delivered_rows == 0
    [pending] = ledger.pending_batches(dataset_id)
    assert pending.batch_id == first.pending_batches[0] and pending.rows == 20
    assert ledger.status_of(files[0].key).state is DeliveryState.PENDING

    second = run(aep_client, ledger, dataset_id, files, wait_timeout_s=10)
    assert second.files == [] and second.waiting_on_earlier_batches == sorted(f.key for f in files)
    assert second.batch_ids == [pending.batch_id]
    assert second.succeeded[0].recovered and second.delivered_rows == 20
    assert len(batches_of(aep, dataset_id)) == 1
    assert ledger.pending_batches(dataset_id) == []
    assert sum(ids_in_aep(aep, dataset_id).values()) == 20


def test_failed_creation_that_did_create_a_batch_is_adopted_by_external_id(
    aep, aep_client, ledger, lake, dataset_id, monkeypatch
):
    real = aep_client.create_batch

    def create_then_time_out(dataset, *, external_id, **kw):
        real(dataset, external_id=external_id, **kw)
        raise AepError("network error talking to AEP: ReadTimeout", method="POST", path="/batches")

    monkeypatch.setattr(aep_client, "create_batch", create_then_time_out)
    report = run(aep_client, ledger, dataset_id, make_files(lake, 2, 5))
    assert len(batches_of(aep, dataset_id)) == 1
    assert report.delivered_rows == 10 and len(report.batch_ids) == 1


def test_failed_creation_with_no_batch_voids_the_intent_and_raises(
    aep, aep_client, ledger, lake, dataset_id, monkeypatch
):
    def refuse(dataset, *, external_id, **kw):
        raise AepError("AEP call failed", status=503)

    files = make_files(lake, 2, 5)
    monkeypatch.setattr(aep_client, "create_batch", refuse)
    with pytest.raises(AepError):
        run(aep_client, ledger, dataset_id, files)
    [attempt] = ledger.attempts(dataset_id)
    assert attempt.state is AttemptState.VOID and attempt.batch_id is None
    monkeypatch.undo()
    report = run(aep_client, ledger, dataset_id, files)
    assert report.delivered_rows == 10 and len(batches_of(aep, dataset_id)) == 1


def test_upload_failure_aborts_the_batch_and_releases_the_files(
    aep, aep_client, ledger, lake, dataset_id, monkeypatch
):
    files = make_files(lake, 3, 5)
    real = aep_client.upload_file
    calls = []

    def flaky(batch_id, dataset, path, data, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise AepError("AEP call failed", status=400, code="INGEST-400")
        return real(batch_id, dataset, path, data, **kw)

    monkeypatch.setattr(aep_client, "upload_file", flaky)
    with pytest.raises(AepError):
        run(aep_client, ledger, dataset_id, files, upload_concurrency=1)
    [batch] = batches_of(aep, dataset_id)
    assert batch["status"] == "aborted"
    assert ledger.attempts(dataset_id)[0].state is AttemptState.ABORTED
    monkeypatch.undo()
    report = run(aep_client, ledger, dataset_id, files)
    assert report.delivered_rows == 15
    assert sum(ids_in_aep(aep, dataset_id).values()) == 15


def test_ledger_records_every_step_in_order(aep, aep_client, ledger, lake, dataset_id):
    run(aep_client, ledger, dataset_id, make_files(lake, 2, 3), upload_concurrency=1)
    [attempt] = ledger.attempts(dataset_id)
    events = [e["event"] for e in ledger.events(attempt.attempt_id) if e["event"] != "aep_status"]
    assert events == [
        "intent",
        "created",
        "upload_started",
        "upload_finished",
        "upload_started",
        "upload_finished",
        "completing",
        "completed",
        "success",
    ]
    assert attempt.records_written == 6
    assert all(f.sha256 and len(f.sha256) == 64 for f in ledger.files_of(attempt.attempt_id))


def test_bad_input_is_refused_before_anything_is_sent(aep, aep_client, ledger, lake, dataset_id):
    files = make_files(lake, 1, 3)
    with pytest.raises(ValueError, match="listed twice"):
        run(aep_client, ledger, dataset_id, [files[0], files[0]])
    huge = files[0].__class__(key="big.parquet", rows=1, size=300 * 2**20, open=files[0].open)
    with pytest.raises(FileTooLargeError, match="256 MiB"):
        run(aep_client, ledger, dataset_id, [huge])
    assert batches_of(aep, dataset_id) == []


def test_empty_files_are_skipped(aep, aep_client, ledger, lake, dataset_id):
    empty = write_xdm_file(lake, "xdm/charges/empty.parquet", 0, 0)
    report = run(aep_client, ledger, dataset_id, [empty])
    assert report.skipped_empty == [empty.key] and report.batch_ids == []


def test_plan_batches_respects_both_limits(lake):
    files = make_files(lake, 7, 2)
    assert [len(b) for b in plan_batches(files, max_files=3, max_bytes=10**12)] == [3, 3, 1]
    size = files[0].size
    assert [len(b) for b in plan_batches(files, max_files=100, max_bytes=size * 2 + 10)] == [
        2,
        2,
        2,
        1,
    ]


def test_stalled_batch_is_reported_as_an_alert_and_stays_pending(
    aep, aep_client, ledger, lake, dataset_id, monkeypatch
):
    from stripe_aep.aep.client import BatchStatus

    real = aep_client.get_batch

    def stalled(batch_id):
        st = real(batch_id)
        return BatchStatus.from_catalog(batch_id, {**st.raw, "status": "stalled"})

    monkeypatch.setattr(aep_client, "get_batch", stalled)
    files = make_files(lake, 1, 4)
    report = run(aep_client, ledger, dataset_id, files, wait_timeout_s=5)
    assert report.stalled_batches == report.batch_ids and report.pending_batches == []
    [pending] = ledger.pending_batches(dataset_id)
    assert pending.aep_status == "stalled"
    assert ledger.status_of(files[0].key).state is DeliveryState.PENDING
    monkeypatch.undo()
    aep.faults.processing_delay_s = 0
    later = run(aep_client, ledger, dataset_id, files)
    assert later.delivered_rows == 4 and ledger.pending_batches(dataset_id) == []


def test_ledger_is_durable_sqlite_in_wal_mode(ledger):
    mode = ledger._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert ledger.path.name == "aep_batches.sqlite" and ledger.path.parent.name == "ledger"


def test_second_delivery_to_the_same_dataset_waits_for_the_lock(ledger):
    from stripe_aep.aep.errors import DeliveryLockTimeout
    from stripe_aep.aep.ledger import BatchLedger

    other = BatchLedger(ledger.path)  # another process would open its own connection
    with ledger.dataset_lock("ds1"):
        with (
            pytest.raises(DeliveryLockTimeout, match="ds1"),
            other.dataset_lock("ds1", timeout_s=0.2, poll_s=0.05),
        ):
            pass
        with other.dataset_lock("ds2", timeout_s=0.2):  # other datasets are independent
            pass
    with other.dataset_lock("ds1", timeout_s=0.2):
        pass
    other.close()
