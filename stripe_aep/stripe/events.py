"""What the raw events on the lake say: the new-object probe, and the 30-day edge of their coverage.

Why a probe: listing each resource costs a request or two per tick even when nothing happened, and
Stripe allocates reads (about 500 per transaction over 30 days, at least 10,000 a month). One
`/v1/events` page covers every resource, and a new object shows up there too, as one of its
resource's creation events (`creation_types` in stripe_aep/catalog.py). So, for today's partition only, `stripe/<resource>` asks
the events already on the lake first: when they cover the part of the day its listing has not
covered yet (the raw gap) and show no object of the resource created in that gap, the listing is
skipped and the raw cursor does not move (the gap stays a gap: nothing is claimed that was not
listed). The close-out of yesterday, backfills and every other day always list, so the day ends
fully listed whatever the events said. A resource without events (balance transactions) always
lists.

Why the edge: Stripe keeps 30 days of events ("List all events": events going back 30 days). A
listing snapshot of an object is its state at the snapshot's `fetched_at`; every later change is
known only through events. So the events on the lake must cover, without a hole, from the oldest
`fetched_at` still relied upon to now − visibility lag. A hole younger than the retention can still
be fetched (run `stripe/events` for its days); a hole older than now − retention is *lost*: the
changes in it can no longer be learnt, and the listing snapshots fetched before the hole's end must
be re-read. `scan_coverage` finds the holes, `LostWindows` records them on the lake
(`_meta/stripe_events/lost_windows.json`) so that the UI shows a warning and the sensor
`stripe_aep_events_edge` launches the re-reads once.

Plain Python, no Dagster: the assets and the sensor call it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from stripe_aep.catalog import (
    EVENTS,
    RESOURCE_NAMES,
    STRIPE_RESOURCES,
    event_type_passes,
    stripe_resource,
)
from stripe_aep.lake import Lake
from stripe_aep.stripe.rawstore import (
    DAY,
    RawPartition,
    day_bounds,
    day_of,
    fetched_at,
    merge_intervals,
    subtract,
)

#: How long Stripe keeps events: `GET /v1/events` returns the last 30 days (API reference).
EVENTS_RETENTION_SECONDS = 30 * DAY
#: Margin kept from the retention's edge: a window this close to it is not asked for (Stripe may
#: already have dropped its oldest events), it counts as lost instead of being claimed as covered.
RETENTION_MARGIN_SECONDS = 3600
#: The events of a run are listed a few seconds to minutes before its raw steps (one step each):
#: the probe accepts events coverage ending this long before the raw gap's end. What it does not
#: see yet is seen by the next tick (the raw cursor did not move).
PROBE_EVENTS_SLACK_SECONDS = 300
#: The not-yet-fetched newest events are reported as a hole only once they are this old.
TAIL_GRACE_SECONDS = DAY

#: The types asked by events files whose sidecar does not list them (written before the selection
#: existed): the 20 types of the six resources of AEP's Stripe source.
UNRECORDED_EVENT_TYPES = frozenset(
    t
    for types in event_type_passes(r.name for r in STRIPE_RESOURCES if r.in_aep_stripe_source)
    for t in types
)

LOST_WINDOWS_PATH = "_meta/stripe_events/lost_windows.json"
COVERAGE_STATE_PATH = "_meta/stripe_events/coverage.json"


def with_events(resources: Iterable[str]) -> tuple[str, ...]:
    """The resources among `resources` whose listing snapshots rely on events to stay current."""
    return tuple(r for r in resources if stripe_resource(r).has_events)


def oldest_fetchable(now: float) -> int:
    """The oldest event `created` second still safe to ask Stripe for at `now`."""
    return int(now) - EVENTS_RETENTION_SECONDS + RETENTION_MARGIN_SECONDS


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the probe ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """The probe's decision for one partition of one resource."""

    skip: bool
    reason: str
    events_read: int = 0


def iter_events(lake: Lake, day: dt.date, gte: int, lt: int) -> Iterable[dict[str, Any]]:
    """Events of the day partition with `gte <= created < lt`, from the files overlapping it."""
    part = RawPartition(lake, EVENTS, day)
    for raw in part.files():
        if raw.lt <= gte or raw.gte >= lt:
            continue
        with lake.open_input(raw.path, compression="zstd") as stream:
            data = stream.read()
        for line in data.split(b"\n"):
            if line:
                event = json.loads(line)
                if gte <= int(event.get("created", 0)) < lt:
                    yield event


