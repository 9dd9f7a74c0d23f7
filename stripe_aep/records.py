"""Typed records one layer writes and another reads back: XDM manifests and delivery summaries.

Why one module: an XDM manifest is written by the conversion (`stripe_aep.xdm_lake`) and read by
the next conversion, the XDM asset's reconciliation and the delivery (which parts to send); a
delivery summary is produced by `stripe_aep.aep.deliver`, published as the aep asset's metadata and
read back by `make demo`, the crash tests and the benchmarks. Each record is a frozen dataclass
with `to_json()` (the JSON object, ready for `json.dumps` or a lake write) and `from_json()` (the
parsed object back, checked field by field), so every reader gets typed fields and a file that
does not hold what it should is refused with the field named instead of failing later with a
`KeyError`. Plain Python: no Dagster, AEP client or lake imports, so any layer can use it.

The on-disk manifest format is that of the manifests already on lakes: the same keys, and the
keys older stripe-aep versions did not write yet (`layer`, `raw_identity`, `mapping`,
`duplicates`, `duplicate_ids`, `versions`, `tombstones`) read as absent. A manifest without a
tenant, mapping or raw identity never matches the current one, so its raw file is converted again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

_T = TypeVar("_T")
_REQUIRED: Any = object()


class RecordError(ValueError):
    """A JSON object is not the record it should be; the message names the field."""


def _object(data: object, what: str) -> Mapping[str, object]:
    if not isinstance(data, Mapping):
        raise RecordError(f"{what} is not a JSON object (got {type(data).__name__})")
    return data


def _value(
    data: Mapping[str, object],
    key: str,
    kind: type[_T] | tuple[type, ...],
    what: str,
    default: Any = _REQUIRED,
) -> Any:
    """`data[key]` if it is of `kind` (a JSON null is absent); `default` when absent."""
    value = data.get(key)
    if value is None:
        if default is _REQUIRED:
            raise RecordError(f"{what} has no {key!r}")
        return default
    # JSON has no int/bool distinction in Python's eyes: `True` is not a count.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise RecordError(f"{what}: {key!r} is {value!r}, not a number")
    if not isinstance(value, kind):
        raise RecordError(f"{what}: {key!r} is {type(value).__name__}, expected {kind}")
    return value


def _count(data: Mapping[str, object], key: str, what: str, default: Any = _REQUIRED) -> int:
    value = _value(data, key, int, what, default)
    if value is not None and value < 0:
        raise RecordError(f"{what}: {key!r} is {value}, a count cannot be negative")
    return value


def _strings(data: Mapping[str, object], key: str, what: str) -> tuple[str, ...]:
    values = _value(data, key, list, what, default=[])
    if not all(isinstance(v, str) for v in values):
        raise RecordError(f"{what}: {key!r} must be a list of strings")
    return tuple(values)


def _counts_by_name(data: Mapping[str, object], key: str, what: str) -> dict[str, int]:
    values = _value(data, key, dict, what, default={})
    if not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in values.items()
    ):
        raise RecordError(f"{what}: {key!r} must map names to counts")
    return dict(values)


# ---- XDM manifests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class XdmPart:
    """One XDM Parquet part a manifest lists: its lake path, rows and size."""

    path: str
    rows: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "bytes": self.bytes}

    @classmethod
    def from_json(cls, data: object) -> XdmPart:
        what = "an XDM manifest part"
        obj = _object(data, what)
        return cls(
            path=_value(obj, "path", str, what),
            rows=_count(obj, "rows", what),
            bytes=_count(obj, "bytes", what),
        )


@dataclass(frozen=True)
class RawIdentity:
    """What tells one version of a raw file from another (the same window re-fetched later):
    its sidecar's object count, size and write time."""

    objects: int | None
    bytes: int | None
    written_at: int | None

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> RawIdentity:
        """The identity of a raw file, from its sidecar (`RawPartition.read_meta`)."""
        return cls(meta.get("objects"), meta.get("bytes"), meta.get("written_at"))

    def to_json(self) -> dict[str, Any]:
        return {"objects": self.objects, "bytes": self.bytes, "written_at": self.written_at}

    @classmethod
    def from_json(cls, data: object) -> RawIdentity:
        what = "an XDM manifest's raw_identity"
        obj = _object(data, what)
        return cls(
            objects=_count(obj, "objects", what, None),
            bytes=_count(obj, "bytes", what, None),
            written_at=_value(obj, "written_at", int, what, None),
        )


