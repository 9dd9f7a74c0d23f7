"""Crash safety: a real delivery process SIGKILLed at each checkpoint, then a re-run.

After the re-run every row must be in AEP exactly once, no batch may be left `loading`, and the
ledger must hold no pending attempt.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from stripe_aep.aep.deliver import XdmFile, deliver
from stripe_aep.aep.ledger import AttemptState, open_ledger
from stripe_aep.records import DeliverySummary
from stripe_aep_tests.aep.conftest import env_for, make_files, write_xdm_file
from stripe_aep_tests.crash import sigkill_at

ROOT = Path(__file__).resolve().parents[2]


def child(
    aep,
    lake: Path,
    data_dir: Path,
    dataset_id: str,
    crash_at: str | None,
    max_files=3,
    ledger_env: dict[str, str] | None = None,
):
    env = {**os.environ, **env_for(aep), **(ledger_env or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "stripe_aep_tests.aep.deliver_child",
            str(lake),
            str(data_dir),
            dataset_id,
            str(max_files),
            *(["--crash-at", crash_at] if crash_at else []),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def assert_exactly_once(aep, dataset_id, files):
    table = aep.rows(dataset_id)
    counts = Counter(table.column("_id").to_pylist())
    want = set()
    import pyarrow.parquet as pq

    for f in files:
        with f.open() as fh:
            want.update(pq.read_table(fh).column("_id").to_pylist())
    assert set(counts) == want
    assert set(counts.values()) == {1}, [k for k, n in counts.items() if n > 1][:5]
    statuses = Counter(
        b["status"]
        for b in aep.state.batches.values()
        if b["relatedObjects"][0]["id"] == dataset_id
    )
    assert statuses["loading"] == 0 and statuses["processing"] == 0, statuses


IN, CR, CG, CD = (
    AttemptState.INTENT,
    AttemptState.CREATED,
    AttemptState.COMPLETING,
    AttemptState.COMPLETED,
)
#: the ledger a SIGKILL leaves behind (5 files, 3 per batch → two batches)
EXPECTED_AT_CRASH = {
    "after_create_before_ledger": [IN],
    "after_create": [CR],
    "after_upload:1": [CR],
    "after_upload:4": [CD, CR],
    "after_complete_before_ledger": [CG],
    "while_polling": [CD, CD],
}


@pytest.mark.parametrize(
    "crash_at",
    [
        "after_create_before_ledger",
        "after_create",
        "after_upload:1",
        "after_upload:4",
        "after_complete_before_ledger",
        "while_polling",
    ],
)
def test_sigkill_at_each_step_then_rerun_delivers_every_row_once(
    aep, lake, tmp_path, dataset_id, crash_at, ledger_env
):
    aep.faults.processing_delay_s = 0.3
    files = make_files(lake, 5, 20)  # 3 + 2 files per batch
    data_dir = tmp_path / "data"
    crashed = child(aep, lake, data_dir, dataset_id, crash_at, ledger_env=ledger_env)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    ledger = open_ledger(data_dir, ledger_env)
    before = ledger.attempts(dataset_id)
    assert [a.state for a in before] == EXPECTED_AT_CRASH[crash_at]

    rerun = child(aep, lake, data_dir, dataset_id, None, ledger_env=ledger_env)
    assert rerun.returncode == 0, rerun.stderr
    assert_exactly_once(aep, dataset_id, files)
    assert ledger.pending_batches(dataset_id) == []
    assert ledger.delivered_rows(files, dataset_id) == 100
    # one batch per attempt at most: the crashed batch was resumed/adopted, never re-created twice
    aep_batches = [
        b for b in aep.state.batches.values() if b["relatedObjects"][0]["id"] == dataset_id
    ]
    assert len(aep_batches) == len({a.batch_id for a in ledger.attempts(dataset_id) if a.batch_id})
    ledger.close()


def test_interrupted_batch_whose_files_are_not_offered_again_is_aborted(
    aep, aep_client, lake, tmp_path, dataset_id, ledger_env
):
    files = make_files(lake, 4, 10)
    data_dir = tmp_path / "data"
    crashed = child(
        aep, lake, data_dir, dataset_id, "after_upload:1", max_files=4, ledger_env=ledger_env
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    ledger = open_ledger(data_dir, ledger_env)
    [interrupted] = ledger.attempts(dataset_id)
    assert interrupted.state is AttemptState.CREATED

    # the next run only covers two of the four files (say, a single partition)
    subset = [XdmFile.from_path(lake / f.key, f.key) for f in files[:2]]
    report = deliver(
        aep_client,
        ledger,
        dataset_id=dataset_id,
        files=subset,
        wait_timeout_s=10,
        poll_interval_s=0.02,
    )
    assert ledger.attempt(interrupted.attempt_id).state is AttemptState.ABORTED
    assert aep.state.batches[interrupted.batch_id]["status"] == "aborted"
    assert report.delivered_rows == 20
    # and the other two are delivered by a later call, once
    deliver(
        aep_client,
        ledger,
        dataset_id=dataset_id,
        files=files,
        wait_timeout_s=10,
        poll_interval_s=0.02,
    )
    assert_exactly_once(aep, dataset_id, files)
    ledger.close()


def test_child_without_a_crash_point_delivers_and_reports_its_summary(
    aep, lake, tmp_path, dataset_id
):
    make_files(lake, 1, 3)
    done = child(aep, lake, tmp_path / "data", dataset_id, None)
    assert done.returncode == 0, done.stderr
    summary = DeliverySummary.from_json(json.loads(done.stdout.splitlines()[-1]))
    assert (summary.dataset_id, summary.files_sent, summary.rows_confirmed) == (dataset_id, 1, 3)
    assert summary.records_written == 3 and len(summary.batch_ids) == 1
    assert summary.statuses == {summary.batch_ids[0]: "success"}


def test_checkpoints_are_reported_in_protocol_order(aep, aep_client, lake, tmp_path, dataset_id):
    """What a crash test can stop at: every checkpoint, in the order of the write-ahead protocol
    (5 files, 3 per batch: two batches, each created, uploaded file by file, completed, then
    both watched)."""
    aep.faults.processing_delay_s = 0.05
    files = make_files(lake, 5, 4)
    reached: list[str] = []
    ledger = open_ledger(tmp_path / "data")
    deliver(
        aep_client,
        ledger,
        dataset_id=dataset_id,
        files=files,
        wait_timeout_s=10,
        poll_interval_s=0.02,
        max_files_per_batch=3,
        upload_concurrency=1,
        on_checkpoint=reached.append,
    )
    batch = ["after_create_before_ledger", "after_create"]
    assert reached == [
        *batch,
        "after_upload:1",
        "after_upload:2",
        "after_upload:3",
        "after_complete_before_ledger",
        *batch,
        "after_upload:4",
        "after_upload:5",
        "after_complete_before_ledger",
        "while_polling",
        "while_polling",
    ]
    ledger.close()


def test_sigkill_at_refuses_an_unknown_checkpoint():
    assert sigkill_at(None) is None
    with pytest.raises(ValueError, match="after_upload:<n>"):
        sigkill_at("after_upload")


@pytest.mark.parametrize("crash_at", ["after_upload:1", "while_polling"])
def test_change_parts_of_a_delivered_day_survive_a_crash_exactly_once(
    aep, lake, tmp_path, dataset_id, crash_at
):
    """A day is delivered; then change files of that day are converted (parts named
    `changes-<stem>`, docs/change-capture.md); a delivery killed while sending them, then re-run,
    sends exactly those rows, once, and never the delivered listing parts again."""
    aep.faults.processing_delay_s = 0.3
    listing = make_files(lake, 2, 10)
    data_dir = tmp_path / "data"
    first = child(aep, lake, data_dir, dataset_id, None)
    assert first.returncode == 0, first.stderr
    batches_before = {b for b in aep.state.batches if aep.state.batches[b]["status"] == "success"}

    day = "xdm/charges/2026-11-20"
    changes = [
        write_xdm_file(
            lake, f"{day}/changes-{1763600000 + i}-{1763600100 + i}.part0.parquet", 1000 + i * 5, 5
        )
        for i in range(4)
    ]
    crashed = child(aep, lake, data_dir, dataset_id, crash_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = child(aep, lake, data_dir, dataset_id, None)
    assert rerun.returncode == 0, rerun.stderr
    assert_exactly_once(aep, dataset_id, [*listing, *changes])
    ledger = open_ledger(data_dir)
    assert ledger.delivered_rows(changes, dataset_id) == 20
    new_batches = [
        b
        for b in aep.state.batches.values()
        if b["relatedObjects"][0]["id"] == dataset_id and b["id"] not in batches_before
    ]
    sent = " ".join(f for b in new_batches for f in b["files"])
    assert all(c.key.rsplit("/", 1)[1] in sent for c in changes), sent
    assert not any(f.key.rsplit("/", 1)[1] in sent for f in listing), sent
    ledger.close()
