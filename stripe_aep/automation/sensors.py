"""Sensors that let the pipeline heal itself: batches AEP left pending, days never delivered, failures.

Four sensors, all STOPPED by default (Dagster UI → Automation → switch on; or set
`STRIPE_AEP_SENSORS=running` in the code location's environment to start them RUNNING):

* `stripe_aep_batch_status` — reads the delivery ledger (`STRIPE_AEP_LEDGER_URL`, else
  `<STRIPE_AEP_DATA_DIR>/ledger/aep_batches.sqlite`),
  records every final or changed AEP batch status on its `aep/<resource>` partition as an
  `AssetObservation`, and requests a re-run of `aep/<resource>` for a day whose batch failed (its
  files were released and are undelivered) or is still pending/stalled long after its run ended.
* `stripe_aep_gaps` — finds days between `STRIPE_START_DATE` and today that were never delivered,
  whose last delivery failed, or whose raw/XDM folders vanished from the lake, and launches bounded
  range runs of every asset (the resources `STRIPE_AEP_RESOURCES` selects) for them, newest first.
* `stripe_aep_events_edge` — when the `stripe/events` asset found events lost past Stripe's 30-day
  retention (a marker on the lake, `_meta/stripe_events/lost_windows.json`), launches bounded range
  runs of `stripe/<resource>` (run config `reread: true`), `xdm/<resource>` and `aep/<resource>`
  over the partitions whose listings were fetched before the lost window's end, and records them
  in the marker so they are launched once.
* `stripe_aep_run_failure` — on a failed run, writes the failing step's own error (e.g. Stripe's
  "missing permission" with its request id) as an `AssetObservation` on every partition of the asset
  that step materializes, so the asset page shows why a partition is missing.

**Why the batch-status sensor does not call AEP.** A sensor tick runs inside the code server with a
60 s budget and should take a few seconds; an AEP call needs an IMS token exchange and then Catalog,
each subject to Adobe's rate limits and outages, which would turn an AEP hiccup into failing ticks.
Worse, writing a status into the ledger outside a delivery would race with a run watching the same
batch (the ledger's write-ahead protocol relies on the per-dataset delivery lock). The asset already
has the complete, tested recovery and watch logic (`deliver`: recover → send → watch under the lock),
so the sensor only reads the ledger — a local SQLite file, milliseconds — and lets a re-run of the
partition do the watching: one `GET /batches/{id}` per pending batch, made by the process that owns
the lock. The ledger is authoritative for what was sent; if it was rebuilt from AEP's Catalog tags
(docs/aep.md) its `adopted` events are reported like any other.

**Run keys and bounds.** Every request has a run key derived from state the next tick sees again, so
a re-evaluated tick never launches the same work twice; each sensor counts its own runs in flight
(tag `stripe_aep/sensor`) and requests at most `MAX_RUNS_IN_FLIGHT` minus that many.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from stripe_aep.aep.deliver import group_of
from stripe_aep.aep.ledger import (
    ACTIVE_STATES,
    LEDGER_RELATIVE_PATH,
    RELEASED_STATES,
    Attempt,
    AttemptState,
    BatchLedger,
    open_ledger,
)
from stripe_aep.automation.schedules import ALL_LAYERS
from stripe_aep.catalog import EVENTS, RESOURCE_NAMES
from stripe_aep.config import (
    ConfigError,
    data_dir_from_env,
    ledger_url_from_env,
    selected_resources,
)
from stripe_aep.lake import Lake
from stripe_aep.partitions import MAX_PARTITIONS_PER_RUN, daily_partitions
from stripe_aep.secrets import SecretMasker
from stripe_aep.stripe.events import LostWindow, LostWindows

#: Tag on every run a sensor of this module requests (the in-flight bound counts these).
SENSOR_TAG = "stripe_aep/sensor"
#: Tag naming the ledger attempt a batch-status re-run was requested for.
ATTEMPT_TAG = "stripe_aep/aep_attempt"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

BATCH_STATUS_SENSOR = "stripe_aep_batch_status"
GAPS_SENSOR = "stripe_aep_gaps"
RUN_FAILURE_SENSOR = "stripe_aep_run_failure"

#: Runs one sensor may have queued or running at once; a tick requests only the difference.
MAX_RUNS_IN_FLIGHT = 2
#: Ledger events read per tick (the cursor resumes after the last one).
EVENTS_PER_TICK = 500
#: A batch still pending this long after its last ledger step has outlived its run's watch
#: (`wait_timeout_seconds`, 600 s by default): a re-run resumes watching it.
PENDING_RECHECK_AFTER_S = 15 * 60
#: ... and is re-checked at most once per this interval while it stays pending or stalled.
PENDING_RECHECK_EVERY_S = 60 * 60
#: A day whose batches failed this many times is left to a human (the cause is not transient).
MAX_AUTOMATIC_RETRIES = 3
#: Failed batches older than this are history, not work (they were retried or given up on).
FAILED_LOOKBACK_S = 7 * 86400
#: A gap range whose last sensor run ended is retried after this long, not before.
GAP_RETRY_AFTER_S = 60 * 60
#: Observations the run-failure sensor writes for one failed run: a 31-day range of every asset
#: (stripe/events and three per resource of the catalog) fits.
MAX_FAILURE_OBSERVATIONS = MAX_PARTITIONS_PER_RUN * (1 + 3 * len(RESOURCE_NAMES))

IN_FLIGHT_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

#: ledger events worth showing on the partition (uploads and intents are too fine-grained)
_REPORTED_EVENTS = {"completed", "aep_status", "success", "failed", "aborted", "adopted"}

SENSORS_ENV = "STRIPE_AEP_SENSORS"


def default_sensor_status(environ: Mapping[str, str] | None = None) -> dg.DefaultSensorStatus:
    """STOPPED unless `STRIPE_AEP_SENSORS=running` (a bad value fails at load, naming the fix)."""
    env = os.environ if environ is None else environ
    raw = (env.get(SENSORS_ENV) or "stopped").strip().lower()
    if raw not in ("stopped", "running"):
        raise ValueError(
            f"{SENSORS_ENV}={raw!r} is not understood: set it to `running` (sensors start switched "
            "on) or `stopped` (the default: switch them on in the Dagster UI → Automation)"
        )
    return dg.DefaultSensorStatus.RUNNING if raw == "running" else dg.DefaultSensorStatus.STOPPED


def _now() -> float:
    """The sensors' clock (tests replace it)."""
    return time.time()


