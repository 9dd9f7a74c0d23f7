"""Partition locks across real processes: exclusion, the holder named, SIGKILL, range order."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from stripe_aep.config import ConfigError
from stripe_aep.lake import Lake
from stripe_aep.locks import (
    FileLocks,
    Holder,
    PartitionLocks,
    PartitionLockTimeout,
    PostgresLocks,
    hold_partitions,
    lock_wait_seconds,
    locks_for,
)

HOLDER_SCRIPT = """
import os, sys, time
from stripe_aep_tests.test_locks import make_locks
folder, run_id, hold_s, log = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
keys = sys.argv[5:]
with make_locks(folder).hold(keys, run_id=run_id, wait_seconds=120, poll_seconds=0.01):
    with open(log, "a") as f:
        f.write(f"start {run_id}\\n")
    print("held", flush=True)
    if hold_s >= 0:
        time.sleep(hold_s)
    else:  # until told: the log's .release file appears
        while not os.path.exists(log + ".release"):
            time.sleep(0.01)
    with open(log, "a") as f:
        f.write(f"end {run_id}\\n")
"""


def make_locks(target) -> PartitionLocks:
    """The backend under test: a folder of lock files, or a PostgreSQL database URL."""
    target = str(target)
    return PostgresLocks(target) if target.startswith("postgresql://") else FileLocks(target)


@pytest.fixture(params=["files", "postgresql"])
def lock_target(request, tmp_path) -> str:
    """Where the locks live: files under a folder, or a fresh PostgreSQL database (real server)."""
    if request.param == "files":
        return str(tmp_path / "locks")
    return request.getfixturevalue("postgres_url")


def _start(folder, run_id, hold_s, log, *keys):
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(folder), run_id, str(hold_s), str(log), *keys],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


def _wait_held(proc):
    assert proc.stdout.readline().strip() == "held"


def test_second_holder_times_out_naming_partition_and_holder(tmp_path, lock_target):
    folder = lock_target
    holder = _start(folder, "run-a", 60, tmp_path / "log", "stripe/charges/2026-11-10")
    try:
        _wait_held(holder)
        waits = []
        with (
            pytest.raises(PartitionLockTimeout) as info,
            make_locks(folder).hold(
                ["stripe/charges/2026-11-10"],
                run_id="run-b",
                wait_seconds=0.3,
                poll_seconds=0.05,
                on_wait=lambda key, who: waits.append((key, who)),
            ),
        ):
            pytest.fail("the lock was taken while another process held it")
        message = str(info.value)
        assert "stripe/charges/2026-11-10" in message
        assert "run run-a" in message and f"pid {holder.pid}" in message
        assert f"host {socket.gethostname()}" in message and "since 20" in message
        assert info.value.holder.pid == holder.pid
        assert [(k, w.run_id) for k, w in waits] == [("stripe/charges/2026-11-10", "run-a")]
        # Other partitions of the same resource are free.
        with make_locks(folder).hold(["stripe/charges/2026-11-11"], run_id="c", wait_seconds=0):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_sigkilled_holder_releases_its_partitions(tmp_path, lock_target):
    folder = lock_target
    keys = ["xdm/charges/2026-11-10", "xdm/charges/2026-11-11"]
    holder = _start(folder, "run-a", 60, tmp_path / "log", *keys)
    _wait_held(holder)
    with (
        pytest.raises(PartitionLockTimeout),
        make_locks(folder).hold(keys, run_id="run-b", wait_seconds=0),
    ):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert holder.returncode == -signal.SIGKILL
    # The kernel (flock) or the server (the session ended) released the locks: taken at once,
    # and the new holder is recorded.
    locks = make_locks(folder)
    with locks.hold(keys, run_id="run-b", wait_seconds=0) as me:
        assert me.pid == os.getpid()
        assert make_locks(folder).holder(keys[0]).run_id == "run-b"
    assert make_locks(folder).holder(keys[0]) is None  # released: no stale description


def test_concurrent_holders_never_interleave(tmp_path, lock_target):
    folder, log = lock_target, tmp_path / "log"
    key = "aep/refunds/2026-11-10"
    procs = [_start(folder, f"run-{i}", 0.3, log, key) for i in range(3)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 6
    for i in range(0, 6, 2):  # start X is always followed by end X
        assert lines[i].startswith("start ") and lines[i + 1] == "end " + lines[i][6:]


def test_overlapping_ranges_in_opposite_orders_do_not_deadlock(tmp_path, lock_target):
    folder, log = lock_target, tmp_path / "log"
    days = [f"stripe/charges/2026-11-{d}" for d in (10, 11, 12, 13)]
    a = _start(folder, "run-a", 0.3, log, *days)
    b = _start(folder, "run-b", 0.3, log, *reversed(days))
    assert a.wait(timeout=60) == 0 and b.wait(timeout=60) == 0
    lines = log.read_text().splitlines()
    assert sorted(lines) == ["end run-a", "end run-b", "start run-a", "start run-b"]
    assert lines[0][6:] == lines[1][4:]  # one range after the other


def test_hold_partitions_uses_the_data_dir_and_logs_the_wait(tmp_path):
    lake = Lake(str(tmp_path))
    assert locks_for(lake).folder == str(tmp_path / "locks")
    holder = _start(tmp_path / "locks", "run-a", 0.5, tmp_path / "log", "xdm/prices/2026-11-10")
    _wait_held(holder)

    class Log:
        lines: list[str] = []

        def warning(self, text):
            self.lines.append(text)

    log = Log()
    started = time.monotonic()
    with hold_partitions(
        lake, "xdm", "prices", ["2026-11-10"], run_id="b", log=log, wait_seconds=60
    ):
        # Taken only after the holder finished its block.
        assert (tmp_path / "log").read_text().splitlines()[-1] == "end run-a"
    assert time.monotonic() - started < 60
    assert len(log.lines) == 1
    assert "xdm/prices/2026-11-10" in log.lines[0] and "run run-a" in log.lines[0]
    holder.wait()


def test_object_store_lake_locks_on_this_machine():
    # Only `is_local` and `root` matter; no bucket is contacted.
    remote = SimpleNamespace(is_local=False, root="s3://bucket/lake")
    locks = locks_for(remote)
    assert "stripe-aep-locks" in locks.folder
    assert (
        locks.folder == locks_for(SimpleNamespace(is_local=False, root="s3://bucket/lake")).folder
    )
    assert locks.folder != locks_for(SimpleNamespace(is_local=False, root="s3://other")).folder


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "abc", "1e9"])
def test_lock_wait_setting_is_validated(value):
    with pytest.raises(ConfigError) as info:
        lock_wait_seconds({"STRIPE_AEP_LOCK_WAIT_SECONDS": value})
    assert "STRIPE_AEP_LOCK_WAIT_SECONDS" in str(info.value)
    assert lock_wait_seconds({}) == 900.0
    assert lock_wait_seconds({"STRIPE_AEP_LOCK_WAIT_SECONDS": "0"}) == 0.0


def test_a_postgres_ledger_url_selects_postgres_locks_whatever_the_lake(postgres_url):
    env = {"STRIPE_AEP_LEDGER_URL": postgres_url}
    for lake in (SimpleNamespace(is_local=False, root="s3://bucket/lake"), Lake("/tmp")):
        locks = locks_for(lake, env)
        assert isinstance(locks, PostgresLocks)
        # the password never shows in what the object says about itself
        password = postgres_url.split(":")[2].split("@")[0]
        assert password not in repr(locks) and "***" in repr(locks)
    sqlite_env = {"STRIPE_AEP_LEDGER_URL": "sqlite:////tmp/ledger.sqlite"}
    assert isinstance(locks_for(Lake("/tmp"), sqlite_env), FileLocks)


def test_a_postgres_holder_is_not_named_once_its_session_is_gone(postgres_url):
    # a row left behind by a holder whose session ended is never shown as the current holder
    key = "aep/charges/2026-11-10"
    a = PostgresLocks(postgres_url)
    assert a.try_acquire(key, Holder.me("run-a"))
    b = PostgresLocks(postgres_url)
    assert not b.try_acquire(key, Holder.me("run-b"))
    assert b.holder(key).run_id == "run-a"
    with pytest.raises(RuntimeError, match="do not nest"):
        a.try_acquire(key, Holder.me("run-a"))
    a._conn.close()  # the session dies without releasing (as on SIGKILL)
    assert b.holder(key) is None
    assert b.try_acquire(key, Holder.me("run-b")) and b.holder(key).run_id == "run-b"
    b.release(key)
