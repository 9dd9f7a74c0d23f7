"""Deliver XDM Parquet files to an AEP dataset exactly once, across retries, crashes and re-runs.

Why this shape: AEP appends every batch it is given and `POST /batches` is not idempotent, so the
only way to never double data is to know, before each step, what the previous run did. `deliver`
follows the write-ahead protocol of `BatchLedger` (see ledger.py) in three phases:

1. **Recover** what earlier runs left unfinished for this dataset: an `intent` without a batch id is
   reconciled by listing Catalog batches by its `externalId` (adopted if found, voided if not) before
   anything new is created; a created-but-uncompleted batch is resumed (only the files not yet
   uploaded are sent again — PUT is idempotent) or, when its files are not part of this call, ABORTed;
   a batch whose COMPLETE may not have reached AEP is completed again (COMPLETE is idempotent);
   completed batches are watched.
2. **Send** the files not yet claimed, in as few batches as the limits allow (1500 files, 100 GB),
   uploading a few files of a batch concurrently.
3. **Watch** every completed batch in Catalog until it is terminal or `wait_timeout_s` passes. A batch
   still processing stays in the ledger as pending; the next call watches it instead of sending its
   files again. A failed batch raises `AepBatchFailed` with Adobe's codes after the ledger released
   its files, so a later run (after the cause is fixed) sends them again — never twice in AEP.

**The ledger is not the only memory.** Every batch carries its identity in AEP itself, as Catalog
tags set at creation (SPEC-BI `IngestBatch.tags`, returned by Catalog): `stripeAepGroup` — the folder
of its files (a batch never mixes folders, i.e. XDM partition days) — and `stripeAepFiles` — the key,
rows and bytes of every file it carries. Before sending files the ledger does not claim, `deliver`
lists, per folder, the batches of the dataset tagged with that folder (`GET /batches?dataSet=…&
tags=stripeAepGroup:<folder>`, one paged call per folder; none when the ledger claims every file)
and adopts those the ledger does not know: success → recorded as delivered (not sent again);
processing → recorded as completed and watched; loading (an interrupted run) → resumed or aborted
like any interrupted batch; failed/aborted/reverted → recorded, and their files sent again. So a
ledger that is deleted, emptied or replaced is rebuilt from AEP and never causes a second delivery.
The `externalId` stays unique per attempt (Adobe expects it unique, and a failed batch's files must
be re-sent under a new one); its prefix is a digest of the dataset, folder and file keys.

**Checkpoints.** `deliver(..., on_checkpoint=f)` calls `f(name)` at the moments where a crash
leaves the most telling state behind: `after_create_before_ledger` (AEP has the batch, the ledger
only its intent), `after_create` (the ledger has the batch id), `after_upload:<n>` (the n-th file
of this call is uploaded and recorded), `after_complete_before_ledger` (COMPLETE sent, not yet
recorded) and `while_polling` (the first status read of a completed batch, before it is recorded).
The crash tests pass a callback that SIGKILLs the process at one of them, to prove recovery with a
real dead process; the pipeline passes none.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from stripe_aep.aep.client import MAX_PUT_BYTES, AepClient, BatchMetrics, BatchState, BatchStatus
from stripe_aep.aep.errors import AepBatchFailed, AepError, BatchError, FileTooLargeError
from stripe_aep.aep.ledger import Attempt, AttemptState, BatchLedger, FileState
from stripe_aep.records import DeliverySummary

MAX_FILES_PER_BATCH = 1500
MAX_BATCH_BYTES = 100 * 10**9
UPLOAD_CHUNK_BYTES = 1 << 20

#: Catalog batch tags (Adobe: tag values are arrays of strings; filter with `tags=name:value`).
#: Names avoid Adobe's reserved `adobe*`/`acp_*` prefixes and `unifiedProfile`/`unifiedIdentity`.
TAG_FORMAT = "stripeAepFormat"  # ["1"]: how the two tags below are written
TAG_GROUP = "stripeAepGroup"  # [<folder of the batch's files>]: the one tag deliver filters on
TAG_FILES = "stripeAepFiles"  # ["<key>|<rows>|<bytes>", ...]: every file the batch carries
TAG_FILE_COUNT = "stripeAepFileCount"  # ["<n>"]: proves the file list arrived whole
TAG_FORMAT_VERSION = "1"
#: folder names usable as a tag filter value as they are (`,` `*` `:` are filter syntax)
_PLAIN_TAG_VALUE = re.compile(r"[A-Za-z0-9._/=-]{1,200}")


def group_of(key: str) -> str:
    """The folder of a file key (an XDM partition day, e.g. `xdm/charges/2026-11-20`)."""
    return key.rsplit("/", 1)[0] if "/" in key else ""


def group_tag_value(group: str) -> str:
    """The `stripeAepGroup` value of a folder: the folder itself, or a digest if it has odd characters."""
    if _PLAIN_TAG_VALUE.fullmatch(group):
        return group
    return "sha256-" + hashlib.sha256(group.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class TaggedFile:
    """A file as a batch's `stripeAepFiles` tag records it."""

    key: str
    rows: int
    size: int


