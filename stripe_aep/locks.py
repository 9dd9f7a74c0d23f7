"""Partition locks: at most one writer per raw, XDM or AEP partition (layer × resource × UTC day).

Why: two runs of one partition would otherwise interleave. Two raw extractions both page the whole
day (double API use) and the second then fails in the merge because the first already replaced the
files it wanted to merge; two conversions or two deliveries race the same way. It is easy to get
there: killing `dagster asset materialize` leaves its step running, and a re-launch starts a second
one. So every asset step holds the locks of its partitions while it writes them.

Choices, written down:
- **The second run waits, bounded**: once the holder is done, the waiter usually finds nothing left
  to do (the day is covered, the files converted, the batch delivered), which is exactly the right
  outcome and costs no API call. It logs who it waits for; after `STRIPE_AEP_LOCK_WAIT_SECONDS`
  (default 900 s) it fails, naming the partition and the holder (run id, host, pid, since), so a
  stuck holder is visible instead of silently skipped. `0` fails at once.
- **Sorted order**: a range run locks every day of its range, always in sorted key order, so two
  overlapping range runs can never hold one lock each and wait for the other.
- **A SIGKILLed holder never blocks anyone**: the local backend uses `flock` on one file per
  partition, which the kernel releases when the holder's process dies, however it dies. The file
  also records the holder (for the waiter's message); it is not the lock.
- **Backends behind one small interface** (`PartitionLocks`: try to take a key, release it, say who
  holds it). The local backend keeps its files under `<STRIPE_AEP_DATA_DIR>/locks/`. For an
  object-store lake (`s3://…`) the files live in the system temp folder instead: that only
  excludes runs on the same machine, which is what a one-machine deployment needs. A deployment
  with runs on several machines needs a shared backend: PostgreSQL session advisory locks
  (`pg_try_advisory_lock(hash(key))`, released by the server when the session dies, plus a small
  table for the holder's description) fit the same three methods.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import socket
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from stripe_aep.config import ConfigError
from stripe_aep.lake import Lake

LOCK_WAIT_VARIABLE = "STRIPE_AEP_LOCK_WAIT_SECONDS"
DEFAULT_LOCK_WAIT_SECONDS = 900.0
#: Waiting longer than a day is never what anyone wants: it hides a stuck holder.
MAX_LOCK_WAIT_SECONDS = 86400.0


def lock_wait_seconds(environ: Mapping[str, str] | None = None) -> float:
    """`STRIPE_AEP_LOCK_WAIT_SECONDS`, validated (finite, 0 … 86400)."""
    env = os.environ if environ is None else environ
    raw = (env.get(LOCK_WAIT_VARIABLE) or "").strip()
    if not raw:
        return DEFAULT_LOCK_WAIT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_LOCK_WAIT_SECONDS:
        raise ConfigError(
            LOCK_WAIT_VARIABLE,
            f"{raw!r} is not a number of seconds between 0 and {MAX_LOCK_WAIT_SECONDS:.0f}",
            f"Set it to how long a run waits for another run of the same partition "
            f"(default {DEFAULT_LOCK_WAIT_SECONDS:.0f}), or unset it",
        )
    return value


@dataclass(frozen=True)
class Holder:
    """Who holds a partition lock: enough for a person to find (and if need be stop) that run."""

    run_id: str
    host: str
    pid: int
    since: float  # Unix time the lock was taken

    @classmethod
    def me(cls, run_id: str) -> Holder:
        return cls(run_id=run_id, host=socket.gethostname(), pid=os.getpid(), since=time.time())

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        return f"run {self.run_id} (host {self.host}, pid {self.pid}, since {since})"


class PartitionLockTimeout(RuntimeError):
    """Another run held a partition for longer than the wait allowed."""

    def __init__(self, key: str, holder: Holder | None, waited: float) -> None:
        self.key = key
        self.holder = holder
        who = holder.describe() if holder else "another run (it did not record itself)"
        super().__init__(
            f"partition {key} is being written by {who}; gave up after waiting {waited:.0f} s. "
            f"Let that run finish (or stop it, e.g. from the Dagster UI), then run again; "
            f"{LOCK_WAIT_VARIABLE} sets how long to wait"
        )


def partition_key(layer: str, resource: str, day: Any) -> str:
    """`stripe/charges/2026-11-20`: the lock key of one partition of one layer."""
    return f"{layer}/{resource}/{day.isoformat() if hasattr(day, 'isoformat') else day}"


class PartitionLocks(ABC):
    """Exclusive, non-reentrant locks named by partition key. Subclasses implement three methods."""

    @abstractmethod
    def try_acquire(self, key: str, holder: Holder) -> bool:
        """Take `key` for `holder` without waiting; False if someone else holds it."""

    @abstractmethod
    def release(self, key: str) -> None:
        """Release a key this object took."""

    @abstractmethod
    def holder(self, key: str) -> Holder | None:
        """Who holds `key` now, if known."""

    @contextlib.contextmanager
    def hold(
        self,
        keys: Iterable[str],
        *,
        run_id: str,
        wait_seconds: float,
        poll_seconds: float = 0.2,
        on_wait: Callable[[str, Holder | None], None] | None = None,
    ) -> Iterator[Holder]:
        """Hold every key (taken in sorted order) for the duration of the block.

        Waits at most `wait_seconds` per key for another holder, calling `on_wait(key, holder)`
        once per key it has to wait for, then raises `PartitionLockTimeout`.
        """
        me = Holder.me(run_id)
        taken: list[str] = []
        try:
            for key in sorted(set(keys)):
                started = time.monotonic()
                announced = False
                while not self.try_acquire(key, me):
                    waited = time.monotonic() - started
                    if waited >= wait_seconds:
                        raise PartitionLockTimeout(key, self.holder(key), waited)
                    if not announced and on_wait is not None:
                        on_wait(key, self.holder(key))
                        announced = True
                    time.sleep(min(poll_seconds, max(0.0, wait_seconds - waited)))
                taken.append(key)
            yield me
        finally:
            for key in reversed(taken):
                self.release(key)


class FileLocks(PartitionLocks):
    """`flock` on `<folder>/<key>.lock`: released by the kernel when the holder dies (SIGKILL too).

    One machine only: `flock` does not reach other machines (and is unreliable on NFS).
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._fds: dict[str, int] = {}
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"FileLocks({self.folder!r})"

    def path(self, key: str) -> str:
        parts = [p for p in key.split("/") if p not in ("", ".", "..")]
        return os.path.join(self.folder, *parts) + ".lock"

    def try_acquire(self, key: str, holder: Holder) -> bool:
        path = self.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with self._mutex:
            if key in self._fds:
                raise RuntimeError(f"{key} is already held by this process (locks do not nest)")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            # The description is rewritten under the lock; a waiter reads it to name the holder.
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
            self._fds[key] = fd
            return True

    def release(self, key: str) -> None:
        with self._mutex:
            fd = self._fds.pop(key, None)
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no stale description once free
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self, key: str) -> Holder | None:
        try:
            with open(self.path(key), "rb") as f:
                data = json.loads(f.read() or b"null")
            return Holder(**data) if isinstance(data, dict) else None
        except (OSError, ValueError, TypeError):
            return None  # free, just taken (not written yet) or being rewritten


