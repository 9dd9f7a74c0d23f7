"""Streaming, vectorised conversion of raw Stripe JSON lines to XDM Parquet, with quarantine.

Why it is built this way:
- Throughput: the raw stream is cut into large byte blocks at line boundaries; each block is parsed
  by pyarrow's multi-threaded JSON reader with an explicit schema of exactly the Stripe paths the
  mapping reads, and converted column by column with pyarrow compute. No Python runs per record on
  this path.
- Skipping what is not read: the reader is told to ignore every undeclared field, which makes it
  much cheaper than inferring them. `metadata` (unknown keys) is the exception: its keys are first
  found by a vectorised scan of the lines (`keyscan.py`) and declared; when the scan cannot vouch
  for them (a non-string value, a nested object, a key written with escapes), the block is parsed
  with inference as before. Same output either way.
- Pipelining: three threads work one block apart (read + split lines + key scan; JSON parse;
  convert + validate + write Parquet here). The heavy parts release the GIL, so both cores stay
  busy. At most a few blocks are in memory at a time (bounded queues), whatever the file size.
- Nothing is lost, nothing aborts the file: every non-blank input line ends either as a Parquet
  row or as a quarantine line `{"reason", "field", "detail", "record"}`. A block that pyarrow
  cannot parse or convert as a whole (a bad record, mixed expanded/unexpanded fields, a line that
  is not an object) is redone on the slow path: each line is checked with `json` against the
  declared Stripe kinds, bad lines are quarantined with the exact field, good lines are projected
  onto the declared paths and converted together (and, as a last resort, one by one).
- Expandable fields: parsed as id strings; when a block shows the expanded object instead, the
  path is switched to `struct<id>` for the rest of the file, so consistently expanded data stays
  on the fast path. Blocks that mix both shapes take the slow path, which normalises to the id.
- pyarrow's JSON reader crashes on an input that is only `null` and turns a `null` line into an
  all-null row; lines whose first and last non-blank bytes are not `{`/`}` are therefore never
  handed to it, and the row count of every parse is checked against the line count.
- One row per object and day: with `day_window` (the partition's `[start, end)` in Unix seconds) a
  record whose `created` lies outside it is quarantined (`created_outside_partition`), and a record
  whose id was already kept (earlier in the file, or in `known_ids`: the rows of the partition's
  other files) is dropped and counted as a duplicate: the first copy in conversion order is kept,
  so every id of a partition is one row. input = rows + quarantined + duplicates. That is the
  rule for listing files; a change file (`changes=True`: versions, each line with a `_change`
  key) is converted without `day_window` and against its own ids only, since its rows are later
  versions of objects that may already be rows (see `stripe_aep.xdm_lake`).
- Version fields (`_{TENANT}.stripe.version*`, `deleted`): per-file constants for a listing file
  (`version`), read from each line's `_change` key for a change file.
- Quarantine lines name the object (`id`, when one can be read) and the real cause: an integer
  beyond ±(2^53 − 1) is `out_of_range` on its field; a line nested too deeply for any JSON parser
  here (e.g. `metadata` 3,000 levels deep) is `too_deeply_nested`, and only that line is affected.
- AEP's Parquet: nested groups following the XDM paths, only DOUBLE/INT64/BOOLEAN/UTF8/MAP/LIST
  and INT64 TIMESTAMP(MILLIS, UTC); parts are rolled over before they reach `max_file_bytes`
  (256 MB per file PUT). Rows keep the input order, so the same input gives the same files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import queue
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from stripe_aep.xdm.keyscan import KeyScan, line_offsets, scan_object_keys
from stripe_aep.xdm.resources import ResourceMapping, mapping_for
from stripe_aep.xdm.schemas import (
    _input_tree,
    _Node,
    expandable_paths,
    input_error_path,
    metadata_paths,
    stripe_parse_schema,
    validate_tenant,
    xdm_schema_for,
)
from stripe_aep.xdm.spec import (
    LONG_MAX,
    LONG_MIN,
    Frame,
    build_field,
    first_failure,
    line_fingerprints,
)

DEFAULT_MAX_FILE_BYTES = 256 * 1024**2
DEFAULT_BLOCK_BYTES = 16 * 1024**2
_PARSE_BLOCK = 1024**2
_LBRACE, _RBRACE, _NL = ord("{"), ord("}"), ord("\n")
_CHANGED = re.compile(r"Column\((?P<col>[^)]*)\) changed from (?P<a>\w+) to (?P<b>\w+)")

#: Bump when the conversion of the same input changes without a schema change (rules, quarantine,
#: value formats): XDM files written by another mapping version are converted again.
MAPPING_VERSION = 2
#: A JSON string (with whether a `:` follows it: it is a key) or a bracket.
_TOKEN = re.compile(rb'(?P<string>"(?:[^"\\]|\\.)*")(?P<colon>\s*:)?|[{}\[\]]')


def mapping_fingerprint(resource: str) -> str:
    """Identifies the mapping a file was converted with: version + the resource's XDM schema."""
    schema = xdm_schema_for(resource, "tenant")
    digest = hashlib.sha256(f"{MAPPING_VERSION}\n{schema}".encode()).hexdigest()[:16]
    return f"v{MAPPING_VERSION}-{digest}"


