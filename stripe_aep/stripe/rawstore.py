"""Raw Stripe objects on the lake, one folder per UTC day of `created`, and the cursor derived from them.

Layout: `stripe/<resource>/<YYYY-MM-DD>/<gte>-<lt>.jsonl.zst` holds every object with
`gte <= created < lt` (Unix seconds), one compact JSON object per line, exactly as Stripe sent it, zstd
compressed. Beside it `<gte>-<lt>.meta.json` records where it came from (account, API version, counts).

Why the window is in the file name: the covered part of a day (the `created` cursor, or high-water mark)
is the union of the windows of its files, so it is *derived from what is on disk* and can never drift
from the data. A crash mid-run leaves only whole files (every write is atomic), and the next run fetches
exactly the uncovered gaps: no object is fetched twice into the partition and none is missed.

Two more kinds of file keep that true:
- a merged file `<a>-<b>` written at the end of a run replaces the per-sub-window files it spans; until
  those are deleted they are *superseded* (their window lies strictly inside a base file's window) and
  ignored by every reader, so a crash between "merge written" and "parts deleted" doubles nothing;
- a refresh file `<gte>-<lt>~<run>.jsonl.zst` holds objects found by re-reading an already covered window
  (late-visible objects) that were not on disk yet; it only ever adds new ids.

Damage heals by the same rule: a data file whose size differs from the size its sidecar recorded
(truncated), that cannot be decompressed or holds fewer lines than recorded, or whose sidecar is missing
or not valid JSON, is *set aside* (moved to `damaged/…`, kept for inspection) with a warning that names
it. Its window is then no longer covered, so the next run re-fetches exactly that window.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from stripe_aep.lake import Lake

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d+)-(\d+)(?:~(\d+))?\.jsonl\.zst$")
DAY = 86400


def day_bounds(day: dt.date) -> tuple[int, int]:
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    return start, start + DAY


def day_of(ts: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).date()


@dataclass(frozen=True)
class RawFile:
    gte: int
    lt: int
    refresh: int | None
    path: str  # lake-relative path of the .jsonl.zst file

    @property
    def stem(self) -> str:
        return self.path.rsplit("/", 1)[1][: -len(".jsonl.zst")]

    @property
    def meta_path(self) -> str:
        return self.path[: -len(".jsonl.zst")] + ".meta.json"


class DamagedRawFile(Exception):
    """A raw file or its sidecar cannot be trusted. The message names the file and the fix."""


@dataclass(frozen=True)
class Damage:
    """One damaged raw file: what is wrong, and where it was moved (None until set aside)."""

    file: RawFile
    resource: str
    day: dt.date
    reason: str
    moved_to: str | None = None

    def message(self) -> str:
        window = f"[{_iso(self.file.gte)}, {_iso(self.file.lt)})"
        where = f"moved to {self.moved_to}" if self.moved_to else "left in place"
        if self.file.refresh is None:
            fix = (
                f"its window {window} is a gap again: the next run of stripe/{self.resource} for "
                f"{self.day} re-fetches it"
            )
        else:
            fix = (
                f"it held late arrivals of {window}: run stripe/{self.resource} for {self.day} "
                "with refresh: true to fetch them again"
            )
        return f"raw file {self.file.path} is damaged ({self.reason}); {where}; {fix}"


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract(lo: int, hi: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [lo, hi) not in `covered` (sorted, merged intervals)."""
    gaps, pos = [], lo
    for a, b in covered:
        if b <= pos or a >= hi:
            continue
        if a > pos:
            gaps.append((pos, min(a, hi)))
        pos = max(pos, b)
        if pos >= hi:
            break
    if pos < hi:
        gaps.append((pos, hi))
    return gaps


def raw_files(paths: Iterable[str]) -> list[RawFile]:
    """The raw data files among lake paths (of one partition folder), in window order."""
    files = []
    for path in paths:
        m = _NAME.match(path.rsplit("/", 1)[1])
        if m:
            refresh = int(m.group(3)) if m.group(3) else None
            files.append(RawFile(int(m.group(1)), int(m.group(2)), refresh, path))
    return sorted(files, key=lambda f: (f.gte, f.lt, f.refresh or 0, f.path))


def live_files(files: list[RawFile]) -> list[RawFile]:
    """The live files of one partition's files: superseded parts of a merge excluded."""
    return RawPartition._split_live(files)[0]


#: Layers laid out as raw partitions: `stripe` holds what the created-window listings returned;
#: `changes` holds the versions of objects observed later (from events and re-reads), one file per
#: window of the source that revealed them.
RAW_LAYERS = ("stripe", "changes")


