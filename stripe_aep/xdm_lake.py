"""XDM Parquet on the lake: which raw files are converted, where their parts and quarantine live.

Layout, per resource and UTC day, mirroring both raw layers one file to one file:

    xdm/<resource>/<day>/<stem>.part<i>.parquet   XDM rows of raw file <stem> (≤ 256 MB each)
    xdm/<resource>/<day>/<stem>.xdm.json          manifest: counts, parts, reasons — written last
                                                  (`stripe_aep.records.XdmManifest`)
    quarantine/<resource>/<day>/<stem>.jsonl      records that failed validation, with the reason

`<stem>` is the raw file's stem (`<gte>-<lt>`, `<gte>-<lt>~<run>`) for a listing file of
`stripe/<resource>/<day>/`, and `changes-<stem>` for a change file of `changes/<resource>/<day>/`
(versions of objects observed later, see docs/change-capture.md): listing stems start with a
digit, so the two never share a part, manifest or quarantine name, and the delivery ledger, which
keys on part paths, sees every change file's parts as new parts of the day.

The two layers follow different row rules. A listing file holds snapshots of objects created that
day: a record created outside the day is quarantined, and an id is one row per day (a second copy,
in the same or another listing file, is a dropped duplicate). A change file holds versions: an
object created any day may have a version observed this day, and a version of an id that is
already a row of the day (its listing snapshot, another version) is a new row, not a duplicate;
only a second line of the same id within one change file is dropped (the derivation, stripe_aep/stripe/changes.py, writes at most one).

Why a manifest per raw file: conversion is incremental (only raw files without a valid manifest are
converted) and crash-safe (parts and quarantine are committed before the manifest, and a rerun simply
rewrites them under the same names), and reconciliation is a sum over manifests: every raw object is
an XDM row, a quarantined record or a dropped duplicate of a row.

A manifest only counts as done while it still describes what is on disk and what would be written
now. A raw file is converted again when its manifest is missing or unreadable, was written for
another tenant (`AEP_TENANT_ID` changed: AEP would reject every row with INGEST-1211) or another
mapping (`mapping_fingerprint`), describes another version of the raw file (re-fetched after
damage), or lists a part or quarantine file that is missing or has another size. So damaged or
stale XDM heals on the next run of the XDM asset instead of failing every later delivery.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from stripe_aep.lake import Lake
from stripe_aep.records import RawIdentity, XdmManifest, XdmPart
from stripe_aep.stripe.rawstore import Damage, DamagedRawFile, RawFile, RawPartition, day_bounds
from stripe_aep.xdm import ConversionResult, convert_jsonl
from stripe_aep.xdm.convert import listing_version, mapping_fingerprint


@dataclass(frozen=True)
class Pending:
    """A raw file to convert (again), and why."""

    raw: RawFile
    why: str

    @property
    def stem(self) -> str:
        """The XDM stem of the raw file (see `xdm_stem`)."""
        return xdm_stem(self.raw)


#: Prefix of the XDM stems of change files (versions), so they never collide with listing stems.
CHANGES_PREFIX = "changes-"


def is_change_file(raw: RawFile) -> bool:
    """Whether a raw file is of the `changes` layer (versions) rather than a listing."""
    return raw.path.startswith("changes/")


def xdm_stem(raw: RawFile) -> str:
    """The name XDM parts, manifest and quarantine of a raw file are built on."""
    return f"{CHANGES_PREFIX}{raw.stem}" if is_change_file(raw) else raw.stem


class MissingXdmPart(RuntimeError):
    """A part a manifest lists is not on the lake (or not whole). The message names the fix."""


class _RawReadError(Exception):
    """Reading (decompressing) the raw file failed: the raw file is damaged, not the output."""


class _GuardedSource:
    """The raw stream, with read errors told apart from write errors of the conversion."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def _call(self, method: str, arg: Any) -> Any:
        try:
            return getattr(self.stream, method)(arg)
        except io.UnsupportedOperation:
            raise
        except OSError as exc:
            raise _RawReadError(str(exc)) from exc

    def readinto(self, buffer: Any) -> int:
        return self._call("readinto", buffer)

    def read(self, size: int = -1) -> bytes:
        return self._call("read", size)


