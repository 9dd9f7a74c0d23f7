"""A lost, emptied, replaced or damaged ledger never causes a second delivery.

The ledger is rebuilt from AEP: every batch carries Catalog tags naming its folder and files, and
`deliver` lists the dataset's batches per folder before sending anything the ledger does not claim.
Each test delivers, damages the ledger the way an operator or a disk might, runs again, and reads
the rows back from the emulator's data: every XDM row exactly once, and no second batch for a file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from stripe_aep.aep.deliver import TAG_FILES, TAG_GROUP, deliver
from stripe_aep.aep.errors import AepBatchFailed
from stripe_aep.aep.ledger import (
    AttemptState,
    BatchLedger,
    DeliveryState,
    LedgerUnreadable,
    PostgresBatchLedger,
    open_ledger,
    recovery_command,
)
from stripe_aep_tests.aep.conftest import make_files, write_xdm_file
from stripe_aep_tests.aep.test_crash import child

ROOT = Path(__file__).resolve().parents[2]
DAY1 = "xdm/charges/2026-11-20"
DAY2 = "xdm/charges/2026-11-21"


def run(client, ledger, dataset_id, files, **kw):
    kw.setdefault("wait_timeout_s", 10)
    kw.setdefault("poll_interval_s", 0.02)
    return deliver(client, ledger, dataset_id=dataset_id, files=files, **kw)


def aep_batches(aep, dataset_id) -> list[dict]:
    return [b for b in aep.state.batches.values() if b["relatedObjects"][0]["id"] == dataset_id]


def xdm_ids(files) -> Counter:
    ids: Counter = Counter()
    for f in files:
        with f.open() as fh:
            ids.update(pq.read_table(fh).column("_id").to_pylist())
    return ids


def assert_rows_once(aep, dataset_id, files) -> None:
    """The dataset's rows, read back from the emulator's data lake, are the XDM rows exactly once."""
    table = aep.rows(dataset_id)
    in_aep = Counter(table.column("_id").to_pylist()) if table.num_rows else Counter()
    assert in_aep == xdm_ids(files), {k: n for k, n in in_aep.items() if n > 1}


def batches_per_file(aep, dataset_id, status="success") -> Counter:
    return Counter(
        key for b in aep_batches(aep, dataset_id) if b["status"] == status for key in b["files"]
    )


def two_days(lake):
    return [*make_files(lake, 3, 10, prefix=DAY1), *make_files(lake, 2, 10, prefix=DAY2)]


def lose(ledger: BatchLedger, how: str) -> None:
    """Lose the (closed) ledger the way it happens in the field: its file, or its tables."""
    if isinstance(ledger, PostgresBatchLedger):
        import psycopg

        tables = "batch_files, ledger_events, batch_attempts, ledger_meta"
        with psycopg.connect(ledger.url, autocommit=True) as db:
            if how == "emptied":
                db.execute(f"TRUNCATE {tables} RESTART IDENTITY")
            else:  # deleted; replaced: dropped, then a new empty ledger in their place
                db.execute(f"DROP TABLE {tables}")
        if how == "replaced":
            PostgresBatchLedger(ledger.url).close()
        return
    path = ledger.path
    if how == "deleted":
        path.unlink()
    elif how == "emptied":
        with open(path, "r+b") as f:
            f.truncate(0)
    elif how == "replaced":  # another valid ledger, e.g. from a fresh data folder
        other = path.with_name("fresh.sqlite")
        BatchLedger(other).close()
        os.replace(other, path)
    else:
        raise AssertionError(how)


class CatalogListings:
    """Counts the Catalog batch listings a client sends (the API cost of reconciling)."""

    def __init__(self, client, monkeypatch):
        self.calls: list[dict] = []
        real = client.request

        def spy(method, path, **kw):
            if method == "GET" and path.endswith("/catalog/batches"):
                self.calls.append(dict(kw.get("params") or {}))
            return real(method, path, **kw)

        monkeypatch.setattr(client, "request", spy)

    def tagged(self) -> list[dict]:
        return [c for c in self.calls if "tags" in c]


@pytest.mark.parametrize("how", ["deleted", "emptied", "replaced"])
def test_lost_ledger_is_rebuilt_from_aep_and_nothing_is_sent_twice(
    aep, aep_client, lake, tmp_path, dataset_id, how, monkeypatch, ledger_env
):
    files = two_days(lake)
    data_dir = tmp_path / "data"
    ledger = open_ledger(data_dir, ledger_env)
    first = run(aep_client, ledger, dataset_id, files)
    ledger.close()
    # one batch per folder, each tagged with its folder and its files
    assert len(first.batch_ids) == 2 and first.delivered_rows == 50
    for b in aep_batches(aep, dataset_id):
        folder = next(iter(b["files"])).rsplit("/", 1)[0]
        assert b["tags"][TAG_GROUP] == [folder]
        assert sorted(e.split("|")[0] for e in b["tags"][TAG_FILES]) == sorted(b["files"])

    lose(ledger, how)
    listings = CatalogListings(aep_client, monkeypatch)
    extra = write_xdm_file(lake, f"{DAY2}/1763773200-1763776800.part0.parquet", 5000, 4)
    ledger = open_ledger(data_dir, ledger_env)
    assert ledger.attempts() == []
    again = run(aep_client, ledger, dataset_id, [*files, extra])

    # only the new file went out, in one new batch; the two earlier batches were adopted
    assert again.files == [extra.key] and again.rows == 4
    assert sorted(again.adopted_batches) == sorted(first.batch_ids)
    assert sorted(again.already_delivered) == sorted(f.key for f in files)
    assert len(aep_batches(aep, dataset_id)) == 3
    assert set(batches_per_file(aep, dataset_id).values()) == {1}
    assert_rows_once(aep, dataset_id, [*files, extra])
    # the rebuilt ledger knows every row AEP holds (what the asset check compares with the XDM rows)
    assert ledger.delivered_rows([*files, extra], dataset_id) == 54
    assert all(ledger.status_of(f.key).state is DeliveryState.DELIVERED for f in files)
    # cost: one tagged, dataset-filtered listing per folder with unclaimed files
    assert [c["tags"] for c in listings.tagged()] == [f"{TAG_GROUP}:{DAY1}", f"{TAG_GROUP}:{DAY2}"]
    assert all(c["dataSet"] == dataset_id and c["limit"] == 100 for c in listings.tagged())

    # the ledger is whole again: the next run asks Catalog nothing and sends nothing
    listings.calls.clear()
    third = run(aep_client, ledger, dataset_id, [*files, extra])
    assert third.files == [] and third.adopted_batches == [] and listings.tagged() == []
    assert len(aep_batches(aep, dataset_id)) == 3
    ledger.close()


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "foreign_database", "missing_column"],
)
def test_unreadable_ledger_fails_naming_it_and_its_recovery_command_which_works(
    aep, aep_client, lake, tmp_path, dataset_id, damage
):
    files = two_days(lake)
    data_dir = tmp_path / "data"
    ledger = BatchLedger.for_data_dir(data_dir)
    run(aep_client, ledger, dataset_id, files)
    ledger.close()
    path = ledger.path
    if damage == "garbage":
        path.write_bytes(os.urandom(64 * 1024))
    elif damage == "truncated":
        size = path.stat().st_size
        assert size > 8192
        with open(path, "r+b") as f:
            f.truncate(size // 2)
    elif damage == "foreign_database":
        path.unlink()
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    else:
        with sqlite3.connect(path) as db:
            db.execute("ALTER TABLE batch_files DROP COLUMN sha256")
    batches_before = len(aep_batches(aep, dataset_id))

    with pytest.raises(LedgerUnreadable) as err:
        BatchLedger.for_data_dir(data_dir)
    message = str(err.value)
    assert str(path) in message and "cannot be read" in message
    assert recovery_command(path) in message and "Nothing was sent" in message
    assert len(aep_batches(aep, dataset_id)) == batches_before

    # the recovery command, run for real: the file is kept aside, the next run rebuilds from AEP
    recovered = subprocess.run(
        [sys.executable, "-m", "stripe_aep.cli", *recovery_command(path).split()[1:]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert recovered.returncode == 0, recovered.stderr
    assert not path.exists()
    kept = [p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.damaged-")]
    assert kept and "moved to" in recovered.stdout

    ledger = BatchLedger.for_data_dir(data_dir)
    report = run(aep_client, ledger, dataset_id, files)
    assert report.files == [] and len(report.adopted_batches) == batches_before
    assert len(aep_batches(aep, dataset_id)) == batches_before
    assert_rows_once(aep, dataset_id, files)
    assert ledger.delivered_rows(files, dataset_id) == 50
    ledger.close()


def test_a_previously_failed_batch_is_sent_again_once_after_the_ledger_is_lost(
    aep, aep_client, lake, tmp_path, dataset_id, ledger_env
):
    files = make_files(lake, 3, 10, prefix=DAY1)
    data_dir = tmp_path / "data"
    ledger = open_ledger(data_dir, ledger_env)
    aep.faults.fail_next_batches = 1
    with pytest.raises(AepBatchFailed) as err:
        run(aep_client, ledger, dataset_id, files)
    [(failed_id, _, _)] = err.value.failures
    ledger.close()
    lose(ledger, "deleted")

    ledger = open_ledger(data_dir, ledger_env)
    report = run(aep_client, ledger, dataset_id, files)
    assert sorted(report.files) == sorted(f.key for f in files) and report.delivered_rows == 30
    # the failed batch is recorded (files released), not adopted as delivered
    [old] = [a for a in ledger.attempts(dataset_id) if a.batch_id == failed_id]
    assert old.state is AttemptState.FAILED and failed_id not in report.adopted_batches
    assert batches_per_file(aep, dataset_id, "failed") == {f.key: 1 for f in files}
    assert batches_per_file(aep, dataset_id) == {f.key: 1 for f in files}
    assert_rows_once(aep, dataset_id, files)

    # and once only: one more run after losing the ledger again sends nothing
    ledger.close()
    lose(ledger, "emptied")
    ledger = open_ledger(data_dir, ledger_env)
    assert run(aep_client, ledger, dataset_id, files).files == []
    assert len(aep_batches(aep, dataset_id)) == 2
    assert_rows_once(aep, dataset_id, files)
    ledger.close()


def test_a_batch_still_processing_when_the_ledger_is_lost_is_adopted_and_watched(
    aep, aep_client, lake, tmp_path, dataset_id
):
    aep.faults.processing_delay_s = 3600  # processing until the test says otherwise
    files = make_files(lake, 2, 10, prefix=DAY1)
    data_dir = tmp_path / "data"
    ledger = BatchLedger.for_data_dir(data_dir)
    first = run(aep_client, ledger, dataset_id, files, wait_timeout_s=0)
    [pending_id] = first.pending_batches
    ledger.close()
    lose(ledger, "deleted")

    ledger = BatchLedger.for_data_dir(data_dir)
    second = run(aep_client, ledger, dataset_id, files, wait_timeout_s=0)
    assert second.files == [] and second.adopted_batches == [pending_id]
    assert second.pending_batches == [pending_id]
    assert second.waiting_on_earlier_batches == sorted(f.key for f in files)
    assert [p.batch_id for p in ledger.pending_batches(dataset_id)] == [pending_id]
    assert ledger.status_of(files[0].key).state is DeliveryState.PENDING

    assert aep.finish_processing() == 1
    third = run(aep_client, ledger, dataset_id, files)
    assert third.files == [] and third.batch_ids == [pending_id]
    assert third.delivered_rows == 20 and third.records_written == 20  # the asset check's terms
    assert len(aep_batches(aep, dataset_id)) == 1
    assert_rows_once(aep, dataset_id, files)
    assert ledger.delivered_rows(files, dataset_id) == 20
    ledger.close()


def test_interrupted_batch_of_a_lost_ledger_is_resumed_not_duplicated(
    aep, lake, tmp_path, dataset_id
):
    """SIGKILL mid-upload, then the ledger (and only its main file) is deleted: the WAL left behind
    is moved aside, the `loading` batch is found by its tags and resumed."""
    files = make_files(lake, 5, 20, prefix=DAY1)  # 3 + 2 per batch
    data_dir = tmp_path / "data"
    crashed = child(aep, lake, data_dir, dataset_id, "after_upload:1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    [loading] = aep_batches(aep, dataset_id)
    assert loading["status"] == "loading"
    path = data_dir / "ledger" / "aep_batches.sqlite"
    assert Path(f"{path}-wal").exists()  # the killed process never checkpointed
    path.unlink()

    rerun = child(aep, lake, data_dir, dataset_id, None)
    assert rerun.returncode == 0, rerun.stderr
    assert any(p.name.startswith("aep_batches.sqlite.orphaned-") for p in path.parent.iterdir())
    assert len(aep_batches(aep, dataset_id)) == 2  # the interrupted one, completed, plus one
    assert aep.state.batches[loading["id"]]["status"] == "success"
    assert set(batches_per_file(aep, dataset_id).values()) == {1}
    assert_rows_once(aep, dataset_id, files)
    ledger = BatchLedger.for_data_dir(data_dir)
    assert ledger.delivered_rows(files, dataset_id) == 100
    ledger.close()


def test_a_batch_without_our_tags_is_left_alone(aep, aep_client, lake, tmp_path, dataset_id):
    """Someone else's batch tagged with the folder but no file list is neither adopted nor aborted."""
    files = make_files(lake, 1, 5, prefix=DAY1)
    foreign = aep_client.create_batch(
        dataset_id, external_id="someone-else", tags={TAG_GROUP: [DAY1]}
    )
    ledger = BatchLedger.for_data_dir(tmp_path / "data")
    report = run(aep_client, ledger, dataset_id, files)
    assert report.files == [files[0].key] and report.adopted_batches == []
    assert aep.state.batches[foreign]["status"] == "loading"
    assert_rows_once(aep, dataset_id, files)
    ledger.close()