class PostgresLocks(PartitionLocks):
    """Session advisory locks in the ledger's PostgreSQL database, for runs on several machines.

    `pg_try_advisory_lock(key)` is the lock: the server releases it when the session ends, so a
    SIGKILLed (or partitioned-away) holder never blocks anyone once its connection is gone. The
    table `partition_lock_holders` only describes the holder for a waiter's message; a row counts
    only while the session that wrote it still holds the lock (checked in `pg_locks`), so a row
    left by a killed holder is never shown as current. One connection per `PostgresLocks` object,
    opened on first use and closed when it holds nothing.
    """

    _DDL = (
        "CREATE TABLE IF NOT EXISTS partition_lock_holders ("
        " lock_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, host TEXT NOT NULL,"
        " pid BIGINT NOT NULL, since DOUBLE PRECISION NOT NULL, backend_pid INTEGER NOT NULL)"
    )

    def __init__(self, url: str) -> None:
        from stripe_aep.config import parse_ledger_url

        self.url = url
        self._target = parse_ledger_url(url)
        self._conn: Any = None
        self._held: set[str] = set()
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresLocks({self._target.shown!r})"

    @staticmethod
    def key_of(key: str) -> int:
        from stripe_aep.postgres import advisory_key

        return advisory_key("partition", key)

    def _connection(self) -> Any:
        if self._conn is None:
            from stripe_aep.postgres import advisory_key, pg_connect

            conn = pg_connect(self.url, what="partition locks")
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("locks", "schema"),))
                conn.execute(self._DDL)
            self._conn = conn
        return self._conn

    def try_acquire(self, key: str, holder: Holder) -> bool:
        with self._mutex:
            if key in self._held:
                raise RuntimeError(f"{key} is already held by this process (locks do not nest)")
            conn = self._connection()
            got = conn.execute(
                "SELECT pg_try_advisory_lock(%s) AS ok", (self.key_of(key),)
            ).fetchone()["ok"]
            if not got:
                return False
            self._held.add(key)
            conn.execute(
                "INSERT INTO partition_lock_holders (lock_key, run_id, host, pid, since, "
                "backend_pid) VALUES (%s, %s, %s, %s, %s, pg_backend_pid()) "
                "ON CONFLICT (lock_key) DO UPDATE SET run_id = EXCLUDED.run_id, "
                "host = EXCLUDED.host, pid = EXCLUDED.pid, since = EXCLUDED.since, "
                "backend_pid = EXCLUDED.backend_pid",
                (key, holder.run_id, holder.host, holder.pid, holder.since),
            )
            return True

    def release(self, key: str) -> None:
        with self._mutex:
            if key not in self._held:
                return
            self._held.discard(key)
            conn = self._conn
            try:
                conn.execute(
                    "DELETE FROM partition_lock_holders WHERE lock_key = %s "
                    "AND backend_pid = pg_backend_pid()",
                    (key,),
                )
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key_of(key),))
            finally:
                if not self._held:
                    self._conn = None
                    conn.close()  # ends the session: nothing can stay locked by mistake

    def holder(self, key: str) -> Holder | None:
        with self._mutex:
            conn = self._connection()
            # a bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low)
            row = conn.execute(
                "SELECT h.run_id, h.host, h.pid, h.since FROM partition_lock_holders h "
                "JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.pid = h.backend_pid "
                "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s "
                "WHERE h.lock_key = %s",
                (self.key_of(key), key),
            ).fetchone()
            if not self._held and self._conn is not None:
                self._conn.close()
                self._conn = None
        if row is None:
            return None
        return Holder(
            run_id=row["run_id"], host=row["host"], pid=int(row["pid"]), since=row["since"]
        )