class XdmPartition:
    """The XDM side of one resource × day."""

    def __init__(self, lake: Lake, resource: str, day: dt.date) -> None:
        self.lake = lake
        self.resource = resource
        self.day = day
        self.raw = RawPartition(lake, resource, day)
        self.changes = RawPartition(lake, resource, day, layer="changes")
        self.folder = f"xdm/{resource}/{day.isoformat()}"
        self.quarantine_folder = f"quarantine/{resource}/{day.isoformat()}"

    def manifest_path(self, raw: RawFile) -> str:
        return f"{self.folder}/{xdm_stem(raw)}.xdm.json"

    def raw_files(self) -> list[RawFile]:
        """The live raw files of both layers: listing files, then change files."""
        return [*self.raw.files(), *self.changes.files()]

    def layer_of(self, raw: RawFile) -> RawPartition:
        """The raw partition (listing or changes) a raw file belongs to."""
        return self.changes if is_change_file(raw) else self.raw

    def read_meta(self, raw: RawFile) -> dict[str, Any]:
        return self.layer_of(raw).read_meta(raw)

    def heal(self) -> list[Damage]:
        """Set damaged raw files of both layers aside (see `RawPartition.heal`)."""
        return [*self.raw.heal(), *self.changes.heal()]

    def _read_manifest(self, rel: str) -> XdmManifest | None:
        """The manifest at `rel`; None when it is missing or not a whole, well-formed manifest
        (its raw file is then converted again)."""
        try:
            return XdmManifest.from_json(self.lake.read_json(rel))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return None  # a RecordError (a ValueError) too: the raw file is converted again

    def manifests(self) -> dict[str, XdmManifest]:
        """Readable manifests of the live raw files (keyed by raw stem)."""
        live = {xdm_stem(f) for f in self.raw_files()}
        out = {}
        for f in self.lake.list_files(self.folder, suffix=".xdm.json"):
            stem = f.path.rsplit("/", 1)[1][: -len(".xdm.json")]
            if stem in live:
                manifest = self._read_manifest(f.path)
                if manifest is not None:
                    out[stem] = manifest
        return out

    def file_problems(self, manifest: XdmManifest) -> list[str]:
        """Parts or quarantine file listed by a manifest that are missing or not whole."""
        problems = []
        for p in manifest.parts:
            size = self.lake.size(p.path)
            if size is None:
                problems.append(f"part {p.path} is missing")
            elif size != p.bytes:
                problems.append(f"part {p.path} has {size} bytes, {p.bytes} written")
        quarantine = manifest.quarantine
        if manifest.quarantined and not (quarantine and self.lake.exists(quarantine)):
            problems.append(f"quarantine file {quarantine} is missing")
        return problems

    def pending(self, tenant: str) -> list[Pending]:
        """Raw files to convert: never converted, or their XDM is stale or damaged (see above)."""
        fingerprint = mapping_fingerprint(self.resource)
        out = []
        for raw in self.raw_files():
            manifest = self._read_manifest(self.manifest_path(raw))
            why = None
            if manifest is None:
                exists = self.lake.exists(self.manifest_path(raw))
                why = "its manifest is unreadable" if exists else "not converted yet"
            elif manifest.tenant != tenant:
                why = f"converted for tenant {manifest.tenant!r}, now {tenant!r}"
            elif manifest.mapping != fingerprint:
                why = f"converted with mapping {manifest.mapping}, now {fingerprint}"
            elif manifest.raw_identity != RawIdentity.from_meta(self.read_meta(raw)):
                why = "the raw file was re-fetched after it was converted"
            else:
                problems = self.file_problems(manifest)
                why = "; ".join(problems) if problems else None
            if why is not None:
                out.append(Pending(raw, why))
        return out

    def kept_ids(self, tenant: str, exclude: set[str] = frozenset()) -> set[str]:
        """Ids that are listing rows of the partition, from the parts of every converted listing
        file but `exclude` (stems about to be converted again). Only the id column is read.
        Change files are left out: their rows are versions, never duplicates of a listing row."""
        column = f"_{tenant}.stripe.id"
        ids: set[str] = set()
        for stem, manifest in self.manifests().items():
            if stem in exclude or manifest.tenant != tenant:
                continue
            if stem.startswith(CHANGES_PREFIX):
                continue
            for p in manifest.parts:
                table = pq.read_table(
                    self.lake.full_path(p.path), columns=[column], filesystem=self.lake.fs
                )
                ids.update(table.column(0).to_pylist())
        return ids

    def raw_objects(self) -> int:
        """Objects (lines) of the live raw files of both layers."""
        return sum(self.read_meta(f)["objects"] for f in self.raw_files())

    def convert(
        self,
        raw: RawFile,
        tenant: str,
        known_ids: set[str] | None = None,
        lookups: dict[str, Any] | None = None,
    ) -> tuple[XdmManifest, ConversionResult]:
        """Convert one raw file; returns its manifest (already committed) and the result.

        `known_ids`: ids already listing rows of the partition (duplicates of them are dropped); the
        ids kept here are added to it. It is ignored for a change file (see the module docstring).
        `lookups`: extra conversion parameters (refunds: the charge → customer index). A raw file
        that cannot be read whole is set aside (its window is re-fetched by the next raw run) and
        `DamagedRawFile` names it.
        """
        changes = is_change_file(raw)
        stem = xdm_stem(raw)
        layer = self.layer_of(raw)
        meta = layer.read_meta(raw)
        staged = []

        def open_output(index: int):
            stream, handle = self.lake.open_staged(f"{self.folder}/{stem}.part{index}.parquet")
            staged.append(handle)
            return stream

        quarantine_rel = f"{self.quarantine_folder}/{stem}.jsonl"
        q_stream, q_handle = self.lake.open_staged(quarantine_rel)
        ids = set() if changes else set(known_ids or ())
        # A listing row's version time: when the listing was fetched (the sidecar's
        # `fetched_at`; files written before it was recorded: the window's end, a lower bound).
        fetched_at = meta.get("fetched_at")
        version = None if changes else listing_version(int(fetched_at or raw.lt))
        damage = None
        try:
            with self.lake.open_input(raw.path, compression="zstd") as source:
                result = convert_jsonl(
                    _GuardedSource(source),
                    resource=self.resource,
                    tenant=tenant,
                    account=meta.get("account"),
                    api_version=meta.get("api_version") or "unknown",
                    open_output=open_output,
                    quarantine=q_stream,
                    day_window=None if changes else day_bounds(self.day),
                    known_ids=ids,
                    lookups=lookups,
                    version=version,
                    changes=changes,
                )
            q_stream.close()
            if result.input_records != meta["objects"]:
                damage = f"holds {result.input_records} lines, {meta['objects']} were written"
        except _RawReadError as exc:
            damage = f"cannot be read: {exc}"
        except BaseException:
            self._discard(q_stream, q_handle, staged)
            raise
        if damage is not None:
            self._discard(q_stream, q_handle, staged)
            moved = layer.set_aside(Damage(raw, self.resource, self.day, damage))
            raise DamagedRawFile(moved.message())
        # Parts keep their names across conversions (the delivery ledger keys on them), so the
        # old manifest goes first: until the new one is written, a reader sees this raw file as not
        # converted, never an old manifest over a mix of old and new parts.
        self.lake.delete(self.manifest_path(raw))
        for handle in staged:
            handle.commit()
        if result.quarantined:
            q_handle.commit()
        else:
            q_handle.discard()
            self.lake.delete(quarantine_rel)
        parts = [f"{self.folder}/{stem}.part{p.index}.parquet" for p in result.parts]
        manifest = XdmManifest(
            raw=raw.path,
            layer=layer.layer,
            raw_identity=RawIdentity.from_meta(meta),
            tenant=tenant,
            mapping=mapping_fingerprint(self.resource),
            input_records=result.input_records,
            rows=result.rows,
            quarantined=result.quarantined,
            duplicates=result.duplicates,
            duplicate_ids=tuple(result.duplicate_ids),
            # Rows of a change file are versions; tombstones are those of deleted objects.
            versions=result.rows if changes else 0,
            tombstones=result.tombstones,
            reasons=dict(result.reasons),
            quarantine=quarantine_rel if result.quarantined else None,
            parts=tuple(
                XdmPart(path, p.rows, p.bytes) for path, p in zip(parts, result.parts, strict=True)
            ),
            converted_at=int(time.time()),
        )
        self.lake.write_json(self.manifest_path(raw), manifest.to_json())
        # Parts of an earlier conversion that this one did not rewrite (it has fewer parts).
        for f in self.lake.list_files(self.folder, suffix=".parquet"):
            if f.path.rsplit("/", 1)[1].startswith(f"{stem}.part") and f.path not in parts:
                self.lake.delete(f.path)
        if known_ids is not None and not changes:
            known_ids.update(ids)
        return manifest, result

    @staticmethod
    def _discard(q_stream: Any, q_handle: Any, staged: list) -> None:
        if not q_stream.closed:
            q_stream.close()
        q_handle.discard()
        for handle in staged:
            handle.discard()

    def parts(self) -> list[XdmPart]:
        """Every XDM Parquet part of the live raw files, in window order.

        Raises `MissingXdmPart` (naming the part and the fix) rather than list a part that is not
        on the lake whole: a delivery must not start a batch it cannot finish.
        """
        out, problems = [], []
        for _, manifest in sorted(self.manifests().items()):
            problems.extend(p for p in self.file_problems(manifest) if p.startswith("part "))
            out.extend(manifest.parts)
        if problems:
            raise MissingXdmPart(
                f"{'; '.join(problems)}. Materialize xdm/{self.resource} for {self.day} first: "
                "it converts the raw file again"
            )
        return out