#: Parquet writer settings AEP accepts (see docs/xdm-mapping.md).
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "snappy",
    "version": "2.6",
    "data_page_version": "1.0",
    "use_deprecated_int96_timestamps": False,
    "coerce_timestamps": "ms",
    "allow_truncated_timestamps": False,
    "store_schema": False,
    "write_statistics": True,
}


@dataclass(frozen=True)
class PartInfo:
    """One Parquet part written through `open_output(index)`."""

    index: int
    rows: int
    bytes: int


@dataclass
class ConversionResult:
    """Counts, parts and a preview of one conversion (what the XDM asset publishes)."""

    resource: str
    input_records: int = 0
    rows: int = 0
    quarantined: int = 0
    parts: list[PartInfo] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    preview: list[dict[str, Any]] = field(default_factory=list)
    slow_path_records: int = 0
    duplicates: int = 0
    duplicate_ids: list[str] = field(default_factory=list)  # the first 100
    tombstones: int = 0  # rows of deleted objects (change files only)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    @property
    def files(self) -> int:
        return len(self.parts)

    @property
    def reconciled(self) -> bool:
        return self.input_records == self.rows + self.quarantined + self.duplicates

    def preview_markdown(self, max_rows: int = 5) -> str:
        """A short markdown table of the first rows (flattened key columns)."""
        if not self.preview:
            return "_no rows_"
        flat = [_flatten(r) for r in self.preview[:max_rows]]
        keys = [k for k in flat[0] if not k.endswith(("MajorText",))][:8]
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in flat:
            cells = [str(r.get(k, "")).replace("|", "\\|")[:40] for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict) and v and k != "metadata":
            out.update(_flatten(v, f"{prefix}{k}."))
        elif not isinstance(v, (list, dict)):
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------------------------------------
# Reading lines in blocks
# ------------------------------------------------------------------------------------------


def _read_blocks(source: Any, block_bytes: int) -> Iterator[memoryview]:
    """Blocks of whole lines (each ends with a newline) from a readable stream.

    Each block is a fresh buffer (blocks are in flight in several threads at once); the partial
    line left over from the previous read is copied to its front and the stream reads straight
    into the rest (`readinto`), so the data is copied once. Streams without `readinto` are read
    with `read`.
    """
    rest = b""
    readinto = getattr(source, "readinto", None)
    while True:
        buf = bytearray(len(rest) + block_bytes)
        buf[: len(rest)] = rest
        filled = len(rest) + _fill(source, readinto, memoryview(buf)[len(rest) :])
        if filled == len(rest):
            break
        view = memoryview(buf)[:filled]
        cut = buf.rfind(b"\n", 0, filled)
        if cut < 0:
            rest = bytes(view)
            continue
        rest = bytes(view[cut + 1 :])
        yield view[: cut + 1]
    if rest:
        yield memoryview(rest + b"\n")


def _fill(source: Any, readinto: Any, target: memoryview) -> int:
    """Read into `target` until it is full or the stream ends; the number of bytes read."""
    done = 0
    while done < len(target):
        if readinto is not None:
            try:
                n = readinto(target[done:])
            except (NotImplementedError, io.UnsupportedOperation):
                readinto = None
                continue
        else:
            chunk = source.read(len(target) - done)
            if chunk is not None and not isinstance(chunk, bytes):
                chunk = bytes(chunk)
            n = len(chunk) if chunk else 0
            target[done : done + n] = chunk or b""
        if not n:
            break
        done += n
    return done


@dataclass
class _Lines:
    """The lines of one block as a zero-copy binary array (each value ends with a newline)."""

    buffer: Any  # the block (bytes-like)
    lines: pa.Array  # binary
    regular: np.ndarray  # bool: first/last byte are { and }
    blank: np.ndarray  # bool: only whitespace


