"""Stripe's published rate model, enforced on the client, shared by every thread and process on a machine.

Why: Stripe limits an account to 100 requests/s in live mode (25 in a sandbox) *and* every endpoint
(`GET /v1/charges`, `GET /v1/refunds`, ...) to 25 requests/s, and caps the requests in flight; a 429
names the limiter that fired in `Stripe-Rate-Limited-Reason` (docs.stripe.com/rate-limits). Several assets
extracting at once, each with many threads and each in its own process, must together stay under all
of them, and an account that other integrations also use must settle, not storm.

How:
- **Two budgets per request.** An endpoint's budget is a GCRA bucket: its next free send slot, slots
  `1/rate` apart (2 % wider for network jitter), so no one-second window holds more than `rate`. The
  account's budget is a sliding window over the last commits (at most `rate × 0.98` of them in any
  second): a strict slot grid would fit two endpoints' streams together badly (one at 25/s and a
  grid at 20 ms leaves gaps no one can use). A request commits on both at the same instant, and only
  once its endpoint slot has come, so it never holds the account for a send it cannot make yet.
- **Heaviest first.** An endpoint that is waiting and has more pages left (the caller's `demand`)
  has one account send reserved for it: a lighter endpoint takes the account only if room for the
  heavier ones remains. So the heavy endpoints run at their own limit while the light ones share what
  the account has left: the fastest finish of the whole load.
- **AIMD.** A 429 with reason `global-rate` cuts the account budget, `endpoint-rate` that endpoint's,
  `*-concurrency` the in-flight cap, each by `DECREASE` at most once a second; every budget then grows
  back by `INCREASE` of its configured rate per second. A 429 without the header is not a rate limit
  (Stripe: "it wasn't the result of a rate limiter", e.g. a lock timeout) and changes nothing.
- **Concurrency cap.** A request holds one of `max_in_flight` slot files under `flock` while it is in
  flight; the kernel releases a dead process's locks, so a killed run never leaks a slot.
- **Shared.** The budgets live in a small file guarded by `flock` (one per key, base URL and account),
  so every process that opens it shares them; without a path they are private to the object.
  Across machines (Kubernetes), with `shared_url` (a PostgreSQL URL: STRIPE_AEP_LEDGER_URL) the same
  record lives in a database row and the in-flight slots are advisory locks (ratelimit_pg.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

#: Requests leave at `rate` per second but arrive with network and scheduling jitter: two requests sent
#: 1/rate apart can land closer together. Spacing slots 2 % wider keeps every one-second window *as
#: Stripe sees it* under the budget.
HEADROOM = 0.98
#: An endpoint's sends form one evenly spaced stream (25/s: 40 ms apart), where a few ms of jitter
#: matter more than in the account's mix: 4 % wider spacing absorbs up to ~40 ms of it per second.
ENDPOINT_HEADROOM = 0.96
#: A send later than this after its slot (its process was starved of CPU) takes a fresh slot.
LATE_SEND = 0.010
#: A head that wakes up to this late for its endpoint slot still takes that slot (the grid keeps its
#: place): otherwise every late wake-up (a few ms on a busy machine) stretched the spacing, and an
#: endpoint at 25/s lost ~5 % of its rate. Sends still leave at most LATE_SEND after their slot, so
#: no one-second window holds more than the grid allows.
CATCH_UP = 0.005
#: Multiplicative decrease after a 429 of a budget, at most once per `CUT_INTERVAL` (Stripe's window).
DECREASE = 0.7
CUT_INTERVAL = 1.0
#: Additive increase: a cut budget regains this share of its configured rate per second.
INCREASE = 0.02
#: A budget never falls below this share of its configured rate (it keeps probing).
FLOOR = 0.05
#: An account slot this close ahead may be committed now (the sender sleeps the rest).
LEAD = 0.005
#: A waiting endpoint that has not polled for this long is gone (its process died or finished).
ALIVE = 0.25
#: Longest sleep between two looks at the shared state.
MAX_POLL = 0.05

RATE_REASONS = ("global-rate", "endpoint-rate", "global-concurrency", "endpoint-concurrency")

# acct_next (GCRA mode), acct_factor, acct_seen, acct_cut, conc_factor, conc_seen, conc_cut, commits
_HEADER = struct.Struct("<8d")
_RECORD = struct.Struct("<Q7d")  # key, next, factor, seen, cut, demand, waiting_since, rate
_RECORDS = 32
#: The account's recent commit times (a ring). Account limits up to this many per second are
#: enforced as an exact sliding window; above it (only test set-ups) as a GCRA slot grid.
_RING = 256
_RING_AT = _HEADER.size + _RECORDS * _RECORD.size
_RING_EP_AT = _RING_AT + _RING * 8  # which endpoint record each commit was for
_SIZE = _RING_EP_AT + _RING
_VERSION_SUFFIX = "-v4"  # the layout changed from the single-slot file of earlier versions


def default_limiter_path(api_key: str, api_base: str, account: str | None) -> str:
    """One budget file per (key, base, account); the name holds a truncated hash, never the key."""
    digest = hashlib.sha256(f"{api_base}|{account or ''}|{api_key}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"stripe-aep-ratelimit-{digest}{_VERSION_SUFFIX}")


def endpoint_key(endpoint: str) -> int:
    return int.from_bytes(hashlib.blake2b(endpoint.encode(), digest_size=8).digest(), "little") or 1


def _grown(factor: float, seen: float, now: float) -> float:
    """A budget factor as of `now`: additive increase since it was last written."""
    if factor <= 0:  # a fresh record
        return 1.0
    return min(1.0, factor + INCREASE * max(0.0, now - seen))


class _State:
    """The decoded shared state; `dirty` once changed (written back under the same lock)."""

    def __init__(self, data: bytes) -> None:
        if len(data) < _SIZE:
            data = bytes(_SIZE)
        self.header = list(_HEADER.unpack_from(data, 0))
        self.records = [
            list(_RECORD.unpack_from(data, _HEADER.size + i * _RECORD.size))
            for i in range(_RECORDS)
        ]
        self.ring = list(struct.unpack_from(f"<{_RING}d", data, _RING_AT))
        self.ring_ep = bytearray(data[_RING_EP_AT : _RING_EP_AT + _RING])
        self.dirty = False

    def encode(self) -> bytes:
        out = bytearray(_SIZE)
        _HEADER.pack_into(out, 0, *self.header)
        for i, rec in enumerate(self.records):
            _RECORD.pack_into(out, _HEADER.size + i * _RECORD.size, *rec)
        struct.pack_into(f"<{_RING}d", out, _RING_AT, *self.ring)
        out[_RING_EP_AT : _RING_EP_AT + _RING] = self.ring_ep
        return bytes(out)

    def recent(self, k: int) -> float:
        """The time of the k-th most recent account commit (k >= 1; 0.0 if there were fewer)."""
        commits = int(self.header[7])
        if k > commits or k > _RING:
            return 0.0
        return self.ring[(commits - k) % _RING]

    def push(self, t: float, record_index: int) -> None:
        commits = int(self.header[7])
        self.ring[commits % _RING] = t
        self.ring_ep[commits % _RING] = record_index
        self.header[7] = float(commits + 1)

    def window_counts(self, now: float) -> list[int]:
        """Commits in the last second, per endpoint record."""
        counts = [0] * _RECORDS
        commits = int(self.header[7])
        for k in range(1, min(commits, _RING) + 1):
            i = (commits - k) % _RING
            if self.ring[i] <= now - 1.0:
                break
            counts[self.ring_ep[i]] += 1
        return counts

    def record(self, key: int, now: float) -> list:
        free = None
        for rec in self.records:
            if rec[0] == key:
                return rec
            if rec[0] == 0 and free is None:
                free = rec
        if free is None:  # table full: reuse the record seen longest ago
            free = min(self.records, key=lambda r: r[3])
        free[:] = [key, 0.0, 1.0, now, 0.0, 0.0, 0.0, 0.0]
        self.dirty = True
        return free


class RateBudget:
    """Account + per-endpoint request budgets and an in-flight cap, process- and machine-wide.

    `acquire(endpoint)` blocks until a request to `endpoint` may be sent; `in_flight()` holds one of
    the concurrency slots while it is sent; `penalize(reason, endpoint)` applies a 429's decrease.
    """

    def __init__(
        self,
        account_rps: float,
        *,
        endpoint_rps: float = 25.0,
        endpoint_overrides: Mapping[str, float] | None = None,
        max_in_flight: int = 0,
        path: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        shared_url: str | None = None,
    ) -> None:
        if account_rps <= 0 or endpoint_rps <= 0:
            raise ValueError("rates must be positive")
        if max_in_flight < 0:
            raise ValueError("max_in_flight must be 0 (no cap) or more")
        self.account_rps = account_rps
        self.endpoint_rps = endpoint_rps
        self.endpoint_overrides = dict(endpoint_overrides or {})
        self.max_in_flight = max_in_flight
        self.path = path
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()  # guards the private state and the file descriptor
        self._memory = bytes(_SIZE)
        self._fd: int | None = None
        self._shared = None
        slot_locks = None
        if shared_url:  # every machine: a row in PostgreSQL instead of the file (same record)
            from stripe_aep.stripe.ratelimit_pg import PgBudgetStore, PgSlotLocks

            key = os.path.basename(path or default_limiter_path("", "", None))
            self._shared = PgBudgetStore(shared_url, key, _SIZE)
            slot_locks = PgSlotLocks(shared_url, key) if max_in_flight else None
        elif path:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._heads: dict[str, threading.Lock] = {}
        self._slots = _InFlightSlots(path, max_in_flight, self._concurrency_factor, slot_locks)

    # -- configuration ---------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The configured account rate (requests/s)."""
        return self.account_rps

    def configured_endpoint_rate(self, endpoint: str) -> float:
        return self.endpoint_overrides.get(endpoint, self.endpoint_rps)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._shared is not None:
                self._shared.close()
                self._shared = None
        self._slots.close()

    # -- the shared state ------------------------------------------------------------------------

    @contextmanager
    def _state(self) -> Iterator[_State]:
        with self._lock:
            if self._shared is not None:
                with self._shared.locked() as (data, write):
                    state = _State(data)
                    yield state
                    if state.dirty:
                        write(state.encode())
                return
            if self._fd is None:
                state = _State(self._memory)
                yield state
                if state.dirty:
                    self._memory = state.encode()
                return
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                state = _State(os.pread(self._fd, _SIZE, 0))
                yield state
                if state.dirty:
                    os.pwrite(self._fd, state.encode(), 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _account_factor(self, state: _State, now: float) -> float:
        h = state.header
        if h[0] > now + 3600 or state.recent(1) > now + 3600:  # the clock jumped back: start afresh
            h[:] = [0.0] * len(h)
            state.ring = [0.0] * _RING
            state.ring_ep = bytearray(_RING)
            state.dirty = True
        return _grown(h[1], h[2], now)

    def _concurrency_factor(self) -> float:
        with self._state() as state:
            h = state.header
            return _grown(h[4], h[5], self._clock())

    def current_rates(self, endpoint: str) -> tuple[float, float]:
        """(account, endpoint) rates in force now, after any 429 decreases."""
        with self._state() as state:
            now = self._clock()
            acct = self.account_rps * self._account_factor(state, now)
            rec = state.record(endpoint_key(endpoint), now)
            ep = self.configured_endpoint_rate(endpoint) * _grown(rec[2], rec[3], now)
            return acct, ep

    # -- sending ---------------------------------------------------------------------------------

    def _head(self, endpoint: str) -> threading.Lock:
        with self._lock:
            return self._heads.setdefault(endpoint, threading.Lock())

    def acquire(self, endpoint: str = "", demand: float = 0.0) -> float:
        """Wait until a request to `endpoint` may be sent; returns the seconds waited.

        `demand` (the caller's estimate of pages left) ranks endpoints that wait for the account at
        the same time: the larger goes first. Threads of one process and endpoint queue locally, so
        only one of them at a time polls the shared state.
        """
        began = self._clock()
        while True:
            slot = self._commit(endpoint, demand)
            wait = slot - self._clock()
            if wait > 0:
                self._sleep(wait)
            # A process starved of CPU between its commit and its send would bunch this send
            # with the next ones (Stripe counts arrivals): a late slot is spent, take a fresh one.
            if self._clock() - slot <= LATE_SEND:
                return max(0.0, self._clock() - began)

    def _commit(self, endpoint: str, demand: float) -> float:
        """Commit a send slot on the account and the endpoint; returns its time."""
        key = endpoint_key(endpoint)
        ep_rate = self.configured_endpoint_rate(endpoint)
        with self._head(endpoint):
            while True:
                with self._state() as state:
                    now = self._clock()
                    acct_factor = self._account_factor(state, now)
                    h = state.header
                    rec = state.record(key, now)
                    rec[2] = _grown(rec[2], rec[3], now)
                    rec[3], rec[5] = now, demand
                    rec[6] = rec[6] or now  # a head of this endpoint is waiting
                    state.dirty = True
                    rec[7] = ep_rate * rec[2]
                    if rec[1] > now:  # the endpoint's own slot has not come yet
                        wake = rec[1]
                    else:
                        reserved = self._reserved_for_heavier(state, now, key, demand)
                        allowed = self._account_allowed_at(state, now, acct_factor, reserved)
                        if allowed <= now + LEAD:
                            on_grid = rec[1] if now - rec[1] <= CATCH_UP else now
                            slot = max(on_grid, allowed)
                            self._account_commit(state, slot, acct_factor, rec)
                            h[1], h[2] = acct_factor, now
                            rec[1] = slot + 1.0 / (ep_rate * rec[2] * ENDPOINT_HEADROOM)
                            rec[6] = 0.0
                            break
                        wake = allowed
                self._sleep(min(max(wake - now, 0.0), MAX_POLL))
        return slot

    def _window_limit(self, acct_factor: float) -> int:
        return max(1, math.floor(self.account_rps * acct_factor * HEADROOM))

    def _account_allowed_at(
        self, state: _State, now: float, acct_factor: float, reserved: int
    ) -> float:
        """Earliest time the account can take one send and still have `reserved` for heavier
        endpoints waiting."""
        limit = self._window_limit(acct_factor)
        if self.account_rps * HEADROOM > _RING:  # GCRA grid (no reservation at such rates)
            return state.header[0]
        k = limit - reserved  # the k-th most recent commit must have left the window
        if k < 1:
            return now + MAX_POLL  # every send of the window is spoken for by heavier endpoints
        # Sends leave at most `limit` per window: the k-th most recent leaving (its time + 1 s)
        # frees room for 1 + `reserved`.
        return max(state.recent(k) + 1.0, state.recent(1))

    def _account_commit(self, state: _State, slot: float, acct_factor: float, rec: list) -> None:
        if self.account_rps * HEADROOM > _RING:
            state.header[0] = slot + 1.0 / (self.account_rps * acct_factor * HEADROOM)
        else:
            state.push(slot, next(i for i, r in enumerate(state.records) if r is rec))

    def _reserved_for_heavier(self, state: _State, now: float, key: int, demand: float) -> int:
        """Account sends this second still owed to waiting endpoints with more pages left: each
        may send at its own rate, less what it already sent in the last second."""
        heavier = [
            i
            for i, other in enumerate(state.records)
            if other[0] not in (0, key)
            and other[6]
            and now - other[3] < ALIVE
            and other[5] > demand
        ]
        if not heavier or self.account_rps * HEADROOM > _RING:
            return 0
        counts = state.window_counts(now)
        return sum(
            max(0, math.floor(state.records[i][7] * ENDPOINT_HEADROOM) - counts[i]) for i in heavier
        )

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Hold one concurrency slot while a request is in flight (no-op without a cap)."""
        with self._slots.hold():
            yield

    def penalize(self, reason: str | None, endpoint: str = "") -> bool:
        """Apply a 429's multiplicative decrease to the budget it names; True if one was cut."""
        if reason not in RATE_REASONS:
            return False
        with self._state() as state:
            now = self._clock()
            h = state.header
            if reason == "global-rate":
                factor = self._account_factor(state, now)
                if now - h[3] < CUT_INTERVAL:
                    return False
                h[1], h[2], h[3] = max(FLOOR, factor * DECREASE), now, now
            elif reason == "endpoint-rate":
                rec = state.record(endpoint_key(endpoint), now)
                if now - rec[4] < CUT_INTERVAL:
                    return False
                rec[2] = max(FLOOR, _grown(rec[2], rec[3], now) * DECREASE)
                rec[3] = rec[4] = now
            else:  # global- or endpoint-concurrency: fewer requests in flight, and fewer per second
                if now - h[6] < CUT_INTERVAL:
                    return False
                h[4], h[5], h[6] = max(FLOOR, _grown(h[4], h[5], now) * DECREASE), now, now
                if reason == "endpoint-concurrency":
                    rec = state.record(endpoint_key(endpoint), now)
                    rec[2] = max(FLOOR, _grown(rec[2], rec[3], now) * DECREASE)
                    rec[3] = rec[4] = now
            state.dirty = True
            return True


class _InFlightSlots:
    """At most `cap × factor` requests in flight, machine-wide: one `flock`ed file per slot.

    Within a process each slot has one descriptor and a thread marks it held, since `flock` does not
    exclude threads sharing a descriptor; across processes the kernel lock does, and is released if
    the holder dies.
    """

    def __init__(
        self, path: str | None, cap: int, factor: Callable[[], float], shared: Any = None
    ) -> None:
        self.path, self.cap, self._factor = path, cap, factor
        self._shared = shared  # ratelimit_pg.PgSlotLocks: advisory locks instead of slot files
        self._cond = threading.Condition()
        self._held: set[int] = set()
        self._fds: dict[int, int] = {}
        self._limit = cap
        self._limit_at = 0.0

    def close(self) -> None:
        with self._cond:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            if self._shared is not None:
                self._shared.close()
                self._shared = None

    def _current_limit(self) -> int:
        now = time.monotonic()
        if now - self._limit_at > 0.5:  # the factor changes slowly; read it twice a second
            self._limit = max(1, math.ceil(self.cap * self._factor()))
            self._limit_at = now
        return self._limit

    def _try(self, limit: int) -> int | None:
        if self._shared is not None:  # one round trip tries every free slot
            i = self._shared.try_lock_any([i for i in range(limit) if i not in self._held])
            if i is not None:
                self._held.add(i)
            return i
        for i in range(limit):
            if i in self._held:
                continue
            if self.path:
                fd = self._fds.get(i)
                if fd is None:
                    fd = os.open(f"{self.path}.inflight{i}", os.O_RDWR | os.O_CREAT, 0o600)
                    self._fds[i] = fd
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
            self._held.add(i)
            return i
        return None

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self.cap <= 0:
            yield
            return
        limit = self._current_limit()
        with self._cond:
            slot = self._try(limit)
            while slot is None:
                # Woken by a release here; other processes' releases are seen on the next look.
                self._cond.wait(0.005)
                slot = self._try(limit)
        try:
            yield
        finally:
            with self._cond:
                if self._shared is not None:
                    self._shared.unlock(slot)
                elif self.path:
                    fcntl.flock(self._fds[slot], fcntl.LOCK_UN)
                self._held.discard(slot)
                self._cond.notify()