def runs_in_flight(instance: dg.DagsterInstance, sensor_name: str) -> int:
    return instance.get_runs_count(
        filters=dg.RunsFilter(statuses=IN_FLIGHT_STATUSES, tags={SENSOR_TAG: sensor_name})
    )


def _aep_key(resource: str) -> dg.AssetKey:
    return dg.AssetKey(["aep", resource])


def _in_progress(instance: dg.DagsterInstance, key: dg.AssetKey, days: Sequence[str]) -> set[str]:
    statuses = instance.get_status_by_partition(key, list(days), daily_partitions) or {}
    return {d for d, s in statuses.items() if s is dg.AssetPartitionStatus.IN_PROGRESS}


def _load_cursor(raw: str | None) -> dict:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}  # a cursor from an older version or typed in the UI: start over, nothing is lost
    return value if isinstance(value, dict) else {}


# -- AEP batch status ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPartition:
    """Where a ledger attempt belongs: `aep/<resource>`, one UTC day (a batch never mixes days)."""

    resource: str
    day: str


def partition_of(ledger: BatchLedger, attempt_id: int) -> BatchPartition | None:
    files = ledger.files_of(attempt_id)
    if not files:
        return None
    parts = group_of(files[0].key).split("/")  # xdm/<resource>/<YYYY-MM-DD>
    # Only the selected resources have an aep/<resource> asset to observe or re-run.
    if len(parts) != 3 or parts[0] != "xdm" or parts[1] not in selected_resources():
        return None
    try:
        dt.date.fromisoformat(parts[2])
    except ValueError:
        return None
    return BatchPartition(parts[1], parts[2])


