"""Versions of changed Stripe objects: derived from raw events, and from re-reads where no event exists.

Why: the listing layer (`stripe/<resource>/<day>`) holds each object once, as it was when its
`created` window was listed. Stripe objects change after that (charges are captured, refunded,
disputed; subscriptions move through their statuses; customers are edited and deleted; prices are
deactivated; balance transactions become available), and an AEP fed only by listings keeps the first
snapshot forever. This module turns what the pipeline observes later into *versions*: lines in the
`changes` layer (`changes/<resource>/<day>/…`, laid out exactly like a raw partition), each the object
as the pinned `STRIPE_API_VERSION` renders it plus one key, `_change` (time, event id and type,
source, deleted flag). The latest state of an object is its row with the greatest version time
(`fetched_at` for a listing row, `_change.time` for a version); this module never emits a version whose
time is not greater than every earlier row of the same object, so there are no ties.

How a version is derived from events (docs/change-capture.md, "How versions are derived", states
the same rules for operators):

- The events of one events window (a file window of `stripe/events/<day>`) not yet derived for a
  resource are read; only those whose `data.object.object` is the resource's object name count.
  One changes file is written per events window derived, even an empty one: the covered windows of
  `changes/<resource>/<day>` *are* the events windows already derived, so a re-run derives nothing
  twice and a crash leaves nothing half done (the file is written atomically, last).
- Per object, the newest event decides. Order: `created`, then the type rank (creation types <
  other types < deletion types), then the event id. The types per resource are the catalog's
  (stripe_aep/catalog.py: `creation_types`, `deletion_types`, `subject_events`). Creation types
  (`*.created`, and `charge.succeeded|failed|pending` in the object's own creation second) never
  make a version: the listing brings new objects.
- When the newest event is one of the resource's deletion types (`customer.deleted`,
  `invoice.deleted`, …), the version is a tombstone: the event's payload (the object's
  last state) with `_change.deleted: true`. Deleted objects cannot be re-fetched.
- Otherwise the payload serves only if the event was rendered at the pinned API version and no
  other event about the object shares its second (Stripe's `created` has one-second resolution and
  the order of two events within a second is not documented: trusting either payload could keep the
  older state). Else the object is re-fetched (`GET /v1/<resource>/<id>`, same client and budgets);
  a re-fetch answering 404 or the deleted stub makes a tombstone of the payload.
- No version when the object's created window is not listed yet (the coming listing subsumes the
  event), when the event is not newer than the listing's `fetched_at` (the listing already saw it),
  when it is not newer than a version already emitted (out-of-order arrival: the newer state is
  known), or when the values the XDM mapping reads (`mapping_for(resource).inputs()`) are unchanged
  since the latest known version (`unchanged`): ExperienceEvent datasets then get no row for a
  change nobody could see.

Balance transactions have no events: their `status` moves from `pending` to `available` at
`available_on`. The state store keeps the pending ones per created day (from each listing file, indexed
once), so a run finds those due without decompressing anything; it re-lists only the narrowest
`created` windows holding them (one list call per cluster, none when nothing is due) and writes a
version (`balance_transaction.available`, time = `available_on`) for each that is now available.

The `reread` mode (the 30-day edge: events older than Stripe's 30 days are gone) lists whole days
again and writes a version (time = the fetch time) for every known object whose mapped state differs
from its latest known version, and a tombstone for every known object no longer listed (deleted
customers and prices vanish from lists).

The state store (per resource, `_state/changes/<resource>/…`), and why it looks like this:
- `versions/<created day>.json`: per object with versions, the latest version's time, the hash of its
  mapped input values, its deleted flag and the changes file holding it. Keyed by the object's
  *created* day, because that is what every writer can compute (an event carries the object and so
  its `created`), and locked per created day with the partition locks
  (`hold_partitions(lake, "state", resource, days)`): two runs of different partitions that touch
  the same object serialize on its created day, runs that touch different days do not wait.
  A run holds `state/<resource>/<its own days>` from before its listing to the end of its derivation,
  so a derivation never judges an object's window "not listed yet" while a listing of it is running.
  Every other day it takes in one sorted batch; as an event is never older than its object, those
  days are older than the run's own, so waits always point to older days and cannot form a cycle.
  A derivation that cannot get a day within `DERIVE_LOCK_WAIT_SECONDS` leaves the events window for
  the next run (its coverage does not advance): versions are delayed, never lost.
- `listing/<created day>.json`: per live listing file (stem, size, `fetched_at`), the hash of each
  object's mapped inputs, and for balance transactions the pending ones. Indexed once per file (one
  decompression of it, when first needed) and reused; a file that changed (merged, refreshed, set
  aside) is indexed again.
- `folded/<changes day>.json`: the changes files already folded into `versions/`. Each changes file
  is written first and folded second; folding is idempotent (latest time wins), so a crash between
  the two is healed by the next run of that day, and deleting `_state/changes/<resource>` entirely
  is healed by a rebuild from the changes layer (`rebuild_state`, run automatically when the store
  is missing). Everything in the store is derived from files on the lake.
- `pending.json` (balance transactions): per created day, the transactions still pending with
  their `created` and `available_on`, and the listing files it was built from.

No Dagster here: the raw assets call `ChangeDeriver` (stripe_aep/assets/raw.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from stripe_aep.catalog import STRIPE_RESOURCES, by_object_name, deletion_types, stripe_resource
from stripe_aep.lake import Lake
from stripe_aep.locks import PartitionLockTimeout, hold_partitions, lock_wait_seconds
from stripe_aep.stripe.client import StripeClient, StripeError
from stripe_aep.stripe.extract import encode
from stripe_aep.stripe.rawstore import (
    RawFile,
    RawPartition,
    day_bounds,
    day_of,
    fetched_at,
    merge_intervals,
    read_objects,
    subtract,
)

log = logging.getLogger(__name__)

CHANGE_KEY = "_change"
STATE_ROOT = "_state/changes"
STATE_LAYER = "state"
#: Events whose object no longer exists afterwards: their payload is the tombstone.
_DELETION_TYPES = deletion_types()
#: Creation type -> the object it announces (a type announces one resource's objects only:
#: `charge.dispute.created` creates a dispute, and is a subject event of the charge it names).
_CREATED_OBJECT = {t: r.object_name for r in STRIPE_RESOURCES for t in r.creation_types}
BT_AVAILABLE = "balance_transaction.available"
REREAD = "reread"
#: How long a derivation waits for the state of a created day another run holds (a listing of
#: that day, say) before it leaves the events window for the next run. Short: the fresh tick
#: should not stall behind a long backfill.
DERIVE_LOCK_WAIT_SECONDS = 30.0
#: Pending balance transactions whose `created` are closer than this are re-read with one list
#: call (one window); farther apart they get a window each. One list page holds 100 objects, so
#: merging two clusters pays only when the seconds between them hold few other transactions.
BT_CLUSTER_GAP_SECONDS = 3600
#: Re-fetches in flight at once (the client's budgets still pace them).
REFETCH_CONCURRENCY = 4


# -- ordering and hashing ------------------------------------------------------------------------


def type_rank(event_type: str, object_name: str | None = None) -> int:
    """Creation types < other types < deletions: the tie-break of events in one second.

    `object_name`: the object the events are ordered for; a creation type of another object
    (`charge.dispute.created` among a charge's events) ranks as a change of it."""
    if event_type in _DELETION_TYPES:
        return 2
    created = _CREATED_OBJECT.get(event_type)
    if created is not None and object_name in (None, created):
        return 0
    return 1


def event_order(event: dict[str, Any], object_name: str | None = None) -> tuple[int, int, str]:
    """The order of events about one object: `created`, then the type rank, then the event id."""
    rank = type_rank(str(event.get("type", "")), object_name)
    return (int(event["created"]), rank, str(event.get("id", "")))


def is_creation(event: dict[str, Any], object_name: str | None = None) -> bool:
    """Whether the event only announces a new object (the listing brings it; no version).

    One of its resource's `creation_types` (stripe_aep/catalog.py) about that very object (with
    `object_name`, an object of that kind: a dispute's creation changes the charge it names). A
    `*.created` type only ever announces; another creation type (a charge's outcome:
    `charge.succeeded` is also sent when an ACH charge settles days later) announces only in the
    object's own creation second."""
    kind = str(event.get("type", ""))
    created = _CREATED_OBJECT.get(kind)
    if created is None or object_name not in (None, created):
        return False
    if kind.endswith(".created"):
        return True
    return event_object(event).get("created") == event.get("created")


def event_object(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def subject_id(event: dict[str, Any], object_name: str) -> str | None:
    """The id of the object of `object_name` that `event` is about (None: another object's).

    Its own events, and the events about another object that change it (`subject_events` in
    stripe_aep/catalog.py): `charge.dispute.created` carries the dispute, whose `charge` names the
    charge whose `disputed` flipped."""
    obj = event_object(event)
    if obj.get("object") == object_name:
        return obj.get("id") if isinstance(obj.get("id"), str) else None
    declared = by_object_name(object_name)
    field_name = declared.subject_events.get(str(event.get("type"))) if declared else None
    if field_name is None:
        return None
    subject = obj.get(field_name)
    subject = subject.get("id") if isinstance(subject, dict) else subject
    return subject if isinstance(subject, str) else None


def at_pinned_version(
    obj: dict[str, Any], object_name: str, rendered_at: str | None, pinned: str | None
) -> dict[str, Any]:
    """A payload that cannot be re-fetched (a deleted object), as close to the pinned version as
    the vendored shapes allow: fields that arrived after the pinned version are dropped when the
    event was rendered at a newer one. Fields an older rendering lacks cannot be invented."""
    from stripe_aep.specs.stripe import fields_newer_than, version_key

    if not rendered_at or not pinned or rendered_at == pinned:
        return obj
    try:
        if version_key(rendered_at) <= version_key(pinned):
            return obj
        newer = fields_newer_than(object_name, pinned)
    except (ValueError, KeyError):
        return obj  # a version or object the vendored shapes do not describe: keep it whole
    return {k: v for k, v in obj.items() if k not in newer}


def _values_at(value: Any, parts: Sequence[str]) -> Any:
    """The value at a mapping input path (`a.b`, `items.data[].price`): lists map element-wise."""
    if not parts:
        # An expandable is an id or the expanded object: the mapping reads the id either way.
        if isinstance(value, dict) and "id" in value and "object" in value:
            return value["id"]
        return value
    head, rest = parts[0], parts[1:]
    is_list = head.endswith("[]")
    name = head[:-2] if is_list else head
    if not isinstance(value, dict):
        return None
    inner = value.get(name)
    if is_list:
        if not isinstance(inner, list):
            return None
        return [_values_at(item, rest) for item in inner]
    return _values_at(inner, rest)


def input_paths(resource: str) -> tuple[str, ...]:
    """The Stripe paths the resource's XDM mapping reads (what a version must change to count)."""
    from stripe_aep.xdm.resources import mapping_for

    return tuple(sorted({i.path for i in mapping_for(resource).inputs()}))


def mapped_hash(obj: dict[str, Any], paths: Sequence[str]) -> str:
    """A short hash of the values at `paths` (canonical JSON): equal hashes, equal XDM rows."""
    values = [_values_at(obj, p.split(".")) for p in paths]
    canon = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()[:20]


def change_line(obj: dict[str, Any], change: dict[str, Any]) -> bytes:
    """One version: the object as Stripe sent it plus `_change` (a prior `_change` is replaced)."""
    body = {k: v for k, v in obj.items() if k != CHANGE_KEY}
    body[CHANGE_KEY] = change
    return encode(body)


def change_info(
    time_: int, event_id: str | None, event_type: str, source: str, deleted: bool
) -> dict[str, Any]:
    return {
        "time": int(time_),
        "event_id": event_id,
        "event_type": event_type,
        "source": source,
        "deleted": bool(deleted),
    }


# -- results -------------------------------------------------------------------------------------


@dataclass
class DayFigures:
    """What derivation did for one day partition (the raw asset's metadata for that day)."""

    versions: int = 0
    tombstones: int = 0
    subsumed: int = 0
    unchanged: int = 0
    refetched: int = 0
    events_derived: int = 0
    deferred_windows: int = 0
    bt_reread_requests: int = 0
    bt_became_available: int = 0
    reread_requests: int = 0
    files: list[str] = field(default_factory=list)

    def metadata(self, resource: str) -> dict[str, int]:
        out = {
            "versions": self.versions,
            "tombstones": self.tombstones,
            "subsumed": self.subsumed,
            "unchanged": self.unchanged,
            "refetched": self.refetched,
            "events_derived": self.events_derived,
        }
        if resource == "balance_transactions":
            out["bt_reread_requests"] = self.bt_reread_requests
            out["bt_became_available"] = self.bt_became_available
        if self.deferred_windows:
            out["events_windows_deferred"] = self.deferred_windows
        if self.reread_requests:
            out["reread_requests"] = self.reread_requests
        return out


@dataclass
class _Known:
    """The latest known row of an object: its version time, mapped hash, deleted flag, and where
    it is (a changes file `<day>/<stem>`, or None for the listing snapshot)."""

    time: int
    hash: str | None
    deleted: bool
    where: str | None


# -- the state store -----------------------------------------------------------------------------


class StateStore:
    """Per-resource state of versions (see the module docstring). Callers hold the locks."""

    def __init__(self, lake: Lake, resource: str) -> None:
        self.lake = lake
        self.resource = resource
        self.root = f"{STATE_ROOT}/{resource}"
        self._paths: tuple[str, ...] | None = None
        self._versions: dict[dt.date, dict[str, list]] = {}
        self._dirty: set[dt.date] = set()
        self._listing: dict[dt.date, dict[str, Any]] = {}

    @property
    def paths(self) -> tuple[str, ...]:
        if self._paths is None:
            self._paths = input_paths(self.resource)
        return self._paths

    def hash(self, obj: dict[str, Any]) -> str:
        return mapped_hash(obj, self.paths)

    # versions -----------------------------------------------------------------------------

    def forget(self, keep: Iterable[dt.date] = ()) -> None:
        """Drop what was read of days other than `keep`: once their locks were released (or
        before they are taken) another run may have changed them."""
        kept = set(keep)
        for cache in (self._versions, self._listing):
            for day in [d for d in cache if d not in kept]:
                del cache[day]
        self._dirty &= kept

    def versions(self, day: dt.date) -> dict[str, list]:
        if day not in self._versions:
            path = f"{self.root}/versions/{day.isoformat()}.json"
            data = self.lake.read_json(path) if self.lake.exists(path) else {}
            self._versions[day] = dict(data.get("objects", {}))
        return self._versions[day]

    def fold(self, obj: dict[str, Any], where: str) -> bool:
        """Record a version (idempotent: the latest time wins). True if it is now the latest."""
        change = obj[CHANGE_KEY]
        day = day_of(int(obj["created"]))
        objects = self.versions(day)
        current = objects.get(obj["id"])
        if current is not None and int(current[0]) >= int(change["time"]):
            return False
        objects[obj["id"]] = [int(change["time"]), self.hash(obj), bool(change["deleted"]), where]
        self._dirty.add(day)
        return True

    def save(self) -> None:
        for day in sorted(self._dirty):
            self.lake.write_json(
                f"{self.root}/versions/{day.isoformat()}.json",
                {"resource": self.resource, "objects": self._versions[day]},
            )
        self._dirty.clear()

    def folded(self, changes_day: dt.date) -> set[str]:
        path = f"{self.root}/folded/{changes_day.isoformat()}.json"
        return set(self.lake.read_json(path).get("stems", [])) if self.lake.exists(path) else set()

    def mark_folded(self, changes_day: dt.date, stems: Iterable[str]) -> None:
        done = self.folded(changes_day) | set(stems)
        self.lake.write_json(
            f"{self.root}/folded/{changes_day.isoformat()}.json", {"stems": sorted(done)}
        )

    def built(self) -> bool:
        return self.lake.exists(f"{self.root}/built.json")

    def mark_built(self) -> None:
        self.lake.write_json(f"{self.root}/built.json", {"built_at": int(time.time())})

    # the listing index -------------------------------------------------------------------

    def listing(self, day: dt.date) -> dict[str, Any]:
        """The index of a created day's live listing files, brought up to date (each new or
        changed file is decompressed once; unchanged files are not read at all)."""
        if day in self._listing:
            return self._listing[day]
        path = f"{self.root}/listing/{day.isoformat()}.json"
        index = self.lake.read_json(path) if self.lake.exists(path) else {"files": {}}
        part = RawPartition(self.lake, self.resource, day)
        live = part.files()
        files: dict[str, Any] = {}
        changed = False
        for raw in live:
            entry = index["files"].get(raw.stem)
            size = self.lake.size(raw.path)
            if entry is None or entry.get("bytes") != size:
                entry = self._index_file(part, raw, size)
                changed = True
            files[raw.stem] = entry
        if set(files) != set(index["files"]):
            changed = True
        index = {"resource": self.resource, "files": files}
        if changed:
            self.lake.write_json(path, index)
        self._listing[day] = index
        return index

    def _index_file(self, part: RawPartition, raw: RawFile, size: int | None) -> dict[str, Any]:
        meta = part.read_meta(raw)
        objects: dict[str, str] = {}
        pending: dict[str, list[int]] = {}
        for obj in read_objects(self.lake, raw):
            objects[obj["id"]] = self.hash(obj)
            if self.resource == "balance_transactions" and obj.get("status") == "pending":
                pending[obj["id"]] = [int(obj["created"]), int(obj.get("available_on") or 0)]
        entry = {
            "bytes": size,
            "gte": raw.gte,
            "lt": raw.lt,
            "refresh": raw.refresh,
            "fetched_at": fetched_at(raw, meta),
            "objects": objects,
        }
        if self.resource == "balance_transactions":
            entry["pending"] = pending
        return entry

    def listed(self, obj_id: str, created: int) -> tuple[bool, _Known | None]:
        """(whether the object's created second is listed, its listing row if any).

        A covered window whose files do not hold the object gives a row with no hash at the
        window's fetch time: the listing looked and did not see it then."""
        day = day_of(created)
        part = RawPartition(self.lake, self.resource, day)
        if not any(a <= created < b for a, b in part.coverage()):
            return False, None
        index = self.listing(day)
        window_time = None
        for entry in index["files"].values():
            if obj_id in entry["objects"]:
                return True, _Known(int(entry["fetched_at"]), entry["objects"][obj_id], False, None)
            if entry.get("refresh") is None and entry["gte"] <= created < entry["lt"]:
                window_time = int(entry["fetched_at"])
        return True, _Known(window_time or 0, None, False, None)

    def latest(self, obj_id: str, created: int) -> tuple[bool, _Known | None]:
        """(listed?, the latest known row): a version if any, else the listing row."""
        current = self.versions(day_of(created)).get(obj_id)
        if current is not None:
            return True, _Known(int(current[0]), current[1], bool(current[2]), current[3])
        return self.listed(obj_id, created)


# -- the deriver ---------------------------------------------------------------------------------


class ChangeDeriver:
    """Derives and writes the versions of one resource for some day partitions.

    `held_days`: the days whose `state/<resource>/<day>` locks the caller already holds (the run's
    own partitions); other created days are locked here, in one sorted batch.
    """

    def __init__(
        self,
        client: StripeClient | None,
        lake: Lake,
        resource: str,
        *,
        run_id: str,
        start_date: dt.date,
        held_days: Iterable[dt.date] = (),
        clock: Callable[[], float] = time.time,
        lock_wait: float | None = None,
        visibility_lag_seconds: int = 0,
        account: Callable[[], str | None] | None = None,
    ) -> None:
        self.declared = stripe_resource(resource)  # a clear error for an unknown resource
        self.client = client
        self.lake = lake
        self.resource = resource
        self.object_name = self.declared.object_name
        self.run_id = run_id
        self.start_date = start_date
        self.held = set(held_days)
        self.clock = clock
        self.lag = visibility_lag_seconds
        self.lock_wait = (
            min(lock_wait_seconds(), DERIVE_LOCK_WAIT_SECONDS) if lock_wait is None else lock_wait
        )
        self.state = StateStore(lake, resource)
        self.api_version = client.settings.api_version if client is not None else None
        # The account (and mode) the versions belong to, recorded beside them as the listing files
        # record theirs: the XDM rows carry it (`_{TENANT}.stripe.account`). Looked up only when a
        # file holds versions (the lookup is cached on the lake, so it costs one request ever).
        self.account = account
        self._disputed: dict[str, dict[str, Any] | None] = {}
        self.livemode = client.settings.livemode if client is not None else None

    # locks ------------------------------------------------------------------------------

    @contextmanager
    def _hold_days(self, days: Iterable[dt.date], extra: Sequence[str] = ()) -> Iterator[None]:
        """Hold the state locks of `days` not held by the caller (and `extra` keys, e.g.
        "pending", after them)."""
        wanted = sorted(d for d in set(days) if d not in self.held)
        self.state.forget(keep=self.held)
        with ExitStack() as stack:
            if wanted:
                stack.enter_context(
                    hold_partitions(
                        self.lake,
                        STATE_LAYER,
                        self.resource,
                        wanted,
                        run_id=self.run_id,
                        log=log,
                        wait_seconds=self.lock_wait,
                    )
                )
            if extra:
                stack.enter_context(
                    hold_partitions(
                        self.lake,
                        STATE_LAYER,
                        self.resource,
                        list(extra),
                        run_id=self.run_id,
                        log=log,
                        wait_seconds=self.lock_wait,
                    )
                )
            try:
                yield
            finally:
                self.state.forget(keep=self.held)

    # the state's consistency with the lake ------------------------------------------------

    def _changes_files(self, day: dt.date) -> list[RawFile]:
        return RawPartition(self.lake, self.resource, day, layer="changes").files()

    def _fold_file(self, day: dt.date, raw: RawFile) -> None:
        for obj in read_objects(self.lake, raw):
            self.state.fold(obj, f"{day.isoformat()}/{raw.stem}")

    def ensure_state(self) -> None:
        """Rebuild the store from the changes layer if it is missing (deleted, or never built)."""
        if self.state.built():
            return
        days = [
            dt.date.fromisoformat(d)
            for d in self.lake.list_dirs(f"changes/{self.resource}")
            if _is_day(d)
        ]
        files = {day: self._changes_files(day) for day in days}
        created: set[dt.date] = set()
        for day, raws in files.items():
            for raw in raws:
                meta = RawPartition(self.lake, self.resource, day, layer="changes").read_meta(raw)
                created.update(dt.date.fromisoformat(c) for c in meta.get("created_days", []))
        with self._hold_days(created):
            for day, raws in files.items():
                for raw in raws:
                    self._fold_file(day, raw)
                self.state.save()
                self.state.mark_folded(day, [r.stem for r in raws])
            self.state.mark_built()

    # deriving from events -------------------------------------------------------------------

    def _events_in(self, events: list[RawFile], gte: int, lt: int) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for raw in events:
            if raw.refresh is not None or raw.lt <= gte or raw.gte >= lt:
                continue
            for event in read_objects(self.lake, raw):
                if not gte <= int(event["created"]) < lt:
                    continue
                if subject_id(event, self.object_name) is not None:
                    found[event["id"]] = event
        return sorted(found.values(), key=lambda e: event_order(e, self.object_name))

    def derive_events(self, day: dt.date, figures: DayFigures) -> None:
        """Derive every events window of `day` not derived yet (oldest first)."""
        self.ensure_state()
        # One listing of each folder: the events and the changes of the day.
        events_files = RawPartition(self.lake, "events", day).files()
        changes_files = self._changes_files(day)
        windows = _underived(events_files, changes_files)
        folded = self.state.folded(day)
        unfolded = [r for r in changes_files if r.stem not in folded]
        if not windows and not unfolded:
            return
        plan = [(gte, lt, self._events_in(events_files, gte, lt)) for gte, lt in windows]
        created = {day}
        for _, _, events in plan:
            created.update(
                day_of(int(event_object(e)["created"]))
                for e in events
                if isinstance(event_object(e).get("created"), int)
                and event_object(e).get("object") == self.object_name
            )
        # A subject event's payload (a dispute opened on a charge) does not say when the object it
        # changes was created: that object is re-fetched first, so that its created day is locked
        # with the others.
        self._disputed = self._fetch_disputed(plan, figures)
        created.update(day_of(int(c["created"])) for c in self._disputed.values() if c)
        changes = RawPartition(self.lake, self.resource, day, layer="changes")
        for raw in unfolded:
            created.update(
                dt.date.fromisoformat(c) for c in changes.read_meta(raw).get("created_days", [])
            )
        try:
            with self._hold_days(created):
                if unfolded:  # a crash between writing a changes file and folding it
                    for raw in unfolded:
                        self._fold_file(day, raw)
                    self.state.save()
                    self.state.mark_folded(day, [r.stem for r in unfolded])
                for gte, lt, events in plan:
                    self._derive_window(changes, gte, lt, events, figures)
        except PartitionLockTimeout as exc:
            figures.deferred_windows += len(plan)
            log.warning(
                "stripe/%s %s: %d events window(s) left for the next run: %s",
                self.resource,
                day,
                len(plan),
                exc,
            )

    def _derive_window(
        self,
        changes: RawPartition,
        gte: int,
        lt: int,
        events: list[dict[str, Any]],
        figures: DayFigures,
    ) -> None:
        by_object: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            subject = subject_id(event, self.object_name)
            if subject is not None:
                by_object.setdefault(subject, []).append(event)
        figures.events_derived += len(events)
        decided: list[tuple[dict[str, Any], dict[str, Any], _Known | None]] = []
        to_refetch: list[tuple[str, dict[str, Any], _Known | None]] = []
        for obj_id, group in sorted(by_object.items()):
            candidates = [e for e in group if not is_creation(e, self.object_name)]
            if not candidates:
                continue  # only creation events: the listing brings the object
            newest = max(candidates, key=lambda e: event_order(e, self.object_name))
            payload = event_object(newest)
            when = int(newest["created"])
            if payload.get("object") != self.object_name:  # a dispute opened on the charge
                charge = self._disputed.get(obj_id)
                if charge is None:  # gone (404): nothing to record
                    continue
                known = self._latest_or_subsumed(obj_id, int(charge["created"]), when)
                if known is _SUBSUMED:
                    figures.subsumed += 1
                    continue
                change = change_info(when, newest["id"], str(newest["type"]), "refetch", False)
                decided.append((charge, change, known))
                continue
            created = int(payload.get("created") or newest["created"])
            known = self._latest_or_subsumed(obj_id, created, when)
            if known is _SUBSUMED:
                figures.subsumed += 1
                continue
            kind = str(newest.get("type", ""))
            if kind in self.declared.deletion_types:
                change = change_info(when, newest["id"], kind, "event", True)
                decided.append((self._pinned(newest), change, known))
                continue
            same_second = sum(1 for e in group if int(e["created"]) == when) > 1
            if same_second or newest.get("api_version") != self.api_version:
                to_refetch.append((obj_id, newest, known))
                continue
            decided.append((payload, change_info(when, newest["id"], kind, "event", False), known))
        for obj, change, known in self._refetch(to_refetch, figures):
            decided.append((obj, change, known))
        lines: list[tuple[str, bytes, dict[str, Any]]] = []
        for obj, change, known in decided:
            if (
                not change["deleted"]
                and known is not None
                and known.hash is not None
                and not known.deleted
                and self.state.hash(obj) == known.hash
            ):
                figures.unchanged += 1
                continue
            if change["deleted"] and known is not None and known.deleted:
                figures.unchanged += 1
                continue
            version = {k: v for k, v in obj.items() if k != CHANGE_KEY}
            version[CHANGE_KEY] = change
            lines.append((obj["id"], change_line(obj, change), version))
        self._write(changes, gte, lt, lines, figures, source="events")

    def _pinned(self, event: dict[str, Any]) -> dict[str, Any]:
        return at_pinned_version(
            event_object(event), self.object_name, event.get("api_version"), self.api_version
        )

    def _latest_or_subsumed(self, obj_id: str, created: int, when: int) -> _Known | None | object:
        """The object's latest known row, or `_SUBSUMED` when the event makes no version (not
        listed yet, or not newer than the listing or a version already emitted)."""
        if day_of(created) < self.start_date:
            current = self.state.versions(day_of(created)).get(obj_id)
            known = (
                _Known(int(current[0]), current[1], bool(current[2]), current[3])
                if current
                else None
            )
            return _SUBSUMED if known is not None and when <= known.time else known
        listed, known = self.state.latest(obj_id, created)
        if not listed or known is None or when <= known.time:
            return _SUBSUMED
        return known

    def _fetch_disputed(
        self, plan: list[tuple[int, int, list[dict[str, Any]]]], figures: DayFigures
    ) -> dict[str, dict[str, Any] | None]:
        """The objects the subject events of `plan` are about (the charges `charge.dispute.created`
        names), re-fetched at the pinned version (None for one Stripe answers 404)."""
        wanted = sorted(
            {
                subject
                for _, _, events in plan
                for e in events
                if event_object(e).get("object") != self.object_name
                and (subject := subject_id(e, self.object_name)) is not None
            }
        )
        out: dict[str, dict[str, Any] | None] = {}
        for charge_id in wanted:
            if self.client is None:
                raise RuntimeError("re-fetching needs a Stripe client")
            try:
                out[charge_id] = self.client.retrieve(self.resource, charge_id)
            except StripeError as exc:
                if exc.status != 404:
                    raise
                out[charge_id] = None
        figures.refetched += len(wanted)
        return out

    def _refetch(
        self, wanted: list[tuple[str, dict[str, Any], _Known | None]], figures: DayFigures
    ) -> list[tuple[dict[str, Any], dict[str, Any], _Known | None]]:
        """Re-fetch objects at the pinned version (bounded concurrency; the client's budgets pace
        the requests). A 404 or a deleted stub makes a tombstone of the newest event's payload."""
        if not wanted:
            return []
        if self.client is None:
            raise RuntimeError("re-fetching needs a Stripe client")
        client = self.client

        def one(item: tuple[str, dict[str, Any], _Known | None]):
            obj_id, newest, known = item
            when, kind = int(newest["created"]), str(newest.get("type", ""))
            try:
                fetched = client.retrieve(self.resource, obj_id)
            except StripeError as exc:
                if exc.status != 404:
                    raise
                fetched = None
            if fetched is None or fetched.get("deleted") is True:
                payload = self._pinned(newest)
                return payload, change_info(when, newest["id"], kind, "refetch", True), known
            return fetched, change_info(when, newest["id"], kind, "refetch", False), known

        workers = max(1, min(REFETCH_CONCURRENCY, len(wanted)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, wanted))
        figures.refetched += len(wanted)
        return results

    def _write(
        self,
        part: RawPartition,
        gte: int,
        lt: int,
        lines: list[tuple[str, bytes, dict[str, Any]]],
        figures: DayFigures,
        *,
        source: str,
        refresh: int | None = None,
        extra_meta: dict[str, Any] | None = None,
    ) -> RawFile | None:
        """Write one changes file (always for an events window: it marks the window derived; a
        re-read writes only when it found something), then fold it into the state."""
        lines = sorted(lines, key=lambda item: item[0])
        if refresh is not None and not lines:
            return None
        created_days = sorted({day_of(int(v["created"])).isoformat() for _, _, v in lines})
        meta = {
            "source": source,
            "api_version": self.api_version,
            "versions": sum(1 for _, _, v in lines if not v[CHANGE_KEY]["deleted"]),
            "tombstones": sum(1 for _, _, v in lines if v[CHANGE_KEY]["deleted"]),
            "created_days": created_days,
            **(extra_meta or {}),
        }
        if lines:
            meta["account"] = self.account() if self.account is not None else None
            meta["livemode"] = self.livemode
        raw = part.write(gte, lt, [line for _, line, _ in lines], meta, refresh=refresh)
        for _, _, version in lines:
            self.state.fold(version, f"{part.day.isoformat()}/{raw.stem}")
        self.state.save()
        self.state.mark_folded(part.day, [raw.stem])
        figures.versions += meta["versions"]
        figures.tombstones += meta["tombstones"]
        figures.files.append(raw.path)
        return raw

    # balance transactions --------------------------------------------------------------------

    def _pending_path(self) -> str:
        return f"{self.state.root}/pending.json"

    def update_pending(self, days: Iterable[dt.date]) -> dict[str, Any]:
        """Bring the pending summary up to date for `days` (and, the first time, every listed day)
        from the listing index. Caller holds the "pending" lock."""
        path = self._pending_path()
        summary = self.lake.read_json(path) if self.lake.exists(path) else {"days": {}}
        changed = not summary.get("complete")
        todo = set(days)
        if not summary.get("complete"):
            todo.update(
                dt.date.fromisoformat(d)
                for d in self.lake.list_dirs(f"stripe/{self.resource}")
                if _is_day(d)
            )
        for day in sorted(todo):
            index = self.state.listing(day)
            stems = sorted(index["files"])
            entry = summary["days"].get(day.isoformat())
            if entry is not None and entry.get("stems") == stems:
                continue
            pending: dict[str, list[int]] = {}
            for file_entry in index["files"].values():
                pending.update(file_entry.get("pending", {}))
            # Those already seen available (a version exists) are no longer pending.
            versions = self.state.versions(day)
            pending = {k: v for k, v in pending.items() if k not in versions}
            summary["days"][day.isoformat()] = {"stems": stems, "pending": pending}
            changed = True
        summary["complete"] = True
        if changed:
            self.lake.write_json(path, summary)
        return summary

    def reread_balance_transactions(
        self, days: Sequence[dt.date], target: dt.date, figures: DayFigures
    ) -> None:
        """Find the pending balance transactions due (`available_on` passed) and re-list only the
        windows holding them; write a version for each now available into `target`'s changes."""
        if self.resource != "balance_transactions":
            raise ValueError("only balance transactions are re-read for pending → available")
        self.ensure_state()
        now = int(self.clock())
        # First the summary (its own lock, taken alone), then the created days of what is due.
        with self._hold_days((), extra=("pending",)):
            summary = self.update_pending(days)
        due: list[tuple[int, str, int]] = []
        for entries in summary["days"].values():
            for obj_id, (created, available_on) in entries["pending"].items():
                if available_on and available_on <= now:
                    due.append((created, obj_id, available_on))
        if not due:
            return
        created_days = {day_of(c) for c, _, _ in due}
        with self._hold_days(created_days | {target}, extra=("pending",)):
            # Read again under the locks: another run may have resolved some meanwhile.
            summary = self.lake.read_json(self._pending_path())
            due = [
                (c, i, a)
                for entries in summary["days"].values()
                for i, (c, a) in entries["pending"].items()
                if a and a <= now
            ]
            if not due:
                return
            clusters = bt_clusters(sorted(c for c, _, _ in due))
            client = self._need_client()
            before = client.stats.requests
            fetch_time = int(self.clock())
            listed: dict[str, dict[str, Any]] = {}
            for gte, lt in clusters:
                for obj in client.iter_window(self.resource, gte, lt):
                    listed[obj["id"]] = obj
            figures.bt_reread_requests += client.stats.requests - before
            lines = []
            resolved: set[str] = set()
            for created, obj_id, available_on in due:
                obj = listed.get(obj_id)
                if obj is None:
                    log.warning(
                        "balance transaction %s (created %s) was not listed again; dropped from the "
                        "pending summary",
                        obj_id,
                        created,
                    )
                    resolved.add(obj_id)
                    continue
                if obj.get("status") == "pending":
                    continue  # not available yet after all: looked at again next run
                resolved.add(obj_id)
                _, known = self.state.latest(obj_id, created)
                when = available_on
                if known is not None and when <= known.time:
                    when = max(known.time + 1, fetch_time)
                change = change_info(when, None, BT_AVAILABLE, REREAD, False)
                version = {k: v for k, v in obj.items() if k != CHANGE_KEY}
                version[CHANGE_KEY] = change
                lines.append((obj_id, change_line(obj, change), version))
            figures.bt_became_available += len(lines)
            part = RawPartition(self.lake, self.resource, target, layer="changes")
            self._write(
                part,
                part.start,
                part.end,
                lines,
                figures,
                source="balance_transactions_reread",
                refresh=self._stamp(part, fetch_time),
                extra_meta={"fetched_at": fetch_time, "windows": clusters},
            )
            for entries in summary["days"].values():
                for obj_id in resolved & set(entries["pending"]):
                    del entries["pending"][obj_id]
            self.lake.write_json(self._pending_path(), summary)

    def _stamp(self, part: RawPartition, stamp: int) -> int:
        """A refresh stamp no file of the partition uses yet."""
        used = {f.refresh for f in part.files() if f.refresh is not None}
        while stamp in used:
            stamp += 1
        return stamp

    def _need_client(self) -> StripeClient:
        if self.client is None:
            raise RuntimeError("re-reading needs a Stripe client")
        return self.client

    # the reread mode --------------------------------------------------------------------------

    def reread_days(self, days: Sequence[dt.date], figures: dict[str, DayFigures]) -> None:
        """List whole days again; a version for each known object whose mapped state changed, a
        tombstone for each known object no longer listed. The caller holds the days' locks."""
        self.ensure_state()
        client = self._need_client()
        for day in days:
            fig = figures.setdefault(day.isoformat(), DayFigures())
            part = RawPartition(self.lake, self.resource, day)
            fetch_time = int(self.clock())
            until = min(part.end, fetch_time - self.lag)
            before = client.stats.requests
            now_listed = (
                {o["id"]: o for o in client.iter_window(self.resource, part.start, until)}
                if until > part.start
                else {}
            )
            fig.reread_requests += client.stats.requests - before
            index = self.state.listing(day)
            known_ids: set[str] = set(self.state.versions(day))
            for entry in index["files"].values():
                known_ids.update(entry["objects"])
            lines = []
            for obj_id in sorted(known_ids):
                obj = now_listed.get(obj_id)
                created = int(obj["created"]) if obj else None
                latest = self._latest_row(day, obj_id)
                if latest is None:
                    continue
                when = fetch_time
                if latest.time >= fetch_time:
                    if latest.where is not None or latest.time > fetch_time:
                        continue  # a version as new as this read exists already
                    # A listing fetched earlier in the same second: this read came after it
                    # (the listing had finished), and version times never tie.
                    when = latest.time + 1
                if obj is not None:
                    if created is not None and created >= until:
                        continue
                    # A tombstone of an object still listed (a canceled subscription: status=all
                    # lists it) stays the latest row while the listed state equals its own.
                    if self.state.hash(obj) == latest.hash:
                        fig.unchanged += 1
                        continue
                    change = change_info(when, None, REREAD, REREAD, False)
                    version = {k: v for k, v in obj.items() if k != CHANGE_KEY}
                else:
                    if latest.deleted:
                        continue
                    last = self._last_state(day, obj_id, latest)
                    if last is None or int(last.get("created", 0)) >= until:
                        continue
                    change = change_info(when, None, REREAD, REREAD, True)
                    version = {k: v for k, v in last.items() if k != CHANGE_KEY}
                version[CHANGE_KEY] = change
                lines.append((obj_id, change_line(version, change), version))
            changes = RawPartition(self.lake, self.resource, day, layer="changes")
            self._write(
                changes,
                changes.start,
                changes.end,
                lines,
                fig,
                source=REREAD,
                refresh=self._stamp(changes, fetch_time),
                extra_meta={"fetched_at": fetch_time},
            )

    def _latest_row(self, day: dt.date, obj_id: str) -> _Known | None:
        current = self.state.versions(day).get(obj_id)
        if current is not None:
            return _Known(int(current[0]), current[1], bool(current[2]), current[3])
        for entry in self.state.listing(day)["files"].values():
            if obj_id in entry["objects"]:
                return _Known(int(entry["fetched_at"]), entry["objects"][obj_id], False, None)
        return None

    def _last_state(self, day: dt.date, obj_id: str, latest: _Known) -> dict[str, Any] | None:
        """The JSON of the latest known row (a changes line, or the listing line)."""
        if latest.where:
            changes_day, stem = latest.where.split("/", 1)
            part = RawPartition(
                self.lake, self.resource, dt.date.fromisoformat(changes_day), layer="changes"
            )
            for raw in part.files():
                if raw.stem == stem:
                    for obj in read_objects(self.lake, raw):
                        if obj["id"] == obj_id:
                            return obj
        for raw in RawPartition(self.lake, self.resource, day).files():
            for obj in read_objects(self.lake, raw):
                if obj["id"] == obj_id:
                    return obj
        return None


_SUBSUMED = object()


def _underived(events: list[RawFile], changes: list[RawFile]) -> list[tuple[int, int]]:
    """Windows of the events files (base files) not covered by base changes files."""
    derived = merge_intervals((f.gte, f.lt) for f in changes if f.refresh is None)
    out: list[tuple[int, int]] = []
    for a, b in merge_intervals((f.gte, f.lt) for f in events if f.refresh is None):
        out.extend(subtract(a, b, derived))
    return out


def bt_clusters(created: Sequence[int], gap: int = BT_CLUSTER_GAP_SECONDS) -> list[tuple[int, int]]:
    """The narrowest `[gte, lt)` windows holding sorted `created` seconds, one per cluster of
    seconds closer than `gap` (and never across a UTC day: listing windows are per day)."""
    clusters: list[list[int]] = []
    for c in sorted(created):
        if clusters and c - clusters[-1][1] < gap and day_of(c) == day_of(clusters[-1][0]):
            clusters[-1][1] = c
        else:
            clusters.append([c, c])
    return [(a, b + 1) for a, b in clusters]


def _is_day(name: str) -> bool:
    try:
        dt.date.fromisoformat(name)
    except ValueError:
        return False
    return True


__all__ = [
    "CHANGE_KEY",
    "ChangeDeriver",
    "DayFigures",
    "StateStore",
    "bt_clusters",
    "day_bounds",
    "event_order",
    "is_creation",
    "mapped_hash",
]