def _split_lines(block: Any) -> _Lines:
    arr = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(arr == _NL)  # index of each newline
    starts = np.concatenate([[0], ends[:-1] + 1])
    offsets = np.concatenate([[0], ends + 1]).astype(np.int64)
    lines = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(block)]
    )
    length = ends - starts  # without the newline
    nonempty = length > 0
    first = np.where(nonempty, arr[np.minimum(starts, len(arr) - 1)], 0)
    last_idx = np.maximum(ends - 1, 0)
    last = arr[last_idx]
    last = np.where(last == ord("\r"), arr[np.maximum(ends - 2, 0)], last)
    regular = nonempty & (first == _LBRACE) & (last == _RBRACE)
    blank = np.zeros(len(ends), dtype=bool)
    irregular = np.flatnonzero(~regular)
    for i in irregular:  # rare: only lines that are not plain `{...}`
        blank[i] = not bytes(block[starts[i] : ends[i]]).strip()
    return _Lines(block, lines, regular, blank)


# ------------------------------------------------------------------------------------------
# The converter
# ------------------------------------------------------------------------------------------


class _BlockFailed(Exception):
    """The block cannot be parsed/converted as a whole; use the slow path."""


@dataclass
class _Prepared:
    """One block after the parse stage: its lines, and the parse of its regular lines."""

    records: int  # non-blank lines
    regular: pa.Array | None = None  # large_binary lines that look like `{...}`
    table: pa.Table | None = None  # parse of `regular` (None: parse failed, see `error`)
    scans: dict[str, KeyScan] | None = None  # metadata keys (None: infer them)
    error: str | None = None
    odd: list[bytes] = field(default_factory=list)  # other non-blank lines


def _column_at(table: pa.Table, path: str) -> pa.Array | None:
    name, _, rest = path.partition(".")
    if name not in table.column_names:
        return None
    arr: Any = table.column(name).combine_chunks()
    for part in rest.split(".") if rest else []:
        idx = arr.type.get_field_index(part) if pa.types.is_struct(arr.type) else -1
        if idx < 0:
            return None
        arr = pc.struct_field(arr, [idx])
    return arr


def _scan_covers(table: pa.Table, path: str, scan: KeyScan) -> bool:
    """Every row with an object at `path` had an object found by the key scan.

    False only for a key the token search cannot see (written with JSON escapes).
    """
    arr = _column_at(table, path)
    if arr is None:
        return True
    present = arr.is_valid().to_numpy(zero_copy_only=False)
    return not bool((present & ~scan.rows_with_object).any())


_END = object()