def _attempt_metadata(a: Attempt, ledger: BatchLedger) -> dict[str, dg.RawMetadataValue]:
    files = ledger.files_of(a.attempt_id)
    errors = "; ".join(
        f"{e.code}: {e.description}" + (f" ({e.record_count} records)" if e.record_count else "")
        for e in a.errors
    )
    return {
        "aep_batch_id": a.batch_id or "none (never reached AEP)",
        "aep_status": a.aep_status or "unknown",
        "ledger_state": str(a.state),
        "dataset_id": a.dataset_id,
        "files": len(files),
        "rows": sum(f.rows for f in files),
        "records_written": a.records_written if a.records_written is not None else -1,
        "records_failed": a.records_failed if a.records_failed is not None else -1,
        "errors": errors or "none",
        "note": a.note or "",
        "ledger_attempt": a.attempt_id,
    }


def _failed_tries(ledger: BatchLedger, dataset_id: str, where: BatchPartition) -> int:
    return sum(
        1
        for a in ledger.attempts(dataset_id, (AttemptState.FAILED,))
        if partition_of(ledger, a.attempt_id) == where
    )


def _rerun_reason(ledger: BatchLedger, a: Attempt, where: BatchPartition, now: float):
    """(run key, why) when this attempt's partition needs a re-run of `aep/<resource>`, else None."""
    if a.state in RELEASED_STATES:
        if a.state is AttemptState.VOID or now - a.updated_at > FAILED_LOOKBACK_S:
            return None
        keys = [f.key for f in ledger.files_of(a.attempt_id)]
        if len(ledger.claims(a.dataset_id, keys)) == len(keys):
            return None  # a later attempt holds or delivered every file
        if _failed_tries(ledger, a.dataset_id, where) > MAX_AUTOMATIC_RETRIES:
            return None
        why = f"batch {a.batch_id} {a.aep_status or a.state}: its files are undelivered"
        return f"aep-retry:{where.resource}:{where.day}:{a.attempt_id}", why
    if a.state in ACTIVE_STATES:
        age = now - a.updated_at
        if age < PENDING_RECHECK_AFTER_S:
            return None  # its own run is probably still watching it
        round_ = int(age // PENDING_RECHECK_EVERY_S)
        status = a.aep_status or str(a.state)
        why = f"batch {a.batch_id or a.external_id} still {status} {age / 60:.0f} min after its run"
        return f"aep-watch:{where.resource}:{where.day}:{a.attempt_id}:{round_}", why
    return None


def evaluate_batch_status(
    context: dg.SensorEvaluationContext, data_dir: str, now: float
) -> dg.SensorResult | dg.SkipReason:
    try:
        target = ledger_url_from_env(data_dir=data_dir)
    except ConfigError as exc:
        return dg.SkipReason(str(exc))  # names STRIPE_AEP_LEDGER_URL and the fix
    if target is None or not target.is_postgres:
        path = (
            Path(target.path) if target and target.path else Path(data_dir) / LEDGER_RELATIVE_PATH
        )
        if not path.exists():
            return dg.SkipReason(f"no delivery ledger yet ({path}): nothing was delivered")
    cursor = _load_cursor(context.cursor)
    ledger = open_ledger(data_dir, busy_timeout_s=5.0)
    try:
        after = int(cursor.get("event_id", 0))
        if after > ledger.last_event_id():
            after = 0  # the ledger was set aside and rebuilt: its ids start again
        events = ledger.events_after(after, EVENTS_PER_TICK)
        changed: dict[int, None] = {}
        for e in events:
            if e["attempt_id"] is not None and e["event"] in _REPORTED_EVENTS:
                changed[e["attempt_id"]] = None
        observations = []
        for attempt_id in changed:
            a = ledger.attempt(attempt_id)
            where = partition_of(ledger, attempt_id)
            if where is None:
                continue
            observations.append(
                dg.AssetObservation(
                    asset_key=_aep_key(where.resource),
                    partition=where.day,
                    description=f"AEP batch {a.batch_id or a.external_id}: {a.aep_status or a.state}",
                    metadata=_attempt_metadata(a, ledger),
                )
            )

        # Work: failed batches whose files are undelivered, and batches pending past their run.
        candidates: dict[BatchPartition, tuple[str, str, Attempt]] = {}
        # newest attempt first: it is the one that says where the partition stands now
        for a in reversed(ledger.attempts(states=[*ACTIVE_STATES, *RELEASED_STATES])):
            where = partition_of(ledger, a.attempt_id)
            if where is None or where in candidates:
                continue
            found = _rerun_reason(ledger, a, where, now)
            if found is not None:
                candidates[where] = (*found, a)
    finally:
        ledger.close()

    budget = MAX_RUNS_IN_FLIGHT - runs_in_flight(context.instance, BATCH_STATUS_SENSOR)
    requests = []
    waiting = 0
    # newest day first: recent data matters most to the people reading it
    for where, (run_key, why, a) in sorted(
        candidates.items(), key=lambda kv: kv[0].day, reverse=True
    ):
        key = _aep_key(where.resource)
        if where.day in _in_progress(context.instance, key, [where.day]):
            continue  # a run of this partition is on it already
        if len(requests) >= budget:
            waiting += 1
            continue
        context.log.info("requesting aep/%s %s: %s", where.resource, where.day, why)
        requests.append(
            dg.RunRequest(
                run_key=run_key,
                partition_key=where.day,
                asset_selection=[key],
                tags={SENSOR_TAG: BATCH_STATUS_SENSOR, ATTEMPT_TAG: str(a.attempt_id)},
            )
        )
    if waiting:
        context.log.info("%d more partition(s) wait for a run slot (in-flight bound)", waiting)
    new_cursor = json.dumps({"event_id": events[-1]["event_id"] if events else after})
    if not requests and not observations:
        context.update_cursor(new_cursor)
        return dg.SkipReason(
            f"no new batch status; {waiting} re-run(s) wait for a slot"
            if waiting
            else "no new batch status and nothing to re-run"
        )
    return dg.SensorResult(run_requests=requests, asset_events=observations, cursor=new_cursor)


@dg.sensor(
    name=BATCH_STATUS_SENSOR,
    target=dg.AssetSelection.groups("aep"),
    minimum_interval_seconds=60,
    default_status=default_sensor_status(),
    description=(
        "Reads the AEP delivery ledger: records each batch's final status on its aep/<resource> "
        "partition (an observation) and re-runs aep/<resource> for a day whose batch failed or is "
        "still pending/stalled 15 min after its run (the re-run watches it; no AEP call here)."
    ),
)
def aep_batch_status_sensor(context: dg.SensorEvaluationContext):
    return evaluate_batch_status(context, data_dir_from_env(), _now())


# -- gaps and backfills -------------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    day: str
    why: str


#: the file that proves a day of a layer is on the lake (raw data files mark coverage, even an
#: empty window; every converted raw file leaves a manifest, even with no rows)
LAYER_MARKERS = {"stripe": ".jsonl.zst", "xdm": ".xdm.json"}


def lake_days(lake: Lake, layer: str, resource: str) -> set[str]:
    """The days one layer of one resource holds files for (one recursive listing)."""
    prefix = f"{layer}/{resource}"
    files = lake.list_files(prefix, suffix=LAYER_MARKERS[layer], recursive=True)
    return {f.path[len(prefix) + 1 :].split("/", 1)[0] for f in files}


def find_gaps(
    instance: dg.DagsterInstance,
    lake: Lake,
    days: Sequence[str],
    resources: Sequence[str] | None = None,
) -> tuple[list[Gap], set[str]]:
    """(days needing a run, newest first; days a run is on now). One status query per asset of
    `resources` (default: the selection, `STRIPE_AEP_RESOURCES`)."""
    busy: set[str] = set()
    why: dict[str, str] = {}
    for resource in selected_resources() if resources is None else resources:
        key = _aep_key(resource)
        statuses = instance.get_status_by_partition(key, list(days), daily_partitions) or {}
        stored = {layer: lake_days(lake, layer, resource) for layer in LAYER_MARKERS}
        for day in days:
            status = statuses.get(day)
            if status is dg.AssetPartitionStatus.IN_PROGRESS:
                busy.add(day)
            elif status is None:
                why.setdefault(day, f"aep/{resource} never delivered")
            elif status is dg.AssetPartitionStatus.FAILED:
                why.setdefault(day, f"aep/{resource}: last delivery failed")
            else:
                for layer, present in stored.items():
                    if day not in present:
                        why.setdefault(day, f"{layer}/{resource}/{day} is missing from the lake")
    gaps = [Gap(d, w) for d, w in why.items() if d not in busy]
    return sorted(gaps, key=lambda g: g.day, reverse=True), busy


def gap_ranges(gaps: Sequence[Gap], all_days: Sequence[str]) -> list[tuple[str, str, list[Gap]]]:
    """Consecutive gap days grouped into ranges of at most `MAX_PARTITIONS_PER_RUN`, newest first."""
    index = {d: i for i, d in enumerate(all_days)}
    ranges: list[list[Gap]] = []
    for g in gaps:  # newest first
        cur = ranges[-1] if ranges else None
        if cur and index[cur[-1].day] - index[g.day] == 1 and len(cur) < MAX_PARTITIONS_PER_RUN:
            cur.append(g)
        else:
            ranges.append([g])
    return [(r[-1].day, r[0].day, r) for r in ranges]


def evaluate_gaps(
    context: dg.SensorEvaluationContext, data_dir: str, now: float
) -> dg.SensorResult | dg.SkipReason:
    now_dt = dt.datetime.fromtimestamp(now, dt.UTC)
    days = daily_partitions.get_partition_keys(current_time=now_dt)
    cursor = _load_cursor(context.cursor)
    tries: dict[str, dict] = (
        cursor.get("ranges", {}) if isinstance(cursor.get("ranges"), dict) else {}
    )
    gaps, busy = find_gaps(context.instance, Lake(data_dir), days)
    ranges = gap_ranges(gaps, days)
    budget = MAX_RUNS_IN_FLIGHT - runs_in_flight(context.instance, GAPS_SENSOR)
    requests = []
    backing_off = 0
    for first, last, members in ranges:
        if len(requests) >= max(0, budget):
            break
        name = f"{first}..{last}"
        seen = tries.get(name, {})
        n = int(seen.get("tries", 0))
        if n and now - float(seen.get("at", 0)) < GAP_RETRY_AFTER_S:
            backing_off += 1
            continue
        context.log.info(
            "gap %s (%d day(s)): %s", name, len(members), "; ".join(g.why for g in members[:3])
        )
        requests.append(
            dg.RunRequest(
                run_key=f"gaps:{name}:{n + 1}",
                tags={SENSOR_TAG: GAPS_SENSOR, RANGE_START_TAG: first, RANGE_END_TAG: last},
            )
        )
        tries[name] = {"tries": n + 1, "at": now}
    # keep only the ranges that are still gaps (or being worked on), so the cursor stays small
    live = {f"{a}..{b}" for a, b, _ in ranges}
    tries = {k: v for k, v in tries.items() if k in live or _overlaps(k, busy)}
    new_cursor = json.dumps({"ranges": tries}, sort_keys=True)
    if not requests:
        context.update_cursor(new_cursor)
        if not gaps:
            return dg.SkipReason(
                f"no gaps in {days[0]}..{days[-1]}"
                + (f" ({len(busy)} day(s) running)" if busy else "")
            )
        return dg.SkipReason(
            f"{len(gaps)} gap day(s) in {len(ranges)} range(s); {max(0, budget)} run slot(s) free, "
            f"{backing_off} range(s) retried within the last {GAP_RETRY_AFTER_S // 60} min"
        )
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)