def test_aep_asset_after_the_ledger_is_deleted_sends_nothing_again_and_its_check_is_true(
    stripe_emulator, stripe_account, tmp_path, monkeypatch
):
    """The issue as reported, end to end: stripe → xdm → aep for a day, the ledger deleted, `aep/charges`
    run again. It must succeed without a new batch, with AEP holding each object once, and its row
    check must pass because the rebuilt ledger knows what AEP holds (not because nothing is checked)."""
    import dagster as dg

    from stripe_aep.aep.client import AepClient
    from stripe_aep.aep.settings import AepSettings
    from stripe_aep.aep.setup import run_setup
    from stripe_aep.emulators.aep_api import AepEmulator, AepFaults
    from stripe_aep.stripe.rawstore import day_bounds
    from stripe_aep.xdm import schema_registry_payloads
    from stripe_aep_tests.aep.conftest import env_for
    from stripe_aep_tests.assets.test_chain import (
        ALL_ASSETS,
        DAYS,
        TENANT,
        _resources,
        read_back_ids,
    )

    selection = [a for a in ALL_ASSETS if a.key.path[-1] == "charges"]
    aep_only = [a for a in selection if a.key.path[0] == "aep"]
    day = DAYS[0].isoformat()
    config = {"ops": {"aep__charges": {"config": {"poll_interval_seconds": 0.05}}}}
    with AepEmulator(faults=AepFaults(processing_delay_s=0.05)) as emulator:
        env = env_for(emulator)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        client = AepClient(AepSettings.from_env(env))
        dataset_id = run_setup(
            client,
            tenant=TENANT,
            payloads={"charges": schema_registry_payloads("charges", TENANT)},
            environ={},
        )["charges"]
        truth = {o["id"] for o in stripe_account.objects("charges", *day_bounds(DAYS[0]))}
        with dg.instance_for_test() as instance:
            first = dg.materialize(
                selection,
                resources=_resources(stripe_emulator.url, tmp_path),
                instance=instance,
                partition_key=day,
                run_config=config,
            )
            assert first.success
            batches = len(client.list_batches(dataset_id=dataset_id))
            assert batches == 1

            (tmp_path / "ledger" / "aep_batches.sqlite").unlink()
            again = dg.materialize(
                aep_only,
                resources=_resources(stripe_emulator.url, tmp_path),
                instance=instance,
                partition_key=day,
                run_config=config,
            )
            assert again.success
            [check] = [
                e.event_specific_data
                for e in again.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION"
            ]
            assert check.passed
            meta = check.metadata
            assert meta["rows_delivered"].value == meta["xdm_rows"].value == len(truth)
            [mat] = again.asset_materializations_for_node("aep__charges")
            assert mat.metadata["run_adopted_batches"].value == 1
            assert mat.metadata["files_sent"].value == 0
        assert len(client.list_batches(dataset_id=dataset_id)) == batches
        ids = read_back_ids(client, dataset_id)
        assert len(ids) == len(set(ids)) and set(ids) == truth
        client.close()