def _run_ahead(items: Iterable[Any], depth: int = 1) -> Iterator[Any]:
    """Yields `items`, produced in a background thread at most `depth` items ahead.

    Why: pyarrow's JSON reader releases the GIL, so the next block is read and parsed while this
    thread converts and writes the current one (about a third off the wall time on 2 cores).
    An exception in the producer is raised here; closing this generator stops the producer.
    """
    channel: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                channel.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", _END))
        except BaseException as exc:  # forwarded to the consumer, raised there
            put(("error", exc))

    worker = threading.Thread(target=produce, name="xdm-parse-ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = channel.get()
            if kind == "item":
                yield value
            elif kind == "end":
                return
            else:
                raise value
    finally:
        stop.set()
        worker.join()


class _PartWriter:
    """Writes row groups into Parquet parts no larger than `max_file_bytes`."""

    def __init__(
        self,
        schema: pa.Schema,
        open_output: Callable[[int], Any],
        max_file_bytes: int,
        row_group_rows: int,
    ) -> None:
        self.schema = schema
        self.open_output = open_output
        self.max_file_bytes = max_file_bytes
        self.row_group_rows = row_group_rows
        self.parts: list[PartInfo] = []
        self._writer: pq.ParquetWriter | None = None
        self._sink: Any = None
        self._rows = 0
        self._groups = 0
        self._bytes_per_row: float | None = None
        self._footer_per_group = 64 * len(schema.names) + 256 * _leaf_count(schema)

    def _reserve(self) -> int:
        return 16 * 1024 + self._footer_per_group * (self._groups + 1)

    def _position(self) -> int:
        return int(self._sink.tell())

    def _open(self) -> None:
        index = len(self.parts)
        sink = self.open_output(index)
        if not isinstance(sink, pa.NativeFile):
            sink = pa.PythonFile(sink, mode="w")
        self._sink = sink
        self._writer = pq.ParquetWriter(sink, self.schema, **PARQUET_OPTIONS)
        self._rows = 0
        self._groups = 0

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        size = self._position()
        self._sink.close()
        if size > self.max_file_bytes:
            raise RuntimeError(
                f"Parquet part {len(self.parts)} is {size} bytes, above the limit of "
                f"{self.max_file_bytes}; lower row_group_rows"
            )
        self.parts.append(PartInfo(len(self.parts), self._rows, size))
        self._writer = None
        self._sink = None

    def write(self, table: pa.Table) -> None:
        start = 0
        while start < table.num_rows:
            budget = max(1, (self.max_file_bytes - self._reserve()) // 4)
            if self._bytes_per_row:
                rows = int(budget / self._bytes_per_row)
            else:
                rows = max(1, int(budget / max(1.0, table.nbytes / max(1, table.num_rows))))
            rows = max(1, min(rows, self.row_group_rows, table.num_rows - start))
            group = table.slice(start, rows)
            if self._writer is not None:
                estimate = rows * (self._bytes_per_row or 0)
                if self._position() + estimate + self._reserve() > self.max_file_bytes:
                    self._close()
            if self._writer is None:
                self._open()
            before = self._position()
            self._writer.write_table(group, row_group_size=rows)
            written = self._position() - before
            per_row = written / rows
            self._bytes_per_row = max(per_row, self._bytes_per_row or 0.0) * 1.0
            self._rows += rows
            self._groups += 1
            start += rows

    def finish(self) -> list[PartInfo]:
        self._close()
        return self.parts


def _leaf_count(schema: pa.Schema) -> int:
    def count(t: pa.DataType) -> int:
        if pa.types.is_struct(t):
            return sum(count(t.field(i).type) for i in range(t.num_fields))
        if pa.types.is_map(t):
            return 2
        if pa.types.is_list(t):
            return count(t.value_type)
        return 1

    return sum(count(f.type) for f in schema)


class Converter:
    """Converts the blocks of one raw file; keeps the adaptive parse state between blocks."""

    def __init__(
        self,
        mapping: ResourceMapping,
        tenant: str,
        params: dict[str, Any],
        quarantine: BinaryIO,
        day_window: tuple[int, int] | None = None,
        known_ids: set[str] | None = None,
        changes: bool = False,
    ) -> None:
        self.mapping = mapping
        self.changes = changes
        self.tenant = tenant
        self.params = params
        self.quarantine = quarantine
        self.day_window = day_window
        # The caller's set, updated in place: ids kept here are rows of the partition too.
        self.kept_ids: set[str] = known_ids if known_ids is not None else set()
        self.duplicates = 0
        self.duplicate_ids: list[str] = []
        self.schema = xdm_schema_for(mapping.resource, tenant)
        self.fields = mapping.fields(tenant)
        self.expandables = {input_error_path(p): p for p in expandable_paths(mapping)}
        self.expanded: frozenset[str] = frozenset()
        self.tree = _input_tree(mapping, changes)
        self.parse_names = stripe_parse_schema(mapping, changes=changes).names
        self.metadata_paths = metadata_paths(mapping)
        self.reasons: Counter[str] = Counter()
        self.quarantined = 0
        self.slow_path_records = 0

    # -- parsing (runs ahead, in the parse thread) ----------------------------------------------

    def _parse(
        self,
        buffer: Any,
        expanded: frozenset[str],
        block_size: int = _PARSE_BLOCK,
        object_keys: dict[str, tuple[str, ...]] | None = None,
    ) -> pa.Table:
        """pyarrow JSON parse with the declared Stripe paths (multi-threaded over sub-blocks).

        With `object_keys` (the keys of every metadata path) undeclared fields are skipped;
        without, they are inferred, which is the only way to read metadata of unknown keys.
        """
        schema = stripe_parse_schema(self.mapping, expanded, object_keys, self.changes)
        return pj.read_json(
            pa.BufferReader(pa.py_buffer(buffer)),
            read_options=pj.ReadOptions(block_size=block_size),
            parse_options=pj.ParseOptions(
                explicit_schema=schema,
                unexpected_field_behavior="infer" if object_keys is None else "ignore",
                newlines_in_values=False,
            ),
        )

    def _scan_keys(self, lines: pa.Array) -> dict[str, KeyScan] | None:
        """Keys of the metadata objects of the block, or None if they must be inferred."""
        if any("[]" in p for p in self.metadata_paths):
            return None
        found: dict[str, KeyScan] = {}
        for path in self.metadata_paths:
            scan = scan_object_keys(lines, path.rpartition(".")[2])
            if scan is None:
                return None
            found[path] = scan
        return found

    def _parse_lines(
        self, lines: pa.Array, expanded: frozenset[str], scans: dict[str, KeyScan] | None
    ) -> pa.Table:
        data, offsets = line_offsets(lines)
        buffer = data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        if scans is not None:
            keys = {p: scan.keys for p, scan in scans.items()}
            table = self._parse(buffer, expanded, object_keys=keys)
            if all(_scan_covers(table, p, scan) for p, scan in scans.items()):
                return table
        return self._parse(buffer, expanded)

    def _parse_adaptive(self, lines: pa.Array, scans: dict[str, KeyScan] | None) -> pa.Table:
        for _ in range(len(self.expandables) + 1):
            try:
                table = self._parse_lines(lines, self.expanded, scans)
            except pa.ArrowInvalid as exc:
                m = _CHANGED.search(str(exc))
                path = self.expandables.get(m.group("col")) if m else None
                widen = m and path and (m.group("a"), m.group("b")) == ("string", "object")
                if widen and path not in self.expanded:
                    self.expanded = self.expanded | {path}
                    continue
                raise _BlockFailed(str(exc)) from exc
            if table.num_rows != len(lines):
                raise _BlockFailed(
                    f"parsed {table.num_rows} rows from {len(lines)} lines "
                    "(several JSON values on one line?)"
                )
            return table
        raise _BlockFailed("expandable fields could not be resolved")

    def split(self, block: Any) -> _Prepared:
        """Split a block into lines and scan them for metadata keys (the reader thread)."""
        lines = _split_lines(block)
        prepared = _Prepared(records=int((~lines.blank).sum()))
        if lines.regular.all():
            regular = lines.lines
        else:
            odd_mask = ~lines.regular & ~lines.blank
            prepared.odd = lines.lines.filter(pa.array(odd_mask)).to_pylist()
            regular = lines.lines.filter(pa.array(lines.regular))
        if len(regular):
            prepared.regular = regular
            prepared.scans = self._scan_keys(regular)
        return prepared

    def parse(self, prepared: _Prepared) -> _Prepared:
        """Parse the regular lines of a split block (the parse thread)."""
        if prepared.regular is not None:
            try:
                prepared.table = self._parse_adaptive(prepared.regular, prepared.scans)
            except (_BlockFailed, pa.ArrowException, ValueError, TypeError) as exc:
                prepared.table, prepared.error = None, str(exc)
        return prepared

    # -- conversion (the calling thread) -----------------------------------------------------

    def _convert(
        self, table: pa.Table, raw_lines: pa.Array, hashes: pa.Array | None = None
    ) -> tuple[pa.Table, np.ndarray, list]:
        """XDM table of all rows + index of the first failing check per row (-1 = valid)."""
        declared = [n for n in self.parse_names if n in table.column_names]
        data = table.select(declared).combine_chunks().to_struct_array()
        if isinstance(data, pa.ChunkedArray):
            data = data.combine_chunks()
        if hashes is None:
            hashes = line_fingerprints(raw_lines)
        frame = Frame(data, self.params, record_hash=hashes)
        arrays, checks = [], []
        for f in self.fields:
            built = build_field(f, frame, f.name)
            arrays.append(built.array)
            checks.extend(built.checks)
        out = pa.Table.from_arrays(arrays, schema=self.schema)
        return out, first_failure(checks, len(frame)), checks

    def convert_prepared(self, prepared: _Prepared) -> list[pa.Table]:
        """Fast path for a parsed block; the slow path for what the fast path cannot take."""
        tables: list[pa.Table] = []
        lines = prepared.regular
        if lines is not None:
            if prepared.table is None:
                tables.extend(self._slow(lines.to_pylist(), prepared.error or "parse failed"))
            else:
                try:
                    out, failing, checks = self._convert(prepared.table, lines)
                except (_BlockFailed, pa.ArrowException, ValueError, TypeError) as exc:
                    tables.extend(self._slow(lines.to_pylist(), str(exc)))
                else:
                    tables.append(self._split_valid(out, failing, checks, lines))
        if prepared.odd:
            tables.extend(self._slow(prepared.odd, "line is not a JSON object"))
        return tables

    def _split_valid(
        self, out: pa.Table, failing: np.ndarray, checks: list, lines: pa.Array
    ) -> pa.Table:
        bad = np.flatnonzero(failing >= 0)
        if len(bad):
            raw = lines.take(pa.array(bad)).to_pylist()
            for i, line in zip(bad, raw, strict=True):
                _, reason, fld = checks[failing[i]]
                self._quarantine_raw(reason, fld, _check_detail(reason, fld), line)
        keep = self._one_per_id_and_day(out, failing < 0, lines)
        return out if keep.all() else out.filter(pa.array(keep))

    def _one_per_id_and_day(self, out: pa.Table, valid: np.ndarray, lines: pa.Array) -> np.ndarray:
        """Of the valid rows, those to keep: created within the day, id not kept before."""
        keep = valid.copy()
        common = out.column(f"_{self.tenant}").combine_chunks().field("stripe")
        if self.day_window is not None:
            created = pc.cast(common.field("created"), pa.int64()).to_numpy(zero_copy_only=False)
            start, end = (b * 1000 for b in self.day_window)
            outside = np.flatnonzero(valid & ((created < start) | (created >= end)))
            if len(outside):
                raw = lines.take(pa.array(outside)).to_pylist()
                for i, line in zip(outside, raw, strict=True):
                    self._quarantine_raw(
                        "created_outside_partition",
                        "created",
                        f"created {_iso_ms(int(created[i]))} is outside the partition's day "
                        f"[{_iso_ms(start)}, {_iso_ms(end)})",
                        line,
                    )
                keep[outside] = False
        ids = common.field("id").to_pylist()
        kept = self.kept_ids
        for i in np.flatnonzero(keep):
            oid = ids[i]
            if oid in kept:
                keep[i] = False
                self.duplicates += 1
                if len(self.duplicate_ids) < 100:
                    self.duplicate_ids.append(oid)
            else:
                kept.add(oid)
        return keep

    # -- slow path ---------------------------------------------------------------------------

    def _slow(self, raw_lines: list[bytes], block_error: str) -> list[pa.Table]:
        good_raw: list[bytes] = []
        good_projected: list[bytes] = []
        for raw in raw_lines:
            text = raw.strip()
            if not text:
                continue
            self.slow_path_records += 1
            try:
                obj = json.loads(text)
            except RecursionError:
                self._quarantine_text(
                    "too_deeply_nested",
                    None,
                    "the object is nested too deeply to be parsed (more than ~1,000 levels, e.g. "
                    "a metadata value); only this object is affected",
                    raw,
                )
                continue
            except ValueError as exc:
                self._quarantine_text("invalid_json", None, str(exc), raw)
                continue
            if not isinstance(obj, dict):
                self._quarantine_obj(
                    "not_an_object", None, f"expected a JSON object, got {_kind(obj)}", obj
                )
                continue
            problem = _diagnose(obj, self.tree)
            if problem is not None:
                reason, fld, detail = problem
                self._quarantine_text(reason, fld, detail, raw)
                continue
            good_raw.append(raw if raw.endswith(b"\n") else raw + b"\n")
            good_projected.append(
                json.dumps(_project(obj, self.tree), separators=(",", ":")).encode() + b"\n"
            )
        if not good_raw:
            return []
        raw_arr = pa.array(good_raw, pa.large_binary())
        try:
            big = _block_size_for(max(len(x) for x in good_projected))
            table = self._parse(b"".join(good_projected), frozenset(), big)
            if table.num_rows != len(good_raw):
                raise _BlockFailed("row count mismatch")
            out, failing, checks = self._convert(table, raw_arr)
            return [self._split_valid(out, failing, checks, raw_arr)]
        except (_BlockFailed, pa.ArrowException, ValueError, TypeError):
            pass
        results = []  # last resort: one by one
        for raw, projected in zip(good_raw, good_projected, strict=True):
            one = pa.array([raw], pa.large_binary())
            try:
                table = self._parse(projected, frozenset(), _block_size_for(len(projected)))
                out, failing, checks = self._convert(table, one)
                results.append(self._split_valid(out, failing, checks, one))
            except (pa.ArrowException, ValueError, TypeError) as exc:
                self._quarantine_raw("unconvertible", None, f"{block_error}; {exc}", raw)
        return results

    # -- quarantine --------------------------------------------------------------------------

    def _write_quarantine(
        self, reason: str, fld: str | None, detail: str, record_json: bytes, oid: str | None
    ) -> None:
        head = json.dumps({"reason": reason, "field": fld, "id": oid, "detail": detail})[:-1]
        self.quarantine.write(head.encode() + b', "record": ' + record_json + b"}\n")
        self.reasons[reason] += 1
        self.quarantined += 1

    def _quarantine_raw(self, reason: str, fld: str | None, detail: str, raw: bytes) -> None:
        """A line that is valid JSON: kept as the record itself."""
        text = raw.strip()
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            self._quarantine_text(reason, fld, detail, raw)
            return
        oid = obj.get("id") if isinstance(obj, dict) else None
        self._write_quarantine(reason, fld, detail, text, oid if isinstance(oid, str) else None)

    def _quarantine_text(self, reason: str, fld: str | None, detail: str, raw: bytes) -> None:
        """A line kept verbatim; a JSON object is kept as is, anything else as a JSON string."""
        text = raw.strip()
        record = text if text.startswith(b"{") and text.endswith(b"}") else None
        if record is not None:
            try:
                json.loads(text)
            except (ValueError, RecursionError):
                record = None
        if record is None:
            record = json.dumps(text.decode("utf-8", "replace")).encode()
        self._write_quarantine(reason, fld, detail, record, _id_in_line(text))

    def _quarantine_obj(self, reason: str, fld: str | None, detail: str, obj: Any) -> None:
        oid = obj.get("id") if isinstance(obj, dict) else None
        record = json.dumps(obj, separators=(",", ":")).encode()
        self._write_quarantine(reason, fld, detail, record, oid if isinstance(oid, str) else None)


def _id_in_line(text: bytes) -> str | None:
    """The top-level `id` of a line that cannot be parsed (too deep, cut short): a token scan that
    tracks the nesting depth, so an `id` inside a nested object is never taken for the object's."""
    depth, expect_value = 0, False
    for m in _TOKEN.finditer(text, 0, 1 << 22):
        token = m.group("string") or m.group()
        if token in (b"{", b"["):
            depth, expect_value = depth + 1, False
        elif token in (b"}", b"]"):
            depth, expect_value = depth - 1, False
        elif expect_value:
            try:
                value = json.loads(token)
            except ValueError:
                return None
            return value if isinstance(value, str) else None
        elif depth == 1 and token == b'"id"' and m.group("colon"):
            expect_value = True
    return None


def listing_version(fetched_at: int) -> dict[str, Any]:
    """The version fields of every row of a listing file fetched at `fetched_at` (Unix s)."""
    return {
        "time": fetched_at,
        "source": "list",
        "event_id": None,
        "event_type": None,
        "deleted": False,
    }


def _count_true(table: pa.Table, path: tuple[str, ...]) -> int:
    arr: Any = table.column(path[0]).combine_chunks()
    for name in path[1:]:
        arr = arr.field(name)
    return int(pc.sum(pc.fill_null(arr, False).cast(pa.int64())).as_py() or 0)


def _iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _block_size_for(longest_line: int) -> int:
    return max(_PARSE_BLOCK, 1 << (2 * longest_line).bit_length())


def _check_detail(reason: str, fld: str) -> str:
    return {
        "missing_required_field": f"required field {fld} is missing or null",
        "missing_change_field": (
            f"{fld} is missing or null: a change line must say when and how its version was "
            "observed"
        ),
        "unknown_currency": f"{fld} is not a currency Stripe lists; its exponent is unknown",
        "not_in_enum": f"{fld} has a value outside the allowed values",
        "pattern_mismatch": f"{fld} does not match the required pattern",
        "out_of_range": f"{fld} is outside the XDM long range",
        "timestamp_out_of_range": f"{fld} is not a Unix time between 1970 and 9999",
    }.get(reason, reason)


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _leaf_ok(kind: str, v: Any) -> bool:
    if v is None:
        return True
    if kind == "string":
        return isinstance(v, str)
    if kind == "integer":
        return isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "boolean":
        return isinstance(v, bool)
    if kind == "expandable":
        return isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("id"), str))
    if kind == "metadata":
        return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    if kind == "string_list":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    raise ValueError(f"unknown input kind {kind}")