def _overlaps(name: str, days: Iterable[str]) -> bool:
    first, _, last = name.partition("..")
    return any(first <= d <= last for d in days)


@dg.sensor(
    name=GAPS_SENSOR,
    target=ALL_LAYERS,
    minimum_interval_seconds=300,
    default_status=default_sensor_status(),
    description=(
        "Finds days between STRIPE_START_DATE and today never delivered, whose last delivery failed, "
        "or whose lake folders vanished, and runs every asset over them in ranges of at most "
        f"{MAX_PARTITIONS_PER_RUN} days, newest first, {MAX_RUNS_IN_FLIGHT} runs at a time."
    ),
)
def gaps_sensor(context: dg.SensorEvaluationContext):
    return evaluate_gaps(context, data_dir_from_env(), _now())


# -- run failures -------------------------------------------------------------------------------


def _innermost_message(error) -> str:
    """The user's own error at the bottom of Dagster's wrapping (`Error occurred while executing…`)."""
    chain = []
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.cause or error.context
    for err in reversed(chain):
        text = (err.message or "").strip()
        if text and not text.startswith("dagster._core.errors.DagsterExecutionStepExecutionError"):
            return text
    return (chain[0].message or "").strip() if chain else ""


def _masker() -> SecretMasker:
    return SecretMasker(
        [
            os.environ.get(n, "")
            for n in ("STRIPE_API_KEY", "AEP_CLIENT_SECRET")
            if os.environ.get(n)
        ]
    )


