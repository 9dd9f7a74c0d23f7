"""The delivery ledger: a write-ahead record of every AEP batch attempt and every file in it.

Why: AEP's data lake appends whatever it is given, and `POST /batches` is not idempotent, so
"exactly once" has to be enforced on our side. The deliverer writes what it is *about* to do before
doing it and what happened right after, in one durable SQLite file (WAL, `synchronous=FULL`):

    intent ──POST /batches──▶ created ──PUT files──▶ completing ──COMPLETE──▶ completed ──Catalog──▶ success
      │                          │                                                                 failed
      └─ void (never reached AEP)└─ aborted (ABORT sent / AEP abandoned it)

After a crash at any arrow, the next run reads the last state and knows what to check in Catalog:
an `intent` is reconciled by listing batches by its `externalId` before anything new is created, a
`created` batch is resumed or aborted, a `completing` one is completed again (idempotent), a
`completed` one is watched. A file is *claimed* for a dataset while one of its attempts is active or
succeeded; it becomes deliverable again only when all its attempts ended `failed`/`aborted`/`void`.

Schema (kept deliberately small; `ledger_meta.schema_version` = 1):

* `batch_attempts` — one row per batch attempt: `attempt_id`, `dataset_id`, `external_id` (unique,
  generated before the batch is created), `batch_id` (null until AEP answered), `state` (above),
  `aep_status` (last Catalog status), `records_read/_written/_failed` (Catalog metrics), `errors`
  (JSON list of Adobe's `{code, description, recordCount}`), `owner` (host:pid), timestamps.
* `batch_files` — one row per file per attempt: `file_key` (lake-relative path of the XDM Parquet
  file, also its path inside the AEP batch), `size`, `rows`, `sha256` (computed while uploading),
  `state` (`planned` → `uploading` → `uploaded`), timestamps.
* `ledger_events` — append-only audit trail of every step (what the tables say now, and how they
  got there), handy when a run is investigated.

A delivery to a dataset holds an exclusive `flock` on a lock file next to the database for its whole
duration, so two runs never recover (and abort) each other's in-flight batches; the kernel releases
it when the process dies, SIGKILL included.

The ledger is not the only memory: every batch also carries its identity in AEP (Catalog tags, see
deliver.py), and `record_adopted` rebuilds attempts from what Catalog reports. So a ledger that is
deleted, emptied or replaced is rebuilt from AEP by the next delivery; one that cannot be read
(garbage bytes, a truncated file, a foreign schema) is refused at open with `LedgerUnreadable`, which
names the file and the recovery command (`stripe-aep ledger recover <path>`: move it
aside, the next run rebuilds it) rather than guessing and risking a second delivery.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shlex
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from stripe_aep.aep.client import BatchState, BatchStatus
from stripe_aep.aep.errors import AepError, BatchError, DeliveryLockTimeout
from stripe_aep.postgres import advisory_key, pg_connect

SCHEMA_VERSION = 1
LEDGER_RELATIVE_PATH = "ledger/aep_batches.sqlite"
#: files SQLite keeps beside the database in WAL mode; they belong to it and move with it
SIDECAR_SUFFIXES = ("-wal", "-shm")

log = logging.getLogger("stripe_aep.aep.ledger")


class LedgerUnreadable(AepError):
    """The ledger file exists but is not a readable stripe-aep ledger; nothing was sent."""


def recovery_command(path: str | os.PathLike[str]) -> str:
    """The shell command that moves a damaged ledger aside (see `set_aside`)."""
    return f"stripe-aep ledger recover {shlex.quote(str(path))}"


def set_aside(path: str | os.PathLike[str], *, reason: str = "damaged") -> list[Path]:
    """Move a ledger and its `-wal`/`-shm` files to `<name>.<reason>-<UTC time>[-wal|-shm]`.

    Nothing is deleted (the files stay for inspection). The next delivery starts an empty ledger and
    rebuilds what it needs from AEP's Catalog, so nothing already delivered is sent again. Run it
    only while no delivery is running (a running one holds the per-dataset lock files).
    """
    main = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for suffix in ("", *SIDECAR_SUFFIXES):
        src = Path(f"{main}{suffix}")
        if src.exists():
            dst = Path(f"{main}.{reason}-{stamp}{suffix}")
            n = 1
            while dst.exists():
                dst = Path(f"{main}.{reason}-{stamp}.{n}{suffix}")
                n += 1
            os.replace(src, dst)
            moved.append(dst)
    return moved


class AttemptState(StrEnum):
    INTENT = "intent"
    CREATED = "created"
    COMPLETING = "completing"
    COMPLETED = "completed"
    SUCCESS = "success"
    FAILED = "failed"
    ABORTED = "aborted"
    VOID = "void"


#: attempts that still hold their files (something may still land in AEP)
ACTIVE_STATES = (
    AttemptState.INTENT,
    AttemptState.CREATED,
    AttemptState.COMPLETING,
    AttemptState.COMPLETED,
)
#: attempts whose files are deliverable again
RELEASED_STATES = (AttemptState.FAILED, AttemptState.ABORTED, AttemptState.VOID)


class FileState(StrEnum):
    PLANNED = "planned"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"


class DeliveryState(StrEnum):
    """Where one XDM file stands with respect to AEP."""

    UNDELIVERED = "undelivered"  # never sent, or every attempt failed/aborted
    IN_FLIGHT = "in_flight"  # in a batch that is not completed yet
    PENDING = "pending"  # in a completed batch AEP is still processing (or stalled)
    DELIVERED = "delivered"  # in a batch AEP reported success/active


class FileRef(Protocol):
    key: str
    rows: int
    size: int


_DDL = """
CREATE TABLE IF NOT EXISTS ledger_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_attempts (
    attempt_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_id      TEXT NOT NULL,
    external_id     TEXT NOT NULL UNIQUE,
    batch_id        TEXT UNIQUE,
    state           TEXT NOT NULL,
    aep_status      TEXT,
    records_read    INTEGER,
    records_written INTEGER,
    records_failed  INTEGER,
    errors          TEXT,
    note            TEXT,
    owner           TEXT NOT NULL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX IF NOT EXISTS batch_attempts_dataset_state ON batch_attempts (dataset_id, state);
CREATE TABLE IF NOT EXISTS batch_files (
    attempt_id  INTEGER NOT NULL REFERENCES batch_attempts (attempt_id),
    file_key    TEXT NOT NULL,
    size        INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    sha256      TEXT,
    state       TEXT NOT NULL,
    started_at  REAL,
    finished_at REAL,
    PRIMARY KEY (attempt_id, file_key)
);
CREATE INDEX IF NOT EXISTS batch_files_key ON batch_files (file_key);
CREATE TABLE IF NOT EXISTS ledger_events (
    event_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt_id INTEGER,
    file_key   TEXT,
    event      TEXT NOT NULL,
    detail     TEXT,
    at         REAL NOT NULL
);
"""


#: the columns this code reads and writes, per table (a ledger missing one is not ours)
_EXPECTED_COLUMNS = {
    "ledger_meta": {"key", "value"},
    "batch_attempts": {
        "attempt_id",
        "dataset_id",
        "external_id",
        "batch_id",
        "state",
        "aep_status",
        "records_read",
        "records_written",
        "records_failed",
        "errors",
        "note",
        "owner",
        "created_at",
        "updated_at",
        "finished_at",
    },
    "batch_files": {
        "attempt_id",
        "file_key",
        "size",
        "rows",
        "sha256",
        "state",
        "started_at",
        "finished_at",
    },
    "ledger_events": {"event_id", "attempt_id", "file_key", "event", "detail", "at"},
}


@dataclass(frozen=True)
class LedgerFile:
    attempt_id: int
    key: str
    size: int
    rows: int
    sha256: str | None
    state: FileState


@dataclass(frozen=True)
class Attempt:
    attempt_id: int
    dataset_id: str
    external_id: str
    batch_id: str | None
    state: AttemptState
    aep_status: str | None
    records_read: int | None
    records_written: int | None
    records_failed: int | None
    errors: tuple[BatchError, ...]
    note: str | None
    created_at: float
    updated_at: float

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class PendingBatch:
    """A batch that may still land data: for sensors that resolve it later."""

    attempt_id: int
    dataset_id: str
    batch_id: str | None
    external_id: str
    state: AttemptState
    aep_status: str | None
    files: int
    rows: int
    created_at: float


@dataclass(frozen=True)
class FileDeliveryStatus:
    key: str
    state: DeliveryState
    dataset_id: str | None = None
    batch_id: str | None = None
    aep_status: str | None = None
    errors: tuple[BatchError, ...] = field(default_factory=tuple)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _errors_json(errors: Iterable[BatchError]) -> str | None:
    items = [
        {"code": e.code, "description": e.description, "recordCount": e.record_count}
        for e in errors
    ]
    return json.dumps(items) if items else None


def _errors_from_json(raw: str | None) -> tuple[BatchError, ...]:
    if not raw:
        return ()
    return tuple(
        BatchError(code=e["code"], description=e["description"], record_count=e.get("recordCount"))
        for e in json.loads(raw)
    )


def _keys(files: Iterable[str | FileRef]) -> list[str]:
    return [f if isinstance(f, str) else f.key for f in files]


class BatchLedger:
    """The SQLite ledger. Thread-safe within a process; safe across processes (SQLite + flock)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._clear_orphaned_sidecars()
        try:
            self._conn = sqlite3.connect(
                str(self.path),
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_s,
            )
        except sqlite3.Error as exc:
            raise self._unreadable(f"SQLite cannot open it ({exc})") from None
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            text = str(exc).lower()
            if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
                # in use, not damaged: moving it aside now would lose a live run's records
                raise DeliveryLockTimeout(
                    f"the delivery ledger {self.path} stayed locked by another process for over "
                    f"{busy_timeout_s:.0f} s ({exc})",
                    hint="wait for the other delivery to finish, then run again",
                ) from None
            raise self._unreadable(f"SQLite says: {exc}") from None
        except LedgerUnreadable:
            self._conn.close()
            raise

    def _unreadable(self, cause: str) -> LedgerUnreadable:
        return LedgerUnreadable(
            f"the delivery ledger {self.path} cannot be read: {cause}. Nothing was sent",
            hint=f"move it aside with `{recovery_command(self.path)}` (it keeps the file, renamed, "
            "with its -wal/-shm files), then run the delivery again: it starts a new ledger and "
            "rebuilds it from the batches AEP's Catalog holds for the dataset, so nothing already "
            "delivered is sent again",
        )

    def _clear_orphaned_sidecars(self) -> None:
        """A WAL left behind by a deleted or emptied database must not be replayed into a new one."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size:
            return
        if any(Path(f"{self.path}{suffix}").exists() for suffix in SIDECAR_SUFFIXES):
            moved = [p for p in set_aside(self.path, reason="orphaned") if p.name.endswith("-wal")]
            for stale in moved:
                log.warning(
                    "delivery ledger %s was missing or empty but its write-ahead log was not; "
                    "moved the log aside to %s (the ledger is rebuilt from AEP)",
                    self.path,
                    stale,
                )

    def _open(self) -> None:
        c = self._conn
        c.row_factory = sqlite3.Row
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        c.execute("PRAGMA foreign_keys=ON")
        check = [r[0] for r in c.execute("PRAGMA quick_check").fetchall()]
        if check != ["ok"]:
            raise self._unreadable(f"SQLite's integrity check failed ({'; '.join(check[:3])})")
        tables = {
            r[0]
            for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if not r[0].startswith("sqlite_")
        }
        if tables and "ledger_meta" not in tables:
            raise self._unreadable(
                "it is an SQLite database but not a stripe-aep delivery ledger (tables: "
                f"{', '.join(sorted(tables)[:5])})"
            )
        for table, columns in _EXPECTED_COLUMNS.items():
            if table not in tables:
                continue
            have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
            if not columns <= have:
                raise self._unreadable(
                    f"its table {table} lacks column(s) {', '.join(sorted(columns - have))}"
                )
        with self._lock:
            c.executescript(_DDL)
        self._check_schema_version()

    def _check_schema_version(self) -> None:
        with self._tx() as tx:
            row = tx.execute("SELECT value FROM ledger_meta WHERE key='schema_version'").fetchone()
            if row is None:
                tx.execute(
                    "INSERT INTO ledger_meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif str(row["value"]) != str(SCHEMA_VERSION):
                raise LedgerUnreadable(
                    f"the delivery ledger {self.where} has schema version {row['value']}, this "
                    f"code understands {SCHEMA_VERSION}",
                    hint="run the stripe-aep version that wrote it (upgrade), or "
                    f"{self._set_aside_hint()} so the next run rebuilds it from AEP",
                )

    @property
    def where(self) -> str:
        """The ledger's location as shown to people (never a password)."""
        return str(self.path)

    def _set_aside_hint(self) -> str:
        return f"move the ledger aside with `{recovery_command(self.path)}`"

    @classmethod
    def for_data_dir(cls, data_dir: str | os.PathLike[str]) -> BatchLedger:
        """The ledger at `<STRIPE_AEP_DATA_DIR>/ledger/aep_batches.sqlite` (a local folder)."""
        if "://" in str(data_dir):
            raise ValueError(
                f"the SQLite delivery ledger needs a local folder, got {data_dir!r}: set "
                "STRIPE_AEP_DATA_DIR to a local path (a PostgreSQL ledger backend is planned for "
                "object-store lakes)"
            )
        return cls(Path(data_dir) / LEDGER_RELATIVE_PATH)

    def __repr__(self) -> str:
        return f"BatchLedger({str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _event(
        self,
        c: sqlite3.Connection,
        event: str,
        *,
        attempt_id: int | None = None,
        file_key: str | None = None,
        detail: str | None = None,
    ) -> None:
        c.execute(
            "INSERT INTO ledger_events (attempt_id, file_key, event, detail, at) VALUES (?,?,?,?,?)",
            (attempt_id, file_key, event, detail, time.time()),
        )

    def _set_state(
        self,
        attempt_id: int,
        state: AttemptState,
        *,
        expect: Sequence[AttemptState] | None = None,
        detail: str | None = None,
        event: str | None = None,
        **columns: Any,
    ) -> None:
        now = time.time()
        with self._tx() as c:
            row = c.execute(
                "SELECT state FROM batch_attempts WHERE attempt_id=?", (attempt_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no ledger attempt {attempt_id}")
            if expect is not None and row["state"] not in expect:
                raise RuntimeError(
                    f"ledger attempt {attempt_id} is {row['state']}, expected one of "
                    f"{', '.join(expect)} before {state}"
                )
            sets = ["state=?", "updated_at=?"]
            args: list[Any] = [str(state), now]
            if state not in ACTIVE_STATES:
                sets.append("finished_at=?")
                args.append(now)
            for col, value in columns.items():
                sets.append(f"{col}=?")
                args.append(value)
            c.execute(
                f"UPDATE batch_attempts SET {', '.join(sets)} WHERE attempt_id=?",
                (*args, attempt_id),
            )
            self._event(c, event or str(state), attempt_id=attempt_id, detail=detail)

    def _attempt(self, row: sqlite3.Row) -> Attempt:
        return Attempt(
            attempt_id=row["attempt_id"],
            dataset_id=row["dataset_id"],
            external_id=row["external_id"],
            batch_id=row["batch_id"],
            state=AttemptState(row["state"]),
            aep_status=row["aep_status"],
            records_read=row["records_read"],
            records_written=row["records_written"],
            records_failed=row["records_failed"],
            errors=_errors_from_json(row["errors"]),
            note=row["note"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    # -- locking ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def dataset_lock(
        self, dataset_id: str, *, timeout_s: float = 600.0, poll_s: float = 0.2
    ) -> Iterator[None]:
        """Exclusive per-dataset delivery lock (an `flock`, released by the kernel on death)."""
        lock_dir = self.path.parent / (self.path.name + ".locks")
        lock_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(dataset_id.encode()).hexdigest()[:16]
        fd = os.open(lock_dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DeliveryLockTimeout.for_dataset(dataset_id, timeout_s) from None
                    time.sleep(poll_s)
            os.ftruncate(fd, 0)
            os.write(fd, _owner().encode())
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- writes (one per step of the protocol) ---------------------------------------------

    def record_intent(self, dataset_id: str, external_id: str, files: Sequence[FileRef]) -> int:
        """Before `POST /batches`: the attempt and its planned files, in one transaction.

        Refuses (RuntimeError) if any file is already claimed for this dataset: the last guard
        against sending the same file twice.
        """
        if not files:
            raise ValueError("a batch attempt needs at least one file")
        now = time.time()
        with self._tx() as c:
            claimed = self._claims(c, dataset_id, [f.key for f in files])
            if claimed:
                raise RuntimeError(
                    f"refusing to plan a batch: {len(claimed)} file(s) are already claimed for "
                    f"dataset {dataset_id} (e.g. {next(iter(claimed))})"
                )
            row = c.execute(
                "INSERT INTO batch_attempts (dataset_id, external_id, state, owner, created_at, "
                "updated_at) VALUES (?,?,?,?,?,?) RETURNING attempt_id",
                (dataset_id, external_id, str(AttemptState.INTENT), _owner(), now, now),
            ).fetchone()
            attempt_id = int(row["attempt_id"])
            c.executemany(
                "INSERT INTO batch_files (attempt_id, file_key, size, rows, state) "
                "VALUES (?,?,?,?,?)",
                [(attempt_id, f.key, f.size, f.rows, str(FileState.PLANNED)) for f in files],
            )
            self._event(
                c, "intent", attempt_id=attempt_id, detail=f"{external_id} ({len(files)} files)"
            )
        return attempt_id

    def record_adopted(
        self,
        dataset_id: str,
        status: BatchStatus,
        files: Sequence[FileRef],
        state: AttemptState,
        *,
        note: str,
    ) -> int:
        """A batch found in Catalog (not in this ledger) carrying these files: rebuild its attempt.

        Unlike `record_intent` this does not refuse claimed files: the batch already exists in AEP,
        and the ledger has to say so even when it duplicates another (the caller reports that).
        `state` is `success`/`completed` (its files uploaded), `created` (a `loading` batch, files
        to be uploaded again) or a released state (`failed`/`aborted`, kept for the record).
        """
        if not files:
            raise ValueError("an adopted batch needs at least one file")
        now = time.time()
        uploaded = state in (AttemptState.SUCCESS, AttemptState.COMPLETED, AttemptState.FAILED)
        file_state = FileState.UPLOADED if uploaded else FileState.PLANNED
        m = status.metrics
        with self._tx() as c:
            external_id = status.external_id or status.batch_id
            if c.execute(
                "SELECT 1 FROM batch_attempts WHERE external_id=?", (external_id,)
            ).fetchone():
                external_id = f"{external_id}#{status.batch_id}"
            row = c.execute(
                "INSERT INTO batch_attempts (dataset_id, external_id, batch_id, state, aep_status, "
                "records_read, records_written, records_failed, errors, note, owner, created_at, "
                "updated_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "RETURNING attempt_id",
                (
                    dataset_id,
                    external_id,
                    status.batch_id,
                    str(state),
                    status.status,
                    m.records_read,
                    m.records_written,
                    m.records_failed,
                    _errors_json(status.errors),
                    note,
                    _owner(),
                    now,
                    now,
                    None if state in ACTIVE_STATES else now,
                ),
            ).fetchone()
            attempt_id = int(row["attempt_id"])
            c.executemany(
                "INSERT INTO batch_files (attempt_id, file_key, size, rows, state) "
                "VALUES (?,?,?,?,?)",
                [(attempt_id, f.key, f.size, f.rows, str(file_state)) for f in files],
            )
            self._event(
                c,
                "adopted",
                attempt_id=attempt_id,
                detail=f"{status.batch_id} ({status.status}, {len(files)} files): {note}",
            )
        return attempt_id

    def known_batches(self, dataset_id: str) -> tuple[set[str], set[str]]:
        """The AEP batch ids and the externalIds this ledger knows for the dataset (any state)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT batch_id, external_id FROM batch_attempts WHERE dataset_id=?",
                (dataset_id,),
            ).fetchall()
        return {r["batch_id"] for r in rows if r["batch_id"]}, {r["external_id"] for r in rows}

    def record_created(self, attempt_id: int, batch_id: str) -> None:
        """After `POST /batches` answered (or Catalog showed the batch of an intent)."""
        self._set_state(
            attempt_id,
            AttemptState.CREATED,
            expect=(AttemptState.INTENT,),
            detail=batch_id,
            batch_id=batch_id,
            aep_status="loading",
        )

    def record_void(self, attempt_id: int, reason: str) -> None:
        """The batch never existed in AEP (creation failed; Catalog has no such externalId)."""
        self._set_state(
            attempt_id, AttemptState.VOID, expect=(AttemptState.INTENT,), detail=reason, note=reason
        )

    def record_file_started(self, attempt_id: int, key: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE batch_files SET state=?, started_at=? WHERE attempt_id=? AND file_key=?",
                (str(FileState.UPLOADING), time.time(), attempt_id, key),
            )
            self._event(c, "upload_started", attempt_id=attempt_id, file_key=key)

    def record_file_uploaded(self, attempt_id: int, key: str, sha256: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE batch_files SET state=?, sha256=?, finished_at=? "
                "WHERE attempt_id=? AND file_key=?",
                (str(FileState.UPLOADED), sha256, time.time(), attempt_id, key),
            )
            self._event(c, "upload_finished", attempt_id=attempt_id, file_key=key, detail=sha256)

    def record_complete_requested(self, attempt_id: int) -> None:
        self._set_state(
            attempt_id,
            AttemptState.COMPLETING,
            expect=(AttemptState.CREATED, AttemptState.COMPLETING),
        )

    def record_completed(self, attempt_id: int) -> None:
        self._set_state(
            attempt_id,
            AttemptState.COMPLETED,
            expect=(AttemptState.COMPLETING, AttemptState.CREATED, AttemptState.COMPLETED),
        )

    def record_aborted(self, attempt_id: int, reason: str, aep_status: str | None = None) -> None:
        self._set_state(
            attempt_id,
            AttemptState.ABORTED,
            expect=ACTIVE_STATES,
            detail=reason,
            note=reason,
            aep_status=aep_status,
        )

    def record_status(self, attempt_id: int, status: BatchStatus) -> AttemptState:
        """A Catalog answer for a completed batch: success/failed are final, the rest is noted."""
        m = status.metrics
        common = {
            "aep_status": status.status,
            "records_read": m.records_read,
            "records_written": m.records_written,
            "records_failed": m.records_failed,
            "errors": _errors_json(status.errors),
        }
        if status.state is BatchState.DONE:
            new = AttemptState.SUCCESS
        elif status.state is BatchState.FAILED:
            new = AttemptState.FAILED
        else:
            new = AttemptState.COMPLETED
            current = self.attempt(attempt_id)
            if current.state is new and current.aep_status == status.status:
                return new  # nothing new to record (keeps the event log free of poll noise)
        self._set_state(
            attempt_id,
            new,
            expect=(AttemptState.COMPLETED, AttemptState.COMPLETING, AttemptState.CREATED),
            detail=status.status,
            event=None if new is not AttemptState.COMPLETED else "aep_status",
            **common,
        )
        return new

    # -- reads -----------------------------------------------------------------------------

    def attempt(self, attempt_id: int) -> Attempt:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM batch_attempts WHERE attempt_id=?", (attempt_id,)
            ).fetchone()
        if row is None:
            raise KeyError(f"no ledger attempt {attempt_id}")
        return self._attempt(row)

    def attempts(
        self, dataset_id: str | None = None, states: Sequence[AttemptState] | None = None
    ) -> list[Attempt]:
        sql, args = "SELECT * FROM batch_attempts WHERE 1=1", []
        if dataset_id is not None:
            sql += " AND dataset_id=?"
            args.append(dataset_id)
        if states is not None:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(str(s) for s in states)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY attempt_id", args).fetchall()
        return [self._attempt(r) for r in rows]

    def files_of(self, attempt_id: int) -> list[LedgerFile]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM batch_files WHERE attempt_id=? ORDER BY file_key", (attempt_id,)
            ).fetchall()
        return [
            LedgerFile(
                attempt_id=r["attempt_id"],
                key=r["file_key"],
                size=r["size"],
                rows=r["rows"],
                sha256=r["sha256"],
                state=FileState(r["state"]),
            )
            for r in rows
        ]

    def events(self, attempt_id: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM ledger_events"
        args: tuple[Any, ...] = ()
        if attempt_id is not None:
            sql += " WHERE attempt_id=?"
            args = (attempt_id,)
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql + " ORDER BY event_id", args)]

    def events_after(self, event_id: int, limit: int = 500) -> list[dict[str, Any]]:
        """Up to `limit` events with an id above `event_id`, oldest first (a sensor's cursor).

        Event ids only grow (they are assigned inside the writing transaction), so a reader that
        remembers the last id it handled sees every later step exactly once.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM ledger_events WHERE event_id>? ORDER BY event_id LIMIT ?",
                (event_id, limit),
            ).fetchall()
        return [dict(r) for r in rows]

    def last_event_id(self) -> int:
        """The id of the newest event (0 for an empty ledger)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MAX(event_id) AS last_id FROM ledger_events"
            ).fetchone()
        return int(row["last_id"] or 0)

    def _claims(
        self, c: sqlite3.Connection, dataset_id: str, keys: Sequence[str]
    ) -> dict[str, tuple[Attempt, LedgerFile]]:
        out: dict[str, tuple[Attempt, LedgerFile]] = {}
        states = [*ACTIVE_STATES, AttemptState.SUCCESS]
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = c.execute(
                "SELECT a.*, f.file_key, f.size AS f_size, f.rows AS f_rows, f.sha256 AS f_sha, "
                "f.state AS f_state FROM batch_files f JOIN batch_attempts a USING (attempt_id) "
                f"WHERE a.dataset_id=? AND a.state IN ({','.join('?' * len(states))}) "
                f"AND f.file_key IN ({','.join('?' * len(chunk))}) ORDER BY a.attempt_id",
                (dataset_id, *(str(s) for s in states), *chunk),
            ).fetchall()
            for r in rows:
                out[r["file_key"]] = (
                    self._attempt(r),
                    LedgerFile(
                        attempt_id=r["attempt_id"],
                        key=r["file_key"],
                        size=r["f_size"],
                        rows=r["f_rows"],
                        sha256=r["f_sha"],
                        state=FileState(r["f_state"]),
                    ),
                )
        return out

    def claims(
        self, dataset_id: str, files: Iterable[str | FileRef]
    ) -> dict[str, tuple[Attempt, LedgerFile]]:
        """For each file key claimed for the dataset: the attempt holding it and its file row."""
        with self._lock:
            return self._claims(self._conn, dataset_id, _keys(files))

    def delivered_rows(self, files: Iterable[str | FileRef], dataset_id: str | None = None) -> int:
        """Rows of these files that are in batches AEP reported successful (each file once)."""
        keys = _keys(files)
        total = 0
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                sql = (
                    "SELECT f.file_key, MAX(f.rows) AS rows FROM batch_files f "
                    "JOIN batch_attempts a USING (attempt_id) WHERE a.state=? "
                    f"AND f.file_key IN ({','.join('?' * len(chunk))})"
                )
                args: list[Any] = [str(AttemptState.SUCCESS), *chunk]
                if dataset_id is not None:
                    sql += " AND a.dataset_id=?"
                    args.append(dataset_id)
                for r in self._conn.execute(sql + " GROUP BY f.file_key", args):
                    total += int(r["rows"])
        return total

    def pending_batches(self, dataset_id: str | None = None) -> list[PendingBatch]:
        """Attempts that may still land data (not yet success/failed/aborted/void)."""
        out = []
        for a in self.attempts(dataset_id, ACTIVE_STATES):
            files = self.files_of(a.attempt_id)
            out.append(
                PendingBatch(
                    attempt_id=a.attempt_id,
                    dataset_id=a.dataset_id,
                    batch_id=a.batch_id,
                    external_id=a.external_id,
                    state=a.state,
                    aep_status=a.aep_status,
                    files=len(files),
                    rows=sum(f.rows for f in files),
                    created_at=a.created_at,
                )
            )
        return out

    def status_of(self, file_key: str, dataset_id: str | None = None) -> FileDeliveryStatus:
        """Where one file stands: delivered, pending in AEP, in flight, or undelivered."""
        sql = (
            "SELECT a.* FROM batch_files f JOIN batch_attempts a USING (attempt_id) "
            "WHERE f.file_key=?"
        )
        args: list[Any] = [file_key]
        if dataset_id is not None:
            sql += " AND a.dataset_id=?"
            args.append(dataset_id)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY a.attempt_id", args).fetchall()
        attempts = [self._attempt(r) for r in rows]
        for want, state in (
            ((AttemptState.SUCCESS,), DeliveryState.DELIVERED),
            ((AttemptState.COMPLETED,), DeliveryState.PENDING),
            ((AttemptState.INTENT, AttemptState.CREATED, AttemptState.COMPLETING), None),
        ):
            hit = next((a for a in reversed(attempts) if a.state in want), None)
            if hit is not None:
                return FileDeliveryStatus(
                    key=file_key,
                    state=state or DeliveryState.IN_FLIGHT,
                    dataset_id=hit.dataset_id,
                    batch_id=hit.batch_id,
                    aep_status=hit.aep_status,
                    errors=hit.errors,
                )
        last = attempts[-1] if attempts else None
        return FileDeliveryStatus(
            key=file_key,
            state=DeliveryState.UNDELIVERED,
            dataset_id=last.dataset_id if last else None,
            batch_id=last.batch_id if last else None,
            aep_status=last.aep_status if last else None,
            errors=last.errors if last else (),
        )


# -- PostgreSQL --------------------------------------------------------------------------------

#: the SQLite DDL in PostgreSQL's words: the only differences are the column types
_PG_DDL = (
    _DDL.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    )
    .replace("INTEGER", "BIGINT")
    .replace("REAL", "DOUBLE PRECISION")
)


#: taken (transaction-scoped) by every ledger write: see PostgresBatchLedger
_WRITE_LOCK = advisory_key("ledger", "writes")
_SCHEMA_LOCK = advisory_key("ledger", "schema")


class _PgConnection:
    """A psycopg 3 connection that speaks the ledger's SQL as written (SQLite's `?` placeholders,
    rows read by column name), so the SQL above exists once for both backends."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self.raw.execute(self._sql(sql), tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(self._sql(sql), [tuple(r) for r in rows])

    def close(self) -> None:
        self.raw.close()


class PostgresBatchLedger(BatchLedger):
    """The ledger in a PostgreSQL database (`STRIPE_AEP_LEDGER_URL=postgresql://…`).

    Same tables, same SQL, same protocol as the SQLite ledger; what differs is how writers exclude
    each other across processes and machines:

    * every write transaction first takes one transaction-scoped advisory lock
      (`pg_advisory_xact_lock`), the counterpart of SQLite's `BEGIN IMMEDIATE`. It makes the
      "refuse files already claimed" check and the insert that claims them atomic across
      processes, and makes event ids commit in order (a sensor that remembers the last event id
      never skips one committed late). Writes are a few milliseconds, so one lock is cheap;
    * the per-dataset delivery lock is a session advisory lock on a connection of its own, which
      the server releases when that session ends — including when the process is SIGKILLed and the
      kernel closes its socket;
    * `external_id` and `batch_id` are unique, so two processes can never record one batch twice.
    """

    def __init__(self, url: str, *, busy_timeout_s: float = 60.0) -> None:
        from stripe_aep.config import parse_ledger_url

        self.url = url
        self._target = parse_ledger_url(url)
        self.path = None  # type: ignore[assignment]  # no file: see `where`
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._conn = _PgConnection(pg_connect(url, what="delivery ledger"))
        try:
            self._open()
        except BaseException:
            self._conn.close()
            raise

    @property
    def where(self) -> str:
        return self._target.shown

    def __repr__(self) -> str:
        return f"PostgresBatchLedger({self._target.shown!r})"

    def _set_aside_hint(self) -> str:
        return (
            "rename its tables (batch_attempts, batch_files, ledger_events, ledger_meta) or point "
            "STRIPE_AEP_LEDGER_URL at a new database"
        )

    def _open(self) -> None:
        with self._lock, self._conn.raw.transaction():
            # concurrent first starts would otherwise race on CREATE TABLE IF NOT EXISTS
            self._conn.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            rows = self._conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema()"
            ).fetchall()
            have: dict[str, set[str]] = {}
            for r in rows:
                have.setdefault(r["table_name"], set()).add(r["column_name"])
            for table, columns in _EXPECTED_COLUMNS.items():
                if table in have and not columns <= have[table]:
                    raise LedgerUnreadable(
                        f"the delivery ledger {self.where} cannot be read: its table {table} "
                        f"lacks column(s) {', '.join(sorted(columns - have[table]))}. Nothing "
                        "was sent",
                        hint=f"{self._set_aside_hint()}; the next delivery rebuilds the ledger "
                        "from the batches AEP's Catalog holds for the dataset",
                    )
            for statement in _PG_DDL.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
        self._check_schema_version()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock, self._conn.raw.transaction():
            self._conn.execute(f"SET LOCAL lock_timeout = '{int(self._busy_timeout_s * 1000)}ms'")
            try:
                self._conn.execute("SELECT pg_advisory_xact_lock(?)", (_WRITE_LOCK,))
            except Exception as exc:
                if type(exc).__name__ == "LockNotAvailable":
                    raise DeliveryLockTimeout(
                        f"the delivery ledger {self.where} stayed locked by another process for "
                        f"over {self._busy_timeout_s:.0f} s",
                        hint="wait for the other delivery to finish, then run again",
                    ) from None
                raise
            yield self._conn

    @contextlib.contextmanager
    def dataset_lock(
        self, dataset_id: str, *, timeout_s: float = 600.0, poll_s: float = 0.2
    ) -> Iterator[None]:
        """Exclusive per-dataset delivery lock: a session advisory lock on its own connection."""
        key = advisory_key("dataset", dataset_id)
        conn = pg_connect(self.url, what="delivery ledger")
        try:
            deadline = time.monotonic() + timeout_s
            while not conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (key,)).fetchone()[
                "ok"
            ]:
                if time.monotonic() >= deadline:
                    raise DeliveryLockTimeout.for_dataset(dataset_id, timeout_s)
                time.sleep(poll_s)
            yield
        finally:
            conn.close()  # ends the session: the server releases the lock


def open_ledger(
    data_dir: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    *,
    busy_timeout_s: float = 60.0,
) -> BatchLedger:
    """The ledger `STRIPE_AEP_LEDGER_URL` names, or the embedded SQLite one in the data folder.

    Raises `ConfigError` (naming STRIPE_AEP_LEDGER_URL) for a malformed URL, or when the URL is
    unset while the lake is an object store (run pods share no disk for an SQLite file).
    """
    from stripe_aep.config import data_dir_from_env, ledger_url_from_env

    env = os.environ if environ is None else environ
    root = str(data_dir) if data_dir is not None else data_dir_from_env(env)
    target = ledger_url_from_env(env, data_dir=root)
    if target is None:
        return BatchLedger(Path(root) / LEDGER_RELATIVE_PATH, busy_timeout_s=busy_timeout_s)
    if target.is_postgres:
        return PostgresBatchLedger(target.url, busy_timeout_s=busy_timeout_s)
    return BatchLedger(target.path or "", busy_timeout_s=busy_timeout_s)