_EXPECT = {
    "expandable": "an id string or an object with an id",
    "metadata": "an object of strings",
    "string_list": "an array of strings",
}


def _diagnose(obj: dict, node: _Node, path: str = "") -> tuple[str, str, str] | None:
    """First declared Stripe path whose value cannot be converted: (reason, path, detail)."""
    for name, child in node.children.items():
        p = f"{path}.{name}" if path else name
        v = obj.get(name)
        if v is None:
            continue
        values = [v]
        if child.is_list:
            if not isinstance(v, list):
                return "type_mismatch", p, f"expected an array, got {_kind(v)}"
            values = v
            p = f"{p}[]"
        for item in values:
            if child.kind is not None:
                if not _leaf_ok(child.kind, item):
                    expected = _EXPECT.get(child.kind, child.kind)
                    return "type_mismatch", p, f"expected {expected}, got {_kind(item)}"
                if child.kind in ("integer", "number") and _beyond_long(item):
                    return (
                        "out_of_range",
                        p,
                        f"{p} is {item}, beyond ±{LONG_MAX} (2^53 − 1): XDM stores integers as "
                        "JSON-safe longs and amounts as doubles, neither can hold it exactly",
                    )
            elif item is not None:
                if not isinstance(item, dict):
                    return "type_mismatch", p, f"expected an object, got {_kind(item)}"
                found = _diagnose(item, child, p)
                if found is not None:
                    return found
    return None