def locks_for(lake: Lake, environ: Mapping[str, str] | None = None) -> PartitionLocks:
    """The lock backend: PostgreSQL when STRIPE_AEP_LEDGER_URL names one (runs on several
    machines), else files under `<data dir>/locks`, or a local fallback for an object store."""
    from stripe_aep.config import LEDGER_URL_VARIABLE, parse_ledger_url

    env = os.environ if environ is None else environ
    raw = (env.get(LEDGER_URL_VARIABLE) or "").strip()
    if raw:
        target = parse_ledger_url(env.get(LEDGER_URL_VARIABLE) or "")
        if target.is_postgres:
            return PostgresLocks(target.url)
    if lake.is_local:
        return FileLocks(lake.local_path("locks"))
    # An object store has no lock primitive we can rely on: lock on this machine only.
    digest = hashlib.sha256(lake.root.encode()).hexdigest()[:16]
    return FileLocks(os.path.join(tempfile.gettempdir(), "stripe-aep-locks", digest))


@contextlib.contextmanager
def hold_partitions(
    lake: Lake,
    layer: str,
    resource: str,
    days: Iterable[Any],
    *,
    run_id: str,
    log: Any = None,
    wait_seconds: float | None = None,
    locks: PartitionLocks | None = None,
) -> Iterator[Holder]:
    """Hold the locks of `layer/resource/<day>` for every day, logging whom a wait is for."""
    wait = lock_wait_seconds() if wait_seconds is None else wait_seconds
    backend = locks or locks_for(lake)

    def on_wait(key: str, holder: Holder | None) -> None:
        if log is not None:
            who = holder.describe() if holder else "another run"
            log.warning(f"partition {key} is being written by {who}; waiting up to {wait:.0f} s")

    keys = [partition_key(layer, resource, day) for day in days]
    with backend.hold(keys, run_id=run_id, wait_seconds=wait, on_wait=on_wait) as me:
        yield me