def test_a_ledger_locked_by_another_process_is_busy_not_damaged(tmp_path):
    """'database is locked' must not send the operator to move a live ledger aside."""
    from stripe_aep.aep.errors import DeliveryLockTimeout

    path = tmp_path / "aep_batches.sqlite"
    BatchLedger(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DeliveryLockTimeout) as err:
            BatchLedger(path, busy_timeout_s=0.2)
        assert not isinstance(err.value, LedgerUnreadable)
        assert "locked by another process" in str(err.value) and "recover_ledger" not in str(
            err.value
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    BatchLedger(path).close()  # and it opens once the other process is done


def test_our_batch_with_an_unreadable_file_list_stops_the_folder_instead_of_guessing(
    aep, aep_client, lake, tmp_path, dataset_id
):
    """A landed batch tagged as ours whose file list is cut short: sending could double its rows."""
    from stripe_aep.aep.deliver import TAG_FILE_COUNT, TAG_FORMAT
    from stripe_aep.aep.errors import AepError

    files = make_files(lake, 2, 5, prefix=DAY1)
    data_dir = tmp_path / "data"
    ledger = BatchLedger.for_data_dir(data_dir)
    [batch_id] = run(aep_client, ledger, dataset_id, files).batch_ids
    ledger.close()
    lose(ledger, "deleted")
    tags = aep.state.batches[batch_id]["tags"]
    assert tags[TAG_FORMAT] == ["1"] and tags[TAG_FILE_COUNT] == ["2"]
    aep.store.batches[batch_id]["tags"][TAG_FILES] = tags[TAG_FILES][:1]  # as if cut short

    ledger = BatchLedger.for_data_dir(data_dir)
    with pytest.raises(AepError) as err:
        run(aep_client, ledger, dataset_id, files)
    message = str(err.value)
    assert batch_id in message and "cannot be read" in message and "REVERT" in message
    assert len(aep_batches(aep, dataset_id)) == 1
    assert_rows_once(aep, dataset_id, files)
    ledger.close()
