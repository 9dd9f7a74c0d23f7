"""XDM Parquet on the lake: which raw files are converted, where their parts and quarantine live.

Layout, per resource and UTC day, mirroring the raw layer one file to one file:

    xdm/<resource>/<day>/<stem>.part<i>.parquet   XDM rows of raw file <stem> (≤ 256 MB each)
    xdm/<resource>/<day>/<stem>.xdm.json          manifest: counts, parts, reasons — written last
    quarantine/<resource>/<day>/<stem>.jsonl      records that failed validation, with the reason

Why a manifest per raw file: conversion is incremental (only raw files without a manifest are
converted) and crash-safe (parts and quarantine are committed before the manifest, and a rerun simply
rewrites them under the same names), and reconciliation is a sum over manifests: every raw object is
either an XDM row or a quarantined record.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from stripe_aep.lake import Lake
from stripe_aep.stripe.rawstore import RawFile, RawPartition
from stripe_aep.xdm import ConversionResult, convert_jsonl


@dataclass(frozen=True)
class XdmPart:
    path: str
    rows: int
    bytes: int


class XdmPartition:
    """The XDM side of one resource × day."""

    def __init__(self, lake: Lake, resource: str, day: dt.date) -> None:
        self.lake = lake
        self.resource = resource
        self.day = day
        self.raw = RawPartition(lake, resource, day)
        self.folder = f"xdm/{resource}/{day.isoformat()}"
        self.quarantine_folder = f"quarantine/{resource}/{day.isoformat()}"

    def manifest_path(self, raw: RawFile) -> str:
        return f"{self.folder}/{raw.stem}.xdm.json"

    def manifests(self) -> dict[str, dict[str, Any]]:
        """Manifests of the live raw files (keyed by raw stem)."""
        live = {f.stem for f in self.raw.files()}
        out = {}
        for f in self.lake.list_files(self.folder, suffix=".xdm.json"):
            stem = f.path.rsplit("/", 1)[1][: -len(".xdm.json")]
            if stem in live:
                out[stem] = self.lake.read_json(f.path)
        return out

    def pending(self) -> list[RawFile]:
        """Raw files not converted yet."""
        done = set(self.manifests())
        return [f for f in self.raw.files() if f.stem not in done]

    def raw_objects(self) -> int:
        return sum(int(self.lake.read_json(f.meta_path)["objects"]) for f in self.raw.files())

    def convert(
        self, raw: RawFile, tenant: str, lookups: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], ConversionResult]:
        """Convert one raw file; returns its manifest (already committed) and the result.

        `lookups`: extra conversion parameters (refunds: the charge → customer index)."""
        meta = self.lake.read_json(raw.meta_path)
        staged = []

        def open_output(index: int):
            stream, handle = self.lake.open_staged(f"{self.folder}/{raw.stem}.part{index}.parquet")
            staged.append(handle)
            return stream

        quarantine_rel = f"{self.quarantine_folder}/{raw.stem}.jsonl"
        q_stream, q_handle = self.lake.open_staged(quarantine_rel)
        try:
            with self.lake.open_input(raw.path, compression="zstd") as source:
                result = convert_jsonl(
                    source,
                    resource=self.resource,
                    tenant=tenant,
                    account=meta.get("account"),
                    api_version=meta.get("api_version") or "unknown",
                    open_output=open_output,
                    quarantine=q_stream,
                    lookups=lookups,
                )
            q_stream.close()
        except BaseException:
            if not q_stream.closed:
                q_stream.close()
            q_handle.discard()
            for handle in staged:
                handle.discard()
            raise
        for handle in staged:
            handle.commit()
        if result.quarantined:
            q_handle.commit()
        else:
            q_handle.discard()
            self.lake.delete(quarantine_rel)
        manifest = {
            "raw": raw.path,
            "tenant": tenant,
            "input_records": result.input_records,
            "rows": result.rows,
            "quarantined": result.quarantined,
            "reasons": dict(result.reasons),
            "quarantine": quarantine_rel if result.quarantined else None,
            "parts": [
                {
                    "path": f"{self.folder}/{raw.stem}.part{p.index}.parquet",
                    "rows": p.rows,
                    "bytes": p.bytes,
                }
                for p in result.parts
            ],
            "converted_at": int(time.time()),
        }
        self.lake.write_json(self.manifest_path(raw), manifest)
        return manifest, result

    def parts(self) -> list[XdmPart]:
        """Every XDM Parquet part of the live raw files, in window order."""
        out = []
        for _, manifest in sorted(self.manifests().items()):
            out.extend(
                XdmPart(p["path"], int(p["rows"]), int(p["bytes"])) for p in manifest["parts"]
            )
        return out
