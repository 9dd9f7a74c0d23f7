"""A request budget shared by every thread and every process of the pipeline on one machine.

Why: Stripe's rate limit is per account, not per process. Six assets extracting at once, each with many
threads, must together stay under it. The limiter is a GCRA ("virtual scheduling") bucket: each request
reserves the next free send slot, slots are `1/rate` apart, so no half-open one-second window ever holds
more than `rate` requests (with 2 % headroom for jitter). The slot clock lives in a tiny file guarded
by `flock`, so every process that opens the same file shares one budget (threads share it through the
same object). Across machines
(Kubernetes) the Dagster pool `stripe_api` caps concurrent extraction steps and each step gets its share
of the account budget (see docs/operations.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable

_SLOT = struct.Struct("<d")

#: Requests leave at `rate` per second but arrive with network and scheduling jitter: two requests sent
#: 1/rate apart can land closer together. Spacing slots 2 % wider keeps every one-second window *as
#: Stripe sees it* under the budget.
HEADROOM = 0.98


def default_limiter_path(api_key: str, api_base: str, account: str | None) -> str:
    """One budget file per (key, base, account); the name holds a truncated hash, never the key."""
    digest = hashlib.sha256(f"{api_base}|{account or ''}|{api_key}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"stripe-aep-ratelimit-{digest}")


class RateLimiter:
    """Blocking `acquire()` that spaces requests at least `1/rate` seconds apart, process-wide."""

    def __init__(
        self,
        rate: float,
        path: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.interval = 1.0 / (rate * HEADROOM)
        self.path = path
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._local_next = 0.0
        self._fd: int | None = None
        if path:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _reserve(self) -> float:
        """Take the next slot; returns its time (wall clock seconds)."""
        with self._lock:
            now = self._clock()
            if self._fd is None:
                slot = max(now, self._local_next)
                self._local_next = slot + self.interval
                return slot
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                data = os.pread(self._fd, _SLOT.size, 0)
                next_free = _SLOT.unpack(data)[0] if len(data) == _SLOT.size else 0.0
                if next_free > now + 3600:  # the wall clock jumped back: start afresh
                    next_free = 0.0
                slot = max(now, next_free)
                os.pwrite(self._fd, _SLOT.pack(slot + self.interval), 0)
                return slot
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def acquire(self) -> float:
        """Wait for a send slot; returns the seconds waited."""
        slot = self._reserve()
        wait = slot - self._clock()
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0
