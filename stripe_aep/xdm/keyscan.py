"""Vectorised discovery of the keys of a free-form JSON object field (Stripe `metadata`).

Why: pyarrow's JSON reader is about twice as fast when it skips every field it is not asked for
(`unexpected_field_behavior="ignore"`) than when it infers them, but a field whose keys are unknown
(Stripe's `metadata`) can then only be read if its keys are listed in the parse schema: the reader
cannot read an object straight into a map. This module finds those keys beforehand with pyarrow
string kernels over the raw lines, without parsing the lines and without Python per record.

How, and why it is safe: every occurrence of the key token (`"metadata"`) in a line is located
(a few vectorised passes, one per occurrence per line). Each must be followed by `:` and either
`null` or a flat object whose values are all strings; the union of the keys of all those objects,
at any depth, is a superset of the keys of the one the mapping reads (extra keys only add columns
that stay null and are dropped from the map). If any occurrence is followed by anything else (a
nested value, a number, the word used as a string value), `None` is returned and the caller parses
with key inference instead: nothing is guessed. A key written with JSON escapes (`"meta\\u0064ata"`)
is not found by the token search; `rows_with_object` lets the caller detect that case after parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

_STRING = r'"(?:[^"\\]|\\.)*"'
_PAIR = rf"{_STRING}\s*:\s*{_STRING}"
#: What must follow the key token: `:` then null or a flat object of strings.
_FOLLOW = rf"^(?P<all>\s*:\s*(?:null|(?P<obj>\{{\s*(?:{_PAIR}\s*(?:,\s*{_PAIR}\s*)*)?\}})))"
#: A key/value pair of a flat object, rewritten to `key:null` before inferring the key names.
_QUOTE = ord('"')
_PAIR_GROUPS = rf"({_STRING})\s*:\s*{_STRING}"


@dataclass(frozen=True)
class KeyScan:
    """The keys found, and which rows hold at least one occurrence followed by an object."""

    keys: tuple[str, ...]
    rows_with_object: np.ndarray  # bool per line


def line_offsets(lines: pa.Array) -> tuple[pa.Buffer, np.ndarray]:
    """The data buffer and the n+1 int64 offsets of a large_binary array (zero-copy)."""
    if not pa.types.is_large_binary(lines.type):
        raise TypeError(f"expected large_binary lines, got {lines.type}")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    offsets = offsets[lines.offset : lines.offset + len(lines) + 1]
    return lines.buffers()[2], offsets


def _windows(data: pa.Buffer, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """Zero-copy views `data[starts[i]:ends[i]]` (ordered, disjoint) at the even indices.

    The odd entries are the gaps between windows, marked null so that kernels skip them.
    """
    m = len(starts)
    offsets = np.empty(2 * m, dtype=np.int64)
    offsets[0::2] = starts
    offsets[1::2] = ends
    valid = np.zeros(2 * m - 1, dtype=bool)
    valid[0::2] = True
    bitmap = np.packbits(valid, bitorder="little")
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(),
        2 * m - 1,
        [pa.py_buffer(bitmap), pa.py_buffer(offsets), data],
        null_count=m - 1,
    )


def _even_ints(arr: pa.Array) -> np.ndarray:
    """The values at the even indices (the windows; the odd ones are the null gaps)."""
    return arr.to_numpy(zero_copy_only=False)[0::2].astype(np.int64)


def scan_object_keys(lines: pa.Array, name: str) -> KeyScan | None:
    """Keys of every `"<name>": {...}` object in `lines` (large_binary JSON lines).

    Returns None when an occurrence of `"<name>"` is not followed by `:` and null or a flat object
    of strings (the caller must then infer the keys while parsing).
    """
    data, offsets = line_offsets(lines)
    n = len(lines)
    rows_with_object = np.zeros(n, dtype=bool)
    if n == 0:
        return KeyScan((), rows_with_object)
    data_bytes = np.frombuffer(data, dtype=np.uint8)
    # The search is for `metadata"` (its first byte is rare in JSON, so RE2 skips ahead with
    # memchr, ~3x faster than for `"metadata"`); the opening quote is checked separately.
    pattern = re.escape(name) + '"'
    name_len = len(name.encode()) + 1
    rows = np.arange(n)
    starts, ends = offsets[:-1].copy(), offsets[1:].copy()
    objects: list[pa.Array] = []
    while len(rows):
        found = _even_ints(pc.find_substring_regex(_windows(data, starts, ends), pattern))
        hit = found >= 0
        rows, starts, ends = rows[hit], starts[hit] + found[hit], ends[hit]
        if not len(rows):
            break
        before = data_bytes[np.maximum(starts - 1, 0)]
        quoted = (starts > offsets[0]) & (before == _QUOTE)
        starts = starts + name_len
        if not quoted.any():
            continue
        m_rows, m_starts = rows[quoted], starts[quoted]
        follow = pc.extract_regex(_windows(data, m_starts, ends[quoted]), _FOLLOW)
        if follow.null_count > len(m_rows) - 1:  # a null besides the gaps: not an object
            return None
        whole = _even_ints(pc.binary_length(pc.struct_field(follow, [0])))
        obj = pc.struct_field(follow, [1]).take(pa.array(np.arange(0, len(follow), 2)))
        is_object = pc.greater(pc.binary_length(obj), 0)
        rows_with_object[m_rows[is_object.to_numpy(zero_copy_only=False)]] = True
        objects.append(obj.filter(is_object))
        starts[quoted] = m_starts + whole
    keys = _keys_of(objects)
    return KeyScan(keys, rows_with_object)


def _keys_of(objects: list[pa.Array]) -> tuple[str, ...]:
    """Union of the keys of flat JSON objects (values replaced by null, names read by pyarrow)."""
    objs = pa.concat_arrays(objects) if objects else pa.array([], pa.large_binary())
    if len(objs) == 0:
        return ()
    keys_only = pc.replace_substring_regex(objs, _PAIR_GROUPS, r"\1:null")
    lb = pa.large_binary()
    joined = pc.binary_join_element_wise(keys_only, pa.scalar(b"\n", lb), pa.scalar(b"", lb))
    data, offsets = line_offsets(joined)
    size = int(offsets[-1] - offsets[0])
    buffer = data.slice(int(offsets[0]), size)
    table = pj.read_json(
        pa.BufferReader(buffer),
        read_options=pj.ReadOptions(
            block_size=max(1 << 20, 1 << size.bit_length()), use_threads=False
        ),
        parse_options=pj.ParseOptions(newlines_in_values=False),
    )
    return tuple(table.column_names)