def _beyond_long(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and not LONG_MIN <= v <= LONG_MAX


def _project(obj: dict, node: _Node) -> dict:
    """Only the declared Stripe paths, expanded objects replaced by their id."""
    out: dict[str, Any] = {}
    for name, child in node.children.items():
        v = obj.get(name)
        if v is None:
            continue
        items = v if child.is_list else [v]
        projected = []
        for item in items:
            if child.kind == "expandable":
                projected.append(item["id"] if isinstance(item, dict) else item)
            elif child.kind is not None:
                projected.append(item)
            else:
                projected.append(_project(item, child) if item is not None else None)
        out[name] = projected if child.is_list else projected[0]
    return out


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        if v and isinstance(v[0], tuple) and len(v[0]) == 2:  # map entries
            return {k: _json_safe(x) for k, x in v}
        return [_json_safe(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat().replace("+00:00", "Z")
    return v


def convert_jsonl(
    source: Any,
    *,
    resource: str,
    tenant: str,
    account: str | None,
    api_version: str,
    open_output: Callable[[int], Any],
    quarantine: BinaryIO,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    row_group_rows: int = 128 * 1024,
    preview_rows: int = 5,
    day_window: tuple[int, int] | None = None,
    known_ids: set[str] | None = None,
    lookups: dict[str, Any] | None = None,
    version: dict[str, Any] | None = None,
    changes: bool = False,
) -> ConversionResult:
    """Convert decompressed Stripe JSON lines of one resource to XDM Parquet parts.

    `source`: a readable stream (pyarrow NativeFile or binary file-like) of JSON lines.
    `open_output(i)`: opens the i-th Parquet part (a writable pyarrow NativeFile); each part is
    closed here when complete, the caller names and commits it. No part is opened for 0 rows.
    `quarantine`: binary file-like receiving one JSON line per rejected record.
    `day_window`: the partition's [start, end) in Unix seconds; records created outside it are
    quarantined. `known_ids`: ids already rows of the partition; records with such an id (or one
    seen earlier in this input) are dropped as duplicates and counted. The ids kept are added.
    Every non-blank input line ends as exactly one row, one quarantine line or one duplicate.
    `lookups`: extra conversion parameters some sources read (refunds: `charge_customers`).
    `changes=False` (a listing file): every row is the listing snapshot, its version fields are
    `version` (`listing_version(fetched_at)`: the same for the whole file). `changes=True` (a change
    file of versions): each line's `_change` key gives its version fields and is checked; pass no
    `day_window` (a version is filed under the day it was observed, not its `created`).
    """
    mapping = mapping_for(resource)
    validate_tenant(tenant)
    if not api_version:
        raise ValueError(
            "api_version is required: pass the Stripe-Version the raw file was read with"
        )
    if max_file_bytes < 64 * 1024:
        raise ValueError(f"max_file_bytes={max_file_bytes} is too small (minimum 64 KiB)")
    if not changes and not (version and version.get("time") is not None):
        raise ValueError(
            "version is required for a listing file: pass listing_version(fetched_at) with the "
            "time the listing was fetched (the sidecar's fetched_at, else the window's lt)"
        )
    params = {**(lookups or {}), "account": account, "api_version": api_version}
    params.update(version=version, changes=changes)
    conv = Converter(
        mapping,
        tenant,
        params,
        quarantine,
        day_window=day_window,
        known_ids=known_ids,
        changes=changes,
    )
    deleted_path = (f"_{tenant}", "stripe", "deleted")
    writer = _PartWriter(conv.schema, open_output, max_file_bytes, row_group_rows)
    result = ConversionResult(resource=resource)
    preview: list[dict[str, Any]] = []
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    # Three stages in three threads, one block apart: read + split + key scan, parse, then
    # convert + write here. Each stage releases the GIL for most of its work.
    split_blocks = _run_ahead(conv.split(b) for b in _read_blocks(source, block_bytes))
    for prepared in _run_ahead(conv.parse(p) for p in split_blocks):
        result.input_records += prepared.records
        for t in conv.convert_prepared(prepared):
            if t.num_rows:
                writer.write(t)
                result.rows += t.num_rows
                if changes:
                    result.tombstones += _count_true(t, deleted_path)
                if len(preview) < preview_rows:
                    preview.extend(_json_safe(t.slice(0, preview_rows - len(preview)).to_pylist()))
    result.parts = writer.finish()
    result.quarantined = conv.quarantined
    result.reasons = dict(conv.reasons)
    result.preview = preview
    result.slow_path_records = conv.slow_path_records
    result.duplicates = conv.duplicates
    result.duplicate_ids = list(conv.duplicate_ids)
    if not result.reconciled:  # pragma: no cover - an invariant, not an expected state
        raise RuntimeError(
            f"{resource}: {result.input_records} input records but {result.rows} rows + "
            f"{result.quarantined} quarantined + {result.duplicates} duplicates"
        )
    return result
