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
import gc
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from stripe_aep.lake import Lake
from stripe_aep.stripe.client import FILTER_PASSES, StripeClient, StripeError
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


@contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """Parsing a page allocates thousands of short-lived dicts, which with the default thresholds
    triggers a garbage-collector pass every few hundred allocations; those passes took about a third
    of the extractor's CPU. Nothing here builds reference cycles, so collect far less often while
    paging (measured: -25 % CPU), and restore the thresholds afterwards."""
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def encode(obj: dict[str, Any]) -> bytes:
    """Compact JSON, keys in Stripe's order, non-ASCII kept as UTF-8: lossless and byte-stable."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # an integer beyond 64 bits: the standard library writes it exactly
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
    #: Damaged raw files set aside before planning (their windows were fetched again): messages.
    damaged: list[str] = field(default_factory=list)

    @property
    def objects_per_second(self) -> float:
        return self.objects / self.seconds if self.seconds > 0 else 0.0

    @property
    def window(self) -> tuple[int, int] | None:
        if not self.windows:
            return None
        return min(a for a, _ in self.windows), max(b for _, b in self.windows)


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
        self._damaged: list[str] = []

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

    def plan(self, days: Sequence[dt.date], refresh: bool) -> list[_Piece]:
        until = int(self.clock()) - self.lag
        gaps: list[tuple[RawPartition, int, int]] = []
        refreshes: list[tuple[RawPartition, int, int]] = []
        for day in days:
            part = RawPartition(self.lake, self.resource, day)
            # A truncated or unreadable file is set aside first, so its window is a gap again
            # (or, for a merged file, the parts it superseded count again if still there).
            self._damaged.extend(d.message() for d in part.heal())
            part.cleanup_superseded()
            gaps.extend((part, a, b) for a, b in part.gaps(until))
            if refresh:
                refreshes.extend((part, a, b) for a, b in part.coverage())
        total_pieces = self.concurrency
        tasks: list[_Piece] = []
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
                    tasks.append(_Piece(part, a, b, stamp_value))
        return tasks

    def run(self, days: Sequence[dt.date], refresh: bool = False) -> ExtractionResult:
        started = time.monotonic()
        stats_before = self.client.stats.as_dict()
        result = ExtractionResult(self.resource, [d.isoformat() for d in days])
        tasks = self.plan(days, refresh)
        result.damaged = list(self._damaged)
        known_ids: dict[RawPartition, set[str]] = {}
        if refresh:
            for part in {t.part for t in tasks if t.refresh is not None}:
                known_ids[part] = part.ids()
        lock = threading.Lock()
        written: list[RawFile] = []
        errors: list[BaseException] = []
        meta_cache: dict[str, Any] = {}

        def meta() -> dict[str, Any]:
            # Looked up when the first window is written, so the extra request overlaps paging.
            with lock:
                if not meta_cache:
                    meta_cache.update(
                        account=self._account(),
                        api_version=self.client.settings.api_version,
                        livemode=self.client.settings.livemode,
                    )
                return dict(meta_cache)

        scheduler = _Scheduler(
            tasks,
            min_active=self._pieces_needed,
        )

        def work(piece: _Piece) -> None:
            found = self._fetch(piece)
            final_gte = piece.finish()
            skip = known_ids.get(piece.part, set()) if piece.refresh is not None else set()
            lines = [
                line for created, oid, line in found if created >= final_gte and oid not in skip
            ]
            fetched = sum(1 for created, _, _ in found if created >= final_gte)
            with lock:
                result.objects += fetched
                result.windows.append((final_gte, piece.lt))
            if piece.refresh is not None and not lines:
                return
            raw = piece.part.write(final_gte, piece.lt, lines, meta(), refresh=piece.refresh)
            with lock:
                result.new_objects += len(lines)
                written.append(raw)

        def worker() -> None:
            while not self._stop.is_set():
                piece = scheduler.next()
                if piece is None:
                    if scheduler.finished():
                        return
                    time.sleep(0.05)  # others are running; one of them may be worth splitting soon
                    continue
                try:
                    work(piece)
                except _Cancelled:
                    return
                except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
                    # Auth and permission errors fail every window alike: stop the others early.
                    self._stop.set()
                    with lock:
                        errors.append(exc)
                    return
                finally:
                    scheduler.done(piece)

        if tasks:
            with _fewer_gc_passes(), ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                for future in [pool.submit(worker) for _ in range(self.concurrency)]:
                    future.result()

        # One file per contiguous run of windows this run wrote, per day.
        for part in {t.part for t in tasks}:
            mine = [
                w for w in written if w.path.startswith(part.folder + "/") and w.refresh is None
            ]
            for a, b in merge_intervals((w.gte, w.lt) for w in mine):
                group = [w for w in mine if a <= w.gte and w.lt <= b]
                merged = part.merge(group, meta_cache)
                if merged is not None:
                    written = [w for w in written if w not in group] + [merged]
        result.files = sorted(w.path for w in written)
        for day in days:
            result.cursors[day.isoformat()] = RawPartition(self.lake, self.resource, day).cursor()
        result.seconds = time.monotonic() - started
        after = self.client.stats.as_dict()
        result.request_stats = {k: after[k] - stats_before[k] for k in after}
        if errors:
            if len(errors) > 1:
                log.error("%d windows failed; the first error follows", len(errors))
            raise errors[0]
        return result

    def _pieces_needed(self) -> int:
        """Little's law: requests in flight = rate × latency. Keep that many pieces running (plus a
        margin for pieces stalled in a retry), and no more, since each extra piece costs a partial
        page."""
        latency = self.client.stats.mean_latency()
        if latency is None:
            return self.concurrency
        needed = math.ceil(self.client.limiter.rate * latency * 1.25) + 2
        return max(2, min(self.concurrency, needed))

    def _fetch(self, piece: _Piece) -> list[tuple[int, str, bytes]]:
        """Page one window (every filter pass) newest first; stop early below a stolen bound."""
        found: list[tuple[int, str, bytes]] = []
        seen: set[str] = set()
        for extra in FILTER_PASSES[self.resource]:
            lower = piece.start_pass()
            params = {"created[gte]": lower, "created[lt]": piece.lt, **extra}
            after = None
            while not self._stop.is_set():
                page = self.client.list_page(self.resource, params, after)
                for obj in page.objects:
                    oid = obj["id"]
                    if oid not in seen:
                        seen.add(oid)
                        found.append((obj["created"], oid, encode(obj)))
                oldest = page.objects[-1]["created"] if page.objects else lower
                if not page.has_more or not piece.advance(oldest, len(page.objects)):
                    break
                after = page.objects[-1]["id"]
            if self._stop.is_set():
                # Another window failed: never write a window that was not paged to its end.
                raise _Cancelled
        return found


class _Cancelled(Exception):
    """The run is stopping because another window failed."""


class _Piece:
    """A sub-window being paged. Its lower bound can rise when an idle worker steals its older half.

    Paging runs newest first, so `frontier` (the oldest `created` seen in the current pass) splits the
    window into what is fetched [frontier, lt) and what is left [gte, frontier]. A thief takes
    [gte, mid) with mid below the frontier; the owner keeps [mid, lt) and drops any object older than
    its final bound when it writes. Objects are assigned to files by `created` alone, so every object
    still lands in exactly one file, whatever the timing.
    """

    def __init__(self, part: RawPartition, gte: int, lt: int, refresh: int | None) -> None:
        # `refresh`: the run stamp of a refresh re-read of a covered window, None for a gap.
        self.part, self.gte, self.lt, self.refresh = part, gte, lt, refresh
        self.frontier = lt
        self.fetched = 0  # objects seen in the current pass, to estimate what is left
        self.finished = False
        self.lock = threading.Lock()

    def start_pass(self) -> int:
        with self.lock:
            self.frontier = self.lt
            self.fetched = 0
            return self.gte

    def advance(self, oldest: int, count: int) -> bool:
        """Record progress; False when the rest of the window was stolen."""
        with self.lock:
            self.frontier = oldest
            self.fetched += count
            return oldest >= self.gte

    def pages_left(self) -> float:
        """Estimated pages still to fetch, from the density seen so far (unknown → many)."""
        done_span = self.lt - self.frontier
        if self.fetched == 0 or done_span <= 0:
            return float("inf") if self.frontier - self.gte > 0 else 0.0
        return self.fetched / done_span * (self.frontier - self.gte) / 100

    def steal_half(self, min_span: int, min_pages: float) -> _Piece | None:
        """Split off the older half, if enough is left that two workers beat one.

        Each split costs about one extra (partial) page, so only pieces with several pages left are
        split.
        """
        with self.lock:
            span = self.frontier - self.gte
            if self.finished or span < min_span or self.pages_left() < min_pages:
                return None
            mid = self.gte + span // 2
            thief = _Piece(self.part, self.gte, mid, self.refresh)
            self.gte = mid
            return thief

    def finish(self) -> int:
        with self.lock:
            self.finished = True
            return self.gte


class _Scheduler:
    """Hands out planned pieces, then lets idle workers split the largest piece still running.

    Splitting costs a partial page, and the shared rate budget (not the thread count) sets the pace, so
    a split happens only when fewer than `min_active` pieces are running, i.e. when too few requests
    would be in flight to keep the budget busy (the tail of a run, or one very dense window).
    """

    MIN_STEAL_SECONDS = 2
    MIN_STEAL_PAGES = 4

    def __init__(self, pieces: list[_Piece], min_active: Callable[[], int]) -> None:
        self._min_active = min_active
        self._queue = list(reversed(pieces))
        self._active: set[_Piece] = set()
        self._lock = threading.Lock()

    def next(self) -> _Piece | None:
        with self._lock:
            if self._queue:
                piece = self._queue.pop()
            else:
                if len(self._active) >= self._min_active():
                    return None
                candidates = sorted(self._active, key=lambda p: -p.pages_left())
                piece = None
                for victim in candidates:
                    piece = victim.steal_half(self.MIN_STEAL_SECONDS, self.MIN_STEAL_PAGES)
                    if piece is not None:
                        break
                if piece is None:
                    return None
            self._active.add(piece)
            return piece

    def finished(self) -> bool:
        with self._lock:
            return not self._queue and not self._active

    def done(self, piece: _Piece) -> None:
        with self._lock:
            self._active.discard(piece)