class RawPartition:
    """One resource × one UTC day on the lake (of the `stripe` layer unless `layer` says otherwise)."""

    def __init__(self, lake: Lake, resource: str, day: dt.date, layer: str = "stripe") -> None:
        if layer not in RAW_LAYERS:
            raise ValueError(f"unknown raw layer {layer!r}; expected one of {RAW_LAYERS}")
        self.lake = lake
        self.resource = resource
        self.day = day
        self.layer = layer
        self.start, self.end = day_bounds(day)
        self.folder = f"{layer}/{resource}/{day.isoformat()}"

    def _all_files(self) -> list[RawFile]:
        return raw_files(f.path for f in self.lake.list_files(self.folder, suffix=".jsonl.zst"))

    @staticmethod
    def _split_live(files: list[RawFile]) -> tuple[list[RawFile], list[RawFile]]:
        base = [f for f in files if f.refresh is None]
        superseded = [
            f
            for f in base
            if any(
                o is not f and o.gte <= f.gte and f.lt <= o.lt and (o.gte, o.lt) != (f.gte, f.lt)
                for o in base
            )
        ]
        live = [f for f in files if f not in superseded]
        return live, superseded

    def files(self) -> list[RawFile]:
        """The live files of the partition (superseded parts excluded), in window order."""
        return self._split_live(self._all_files())[0]

    def coverage(self) -> list[tuple[int, int]]:
        return merge_intervals((f.gte, f.lt) for f in self.files() if f.refresh is None)

    def cursor(self) -> int:
        """High-water mark: the end of the covered run of seconds that starts at midnight."""
        cov = self.coverage()
        return cov[0][1] if cov and cov[0][0] <= self.start else self.start

    def gaps(self, until: int) -> list[tuple[int, int]]:
        """Uncovered windows between midnight and `until` (capped at the day's end)."""
        hi = min(until, self.end)
        return subtract(self.start, hi, self.coverage()) if hi > self.start else []

    def _load_meta(self, raw: RawFile) -> tuple[dict[str, Any] | None, str]:
        """(sidecar, "") or (None, what is wrong with it)."""
        try:
            meta = self.lake.read_json(raw.meta_path)
        except FileNotFoundError:
            return None, "is missing"
        except (ValueError, UnicodeDecodeError) as exc:
            return None, f"is not valid JSON ({exc})"
        if isinstance(meta, dict) and isinstance(meta.get("objects"), int):
            return meta, ""
        return None, "has no object count"

    def read_meta(self, raw: RawFile) -> dict[str, Any]:
        """The sidecar of a raw file; `DamagedRawFile` (naming it and the fix) if it is unusable."""
        meta, problem = self._load_meta(raw)
        if meta is None:
            raise DamagedRawFile(
                f"{self.lake.full_path(raw.meta_path)} {problem}. Run stripe/{self.resource} for "
                f"{self.day}: it sets the file aside and re-fetches its window"
            )
        return meta

    def inspect(self, deep: bool = False) -> list[Damage]:
        """Damaged live files. Cheap checks always (sidecar readable, size as recorded); `deep`
        also decompresses each file and counts its lines (always done for files whose sidecar
        predates the recorded size)."""
        found = []
        for f in self.files():
            reason = self._check(f, deep)
            if reason is not None:
                found.append(Damage(f, self.resource, self.day, reason))
        return found

    def _check(self, f: RawFile, deep: bool) -> str | None:
        meta, problem = self._load_meta(f)
        if meta is None:
            return f"its sidecar {f.meta_path} {problem}"
        size = self.lake.size(f.path)
        recorded = meta.get("bytes")
        if isinstance(recorded, int) and size != recorded:
            return f"truncated or altered: {size} bytes on disk, {recorded} written"
        if deep or not isinstance(recorded, int):
            try:
                lines = self.count_lines(f)
            except OSError as exc:
                return f"cannot be read: {exc}"
            if lines != meta["objects"]:
                return f"holds {lines} lines, {meta['objects']} were written"
            if not isinstance(recorded, int):
                # Written before sizes were recorded: record it now, so later checks are a stat.
                self.lake.write_json(f.meta_path, {**meta, "bytes": size})
        return None

    def count_lines(self, f: RawFile) -> int:
        """Non-empty lines of a raw file, streamed (OSError if it cannot be decompressed)."""
        count, last = 0, b"\n"
        with self.lake.open_input(f.path, compression="zstd") as stream:
            while chunk := stream.read(1 << 22):
                count += chunk.count(b"\n")
                last = chunk[-1:]
        return count + (last != b"\n")

    def set_aside(self, damage: Damage) -> Damage:
        """Move a damaged file and its sidecar to `damaged/<folder>/<ms>/`: kept for inspection,
        and its window is no longer covered."""
        folder = f"damaged/{self.folder}/{int(time.time() * 1000)}"
        for rel in (damage.file.meta_path, damage.file.path):  # data last: it marks coverage
            try:
                self.lake.move(rel, f"{folder}/{rel.rsplit('/', 1)[1]}")
            except FileNotFoundError:
                pass
        target = f"{folder}/{damage.file.path.rsplit('/', 1)[1]}"
        return Damage(damage.file, damage.resource, damage.day, damage.reason, target)

    def heal(self, deep: bool = False) -> list[Damage]:
        """Set every damaged live file aside, with a warning naming it; returns what was done."""
        done = []
        for damage in self.inspect(deep):
            moved = self.set_aside(damage)
            log.warning(moved.message())
            done.append(moved)
        return done

    def ids(self) -> set[str]:
        """Ids already on disk (used by refresh to keep only new objects)."""
        out: set[str] = set()
        for f in self.files():
            with self.lake.open_input(f.path, compression="zstd") as stream:
                for line in stream.read().splitlines():
                    if line:
                        out.add(json.loads(line)["id"])
        return out

    # -- writing -----------------------------------------------------------------------------

    def write(
        self,
        gte: int,
        lt: int,
        lines: Iterable[bytes],
        meta: dict[str, Any],
        refresh: int | None = None,
    ) -> RawFile:
        """Write one window atomically; the data file (which marks coverage) appears last."""

        def chunks() -> Iterable[tuple[bytes, int]]:
            # One compressor call per thousand lines, not per line: 4x less CPU per page.
            batch: list[bytes] = []
            for line in lines:
                batch.append(line)
                if len(batch) == 1000:
                    yield b"\n".join(batch) + b"\n", len(batch)
                    batch = []
            if batch:
                yield b"\n".join(batch) + b"\n", len(batch)

        return self._write_chunks(gte, lt, chunks(), meta, refresh)

    def _write_chunks(
        self,
        gte: int,
        lt: int,
        chunks: Iterable[tuple[bytes, int]],
        meta: dict[str, Any],
        refresh: int | None = None,
        compressed: bool = False,
    ) -> RawFile:
        """`chunks` are (bytes, line count); `compressed=True` means they are zstd frames already."""
        if not (self.start <= gte <= lt <= self.end):
            raise ValueError(f"window {gte}-{lt} is outside {self.day}")
        name = f"{gte}-{lt}" + (f"~{refresh}" if refresh is not None else "")
        raw = RawFile(gte, lt, refresh, f"{self.folder}/{name}.jsonl.zst")
        count = 0
        sink, staged = self.lake.open_staged(raw.path)
        out = sink if compressed else pa.CompressedOutputStream(sink, "zstd")
        try:
            for chunk, lines in chunks:
                out.write(chunk)
                count += lines
            out.close()
            if not sink.closed:
                sink.close()
            # The compressed size is recorded so that a truncated file is seen by a stat alone.
            size = staged.size()
            # The sidecar is committed before the data file is renamed into place.
            self.lake.write_json(
                raw.meta_path,
                {
                    "resource": self.resource,
                    "day": self.day.isoformat(),
                    "gte": gte,
                    "lt": lt,
                    "refresh": refresh is not None,
                    "written_at": int(time.time()),
                    **meta,
                    # What was actually written always wins over what the caller passed.
                    "objects": count,
                    "bytes": size,
                },
            )
            staged.commit()
        except BaseException:
            for stream in (out, sink):
                if not stream.closed:
                    stream.close()
            staged.discard()
            raise
        return raw

    def merge(self, parts: list[RawFile], meta: dict[str, Any]) -> RawFile | None:
        """Replace contiguous base files written by one run with one file spanning them.

        A zstd stream may hold several frames, so the merged file is the parts' compressed bytes end to
        end: no decompression, no recompression, flat memory. It is written before the parts are
        deleted; a crash in between leaves the parts superseded (ignored by readers), never doubled.
        """
        parts = sorted((p for p in parts if p.refresh is None), key=lambda p: (p.gte, p.lt))
        if len(parts) < 2:
            return None
        merged = merge_intervals((p.gte, p.lt) for p in parts)
        if len(merged) != 1:
            return None

        metas = [self.read_meta(p) for p in parts]

        def chunks():
            for p, part_meta in zip(parts, metas, strict=True):
                yield self.lake.read_bytes(p.path), part_meta["objects"]

        # The merged file's state is as old as its oldest part's.
        fetched = min(fetched_at(p, m) for p, m in zip(parts, metas, strict=True))
        meta = {**meta, "merged_from": len(parts), "fetched_at": fetched}
        total = self._write_chunks(*merged[0], chunks(), meta, compressed=True)
        for p in parts:
            self.lake.delete(p.path)
            self.lake.delete(p.meta_path)
        return total

    def cleanup_superseded(self) -> int:
        _, superseded = self._split_live(self._all_files())
        for f in superseded:
            self.lake.delete(f.path)
            self.lake.delete(f.meta_path)
        return len(superseded)


def fetched_at(raw: RawFile, meta: dict[str, Any]) -> int:
    """When a listing file's objects were read (Unix s): the sidecar's `fetched_at` (the start of
    the first request of its window's pages), or, for files written before it was recorded, the
    window's end `lt` (the pages were necessarily requested after it)."""
    value = meta.get("fetched_at")
    return int(value) if isinstance(value, int | float) else raw.lt


def read_objects(lake: Lake, raw: RawFile) -> list[dict[str, Any]]:
    """All objects of one raw file (tests and small tools; the XDM layer streams instead)."""
    with lake.open_input(raw.path, compression="zstd") as stream:
        data = stream.read()
    return [json.loads(line) for line in data.split(b"\n") if line]