def batch_tags(files: Sequence[XdmFile | TaggedFile]) -> dict[str, list[str]]:
    """The tags that let a later run find this batch in Catalog without the ledger."""
    groups = {group_of(f.key) for f in files}
    if len(groups) != 1:
        raise ValueError(f"a batch must not mix folders ({sorted(groups)})")
    return {
        TAG_FORMAT: [TAG_FORMAT_VERSION],
        TAG_GROUP: [group_tag_value(groups.pop())],
        TAG_FILES: [f"{f.key}|{f.rows}|{f.size}" for f in sorted(files, key=lambda f: f.key)],
        TAG_FILE_COUNT: [str(len(files))],
    }


def files_from_tags(tags: Any) -> list[TaggedFile] | None:
    """The files a batch's tags say it carries.

    None when the batch is not one of ours (no `stripeAepFormat` tag); `ValueError` saying why when
    it is ours but the file list cannot be trusted (missing, malformed, or not the announced count).
    """
    if not isinstance(tags, dict) or TAG_FORMAT not in tags:
        return None
    if tags.get(TAG_FORMAT) != [TAG_FORMAT_VERSION]:
        raise ValueError(f"unknown {TAG_FORMAT} {tags.get(TAG_FORMAT)!r} (a newer stripe-aep?)")
    entries = tags.get(TAG_FILES)
    count = tags.get(TAG_FILE_COUNT)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"no {TAG_FILES} tag")
    if count != [str(len(entries))]:
        raise ValueError(f"{TAG_FILES} lists {len(entries)} file(s), {TAG_FILE_COUNT} says {count}")
    out = []
    for entry in entries:
        parts = entry.rsplit("|", 2) if isinstance(entry, str) else []
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
            raise ValueError(f"malformed {TAG_FILES} entry {entry!r}")
        out.append(TaggedFile(parts[0], int(parts[1]), int(parts[2])))
    return out


def external_id_for(dataset_id: str, files: Sequence[XdmFile]) -> str:
    """`stripe-aep-<digest of dataset, folder, keys>-<unique>`: readable, never reused."""
    digest = hashlib.sha256(
        "\n".join([dataset_id, *sorted(f.key for f in files)]).encode()
    ).hexdigest()
    return f"stripe-aep-{digest[:16]}-{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class XdmFile:
    """One XDM Parquet file to deliver. `key` is its lake-relative path (and its path in the batch)."""

    key: str
    rows: int
    size: int
    open: Callable[[], BinaryIO] = field(repr=False, compare=False)
    sha256: str | None = None

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], key: str) -> XdmFile:
        """A local Parquet file; rows come from its footer."""
        import pyarrow.parquet as pq

        p = os.fspath(path)
        return cls(
            key=key,
            rows=pq.ParquetFile(p).metadata.num_rows,
            size=os.path.getsize(p),
            open=lambda: open(p, "rb"),  # noqa: SIM115 - closed by the uploader
        )


@dataclass
class BatchOutcome:
    """What happened to one batch during a delivery call."""

    attempt_id: int
    batch_id: str | None
    external_id: str
    state: str  # ledger state: success | failed | aborted | void | completed | ...
    aep_status: str | None
    files: list[str]
    rows: int
    bytes: int
    metrics: BatchMetrics = field(default_factory=BatchMetrics)
    errors: list[BatchError] = field(default_factory=list)
    sent_this_run: bool = False
    recovered: bool = False