def run_partitions(run: dg.DagsterRun) -> list[str]:
    tags = run.tags
    if tags.get("dagster/partition"):
        return [tags["dagster/partition"]]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return list(daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))
    return []


def step_assets(step_key: str) -> list[dg.AssetKey]:
    """The asset keys a step of an asset job materializes (`stripe__charges` → stripe/charges)."""
    known = {
        dg.AssetKey([layer, r]).to_python_identifier(): dg.AssetKey([layer, r])
        for layer in ("stripe", "xdm", "aep")
        for r in RESOURCE_NAMES
    }
    known[dg.AssetKey(["stripe", EVENTS]).to_python_identifier()] = dg.AssetKey(["stripe", EVENTS])
    key = known.get(step_key)
    return [key] if key else []


def failure_observations(
    run: dg.DagsterRun, step_failures: Sequence[dg.DagsterEvent], run_failure_message: str
) -> list[dg.AssetObservation]:
    partitions = run_partitions(run) or [None]
    masker = _masker()
    out = []
    for event in step_failures:
        data = event.event_specific_data
        error = getattr(data, "error", None)
        cause = masker.mask(_innermost_message(error)) if error else event.message or ""
        for key in step_assets(event.step_key or ""):
            for partition in partitions:
                out.append(
                    dg.AssetObservation(
                        asset_key=key,
                        partition=partition,
                        description=f"run {run.run_id[:8]} failed: {cause.splitlines()[0][:200]}",
                        metadata={
                            "failure_cause": dg.MetadataValue.md(f"```\n{cause[:4000]}\n```"),
                            "failed_step": event.step_key or "",
                            "failed_run_id": run.run_id,
                            "failed_run": dg.MetadataValue.dagster_run(run.run_id),
                        },
                    )
                )
    if not out and not step_failures:
        # the run failed outside a step (launch, resources): say so on the partitions it targeted
        for key in run.asset_selection or ():
            for partition in partitions:
                out.append(
                    dg.AssetObservation(
                        asset_key=key,
                        partition=partition,
                        description=f"run {run.run_id[:8]} failed before its steps ran",
                        metadata={
                            "failure_cause": masker.mask(run_failure_message)[:4000],
                            "failed_run_id": run.run_id,
                        },
                    )
                )
    return out


