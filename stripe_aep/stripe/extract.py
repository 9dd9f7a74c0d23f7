"""Concurrent, incremental extraction of one Stripe resource into day partitions of the raw lake.

Why concurrent: one list request returns at most 100 objects and takes 100–300 ms, so a single paginator
tops out at a few hundred objects/s while the account's budget allows `max_rps × 100`. The window to fetch
(the uncovered part of each day up to `now − visibility lag`) is split into sub-windows that are paged in
parallel; the shared rate limiter, not the thread count, sets the pace.

Why exactly-once holds: each sub-window is written as its own file only after it was paged to the end, so
coverage on disk only ever claims fully read windows. Windows are half-open and never overlap, so an object
lands in exactly one file. A run killed half-way leaves whole files; the next run fetches only the gaps.
At the end of a run the contiguous files a run wrote for a day are merged into one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stripe_aep.lake import Lake
from stripe_aep.stripe.client import StripeClient, StripeError
from stripe_aep.stripe.rawstore import RawFile, RawPartition, merge_intervals

log = logging.getLogger(__name__)

#: Never split below this: tiny windows cost requests without adding parallel pages.
MIN_PIECE_SECONDS = 600


def split_windows(
    gaps: Sequence[tuple[int, int]], pieces: int, min_piece: int = MIN_PIECE_SECONDS
) -> list[tuple[int, int]]:
    """Cut gaps into about `pieces` sub-windows of equal length (none shorter than `min_piece`)."""
    total = sum(b - a for a, b in gaps)
    if total <= 0:
        return []
    length = max(min_piece, math.ceil(total / max(1, pieces)))
    out = []
    for a, b in gaps:
        n = max(1, round((b - a) / length))
        step = math.ceil((b - a) / n)
        out.extend((s, min(b, s + step)) for s in range(a, b, step))
    return out


def encode(obj: dict[str, Any]) -> bytes:
    """Compact JSON, keys in Stripe's order, non-ASCII kept: lossless and byte-stable."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class ExtractionResult:
    resource: str
    days: list[str]
    objects: int = 0
    new_objects: int = 0
    windows: list[tuple[int, int]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    request_stats: dict[str, float] = field(default_factory=dict)

    @property
    def objects_per_second(self) -> float:
        return self.objects / self.seconds if self.seconds > 0 else 0.0

    @property
    def window(self) -> tuple[int, int] | None:
        if not self.windows:
            return None
        return min(a for a, _ in self.windows), max(b for _, b in self.windows)


@dataclass(frozen=True)
class _Task:
    partition: RawPartition
    gte: int
    lt: int
    refresh: int | None  # run stamp for a refresh re-read, None for a gap


class PartitionExtractor:
    """Fill the uncovered windows of some day partitions of one resource, concurrently."""

    def __init__(
        self,
        client: StripeClient,
        lake: Lake,
        resource: str,
        *,
        concurrency: int,
        visibility_lag_seconds: int,
        clock: Callable[[], float] = time.time,
        min_piece_seconds: int = MIN_PIECE_SECONDS,
        account_id: str | None = None,
    ) -> None:
        self.client = client
        self.lake = lake
        self.resource = resource
        self.concurrency = concurrency
        self.lag = visibility_lag_seconds
        self.clock = clock
        self.min_piece = min_piece_seconds
        self._account_id = account_id or client.settings.account
        self._stop = threading.Event()

    def _account(self) -> str | None:
        """The Stripe account the data belongs to (recorded with every file)."""
        if self._account_id is None:
            try:
                self._account_id = self.client.retrieve_account().get("id")
            except StripeError as exc:
                # A restricted key may not read /v1/account: the data is still right, only the
                # provenance field stays empty, and we say so.
                log.warning("could not read the Stripe account id (%s); files record none", exc)
                self._account_id = ""
        return self._account_id or None

    def plan(self, days: Sequence[dt.date], refresh: bool) -> list[_Task]:
        until = int(self.clock()) - self.lag
        gaps: list[tuple[RawPartition, int, int]] = []
        refreshes: list[tuple[RawPartition, int, int]] = []
        for day in days:
            part = RawPartition(self.lake, self.resource, day)
            part.cleanup_superseded()
            gaps.extend((part, a, b) for a, b in part.gaps(until))
            if refresh:
                refreshes.extend((part, a, b) for a, b in part.coverage())
        total_pieces = self.concurrency * 2
        tasks: list[_Task] = []
        stamp = int(self.clock())
        for source, stamp_value in ((gaps, None), (refreshes, stamp)):
            by_part: dict[RawPartition, list[tuple[int, int]]] = {}
            for part, a, b in source:
                by_part.setdefault(part, []).append((a, b))
            span = sum(b - a for _, a, b in source) or 1
            for part, windows in by_part.items():
                share = sum(b - a for a, b in windows) / span
                pieces = max(1, round(total_pieces * share))
                for a, b in split_windows(windows, pieces, self.min_piece):
                    tasks.append(_Task(part, a, b, stamp_value))
        return tasks

    def run(self, days: Sequence[dt.date], refresh: bool = False) -> ExtractionResult:
        started = time.monotonic()
        stats_before = self.client.stats.as_dict()
        result = ExtractionResult(self.resource, [d.isoformat() for d in days])
        tasks = self.plan(days, refresh)
        known_ids: dict[RawPartition, set[str]] = {}
        if refresh:
            for part in {t.partition for t in tasks if t.refresh is not None}:
                known_ids[part] = part.ids()
        meta: dict[str, Any] = {}
        if tasks:
            meta = {
                "account": self._account(),
                "api_version": self.client.settings.api_version,
                "livemode": self.client.settings.livemode,
            }
        lock = threading.Lock()
        written: list[RawFile] = []
        errors: list[BaseException] = []

        def work(task: _Task) -> None:
            if self._stop.is_set():
                return
            lines, fetched = [], 0
            skip = known_ids.get(task.partition, set()) if task.refresh is not None else set()
            for obj in self.client.iter_window(self.resource, task.gte, task.lt):
                if self._stop.is_set():
                    return
                fetched += 1
                if obj["id"] not in skip:
                    lines.append(encode(obj))
            if task.refresh is not None and not lines:
                with lock:
                    result.objects += fetched
                    result.windows.append((task.gte, task.lt))
                return
            raw = task.partition.write(task.gte, task.lt, lines, meta, refresh=task.refresh)
            with lock:
                result.objects += fetched
                result.new_objects += len(lines)
                result.windows.append((task.gte, task.lt))
                written.append(raw)

        def guarded(task: _Task) -> None:
            try:
                work(task)
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
                # Auth and permission errors will fail every window alike: stop the others early.
                self._stop.set()
                with lock:
                    errors.append(exc)

        if tasks:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                list(pool.map(guarded, tasks))

        # One file per contiguous run of windows this run wrote, per day.
        for part in {r.partition for r in tasks}:
            mine = [
                w for w in written if w.path.startswith(part.folder + "/") and w.refresh is None
            ]
            for a, b in merge_intervals((w.gte, w.lt) for w in mine):
                group = [w for w in mine if a <= w.gte and w.lt <= b]
                merged = part.merge(group, meta)
                if merged is not None:
                    written = [w for w in written if w not in group] + [merged]
        result.files = sorted(w.path for w in written)
        for day in days:
            result.cursors[day.isoformat()] = RawPartition(self.lake, self.resource, day).cursor()
        result.seconds = time.monotonic() - started
        after = self.client.stats.as_dict()
        result.request_stats = {k: after[k] - stats_before[k] for k in after}
        if errors:
            first = errors[0]
            if len(errors) > 1:
                log.error(
                    "%d of %d windows failed; the first error follows", len(errors), len(tasks)
                )
            raise first
        return result