@dataclass
class DeliveryReport:
    dataset_id: str
    batches: list[BatchOutcome] = field(default_factory=list)
    already_delivered: list[str] = field(default_factory=list)
    skipped_empty: list[str] = field(default_factory=list)
    #: delivered keys whose size/hash differ from what was sent: AEP keeps the old content
    changed_after_delivery: list[str] = field(default_factory=list)
    #: keys in batches of earlier runs that are still pending (not sent again)
    waiting_on_earlier_batches: list[str] = field(default_factory=list)
    #: batches found in Catalog (by their tags) that the ledger did not know, and adopted
    adopted_batches: list[str] = field(default_factory=list)
    #: folders whose batches were looked up in Catalog (one paged listing each)
    catalog_lookups: list[str] = field(default_factory=list)

    def _where(self, *states: str) -> list[BatchOutcome]:
        return [b for b in self.batches if b.state in states]

    @property
    def batch_ids(self) -> list[str]:
        return [b.batch_id for b in self.batches if b.batch_id]

    @property
    def files(self) -> list[str]:
        """Files uploaded by this call."""
        return [k for b in self.batches if b.sent_this_run for k in b.files]

    @property
    def rows(self) -> int:
        return sum(b.rows for b in self.batches if b.sent_this_run)

    @property
    def bytes(self) -> int:
        return sum(b.bytes for b in self.batches if b.sent_this_run)

    @property
    def statuses(self) -> dict[str, str]:
        return {b.batch_id or b.external_id: b.aep_status or b.state for b in self.batches}

    @property
    def succeeded(self) -> list[BatchOutcome]:
        return self._where(AttemptState.SUCCESS)

    @property
    def failed(self) -> list[BatchOutcome]:
        return self._where(AttemptState.FAILED)

    @property
    def pending_batches(self) -> list[str]:
        return [
            b.batch_id or b.external_id
            for b in self._where(AttemptState.COMPLETED, AttemptState.COMPLETING)
            if b.aep_status != "stalled"
        ]

    @property
    def stalled_batches(self) -> list[str]:
        return [b.batch_id or "" for b in self.batches if b.aep_status == "stalled"]

    @property
    def delivered_rows(self) -> int:
        """Rows in batches that reached success during this call."""
        return sum(b.rows for b in self.succeeded)

    def _metric(self, name: str) -> int:
        return sum(getattr(b.metrics, name) or 0 for b in self.succeeded)

    @property
    def records_read(self) -> int:
        return self._metric("records_read")

    @property
    def records_written(self) -> int:
        return self._metric("records_written")

    @property
    def records_failed(self) -> int:
        return self._metric("records_failed") + sum(
            b.metrics.records_failed or 0 for b in self.failed
        )

    def summary(self) -> DeliverySummary:
        """The secret-free figures of this call (the aep asset's metadata)."""
        return DeliverySummary(
            dataset_id=self.dataset_id,
            batch_ids=tuple(self.batch_ids),
            files_sent=len(self.files),
            rows_sent=self.rows,
            bytes_sent=self.bytes,
            rows_confirmed=self.delivered_rows,
            records_read=self.records_read,
            records_written=self.records_written,
            records_failed=self.records_failed,
            statuses=self.statuses,
            pending_batches=tuple(self.pending_batches),
            stalled_batches=tuple(self.stalled_batches),
            already_delivered_files=len(self.already_delivered),
            skipped_empty_files=len(self.skipped_empty),
            changed_after_delivery=tuple(self.changed_after_delivery),
            adopted_batches=len(self.adopted_batches),
            catalog_lookups=len(self.catalog_lookups),
        )


class _UploadStream:
    """An iterable request body that hashes and counts bytes and checks the declared size."""

    def __init__(self, raw: BinaryIO, key: str, size: int) -> None:
        self._raw, self.key, self.size = raw, key, size
        self.sha = hashlib.sha256()
        self.read_bytes = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self._raw.read(UPLOAD_CHUNK_BYTES)
            if not chunk:
                break
            self.read_bytes += len(chunk)
            if self.read_bytes > self.size:
                raise ValueError(f"{self.key} grew while uploading (more than {self.size} bytes)")
            self.sha.update(chunk)
            yield chunk
        if self.read_bytes != self.size:
            raise ValueError(
                f"{self.key} has {self.read_bytes} bytes, the delivery was told {self.size}"
            )

    def close(self) -> None:
        self._raw.close()


def plan_batches(
    files: Sequence[XdmFile], *, max_files: int, max_bytes: int
) -> list[list[XdmFile]]:
    """Greedy packing in key order: as few batches as the limits allow, one folder per batch.

    A batch never mixes folders (XDM partition days) so that its Catalog tag names one folder, the
    filter a later run uses to find it without the ledger.
    """
    batches: list[list[XdmFile]] = []
    current: list[XdmFile] = []
    current_bytes = 0
    for f in sorted(files, key=lambda f: (group_of(f.key), f.key)):
        if current and (
            len(current) >= max_files
            or current_bytes + f.size > max_bytes
            or group_of(f.key) != group_of(current[0].key)
        ):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(f)
        current_bytes += f.size
    if current:
        batches.append(current)
    return batches