@dg.run_failure_sensor(
    name=RUN_FAILURE_SENSOR,
    minimum_interval_seconds=30,
    default_status=default_sensor_status(),
    description=(
        "Writes a failed run's cause (the failing step's own error, e.g. a missing Stripe "
        "permission) as an observation on every partition of the asset that failed."
    ),
)
def run_failure_sensor(context: dg.RunFailureSensorContext):
    observations = failure_observations(
        context.dagster_run,
        context.get_step_failure_events(),
        context.failure_event.message or "",
    )
    if len(observations) > MAX_FAILURE_OBSERVATIONS:
        context.log.warning(
            "run %s: %d failed asset partitions, recording the first %d",
            context.dagster_run.run_id,
            len(observations),
            MAX_FAILURE_OBSERVATIONS,
        )
        observations = observations[:MAX_FAILURE_OBSERVATIONS]
    for observation in observations:
        context.instance.report_runless_asset_event(observation)


# -- the 30-day edge of the events --------------------------------------------------------------

EVENTS_EDGE_SENSOR = "stripe_aep_events_edge"
#: Tag naming the lost events window a re-read run was launched for.
LOST_WINDOW_TAG = "stripe_aep/lost_events_window"


def reread_requests(
    window: LostWindow, all_days: Sequence[str], resources: Sequence[str] | None = None
) -> list[dg.RunRequest]:
    """Bounded range runs of `stripe/<r>` (with `reread: true`), `xdm/<r>` and `aep/<r>` over the
    partitions whose listings were fetched before the lost window's end, newest first; only for
    `resources` (default: the selection, `STRIPE_AEP_RESOURCES`), which have these assets."""
    index = {d: i for i, d in enumerate(all_days)}
    chosen = set(selected_resources() if resources is None else resources)
    requests = []
    for resource, days in sorted(window.partitions.items()):
        if resource not in chosen:
            continue
        known = sorted((d for d in days if d in index), key=index.__getitem__, reverse=True)
        ranges: list[list[str]] = []
        for day in known:
            cur = ranges[-1] if ranges else None
            if cur and index[cur[-1]] - index[day] == 1 and len(cur) < MAX_PARTITIONS_PER_RUN:
                cur.append(day)
            else:
                ranges.append([day])
        for members in ranges:
            first, last = members[-1], members[0]
            requests.append(
                dg.RunRequest(
                    run_key=f"reread:{window.key}:{resource}:{first}..{last}",
                    asset_selection=[
                        dg.AssetKey([layer, resource]) for layer in ("stripe", "xdm", "aep")
                    ],
                    run_config={"ops": {f"stripe__{resource}": {"config": {"reread": True}}}},
                    tags={
                        SENSOR_TAG: EVENTS_EDGE_SENSOR,
                        LOST_WINDOW_TAG: window.key,
                        RANGE_START_TAG: first,
                        RANGE_END_TAG: last,
                    },
                )
            )
    return requests