@dataclass(frozen=True)
class XdmManifest:
    """What converting one raw file wrote (`xdm/<resource>/<day>/<stem>.xdm.json`).

    `raw_identity`, `tenant` and `mapping` say what the parts were converted from and for (None
    in a manifest written before they were recorded); the counts reconcile the raw file:
    `input_records = rows + quarantined + duplicates`.
    """

    raw: str
    """The raw file's lake path."""
    layer: str
    """`stripe` (a listing file) or `changes` (a change file)."""
    tenant: str | None
    mapping: str | None
    """The mapping fingerprint (`stripe_aep.xdm.convert.mapping_fingerprint`)."""
    raw_identity: RawIdentity | None
    input_records: int
    rows: int
    quarantined: int
    parts: tuple[XdmPart, ...]
    duplicates: int = 0
    duplicate_ids: tuple[str, ...] = ()
    """The first ids dropped as duplicates (for the operator; at most 100)."""
    versions: int = 0
    """Rows of a change file (versions observed later); 0 for a listing file."""
    tombstones: int = 0
    """Of the versions, those of deleted objects."""
    reasons: dict[str, int] = field(default_factory=dict)
    """Quarantined records per reason."""
    quarantine: str | None = None
    """The quarantine file's lake path, when a record was quarantined."""
    converted_at: int | None = None

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "raw": self.raw,
            "layer": self.layer,
            "raw_identity": self.raw_identity.to_json() if self.raw_identity else None,
            "tenant": self.tenant,
            "mapping": self.mapping,
            "input_records": self.input_records,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "duplicate_ids": list(self.duplicate_ids),
            "versions": self.versions,
            "tombstones": self.tombstones,
            "reasons": dict(self.reasons),
            "quarantine": self.quarantine,
            "parts": [p.to_json() for p in self.parts],
            "converted_at": self.converted_at,
        }

    @classmethod
    def from_json(cls, data: object) -> XdmManifest:
        """A manifest read back; `RecordError` names what is missing or malformed."""
        what = "an XDM manifest"
        obj = _object(data, what)
        raw = _value(obj, "raw", str, what)
        identity = obj.get("raw_identity")
        parts = _value(obj, "parts", list, what)
        return cls(
            raw=raw,
            # Manifests written before change files existed are of listing files.
            layer=_value(
                obj, "layer", str, what, "changes" if raw.startswith("changes/") else "stripe"
            ),
            tenant=_value(obj, "tenant", str, what, None),
            mapping=_value(obj, "mapping", str, what, None),
            raw_identity=None if identity is None else RawIdentity.from_json(identity),
            input_records=_count(obj, "input_records", what),
            rows=_count(obj, "rows", what),
            quarantined=_count(obj, "quarantined", what),
            parts=tuple(XdmPart.from_json(p) for p in parts),
            duplicates=_count(obj, "duplicates", what, 0),
            duplicate_ids=_strings(obj, "duplicate_ids", what),
            versions=_count(obj, "versions", what, 0),
            tombstones=_count(obj, "tombstones", what, 0),
            reasons=_counts_by_name(obj, "reasons", what),
            quarantine=_value(obj, "quarantine", str, what, None),
            converted_at=_value(obj, "converted_at", int, what, None),
        )


# ---- delivery summaries --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliverySummary:
    """What one delivery call did, secret-free: the aep asset's run-wide metadata.

    `*_sent` cover the batches this call uploaded; `rows_confirmed` and `records_*` the batches
    that reached success during it (`records_*` are AEP's own counts); `pending_batches` are still
    processing (the next run watches them), `stalled_batches` exhausted AEP's retries.
    """

    dataset_id: str
    batch_ids: tuple[str, ...] = ()
    files_sent: int = 0
    rows_sent: int = 0
    bytes_sent: int = 0
    rows_confirmed: int = 0
    records_read: int = 0
    records_written: int = 0
    records_failed: int = 0
    statuses: dict[str, str] = field(default_factory=dict)
    """AEP status (or ledger state) per batch id."""
    pending_batches: tuple[str, ...] = ()
    stalled_batches: tuple[str, ...] = ()
    already_delivered_files: int = 0
    skipped_empty_files: int = 0
    changed_after_delivery: tuple[str, ...] = ()
    """Delivered files whose content changed since: AEP keeps what was delivered."""
    adopted_batches: int = 0
    """Batches found in Catalog by their tags that the ledger did not know."""
    catalog_lookups: int = 0

    #: the counts, in publishing order (numbers the Dagster UI can plot run over run)
    COUNTS = (
        "files_sent",
        "rows_sent",
        "bytes_sent",
        "rows_confirmed",
        "records_read",
        "records_written",
        "records_failed",
        "already_delivered_files",
        "skipped_empty_files",
        "adopted_batches",
        "catalog_lookups",
    )

    def counts(self) -> dict[str, int]:
        """The numeric figures by name (see `COUNTS`)."""
        return {name: getattr(self, name) for name in self.COUNTS}

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "batch_ids": list(self.batch_ids),
            **self.counts(),
            "statuses": dict(self.statuses),
            "pending_batches": list(self.pending_batches),
            "stalled_batches": list(self.stalled_batches),
            "changed_after_delivery": list(self.changed_after_delivery),
        }

    @classmethod
    def from_json(cls, data: object) -> DeliverySummary:
        what = "a delivery summary"
        obj = _object(data, what)
        statuses = _value(obj, "statuses", dict, what, {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in statuses.items()):
            raise RecordError(f"{what}: 'statuses' must map batch ids to statuses")
        return cls(
            dataset_id=_value(obj, "dataset_id", str, what),
            batch_ids=_strings(obj, "batch_ids", what),
            statuses=dict(statuses),
            pending_batches=_strings(obj, "pending_batches", what),
            stalled_batches=_strings(obj, "stalled_batches", what),
            changed_after_delivery=_strings(obj, "changed_after_delivery", what),
            **{name: _count(obj, name, what, 0) for name in cls.COUNTS},
        )