#: what a batch found in Catalog means for its files: landed, will land, can be resumed, or released
def _adoption(status: BatchStatus) -> str:
    if status.state is BatchState.DONE:
        return "success"
    if status.status == "loading":
        return "loading"
    if status.state is BatchState.FAILED or status.status in ("inactive", "deleted"):
        return "released"  # reverted (`inactive`/`deleted`) data is no longer in the dataset
    return "pending"  # processing, staging, queued, retrying, stalled, ...


#: successes first, so that of two batches carrying one file the landed one is adopted
_ADOPT_ORDER = {"success": 0, "pending": 1, "loading": 2, "released": 3}


class _Delivery:
    def __init__(
        self,
        client: AepClient,
        ledger: BatchLedger,
        dataset_id: str,
        files: Sequence[XdmFile],
        *,
        wait_timeout_s: float,
        poll_interval_s: float,
        max_files_per_batch: int,
        max_batch_bytes: int,
        upload_concurrency: int,
        log: Any,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        on_checkpoint: Callable[[str], None] | None,
    ) -> None:
        self.client, self.ledger, self.dataset_id = client, ledger, dataset_id
        self.on_checkpoint = on_checkpoint
        self.files = {f.key: f for f in files}
        self.wait_timeout_s, self.poll_interval_s = wait_timeout_s, poll_interval_s
        self.max_files, self.max_bytes = max_files_per_batch, max_batch_bytes
        self.concurrency = upload_concurrency
        self.log, self.clock, self.sleep = log, clock, sleep
        self.report = DeliveryReport(dataset_id=dataset_id)
        self.outcomes: dict[int, BatchOutcome] = {}
        self.uploaded_count = 0
        self.new_failures: list[tuple[str, str, list[BatchError]]] = []

    # -- bookkeeping -----------------------------------------------------------------------

    def checkpoint(self, name: str) -> None:
        """Tell the caller's `on_checkpoint` (if any) that delivery reached `name`."""
        if self.on_checkpoint is not None:
            self.on_checkpoint(name)

    def _outcome(self, attempt_id: int, *, sent: bool = False, recovered: bool = False):
        a = self.ledger.attempt(attempt_id)
        lfiles = self.ledger.files_of(attempt_id)
        prev = self.outcomes.get(attempt_id)
        out = BatchOutcome(
            attempt_id=attempt_id,
            batch_id=a.batch_id,
            external_id=a.external_id,
            state=str(a.state),
            aep_status=a.aep_status,
            files=[f.key for f in lfiles],
            rows=sum(f.rows for f in lfiles),
            bytes=sum(f.size for f in lfiles),
            metrics=BatchMetrics(
                records_read=a.records_read,
                records_written=a.records_written,
                records_failed=a.records_failed,
            ),
            errors=list(a.errors),
            sent_this_run=sent or (prev.sent_this_run if prev else False),
            recovered=recovered or (prev.recovered if prev else False),
        )
        self.outcomes[attempt_id] = out
        return out

    # -- phase 1: recover ------------------------------------------------------------------

    def recover(self) -> None:
        unfinished = self.ledger.attempts(
            self.dataset_id,
            (AttemptState.INTENT, AttemptState.CREATED, AttemptState.COMPLETING),
        )
        for a in unfinished:
            self.log.info(
                "AEP delivery: recovering %s attempt %s (externalId %s, batch %s)",
                a.state,
                a.attempt_id,
                a.external_id,
                a.batch_id or "unknown",
            )
            if a.state is AttemptState.INTENT:
                a = self._reconcile_intent(a)
                if a is None:
                    continue
            self._recover_created(a)
        for a in self.ledger.attempts(self.dataset_id, (AttemptState.COMPLETED,)):
            if a.attempt_id not in self.outcomes:
                self._outcome(a.attempt_id, recovered=True)

    def _reconcile_intent(self, a: Attempt) -> Attempt | None:
        found = self.client.list_batches(dataset_id=self.dataset_id, external_id=a.external_id)
        if not found:
            self.ledger.record_void(
                a.attempt_id,
                f"Catalog has no batch with externalId {a.external_id}: creation never reached AEP",
            )
            self._outcome(a.attempt_id, recovered=True)
            return None
        keep = min(found, key=lambda b: (b.created_ms or 0, b.batch_id))
        for extra in found:
            if extra.batch_id != keep.batch_id and extra.status == "loading":
                self.log.warning(
                    "AEP delivery: aborting duplicate batch %s of externalId %s",
                    extra.batch_id,
                    a.external_id,
                )
                self.client.abort_batch(extra.batch_id)
        self.log.info(
            "AEP delivery: adopted batch %s found by externalId %s", keep.batch_id, a.external_id
        )
        self.ledger.record_created(a.attempt_id, keep.batch_id)
        return self.ledger.attempt(a.attempt_id)

    def _recover_created(self, a: Attempt) -> None:
        assert a.batch_id is not None
        try:
            status = self.client.get_batch(a.batch_id)
        except AepError as exc:
            if exc.status != 404:
                raise
            self.ledger.record_aborted(
                a.attempt_id, f"Catalog no longer knows batch {a.batch_id}", aep_status="missing"
            )
            self._outcome(a.attempt_id, recovered=True)
            return
        if status.status == "loading":
            if a.state is AttemptState.COMPLETING:
                # COMPLETE may not have reached AEP: it is idempotent, send it again
                self._complete(a.attempt_id, a.batch_id)
                self._outcome(a.attempt_id, recovered=True)
                return
            missing = self._resume_blockers(a)
            if missing:
                self.log.warning(
                    "AEP delivery: aborting interrupted batch %s (%s)", a.batch_id, missing
                )
                self._abort(a.attempt_id, a.batch_id, f"interrupted and not resumable: {missing}")
                self._outcome(a.attempt_id, recovered=True)
                return
            todo = [
                self.files[f.key]
                for f in self.ledger.files_of(a.attempt_id)
                if f.state is not FileState.UPLOADED
            ]
            self.log.info(
                "AEP delivery: resuming batch %s: %d file(s) left to upload", a.batch_id, len(todo)
            )
            self._upload_and_complete(a.attempt_id, a.batch_id, todo)
            self._outcome(a.attempt_id, recovered=True, sent=bool(todo))
            return
        if status.state is BatchState.FAILED:
            # aborted / abandoned / failed before we completed it: nothing landed; release files
            self.ledger.record_aborted(
                a.attempt_id,
                f"AEP reports the uncompleted batch as {status.status}",
                aep_status=status.status,
            )
            self._outcome(a.attempt_id, recovered=True)
            return
        # it moved past loading: COMPLETE reached AEP; watch it like any completed batch
        if a.state is AttemptState.CREATED:
            self.ledger.record_complete_requested(a.attempt_id)
        self.ledger.record_completed(a.attempt_id)
        self._outcome(a.attempt_id, recovered=True)

    def _resume_blockers(self, a: Attempt) -> str | None:
        for f in self.ledger.files_of(a.attempt_id):
            mine = self.files.get(f.key)
            if mine is None:
                return f"{f.key} is not part of this delivery call"
            if mine.size != f.size:
                return f"{f.key} changed size ({f.size} → {mine.size})"
            if f.sha256 and mine.sha256 and f.sha256 != mine.sha256:
                return f"{f.key} changed content"
        return None

    def _abort(self, attempt_id: int, batch_id: str, reason: str) -> None:
        try:
            self.client.abort_batch(batch_id)
        except AepError as exc:
            status = self.client.get_batch(batch_id)
            if status.state is not BatchState.FAILED:
                raise AepError(
                    f"could not abort batch {batch_id} ({status.status}): {exc.message}",
                    status=exc.status,
                    code=exc.code,
                    adobe_message=exc.adobe_message,
                    request_id=exc.request_id,
                    hint="abort it in AEP, then run the delivery again",
                ) from None
        self.ledger.record_aborted(attempt_id, reason, aep_status="aborted")

    # -- phase 2a: reconcile with AEP -------------------------------------------------------

    def reconcile_with_aep(self, unclaimed: list[XdmFile]) -> None:
        """Adopt the batches Catalog holds for these files' folders that the ledger does not know.

        One paged Catalog listing per folder, filtered by dataset and `stripeAepGroup` tag. The
        ledger normally knows every batch listed (nothing to do); after it was lost, emptied or
        replaced, this rebuilds it so that nothing AEP holds or is processing is sent again.
        """
        # an attempt still waiting for its batch id (an intent) is recovered by externalId instead
        known, known_external = self.ledger.known_batches(self.dataset_id)
        found: list[tuple[BatchStatus, list[TaggedFile]]] = []
        for group in sorted({group_of(f.key) for f in unclaimed}):
            self.report.catalog_lookups.append(group)
            listed = self.client.list_batches_tagged(
                dataset_id=self.dataset_id, tags={TAG_GROUP: group_tag_value(group)}
            )
            for status in listed:
                if status.batch_id in known or status.external_id in known_external:
                    continue
                known.add(status.batch_id)
                try:
                    carried = files_from_tags(status.raw.get("tags"))
                except ValueError as exc:
                    if _adoption(status) == "released":
                        continue  # holds no data: whatever it carried is sent again
                    raise AepError(
                        f"batch {status.batch_id} ({status.status}) of dataset {self.dataset_id} "
                        f"is tagged as a stripe-aep batch of folder {group or '(root)'} but its "
                        f"file list cannot be read ({exc}); refusing to send files it may already "
                        "carry",
                        hint="check the batch in AEP > Monitoring or GET /data/foundation/catalog/"
                        f"batches/{status.batch_id}; if its data should not stay, revert it "
                        f"(POST /data/foundation/import/batches/{status.batch_id}?action=REVERT) "
                        "and run again: its files are then sent once more",
                    ) from None
                if carried is None:
                    self.log.warning(
                        "AEP delivery: batch %s is tagged %s:%s but is not a stripe-aep batch (no "
                        "%s tag); it is left alone",
                        status.batch_id,
                        TAG_GROUP,
                        group_tag_value(group),
                        TAG_FORMAT,
                    )
                    continue
                found.append((status, carried))
        if not found:
            return
        self.log.warning(
            "AEP delivery: Catalog holds %d batch(es) of dataset %s the ledger does not know "
            "(was %s lost, emptied or replaced?); adopting them",
            len(found),
            self.dataset_id,
            self.ledger.where,
        )
        found.sort(key=lambda item: (_ADOPT_ORDER[_adoption(item[0])], item[0].created_ms or 0))
        claimed = set(self.ledger.claims(self.dataset_id, [f.key for _, c in found for f in c]))
        for status, carried in found:
            self._adopt(status, carried, claimed)

    def _adopt(self, status: BatchStatus, carried: list[TaggedFile], claimed: set[str]) -> None:
        keys = [f.key for f in carried]
        twice = [k for k in keys if k in claimed]
        kind = _adoption(status)
        note = f"found in Catalog by its {TAG_GROUP} tag ({status.status}); the ledger had lost it"
        if kind in ("success", "pending"):
            if twice:
                self.log.error(
                    "AEP delivery: batch %s (%s) carries %d file(s) another batch of dataset %s "
                    "also carries (e.g. %s): AEP holds those rows twice; revert one of the two "
                    "batches (POST /batches/<id>?action=REVERT)",
                    status.batch_id,
                    status.status,
                    len(twice),
                    self.dataset_id,
                    twice[0],
                )
            state = AttemptState.SUCCESS if kind == "success" else AttemptState.COMPLETED
            self.ledger.record_adopted(self.dataset_id, status, carried, state, note=note)
            claimed.update(keys)
            self.report.adopted_batches.append(status.batch_id)
            self.log.info(
                "AEP delivery: adopted %s batch %s (%d file(s), %d rows) from Catalog; its files "
                "are not sent again",
                status.status,
                status.batch_id,
                len(carried),
                sum(f.rows for f in carried),
            )
        elif kind == "loading":
            attempt_id = self.ledger.record_adopted(
                self.dataset_id, status, carried, AttemptState.CREATED, note=note
            )
            self.report.adopted_batches.append(status.batch_id)
            if twice:
                # completing it would deliver files another batch already carries
                self._abort(
                    attempt_id, status.batch_id, f"interrupted batch; {twice[0]} is delivered"
                )
                self._outcome(attempt_id, recovered=True)
                return
            self._recover_created(self.ledger.attempt(attempt_id))
            if self.ledger.attempt(attempt_id).active:
                claimed.update(keys)
        else:
            state = (
                AttemptState.FAILED
                if status.status in ("failed", "failure")
                else AttemptState.ABORTED
            )
            self.ledger.record_adopted(self.dataset_id, status, carried, state, note=note)
            self.log.info(
                "AEP delivery: batch %s of an earlier run is %s in Catalog; its %d file(s) are "
                "sent again",
                status.batch_id,
                status.status,
                len(carried),
            )

    # -- phase 2: send ---------------------------------------------------------------------

    def send_new(self) -> None:
        claims = self.ledger.claims(self.dataset_id, list(self.files))
        unclaimed = [f for k, f in self.files.items() if k not in claims and f.rows > 0]
        if unclaimed:
            self.reconcile_with_aep(unclaimed)
            claims = self.ledger.claims(self.dataset_id, list(self.files))
        to_send: list[XdmFile] = []
        for key in sorted(self.files):
            f = self.files[key]
            claim = claims.get(key)
            if claim is not None:
                attempt, lf = claim
                if attempt.state is AttemptState.SUCCESS:
                    self.report.already_delivered.append(key)
                    if lf.size != f.size or (lf.sha256 and f.sha256 and lf.sha256 != f.sha256):
                        self.report.changed_after_delivery.append(key)
                elif (
                    attempt.attempt_id not in self.outcomes
                    or not self.outcomes[attempt.attempt_id].sent_this_run
                ):
                    self.report.waiting_on_earlier_batches.append(key)
                continue
            if f.rows == 0:
                self.report.skipped_empty.append(key)
                continue
            to_send.append(f)
        if self.report.changed_after_delivery:
            self.log.warning(
                "AEP delivery: %d file(s) changed after they were delivered; AEP keeps the "
                "delivered content (e.g. %s)",
                len(self.report.changed_after_delivery),
                self.report.changed_after_delivery[0],
            )
        for chunk in plan_batches(to_send, max_files=self.max_files, max_bytes=self.max_bytes):
            self._send_batch(chunk)

    def _send_batch(self, chunk: list[XdmFile]) -> None:
        external_id = external_id_for(self.dataset_id, chunk)
        attempt_id = self.ledger.record_intent(self.dataset_id, external_id, chunk)
        try:
            batch_id = self.client.create_batch(
                self.dataset_id, external_id=external_id, tags=batch_tags(chunk)
            )
        except AepError as exc:
            # The POST may have created a batch before failing: ask Catalog, never re-POST blindly.
            try:
                found = self.client.list_batches(
                    dataset_id=self.dataset_id, external_id=external_id
                )
            except AepError:
                raise exc from None  # intent stays; the next run reconciles it
            if not found:
                self.ledger.record_void(attempt_id, f"batch creation failed: {exc}")
                self._outcome(attempt_id)
                raise
            batch_id = found[0].batch_id
            self.log.warning(
                "AEP delivery: batch creation reported an error but Catalog has batch %s for "
                "externalId %s; using it",
                batch_id,
                external_id,
            )
        self.checkpoint("after_create_before_ledger")
        self.ledger.record_created(attempt_id, batch_id)
        self.checkpoint("after_create")
        self.log.info(
            "AEP delivery: batch %s created for %d file(s), %d rows",
            batch_id,
            len(chunk),
            sum(f.rows for f in chunk),
        )
        self._upload_and_complete(attempt_id, batch_id, chunk)
        self._outcome(attempt_id, sent=True)

    def _upload_one(self, attempt_id: int, batch_id: str, f: XdmFile) -> str:
        self.ledger.record_file_started(attempt_id, f.key)
        last: list[_UploadStream] = []

        def opener() -> _UploadStream:
            stream = _UploadStream(f.open(), f.key, f.size)
            last.append(stream)
            return stream

        self.client.upload_file(batch_id, self.dataset_id, f.key, opener, size=f.size)
        digest = last[-1].sha.hexdigest()
        if f.sha256 and f.sha256 != digest:
            raise ValueError(f"{f.key}: sha256 {digest} differs from the expected {f.sha256}")
        self.ledger.record_file_uploaded(attempt_id, f.key, digest)
        return f.key

    def _upload_and_complete(self, attempt_id: int, batch_id: str, todo: list[XdmFile]) -> None:
        if todo:
            with ThreadPoolExecutor(
                max_workers=max(1, min(self.concurrency, len(todo))),
                thread_name_prefix="aep-upload",
            ) as pool:
                pending = {pool.submit(self._upload_one, attempt_id, batch_id, f) for f in todo}
                error: BaseException | None = None
                while pending and error is None:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        if fut.exception() is not None:
                            error = error or fut.exception()
                            continue
                        self.uploaded_count += 1
                        self.checkpoint(f"after_upload:{self.uploaded_count}")
                if error is not None:
                    for fut in pending:
                        fut.cancel()
                    wait(pending)
            if error is not None:
                self.log.error(
                    "AEP delivery: upload to batch %s failed (%s); aborting the batch",
                    batch_id,
                    error,
                )
                self._abort(attempt_id, batch_id, f"upload failed: {error}")
                self._outcome(attempt_id)
                raise error
        self._complete(attempt_id, batch_id)

    def _complete(self, attempt_id: int, batch_id: str) -> None:
        self.ledger.record_complete_requested(attempt_id)
        self.client.complete_batch(batch_id)
        self.checkpoint("after_complete_before_ledger")
        self.ledger.record_completed(attempt_id)

    # -- phase 3: watch --------------------------------------------------------------------

    def watch(self) -> None:
        watching = [a for a in self.ledger.attempts(self.dataset_id, (AttemptState.COMPLETED,))]
        deadline = self.clock() + max(0.0, self.wait_timeout_s)
        first_round = True
        while watching:
            still: list[Attempt] = []
            for a in watching:
                assert a.batch_id is not None
                try:
                    status = self.client.get_batch(a.batch_id)
                except AepError as exc:
                    if exc.status != 404:
                        raise
                    status = BatchStatus(
                        batch_id=a.batch_id,
                        status="missing",
                        state=BatchState.FAILED,
                        errors=(BatchError("NOT_FOUND", "Catalog no longer knows this batch"),),
                    )
                if first_round:
                    self.checkpoint("while_polling")
                new_state = self.ledger.record_status(a.attempt_id, status)
                out = self._outcome(a.attempt_id)
                if new_state is AttemptState.FAILED:
                    self.new_failures.append((a.batch_id, status.status, list(status.errors)))
                    self.log.error(
                        "AEP delivery: batch %s %s: %s",
                        a.batch_id,
                        status.status,
                        "; ".join(str(e) for e in status.errors) or "no details",
                    )
                elif new_state is AttemptState.SUCCESS:
                    self.log.info(
                        "AEP delivery: batch %s %s (%d rows in %d files; AEP wrote %s, failed %s)",
                        a.batch_id,
                        status.status,
                        out.rows,
                        len(out.files),
                        status.metrics.records_written,
                        status.metrics.records_failed,
                    )
                elif status.state is BatchState.ALERT:
                    self.log.error(
                        "AEP delivery: batch %s is stalled (AEP exhausted its retries); it stays "
                        "pending in the ledger — check it in AEP > Monitoring",
                        a.batch_id,
                    )
                else:
                    still.append(a)
            first_round = False
            watching = still
            remaining = deadline - self.clock()
            if not watching or remaining <= 0:
                break
            self.sleep(min(self.poll_interval_s, remaining))
        for a in watching:
            self.log.info(
                "AEP delivery: batch %s still %s after %.0f s; the next run resumes watching it",
                a.batch_id,
                self.outcomes[a.attempt_id].aep_status,
                self.wait_timeout_s,
            )