def evaluate_events_edge(
    context: dg.SensorEvaluationContext, data_dir: str, now: float
) -> dg.SensorResult | dg.SkipReason:
    """Launch the re-reads of every open lost events window, at most `MAX_RUNS_IN_FLIGHT` runs at
    a time; the marker on the lake records the runs launched and, once all are, the window's new
    status (`reread_launched`), so no tick launches them twice."""
    lake = Lake(data_dir)
    marker = LostWindows(lake, selected_resources())
    windows = [w for w in marker.load() if w.status == "open"]
    if not windows:
        return dg.SkipReason("no lost events window waits for a re-read")
    now_dt = dt.datetime.fromtimestamp(now, dt.UTC)
    days = daily_partitions.get_partition_keys(current_time=now_dt)
    budget = MAX_RUNS_IN_FLIGHT - runs_in_flight(context.instance, EVENTS_EDGE_SENSOR)
    requests: list[dg.RunRequest] = []
    for window in windows:
        planned = reread_requests(window, days)
        pending = [r for r in planned if r.run_key not in set(window.runs)]
        take = pending[: max(0, budget - len(requests))]
        for request in take:
            context.log.warning(
                "lost events window %s: re-reading %s",
                window.as_dict()["window"],
                request.run_key,
            )
        requests.extend(take)
        launched = [r.run_key for r in take]
        if len(take) == len(pending):
            marker.mark_launched(window.key, launched)
        elif launched:
            marker.add_runs(window.key, launched)
    if not requests:
        return dg.SkipReason(
            f"{len(windows)} lost events window(s) wait for a re-read; "
            f"{max(0, budget)} run slot(s) free"
        )
    return dg.SensorResult(run_requests=requests)


@dg.sensor(
    name=EVENTS_EDGE_SENSOR,
    target=ALL_LAYERS,
    minimum_interval_seconds=300,
    default_status=default_sensor_status(),
    description=(
        "When events older than Stripe's 30-day retention were never fetched (the stripe/events "
        "warning), re-reads the partitions whose listings predate the lost window: bounded range "
        "runs of stripe/<resource> with `reread: true`, xdm/<resource> and aep/<resource>."
    ),
)
def events_edge_sensor(context: dg.SensorEvaluationContext):
    return evaluate_events_edge(context, data_dir_from_env(), _now())


sensors = [aep_batch_status_sensor, gaps_sensor, run_failure_sensor, events_edge_sensor]
