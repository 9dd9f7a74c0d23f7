"""Concurrent, incremental extraction of one Stripe resource into day partitions of the raw lake.

Why concurrent: one list request returns at most 100 objects and takes 250–450 ms, so a single paginator
tops out at a few hundred objects/s while the endpoint's budget allows 25 × 100. Each window to fetch
(the uncovered part of each day up to `now − visibility lag`) starts as one piece; the shared rate
budget, not the thread count, sets the pace.

Why frugal: every request counts against the account's monthly read allocation, and each split of a
window costs one extra, partly filled page. So a window is split only once its first page has shown
how dense it is, only when the part left holds enough pages to pay for the extra one, only when too
few pieces are running to keep the endpoint's budget busy (Little's law), and never beyond a few per
cent of the run's pages. An empty or one-page window costs exactly one request per list pass.

Why exactly-once holds: each sub-window is written as its own file only after it was paged to the end, so
coverage on disk only ever claims fully read windows. Windows are half-open and never overlap, so an object
lands in exactly one file. A run killed half-way leaves whole files; the next run fetches only the gaps.
At the end of a run the contiguous files a run wrote for a day are merged into one.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from stripe_aep.catalog import EVENTS as EVENTS_RESOURCE
from stripe_aep.lake import Lake
from stripe_aep.stripe.client import (
    PAGE_LIMIT,
    StripeClient,
    StripeError,
    endpoint_of,
    events_listing,
    list_passes,
)
from stripe_aep.stripe.rawstore import RawFile, RawPartition, merge_intervals

log = logging.getLogger(__name__)

#: Splits a run may make, as a share of its pages: each costs at most one extra (partial) page per
#: pass, so a run stays within ~1.06× the fewest requests its windows allow (the target is 1.10×).
SPLIT_BUDGET = 0.05
#: JSON bytes a piece holds in memory before it writes the part already paged to its end. Bytes,
#: not objects: a charge at the pinned version is ~15 KB, a price ~1 KB, and a count of objects
#: let the charges process hold 280 MB (24 pieces × 500+ charges). With this bound a process holds
#: at most about `pieces × (FLUSH_BYTES + one page)` of raw JSON, whatever the day's size.
FLUSH_BYTES = 1 << 20
#: Latency assumed for Little's law until the run has measured its own (a slow list page).
ASSUMED_LATENCY = 0.5
#: A running piece is split only when at least this many pages are left (a split costs one).
MIN_SPLIT_PAGES = 4
#: The line of a paged event of a type not selected (an unfiltered events pass): kept in a piece's
#: objects only so that the run's counts and fewest requests reflect what was paged; never written.
DROPPED = b""
#: Memory a dropped event's entry holds (tuple, id, ints), counted towards `FLUSH_BYTES` so that a
#: window of other types' events is still written in parts instead of held whole.
DROPPED_ENTRY_BYTES = 200


def cut_windows(gaps: Sequence[tuple[int, int]], max_piece: int | None) -> list[tuple[int, int]]:
    """Each gap as one window, or cut into pieces of at most `max_piece` seconds when set."""
    if not max_piece:
        return [(a, b) for a, b in gaps if b > a]
    out = []
    for a, b in gaps:
        out.extend((s, min(b, s + max_piece)) for s in range(a, b, max_piece))
    return out


def fewest_requests(pass_counts: Iterable[int]) -> int:
    """The fewest list requests one window's passes allow: ceil(n / 100) each, and one if empty."""
    return sum(max(1, -(-n // PAGE_LIMIT)) for n in pass_counts)


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
        # orjson returns its growing output buffer as the bytes object, without shrinking it: a
        # 700-byte line keeps 8 KB allocated and a 15 KB charge 128 KB or more. A piece holds
        # thousands of lines, so copy each into a bytes object of its own size (measured: the
        # balance-transactions process fell from ~700 MB to ~180 MB peak RSS).
        return bytes(memoryview(orjson.dumps(obj)))
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
    #: The fewest list requests the run's windows allow (its windows' objects / 100 per pass, one for
    #: an empty pass), to compare `requests` with.
    min_requests: int = 0
    splits: int = 0
    #: The most encoded JSON bytes the run's pieces held in memory at once (what `FLUSH_BYTES`
    #: bounds for single-pass gap windows).
    peak_buffered_bytes: int = 0
    #: Per UTC day (ISO date): objects fetched, objects new on disk, successful list pages.
    day_objects: dict[str, int] = field(default_factory=dict)
    day_new_objects: dict[str, int] = field(default_factory=dict)
    day_pages: dict[str, int] = field(default_factory=dict)

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
        max_piece_seconds: int | None = None,
        min_split_pages: float = MIN_SPLIT_PAGES,
        split_budget: float = SPLIT_BUDGET,
        account_id: str | None = None,
        oldest_fetchable: Callable[[float], int] | None = None,
        selection: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.lake = lake
        self.resource = resource
        # The list calls of one window: for `events`, one call, with the `types[]` of the selected
        # resources when they fit one request, else unfiltered (`events_listing`).
        self.passes = list_passes(resource, selection)
        # The event types written (the selection's); None: every object is written.
        self.kept_types: frozenset[str] | None = (
            frozenset(events_listing(selection)[1]) if resource == EVENTS_RESOURCE else None
        )
        self.concurrency = concurrency
        self.lag = visibility_lag_seconds
        self.clock = clock
        # Pieces are the unit of durable progress (a window is written once paged to its end);
        # `max_piece_seconds` cuts windows up front so progress is written more often, at the cost
        # of a partial page per cut. Off by default.
        self.max_piece = max_piece_seconds
        self.min_split_pages = min_split_pages
        self.split_budget = split_budget
        self.endpoint = endpoint_of(f"/v1/{resource}")
        self._account_id = account_id or client.settings.account
        # `now -> oldest created second the endpoint still returns` (the Events API keeps 30
        # days): older gaps are left uncovered, never written as empty windows that would claim
        # coverage of what can no longer be fetched (stripe_aep/stripe/events.py reports them).
        self.oldest_fetchable = oldest_fetchable
        self._stop = threading.Event()
        self._damaged: list[str] = []
        self._buffer_lock = threading.Lock()
        self._buffered = 0  # encoded bytes the running pieces hold now
        self._peak_buffered = 0

    def _hold(self, delta: int) -> None:
        with self._buffer_lock:
            self._buffered += delta
            self._peak_buffered = max(self._peak_buffered, self._buffered)

    def _account_cache_path(self) -> str:
        # Keyed by a truncated hash of (base, account header, key): never the key itself.
        settings = self.client.settings
        digest = hashlib.sha256(
            f"{settings.api_base}|{settings.account or ''}|{settings.api_key}".encode()
        ).hexdigest()[:16]
        return f"_meta/stripe_account/{digest}.json"

    def account_id(self) -> str | None:
        """The Stripe account the data belongs to (see `_account`): what the changes layer records
        beside its versions, as the listing files do."""
        return self._account()

    def _account(self) -> str | None:
        """The Stripe account the data belongs to (recorded with every file).

        Looked up once per key and remembered on the lake: every read counts against the account's
        monthly allocation, and an idle tick should cost only its list requests."""
        if self._account_id is None:
            cache = self._account_cache_path()
            try:
                if self.lake.exists(cache):
                    self._account_id = str(self.lake.read_json(cache).get("id") or "") or None
            except (OSError, ValueError):
                self._account_id = None
        if self._account_id is None:
            try:
                self._account_id = self.client.retrieve_account().get("id")
                if self._account_id:
                    self.lake.write_json(self._account_cache_path(), {"id": self._account_id})
            except StripeError as exc:
                # A restricted key may not read /v1/account: the data is still right, only the
                # provenance field stays empty, and we say so.
                log.warning("could not read the Stripe account id (%s); files record none", exc)
                self._account_id = ""
        return self._account_id or None

    def plan(self, days: Sequence[dt.date], refresh: bool) -> list[_Piece]:
        now = self.clock()
        until = int(now) - self.lag
        floor = self.oldest_fetchable(now) if self.oldest_fetchable else None
        gaps: list[tuple[RawPartition, int, int]] = []
        refreshes: list[tuple[RawPartition, int, int]] = []
        for day in days:
            part = RawPartition(self.lake, self.resource, day)
            # A truncated or unreadable file is set aside first, so its window is a gap again
            # (or, for a merged file, the parts it superseded count again if still there).
            self._damaged.extend(d.message() for d in part.heal())
            part.cleanup_superseded()
            for a, b in part.gaps(until):
                if floor is not None:
                    a = max(a, floor)
                if b > a:
                    gaps.append((part, a, b))
            if refresh:
                refreshes.extend(
                    (part, max(a, floor or a), b)
                    for a, b in part.coverage()
                    if b > max(a, floor or a)
                )
        tasks: list[_Piece] = []
        stamp = int(self.clock())
        passes = len(self.passes)
        for source, stamp_value in ((gaps, None), (refreshes, stamp)):
            for window, (part, a, b) in enumerate(source, start=len(tasks)):
                for lo, hi in cut_windows([(a, b)], self.max_piece):
                    tasks.append(_Piece(part, lo, hi, stamp_value, passes, window))
        # Longest windows first (their density is unknown yet): the run's tail is then short pieces.
        tasks.sort(key=lambda t: t.gte - t.lt)
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
                    # The event types kept: what a window of events covers depends on them (the
                    # probe trusts a window only for the types it recorded, stripe/events.py).
                    if self.kept_types is not None:
                        meta_cache["event_types"] = sorted(self.kept_types)
                return dict(meta_cache)

        scheduler = _Scheduler(
            tasks,
            min_active=self._pieces_needed,
            min_split_pages=self.min_split_pages,
            split_budget=self.split_budget,
        )
        self.client.demand = scheduler.demand  # heaviest endpoints first at the account budget
        # Objects per (window, pass) within the windows' final bounds, for the fewest requests.
        pass_counts: dict[tuple[int, int], int] = {}
        for piece in tasks:
            for p in range(piece.passes):
                pass_counts[(piece.window, p)] = 0

        def commit(piece: _Piece, lo: int, hi: int, found: list[tuple[int, str, bytes, int]]):
            """Write the objects of [lo, hi), a fully paged part of a piece, and count them."""
            skip = known_ids.get(piece.part, set()) if piece.refresh is not None else set()
            lines = [
                line
                for created, oid, line, _ in found
                if created >= lo and oid not in skip and line != DROPPED
            ]
            day = piece.part.day.isoformat()
            with lock:
                # Every paged object counts, dropped events too: pages depend on all of them.
                for created, _, _, pass_index in found:
                    if created >= lo:
                        result.objects += 1
                        result.day_objects[day] = result.day_objects.get(day, 0) + 1
                        pass_counts[(piece.window, pass_index)] += 1
                result.windows.append((lo, hi))
            if piece.refresh is not None and not lines:
                return
            # When the window's state was read: the start of its first request (a lower bound of
            # every page's time; version times and the events probe compare against it).
            fetched_at = piece.fetched_at if piece.fetched_at is not None else int(self.clock())
            raw = piece.part.write(
                lo, hi, lines, {**meta(), "fetched_at": fetched_at}, refresh=piece.refresh
            )
            with lock:
                result.new_objects += len(lines)
                result.day_new_objects[day] = result.day_new_objects.get(day, 0) + len(lines)
                written.append(raw)

        def work(piece: _Piece) -> None:
            found = self._fetch(piece, commit)
            final_gte = piece.finish()
            day = piece.part.day.isoformat()
            with lock:
                result.day_pages[day] = result.day_pages.get(day, 0) + piece.pages
            if final_gte < piece.flushed_to:
                commit(piece, final_gte, piece.flushed_to, found)
            self._hold(-sum(len(item[2]) for item in found))

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
        by_window: dict[int, list[int]] = {}
        for (window, _), count in pass_counts.items():
            by_window.setdefault(window, []).append(count)
        result.min_requests = sum(fewest_requests(c) for c in by_window.values())
        result.splits = scheduler.splits
        result.peak_buffered_bytes = self._peak_buffered
        for day in days:
            key = day.isoformat()
            result.day_objects.setdefault(key, 0)
            result.day_new_objects.setdefault(key, 0)
            result.day_pages.setdefault(key, 0)
        after = self.client.stats.as_dict()
        result.request_stats = {k: after[k] - stats_before[k] for k in after}
        if errors:
            if len(errors) > 1:
                log.error("%d windows failed; the first error follows", len(errors))
            raise errors[0]
        return result

    def _pieces_needed(self) -> int:
        """Little's law: requests in flight = rate × latency. Keep that many pieces running (× 1.5
        for the time a piece spends between its requests: parsing, writing, waiting for its turn;
        + 2 for pieces stalled in a retry), and no more: each extra piece costs a partial page,
        and an extra waiting thread holds one of the account's in-flight slots that another
        endpoint could use. `concurrency` (STRIPE_CONCURRENCY) only bounds the threads."""
        latency = self.client.stats.mean_latency() or ASSUMED_LATENCY
        account, endpoint = self.client.limiter.current_rates(self.endpoint)
        needed = math.ceil(min(account, endpoint) * latency * 1.5) + 2
        return max(2, min(self.concurrency, needed))

    def _fetch(
        self, piece: _Piece, commit: Callable[[_Piece, int, int, list], None]
    ) -> list[tuple[int, str, bytes, int]]:
        """Page one window (every filter pass) newest first; stop early below a stolen bound.

        Memory stays flat however large the window: once `FLUSH_BYTES` are held, the part already
        paged to its end, [oldest second seen + 1, upper bound), is written as its own file (pages
        come newest first, so every object newer than the oldest second seen has been returned; the
        objects of that second stay, as more may follow on the next page). Only single-pass gap
        windows flush: a later pass would have to revisit a file already written.

        Events of a type not kept (an unfiltered pass) stay in the returned list as `DROPPED`, so
        the run's counts see every paged object, and are never written; the paging itself
        (`has_more`, the cursor, the piece's progress) always follows the full page."""
        found: list[tuple[int, str, bytes, int]] = []
        kept = self.kept_types
        seen: set[str] = set()
        passes = self.passes
        may_flush = len(passes) == 1 and piece.refresh is None
        held = 0  # encoded bytes in `found`
        for pass_index, extra in enumerate(passes):
            lower = piece.start_pass(pass_index)
            params = {"created[gte]": lower, "created[lt]": piece.lt, **extra}
            after = None
            while not self._stop.is_set():
                if piece.fetched_at is None:
                    piece.fetched_at = int(self.clock())
                page = self.client.list_page(self.resource, params, after)
                piece.pages += 1
                added = 0
                for obj in page.objects:
                    oid = obj["id"]
                    if oid not in seen:
                        seen.add(oid)
                        if kept is not None and obj.get("type") not in kept:
                            found.append((obj["created"], oid, DROPPED, pass_index))
                            held += DROPPED_ENTRY_BYTES
                            continue
                        line = encode(obj)
                        added += len(line)
                        found.append((obj["created"], oid, line, pass_index))
                held += added
                self._hold(added)
                oldest = page.objects[-1]["created"] if page.objects else lower
                if not page.has_more or not piece.advance(oldest, len(page.objects)):
                    break
                after = page.objects[-1]["id"]
                if may_flush and held >= FLUSH_BYTES and oldest + 1 < piece.flushed_to:
                    done = [item for item in found if item[0] > oldest]
                    found = [item for item in found if item[0] <= oldest]
                    seen = {item[1] for item in found}
                    commit(piece, oldest + 1, piece.flushed_to, done)
                    piece.flushed_to = oldest + 1
                    written = sum(len(item[2]) for item in done)
                    dropped = sum(1 for item in done if item[2] == DROPPED)
                    held -= written + dropped * DROPPED_ENTRY_BYTES
                    self._hold(-written)
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
    still lands in exactly one file, whatever the timing. Only the first pass is ever split: a thief
    pages every pass of its part, so a split in a later pass would read the first one twice.
    """

    def __init__(
        self,
        part: RawPartition,
        gte: int,
        lt: int,
        refresh: int | None,
        passes: int = 1,
        window: int | None = None,
    ) -> None:
        # `refresh`: the run stamp of a refresh re-read of a covered window, None for a gap.
        self.part, self.gte, self.lt, self.refresh = part, gte, lt, refresh
        self.passes = passes
        self.window = id(self) if window is None else window  # the planned window it came from
        self.frontier = lt
        self.fetched = 0  # objects seen in the current pass, to estimate what is left
        self.pass_index = 0
        self.pages = 0  # successful list pages of this piece
        self.flushed_to = lt  # [flushed_to, lt) is already written (see _fetch)
        self.fetched_at: int | None = None  # Unix second its first request started
        self.finished = False
        self.lock = threading.Lock()

    def start_pass(self, pass_index: int = 0) -> int:
        with self.lock:
            self.frontier = self.lt
            self.fetched = 0
            self.pass_index = pass_index
            return self.gte

    def advance(self, oldest: int, count: int) -> bool:
        """Record progress; False when the rest of the window was stolen."""
        with self.lock:
            self.frontier = oldest
            self.fetched += count
            return oldest >= self.gte

    def pages_left(self) -> float:
        """Estimated pages still to fetch in this pass, from the density seen so far.

        Before the first page is back nothing is known, and nothing is claimed: an empty window
        must not look worth splitting (idle workers halving an empty window sent 120 requests).
        """
        done_span = self.lt - self.frontier
        if self.fetched == 0 or done_span <= 0:
            return 0.0
        return self.fetched / done_span * (self.frontier - self.gte) / PAGE_LIMIT

    def steal_half(self, min_span: int, min_pages: float) -> _Piece | None:
        """Split off the older half, if enough is left that two workers beat one."""
        with self.lock:
            span = self.frontier - self.gte
            if (
                self.finished
                or self.pass_index != 0
                or span < min_span
                or self.pages_left() < min_pages
            ):
                return None
            mid = self.gte + span // 2
            thief = _Piece(self.part, self.gte, mid, self.refresh, self.passes, self.window)
            self.gte = mid
            return thief

    def finish(self) -> int:
        with self.lock:
            self.finished = True
            return self.gte


class _Scheduler:
    """Hands out planned pieces, then lets idle workers split the largest piece still running.

    At most `min_active` pieces run at once (Little's law). A split happens only when fewer are
    running, i.e. when too few requests would be in flight to keep the budget busy (the tail of a run, or one very dense window), only
    when the victim has `min_split_pages` pages left, and only while the run's splits stay under
    `SPLIT_BUDGET` of its pages.
    """

    MIN_STEAL_SECONDS = 2

    def __init__(
        self,
        pieces: list[_Piece],
        min_active: Callable[[], int],
        min_split_pages: float = MIN_SPLIT_PAGES,
        split_budget: float = SPLIT_BUDGET,
    ) -> None:
        self._min_active = min_active
        self._min_split_pages = min_split_pages
        self._split_budget = split_budget
        self._queue = list(reversed(pieces))
        self._active: set[_Piece] = set()
        self._done_pages = 0
        self._lock = threading.Lock()
        self.splits = 0

    def _split_budget_left(self) -> bool:
        known = self._done_pages + sum(p.pages + p.pages_left() for p in self._active)
        return self.splits + 1 <= max(0.0, self._split_budget * known)

    def next(self) -> _Piece | None:
        with self._lock:
            if len(self._active) >= self._min_active():
                return None  # enough pieces keep the budget busy; more would only wait
            if self._queue:
                piece = self._queue.pop()
            else:
                if not self._split_budget_left():
                    return None
                candidates = sorted(self._active, key=lambda p: -p.pages_left())
                piece = None
                for victim in candidates:
                    piece = victim.steal_half(self.MIN_STEAL_SECONDS, self._min_split_pages)
                    if piece is not None:
                        self.splits += 1
                        break
                if piece is None:
                    return None
            self._active.add(piece)
            return piece

    def demand(self) -> float:
        """Pages this run still expects to fetch: its claim on the account budget.

        Running pieces count what their density predicts; queued windows count at the density seen
        so far (0 before any page: no claim until there is evidence)."""
        with self._lock:
            active = list(self._active)
            queued_span = sum(p.lt - p.gte for p in self._queue)
        fetched = sum(p.fetched for p in active)
        span = sum(p.lt - p.frontier for p in active)
        density = fetched / span if span > 0 else 0.0
        return sum(p.pages_left() for p in active) + density * queued_span / PAGE_LIMIT

    def finished(self) -> bool:
        with self._lock:
            return not self._queue and not self._active

    def done(self, piece: _Piece) -> None:
        with self._lock:
            self._active.discard(piece)
            self._done_pages += piece.pages