def deliver(
    client: AepClient,
    ledger: BatchLedger,
    *,
    dataset_id: str,
    files: Sequence[XdmFile],
    wait_timeout_s: float,
    poll_interval_s: float,
    max_files_per_batch: int = MAX_FILES_PER_BATCH,
    max_batch_bytes: int = MAX_BATCH_BYTES,
    upload_concurrency: int = 4,
    lock_timeout_s: float = 600.0,
    log: Any = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_checkpoint: Callable[[str], None] | None = None,
) -> DeliveryReport:
    """Deliver the files not yet delivered to `dataset_id`, exactly once; see the module docstring.

    `on_checkpoint` is called with the name of each checkpoint reached (see the module docstring),
    in the delivering thread.

    Raises `AepBatchFailed` (after recording it) when AEP fails a batch, `AepError` when a call
    fails, `FileTooLargeError` before anything is sent when a file exceeds 256 MiB.
    """
    if not dataset_id:
        raise ValueError("deliver needs a dataset_id (see `stripe-aep setup`)")
    if not 1 <= max_files_per_batch <= MAX_FILES_PER_BATCH:
        raise ValueError(f"max_files_per_batch must be within 1..{MAX_FILES_PER_BATCH}")
    if not MAX_PUT_BYTES <= max_batch_bytes <= MAX_BATCH_BYTES:
        raise ValueError(f"max_batch_bytes must be within {MAX_PUT_BYTES}..{MAX_BATCH_BYTES}")
    if poll_interval_s <= 0:
        raise ValueError("poll_interval_s must be positive")
    seen: set[str] = set()
    for f in files:
        if f.key in seen:
            raise ValueError(f"{f.key} is listed twice")
        seen.add(f.key)
        if f.size > MAX_PUT_BYTES:
            raise FileTooLargeError(
                f"{f.key} is {f.size / 2**20:.1f} MiB; AEP accepts at most 256 MiB per file",
                hint="write smaller XDM Parquet files (the XDM layer splits output into parts)",
            )
        if f.size <= 0 or f.rows < 0:
            raise ValueError(f"{f.key}: size must be > 0 and rows >= 0 (got {f.size}, {f.rows})")
    log = log or logging.getLogger("stripe_aep.aep.deliver")
    with ledger.dataset_lock(dataset_id, timeout_s=lock_timeout_s):
        run = _Delivery(
            client,
            ledger,
            dataset_id,
            files,
            wait_timeout_s=wait_timeout_s,
            poll_interval_s=poll_interval_s,
            max_files_per_batch=max_files_per_batch,
            max_batch_bytes=max_batch_bytes,
            upload_concurrency=upload_concurrency,
            log=log,
            clock=clock,
            sleep=sleep,
            on_checkpoint=on_checkpoint,
        )
        run.recover()
        run.send_new()
        run.watch()
    report = run.report
    report.batches = sorted(run.outcomes.values(), key=lambda b: b.attempt_id)
    if run.new_failures:
        raise AepBatchFailed(run.new_failures, report=report)
    return report