def event_object(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def asking_coverage(lake: Lake, day: dt.date, types: Iterable[str]) -> list[tuple[int, int]]:
    """The windows of the day the events on the lake cover for all of `types`: those of files
    that asked them (`event_types` in the sidecar). A resource added to `STRIPE_AEP_RESOURCES`
    later is not covered by the events fetched before, which never asked its types."""
    part = RawPartition(lake, EVENTS, day)
    wanted = set(types)
    windows = []
    for raw in part.files():
        if raw.refresh is not None:
            continue
        try:
            asked = part.read_meta(raw).get("event_types")
        except Exception:  # noqa: BLE001 - a damaged sidecar: not trusted (the listing runs)
            continue
        if wanted <= (UNRECORDED_EVENT_TYPES if asked is None else set(asked)):
            windows.append((raw.gte, raw.lt))
    return merge_intervals(windows)


def probe(lake: Lake, resource: str, day: dt.date, now: float, lag: int) -> Probe:
    """May today's listing of `resource` be skipped? (see the module docstring)."""
    declared = stripe_resource(resource)
    kind = declared.object_name
    if not declared.has_events:
        return Probe(False, f"{resource} have no events: always listed")
    until = int(now) - lag
    gaps = RawPartition(lake, resource, day).gaps(until)
    if not gaps:
        return Probe(False, "nothing left to list")
    covered = asking_coverage(lake, day, declared.creation_types)
    start, end = gaps[0][0], gaps[-1][1]
    run = next(((a, b) for a, b in covered if a <= start < b), None)
    if run is None:
        return Probe(
            False,
            f"the events on the lake that asked the {kind} creation types do not cover "
            f"{_iso(start)} (the raw gap's start)",
        )
    events_end = run[1]
    if events_end < end - PROBE_EVENTS_SLACK_SECONDS:
        return Probe(
            False,
            f"the events on the lake end at {_iso(events_end)}, before the raw gap's end "
            f"{_iso(end)}",
        )
    seen = 0
    for event in iter_events(lake, day, start, events_end):
        seen += 1
        obj = event_object(event)
        if (
            event.get("type") in declared.creation_types
            and obj.get("object") == kind
            and int(obj.get("created", 0)) >= start
        ):
            return Probe(
                False,
                f"event {event.get('id')} ({event.get('type')}) shows {kind} {obj.get('id')} "
                f"created at {_iso(int(obj['created']))}, inside the raw gap",
                seen,
            )
    return Probe(
        True,
        f"the events of [{_iso(start)}, {_iso(events_end)}) ({seen} read) show no {kind} created "
        f"since the raw cursor {_iso(start)}",
        seen,
    )


# -- the 30-day edge ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hole:
    """A window `[gte, lt)` of event time the lake's events do not cover."""

    gte: int
    lt: int

    def describe(self) -> str:
        return f"[{_iso(self.gte)}, {_iso(self.lt)})"


@dataclass
class CoverageReport:
    """Where the events on the lake fall short of what the listing snapshots rely upon."""

    #: The oldest listing `fetched_at` still relied upon (None: no listing on the lake yet).
    needed_from: int | None
    until: int
    #: Holes older than the retention: the changes in them can no longer be fetched.
    lost: list[Hole] = field(default_factory=list)
    #: Holes Stripe still serves: running `stripe/events` for their days fills them.
    fetchable: list[Hole] = field(default_factory=list)

    def warning(self) -> str:
        parts = []
        if self.lost:
            parts.append(
                "events LOST (older than Stripe's 30-day retention, never fetched): "
                + ", ".join(h.describe() for h in self.lost)
                + "; listing snapshots fetched before a lost window's end no longer show "
                "Stripe's current state: the sensor stripe_aep_events_edge re-reads their "
                "partitions (switch it on in Automation, or run the affected stripe/<resource> "
                "partitions with `reread: true`)"
            )
        if self.fetchable:
            days = sorted({d for h in self.fetchable for d in days_of(h.gte, h.lt)})
            parts.append(
                "events not fetched yet (still within the retention): "
                + ", ".join(h.describe() for h in self.fetchable)
                + f"; run stripe/events for {days[0]}..{days[-1]} before "
                + _iso(min(h.gte for h in self.fetchable) + EVENTS_RETENTION_SECONDS)
                + " or they are lost"
            )
        return " | ".join(parts)


def days_of(gte: int, lt: int) -> list[str]:
    if lt <= gte:
        return []
    first, last = day_of(gte), day_of(lt - 1)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def listing_fetch_times(lake: Lake, resource: str) -> Iterator[tuple[str, int]]:
    """(day, `fetched_at`) of every live listing file of `resource`, day by day (`lt` for files
    written before `fetched_at` was recorded, and for a damaged sidecar: a lower bound)."""
    prefix = f"stripe/{resource}"
    days = {
        f.path[len(prefix) + 1 :].split("/", 1)[0]
        for f in lake.list_files(prefix, suffix=".meta.json", recursive=True)
    }
    for day in sorted(days):
        try:
            part = RawPartition(lake, resource, dt.date.fromisoformat(day))
        except ValueError:
            continue
        for raw in part.files():
            try:
                meta = part.read_meta(raw)
            except Exception:  # noqa: BLE001 - a damaged sidecar: its lt is the bound
                meta = {}
            yield day, fetched_at(raw, meta)


def oldest_listing_fetch(lake: Lake, resources: Sequence[str]) -> int | None:
    """The oldest `fetched_at` among the live listing files of those of `resources` that have
    events (`lt` for old files).

    A scan of every sidecar: done once per lake, then remembered (`COVERAGE_STATE_PATH`), since a
    listing written later is always fetched later."""
    times = [
        t for resource in with_events(resources) for _, t in listing_fetch_times(lake, resource)
    ]
    return min(times) if times else None


def events_coverage(lake: Lake, gte: int, lt: int) -> list[tuple[int, int]]:
    """The events coverage within [gte, lt), from the day partitions it spans."""
    out: list[tuple[int, int]] = []
    for day in days_of(gte, lt):
        out.extend(RawPartition(lake, EVENTS, dt.date.fromisoformat(day)).coverage())
    return [(max(a, gte), min(b, lt)) for a, b in merge_intervals(out) if b > gte and a < lt]


def scan_coverage(
    lake: Lake, now: float, lag: int, resources: Sequence[str] = RESOURCE_NAMES
) -> CoverageReport:
    """Holes in the events coverage from the oldest relied-upon listing fetch (of the listings of
    `resources`, the deployment's selection) to now − lag.

    Cost: the first scan reads every listing sidecar once (see `oldest_listing_fetch`); later
    scans list only the events day folders from the point already known to be final (older than
    the retention and recorded) to today, at most about 31 folders."""
    until = int(now) - lag
    state = lake.read_json(COVERAGE_STATE_PATH) if lake.exists(COVERAGE_STATE_PATH) else {}
    needed_from = state.get("needed_from")
    if needed_from is None:
        needed_from = oldest_listing_fetch(lake, resources)
        if needed_from is None:
            return CoverageReport(None, until)
        state["needed_from"] = int(needed_from)
    floor = oldest_fetchable(now)
    # Holes that ended before `final_through` were found and recorded by an earlier scan.
    start = max(int(needed_from), int(state.get("final_through", needed_from)))
    report = CoverageReport(int(needed_from), until)
    if start >= until:
        return report
    covered = events_coverage(lake, start, until)
    final_through = start
    for a, b in subtract(start, until, covered):
        if a < floor:
            report.lost.append(Hole(a, min(b, floor)))
        # The newest part not fetched yet is the normal state between two ticks (and the next
        # day's first minutes at a close-out): a hole only once it is older than a day.
        if b > floor and not (b == until and a > until - TAIL_GRACE_SECONDS):
            report.fetchable.append(Hole(max(a, floor), b))
    # Everything before the floor is final now (it can no longer be fetched): it is recorded in
    # `LostWindows` first, then later scans start there instead of re-deriving it.
    LostWindows(lake, resources).record(report.lost, now)
    state["final_through"] = max(final_through, min(floor, until))
    lake.write_json(COVERAGE_STATE_PATH, state)
    return report


@dataclass
class LostWindow:
    gte: int
    lt: int
    found_at: int
    #: "open" until the sensor launched the re-reads, then "reread_launched".
    status: str = "open"
    #: resource → partition days whose listing files were fetched before the window's end.
    partitions: dict[str, list[str]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Stable while an open window grows (its end moves, never its start)."""
        return str(self.gte)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gte": self.gte,
            "lt": self.lt,
            "window": Hole(self.gte, self.lt).describe(),
            "found_at": self.found_at,
            "status": self.status,
            "partitions": self.partitions,
            "runs": self.runs,
        }


class LostWindows:
    """The marker on the lake that names every lost events window and what was done about it,
    with the partitions of `resources` (the deployment's selection) to re-read."""

    def __init__(self, lake: Lake, resources: Sequence[str] = RESOURCE_NAMES) -> None:
        self.lake = lake
        self.resources = tuple(resources)

    def load(self) -> list[LostWindow]:
        if not self.lake.exists(LOST_WINDOWS_PATH):
            return []
        data = self.lake.read_json(LOST_WINDOWS_PATH)
        return [
            LostWindow(
                int(w["gte"]),
                int(w["lt"]),
                int(w["found_at"]),
                str(w.get("status", "open")),
                {k: list(v) for k, v in (w.get("partitions") or {}).items()},
                list(w.get("runs") or []),
            )
            for w in data.get("windows", [])
        ]

    def save(self, windows: Sequence[LostWindow]) -> None:
        self.lake.write_json(LOST_WINDOWS_PATH, {"windows": [w.as_dict() for w in windows]})

    def record(self, holes: Sequence[Hole], now: float) -> list[LostWindow]:
        """Add the holes not recorded yet (with their affected partitions); returns the new ones."""
        windows = self.load()
        known = {w.key for w in windows}
        new = []
        changed = False
        for hole in holes:
            w = LostWindow(hole.gte, hole.lt, int(now))
            if w.key in known:
                same = next(o for o in windows if o.key == w.key)
                if hole.lt > same.lt and same.status == "open":
                    same.lt = hole.lt
                    same.partitions = affected_partitions(self.lake, same.lt, self.resources)
                    changed = True
                continue
            # A hole left unfetched loses a little more each scan: extend the open window it
            # continues instead of recording a new one every tick.
            previous = next((o for o in windows if o.status == "open" and o.lt == hole.gte), None)
            if previous is not None:
                previous.lt = hole.lt
                previous.partitions = affected_partitions(self.lake, previous.lt, self.resources)
                changed = True
                continue
            w.partitions = affected_partitions(self.lake, hole.lt, self.resources)
            windows.append(w)
            new.append(w)
        if new or changed:
            self.save(windows)
        return new

    def add_runs(self, key: str, runs: Sequence[str]) -> None:
        """Record re-read runs launched for a window that still has more to launch."""
        windows = self.load()
        for w in windows:
            if w.key == key:
                w.runs = sorted(set(w.runs) | set(runs))
        self.save(windows)

    def mark_launched(self, key: str, runs: Sequence[str]) -> None:
        windows = self.load()
        for w in windows:
            if w.key == key:
                w.status = "reread_launched"
                w.runs = sorted(set(w.runs) | set(runs))
        self.save(windows)


def affected_partitions(
    lake: Lake, before: int, resources: Sequence[str] = RESOURCE_NAMES
) -> dict[str, list[str]]:
    """Per resource of `resources` with events, the days whose live listing files were fetched
    before `before`: their snapshots may predate a change the lost window held."""
    out: dict[str, list[str]] = {}
    for resource in with_events(resources):
        hit = sorted({day for day, t in listing_fetch_times(lake, resource) if t < before})
        if hit:
            out[resource] = hit
    return out


__all__ = [
    "COVERAGE_STATE_PATH",
    "EVENTS_RETENTION_SECONDS",
    "LOST_WINDOWS_PATH",
    "CoverageReport",
    "Hole",
    "LostWindow",
    "LostWindows",
    "Probe",
    "affected_partitions",
    "asking_coverage",
    "day_bounds",
    "oldest_fetchable",
    "probe",
    "scan_coverage",
    "with_events",
]
