"""The Stripe budgets of `ratelimit.RateBudget` shared through PostgreSQL, by every process on every
machine (run pods on Kubernetes share no disk, so the `flock`ed budget file cannot reach them).

Why this shape: `RateBudget` already keeps all of its shared state (account and endpoint budgets,
AIMD factors, the account's recent commits) in one small binary record that it reads, updates and
writes back under a lock, and it never sleeps while holding it. So the PostgreSQL backend only has
to provide that lock and that record: one row per budget (`stripe_rate_budgets`, keyed by the same
hash of API base, account and key the file name uses — never the key), read with
`SELECT … FOR UPDATE` and written back in the same short transaction. The row lock is held for the
few hundred microseconds of arithmetic plus the round trips (about 1 ms locally), never across a
sleep. The in-flight cap uses session advisory locks (one key per slot), which the server releases
when the holder's session ends, SIGKILL included — the counterpart of the slot files' `flock`.

Clocks: the record holds Unix times, so the machines sharing a budget need synchronised clocks
(NTP); a few milliseconds of skew are inside the budgets' 2–4 % spacing headroom.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from stripe_aep.postgres import advisory_key, pg_connect

#: UNLOGGED and `synchronous_commit = off`: a budget is worth nothing after a server crash (it is
#: rebuilt from its configured rates within a second), so its updates skip the write-ahead log and
#: the flush to disk that would otherwise cost milliseconds per Stripe request.
_DDL = (
    "CREATE UNLOGGED TABLE IF NOT EXISTS stripe_rate_budgets ("
    " budget_key TEXT PRIMARY KEY, state BYTEA NOT NULL, updated_at TIMESTAMPTZ NOT NULL)"
)


class PgBudgetStore:
    """One budget record in PostgreSQL; `locked()` yields it and a writer, under a row lock."""

    def __init__(self, url: str, budget_key: str, size: int) -> None:
        self.url, self.budget_key, self.size = url, budget_key, size
        self._mutex = threading.Lock()
        self._conn = pg_connect(url, what="Stripe rate budget")
        self._conn.execute("SET synchronous_commit = off")
        with self._conn.transaction():
            # concurrent first starts would otherwise race on CREATE TABLE IF NOT EXISTS
            self._conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", (advisory_key("budgets", "schema"),)
            )
            self._conn.execute(_DDL)
            self._conn.execute(
                "INSERT INTO stripe_rate_budgets (budget_key, state, updated_at) "
                "VALUES (%s, %s, now()) ON CONFLICT (budget_key) DO NOTHING",
                (budget_key, bytes(size)),
            )

    @contextmanager
    def locked(self) -> Iterator[tuple[bytes, Callable[[bytes], None]]]:
        # pipeline mode: BEGIN goes out with the SELECT, the UPDATE with the COMMIT (two round
        # trips per look at the budgets instead of four)
        with self._mutex, self._conn.pipeline(), self._conn.transaction():
            row = self._conn.execute(
                "SELECT state FROM stripe_rate_budgets WHERE budget_key = %s FOR UPDATE",
                (self.budget_key,),
            ).fetchone()
            written: list[bytes] = []
            yield (bytes(row["state"]) if row else bytes(self.size)), written.append
            if written:
                self._conn.execute(
                    "UPDATE stripe_rate_budgets SET state = %s, updated_at = now() "
                    "WHERE budget_key = %s",
                    (written[-1], self.budget_key),
                )

    def close(self) -> None:
        with self._mutex:
            self._conn.close()


class PgSlotLocks:
    """In-flight slots as session advisory locks: `try_lock(i)` / `unlock(i)` on one connection.

    Advisory locks nest within a session, so the caller (`_InFlightSlots`) keeps excluding its own
    threads with its held set, as it does with the slot files.
    """

    def __init__(self, url: str, budget_key: str) -> None:
        self.budget_key = budget_key
        self._mutex = threading.Lock()
        self._conn: Any = pg_connect(url, what="Stripe in-flight cap")

    def _key(self, slot: int) -> int:
        return advisory_key("stripe-in-flight", f"{self.budget_key}/{slot}")

    def try_lock_any(self, slots: list[int]) -> int | None:
        """Take the first free of `slots` (in order) in one round trip; None if all are taken."""
        if not slots:
            return None
        with self._mutex:
            # the filter runs row by row and LIMIT stops at the first lock taken, so at most one
            # slot is locked (the usual "skip what is taken" pattern of job queues)
            row = self._conn.execute(
                "SELECT s.slot FROM unnest(%s::bigint[], %s::int[]) AS s(key, slot) "
                "WHERE pg_try_advisory_lock(s.key) LIMIT 1",
                ([self._key(i) for i in slots], slots),
            ).fetchone()
            return None if row is None else int(row["slot"])

    def unlock(self, slot: int) -> None:
        with self._mutex:
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key(slot),))

    def close(self) -> None:
        with self._mutex:
            self._conn.close()  # ends the session: the server releases every slot it held
