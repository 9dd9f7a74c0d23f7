"""What AEP's batch ingestion does to an uploaded file: resolve the dataset's XDM schema and check the file.

Why this exists: the value of the AEP emulator is that it rejects what real AEP would reject, so a mapping
or client bug shows up in a local test instead of as a failed batch in a customer's sandbox. The rules are
the documented ones (reference `aep-api.md` §4.6 and §6, Adobe's "field constraints" table):

- the file must be readable Parquet (or JSON for `inputFormat.format == "json"`);
- every column path must exist in the schema (the file may hold a subset of the schema);
- only the Parquet types Adobe documents are accepted: UTF8 strings, INT32/INT64 (signed), DOUBLE, BOOLEAN,
  INT64 TIMESTAMP_MILLIS, INT32 DATE, structs, maps with string keys and lists. INT96, DECIMAL, FLOAT,
  unannotated BINARY, FIXED_LEN_BYTE_ARRAY, unsigned integers and micro/nanosecond timestamps are rejected
  (their support is unconfirmed; the safe rule is "write only the documented types");
- Parquet types must be compatible with the XDM types, following Adobe's conversion matrix (a string may be
  converted to any scalar if every value parses; a long to a number, date or date-time; booleans, arrays
  and objects are never converted);
- required fields (`_id` and `timestamp` of ExperienceEvent, and `required` lists of tenant field groups)
  must be present and non-null.

Problems with the file as a whole fail the batch; null required values are row errors, which fail the batch
unless partial ingestion allows that share of bad rows.

The module has no HTTP or state: `resolve_schema` turns registry resources into a `ResolvedSchema` and
`check_parquet` / `check_json` return a `FileCheck`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stripe_aep.xdm.standard import ADHOC_BEHAVIOR as BEHAVIOR_ADHOC
from stripe_aep.xdm.standard import EXPERIENCE_EVENT as XDM_EXPERIENCE_EVENT
from stripe_aep.xdm.standard import INDIVIDUAL_PROFILE as XDM_INDIVIDUAL_PROFILE
from stripe_aep.xdm.standard import RECORD_BEHAVIOR as BEHAVIOR_RECORD
from stripe_aep.xdm.standard import TIME_SERIES_BEHAVIOR as BEHAVIOR_TIME_SERIES

# Codes used in Catalog `errors[].code` (reference §6).
CODE_EMPTY_FILE = "106"
CODE_UNREADABLE = "INGEST-1401-400"
CODE_VALIDATION = "INGEST-1211-400"
CODE_PARTIAL_SUMMARY = "INGEST-1212-400"
CODE_REQUIRED_MISSING = "INGEST-1555-400"

_IDENTITY_MAP = {
    "title": "Identity map",
    "type": "object",
    "meta:xdmType": "map",
    "additionalProperties": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "authenticatedState": {"type": "string"},
                "primary": {"type": "boolean"},
            },
        },
    },
}


@dataclass(frozen=True)
class StandardClass:
    """An Adobe-provided XDM class the emulator knows (the global container, read only)."""

    id: str
    alt_id: str
    title: str
    behavior: str
    properties: dict
    required: tuple[str, ...] = ()

    def resource(self) -> dict:
        """The class as the Schema Registry returns it (`application/vnd.adobe.xed+json`)."""
        return {
            "$id": self.id,
            "meta:altId": self.alt_id,
            "meta:resourceType": "classes",
            "version": "1.0",
            "title": self.title,
            "type": "object",
            "meta:abstract": True,
            "meta:extensible": True,
            "meta:containerId": "global",
            "meta:xdmType": "object",
            "meta:extends": [self.behavior, "https://ns.adobe.com/xdm/common/extensible"],
            "allOf": [{"$ref": self.behavior}],
            "properties": self.properties,
            "required": list(self.required),
        }


STANDARD_CLASSES: dict[str, StandardClass] = {
    XDM_EXPERIENCE_EVENT: StandardClass(
        id=XDM_EXPERIENCE_EVENT,
        alt_id="_xdm.context.experienceevent",
        title="XDM ExperienceEvent",
        behavior=BEHAVIOR_TIME_SERIES,
        properties={
            "_id": {"title": "Identifier", "type": "string", "format": "uri-reference"},
            "timestamp": {"title": "Timestamp", "type": "string", "format": "date-time"},
            "eventType": {"title": "Event Type", "type": "string"},
            "producedBy": {"title": "Produced By", "type": "string"},
            "eventMergeId": {"title": "Event Merge ID", "type": "string"},
            "identityMap": _IDENTITY_MAP,
        },
        required=("_id", "timestamp"),
    ),
    XDM_INDIVIDUAL_PROFILE: StandardClass(
        id=XDM_INDIVIDUAL_PROFILE,
        alt_id="_xdm.context.profile",
        title="XDM Individual Profile",
        behavior=BEHAVIOR_RECORD,
        properties={
            "_id": {"title": "Identifier", "type": "string", "format": "uri-reference"},
            "_repo": {
                "type": "object",
                "properties": {
                    "createDate": {"type": "string", "format": "date-time"},
                    "modifyDate": {"type": "string", "format": "date-time"},
                },
            },
            "createdByBatchID": {"type": "string", "format": "uri-reference"},
            "modifiedByBatchID": {"type": "string", "format": "uri-reference"},
            "personID": {"type": "string"},
            "repositoryCreatedBy": {"type": "string"},
            "repositoryLastModifiedBy": {"type": "string"},
            "identityMap": _IDENTITY_MAP,
        },
        required=(),
    ),
}

OPAQUE: dict = {"meta:emulatorOpaque": True}
"""A subtree the emulator cannot see into (a standard field group or data type it does not hold):
any column under it is accepted as long as its Parquet type is one of the documented types."""


@dataclass
class ResolvedSchema:
    """A schema with its class and field groups merged into one JSON-Schema-like `properties` tree."""

    id: str
    title: str
    class_id: str
    properties: dict
    required: list[str]
    lenient_roots: bool
    """True when the schema includes standard field groups the emulator does not hold: unknown top-level
    columns without a leading underscore (and `_experience`) are then accepted; their Parquet types are
    still checked."""

    def node(self) -> dict:
        return {"type": "object", "properties": self.properties, "required": self.required}


def _deep_merge(into: dict, other: dict) -> None:
    for name, node in other.items():
        if name in into and isinstance(into[name], dict) and isinstance(node, dict):
            a, b = into[name], node
            if "properties" in a and "properties" in b:
                merged = dict(a)
                merged["properties"] = dict(a["properties"])
                _deep_merge(merged["properties"], b["properties"])
                merged["required"] = sorted(set(a.get("required", [])) | set(b.get("required", [])))
                into[name] = merged
                continue
        into[name] = node


def field_group_properties(field_group: dict) -> tuple[dict, list[str]]:
    """The properties (and top-level required names) a tenant field group contributes to a schema."""
    properties: dict = {}
    required: list[str] = []
    definitions = field_group.get("definitions") or {}
    refs = [item.get("$ref") for item in field_group.get("allOf") or [] if isinstance(item, dict)]
    names = [ref.split("/")[-1] for ref in refs if isinstance(ref, str) and ref.startswith("#/")]
    for name in names or list(definitions):
        definition = definitions.get(name) or {}
        _deep_merge(properties, definition.get("properties") or {})
        required.extend(definition.get("required") or [])
    _deep_merge(properties, field_group.get("properties") or {})
    return properties, required


BEHAVIORS: dict[str, tuple[dict, tuple[str, ...]]] = {
    BEHAVIOR_RECORD: (
        {
            "_id": {"title": "Identifier", "type": "string", "format": "uri-reference"},
            "_repo": STANDARD_CLASSES[XDM_INDIVIDUAL_PROFILE].properties["_repo"],
            "createdByBatchID": {"type": "string", "format": "uri-reference"},
            "modifiedByBatchID": {"type": "string", "format": "uri-reference"},
            "repositoryCreatedBy": {"type": "string"},
            "repositoryLastModifiedBy": {"type": "string"},
        },
        (),
    ),
    BEHAVIOR_TIME_SERIES: (
        {
            "_id": {"title": "Identifier", "type": "string", "format": "uri-reference"},
            "timestamp": {"title": "Timestamp", "type": "string", "format": "date-time"},
            "eventType": {"title": "Event Type", "type": "string"},
        },
        ("_id", "timestamp"),
    ),
    BEHAVIOR_ADHOC: ({"_id": {"type": "string"}}, ()),
}
"""What each XDM behavior contributes to a custom (tenant) class: properties and required names."""


def class_properties(class_id: str, tenant_classes: dict[str, dict]) -> tuple[dict, list[str]]:
    """The properties and required names of a standard or tenant class."""
    std = STANDARD_CLASSES.get(class_id)
    if std is not None:
        return json.loads(json.dumps(std.properties)), list(std.required)
    custom = tenant_classes.get(class_id)
    if custom is None:
        return {}, []
    behavior = custom.get("meta:behavior") or ""
    base, base_required = BEHAVIORS.get(behavior, ({}, ()))
    properties = json.loads(json.dumps(base))
    own, own_required = field_group_properties(custom)
    _deep_merge(properties, own)
    return properties, sorted({*base_required, *own_required})


def resolve_schema(
    schema: dict,
    field_groups: dict[str, dict],
    tenant: str,
    tenant_classes: dict[str, dict] | None = None,
) -> ResolvedSchema:
    """Merge the schema's class and field groups (`allOf`) into one property tree.

    `field_groups` maps the `$id` of every tenant field group the registry holds to its resource,
    `tenant_classes` the same for custom classes. Unknown `https://ns.adobe.com/xdm/...` references
    are standard field groups: accepted leniently.
    """
    class_id = schema.get("meta:class") or ""
    properties: dict = {}
    required: list[str] = []
    class_props, class_required = class_properties(class_id, tenant_classes or {})
    _deep_merge(properties, class_props)
    required.extend(class_required)
    lenient = False
    for item in schema.get("allOf") or []:
        ref = item.get("$ref") if isinstance(item, dict) else None
        if not isinstance(ref, str) or ref == class_id:
            continue
        if ref in field_groups:
            fg_properties, fg_required = field_group_properties(field_groups[ref])
            _deep_merge(properties, fg_properties)
            required.extend(fg_required)
        elif not ref.startswith(f"https://ns.adobe.com/{tenant}/"):
            lenient = True
    return ResolvedSchema(
        id=schema["$id"],
        title=schema.get("title", ""),
        class_id=class_id,
        properties=properties,
        required=sorted(set(required)),
        lenient_roots=lenient,
    )


def property_exists(resolved: ResolvedSchema, pointer: str) -> bool:
    """Whether a JSON pointer such as `/_tenant/stripe/id` names a field of the schema.

    Fields under a standard field group the emulator does not hold (see `lenient_roots`) or under an
    opaque `$ref` are assumed to exist.
    """
    node: dict = resolved.node()
    for depth, part in enumerate(p for p in pointer.split("/") if p):
        if node.get("type") == "array":
            node = node.get("items") or {}
        if depth > 0 and _xdm_kind(node) == "opaque":
            return True
        children = node.get("properties")
        if not isinstance(children, dict) or part not in children:
            return depth == 0 and resolved.lenient_roots and _standard_root(part)
        node = children[part]
    return True


# ---------------------------------------------------------------------------------------------------
# File checks


@dataclass
class FileCheck:
    """The verdict on one uploaded file."""

    name: str
    row_count: int = 0
    fatal: list[dict] = field(default_factory=list)
    """Errors that fail the whole batch: `{"code", "description"}`."""
    bad_rows: dict[str, set[int]] = field(default_factory=dict)
    """Row errors: description → 0-based row numbers within the file (code INGEST-1555-400)."""

    def fail(self, code: str, description: str) -> None:
        self.fatal.append({"code": code, "description": description})

    @property
    def bad_row_numbers(self) -> set[int]:
        out: set[int] = set()
        for rows in self.bad_rows.values():
            out |= rows
        return out


_ALLOWED_PHYSICAL = {"BOOLEAN", "INT32", "INT64", "DOUBLE", "BYTE_ARRAY"}


def _physical_problem(column) -> str | None:
    """Why a Parquet leaf column uses a type AEP does not document, or None if it is fine."""
    physical = column.physical_type
    logical = column.logical_type
    logical_type = logical.type if logical is not None else "NONE"
    details = json.loads(logical.to_json()) if logical_type != "NONE" else {}
    if physical == "INT96":
        return "INT96 timestamps are not supported; write INT64 TIMESTAMP_MILLIS"
    if logical_type == "DECIMAL" or column.converted_type == "DECIMAL":
        return "DECIMAL is not an XDM type; write DOUBLE (XDM number) or INT64 minor units"
    if physical not in _ALLOWED_PHYSICAL:
        return f"Parquet type {physical} is not supported; use the types Adobe documents"
    if physical == "BYTE_ARRAY" and logical_type not in ("STRING", "ENUM", "JSON"):
        return "unannotated BINARY is not supported; write UTF8 strings"
    if logical_type == "INT" and details.get("isSigned") is False:
        return "unsigned integers are not supported; write signed INT32/INT64"
    if logical_type == "TIMESTAMP" and details.get("timeUnit") != "milliseconds":
        return (
            f"TIMESTAMP with unit {details.get('timeUnit')} is not supported; "
            "write INT64 TIMESTAMP_MILLIS"
        )
    if logical_type in ("TIME", "UUID", "INTERVAL", "FLOAT16"):
        return f"Parquet logical type {logical_type} is not supported"
    return None


def _xdm_kind(node: dict) -> str:
    if node.get("meta:emulatorOpaque"):
        return "opaque"
    if "$ref" in node and "type" not in node:
        return "opaque"
    xdm_type = node.get("type")
    if xdm_type == "object":
        if node.get("meta:xdmType") == "map" or (
            "additionalProperties" in node and "properties" not in node
        ):
            return "map"
        return "object" if "properties" in node else "opaque"
    if xdm_type == "string":
        fmt = node.get("format")
        return {"date-time": "date-time", "date": "date"}.get(fmt, "string")
    if xdm_type in ("integer", "number", "boolean", "array"):
        return xdm_type
    return "opaque"


def _describe(node: dict) -> str:
    kind = _xdm_kind(node)
    if kind == "integer":
        return f"integer ({node.get('meta:xdmType', 'long')})"
    return kind


def _compatible(kind: str, arrow_type: pa.DataType) -> tuple[bool, bool]:
    """(compatible, needs a string conversion check) for a scalar XDM kind and an Arrow type."""
    is_string = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    is_int = pa.types.is_signed_integer(arrow_type)
    if kind == "string":
        return is_string, False
    if kind == "boolean":
        return pa.types.is_boolean(arrow_type), False
    if kind in ("integer", "number"):
        if is_int or pa.types.is_float64(arrow_type):
            return True, False
        return is_string, is_string
    if kind == "date-time":
        if pa.types.is_timestamp(arrow_type) or pa.types.is_int64(arrow_type):
            return True, False
        return is_string, is_string
    if kind == "date":
        if pa.types.is_date32(arrow_type) or pa.types.is_int64(arrow_type):
            return True, False
        return is_string, is_string
    return False, False


_CONVERSION_TARGETS = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "date-time": pa.timestamp("ms", tz="UTC"),
    "date": pa.date32(),
}


@dataclass
class _Walk:
    check: FileCheck
    conversions: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    required: list[tuple[tuple[str, ...], str]] = field(default_factory=list)


def _walk(walk: _Walk, path: tuple[str, ...], node: dict, arrow_type: pa.DataType) -> None:
    dotted = ".".join(path)
    kind = _xdm_kind(node)
    if kind == "opaque":
        return
    if kind == "object":
        if not pa.types.is_struct(arrow_type):
            walk.check.fail(
                CODE_VALIDATION,
                f"TypeCompatibilityException: column '{dotted}' is {arrow_type} but the XDM field is "
                "an object; write a Parquet group (struct)",
            )
            return
        children = node.get("properties") or {}
        present = {arrow_type.field(i).name for i in range(arrow_type.num_fields)}
        for i in range(arrow_type.num_fields):
            child = arrow_type.field(i)
            if child.name not in children:
                walk.check.fail(
                    CODE_VALIDATION,
                    f"column '{dotted}.{child.name}' is not a field of the dataset's schema",
                )
                continue
            _walk(walk, (*path, child.name), children[child.name], child.type)
        for name in node.get("required") or []:
            if name in children and name not in present:
                walk.check.fail(
                    CODE_REQUIRED_MISSING,
                    f"required field '{dotted}.{name}' is missing from the file",
                )
            elif name in present and "[]" not in path:
                walk.required.append(((*path, name), f"{dotted}.{name}"))
        return
    if kind == "map":
        if not pa.types.is_map(arrow_type):
            walk.check.fail(
                CODE_VALIDATION,
                f"TypeCompatibilityException: column '{dotted}' is {arrow_type} but the XDM field is "
                "a map; write a Parquet MAP with string keys",
            )
            return
        if not (
            pa.types.is_string(arrow_type.key_type) or pa.types.is_large_string(arrow_type.key_type)
        ):
            walk.check.fail(
                CODE_VALIDATION,
                f"map column '{dotted}' has {arrow_type.key_type} keys; keys must be strings",
            )
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            _walk(walk, (*path, "{}"), values, arrow_type.item_type)
        return
    if kind == "array":
        if not (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)):
            walk.check.fail(
                CODE_VALIDATION,
                f"TypeCompatibilityException: column '{dotted}' is {arrow_type} but the XDM field is "
                "an array; write a Parquet LIST",
            )
            return
        _walk(walk, (*path, "[]"), node.get("items") or {}, arrow_type.value_type)
        return
    ok, convert = _compatible(kind, arrow_type)
    if not ok:
        walk.check.fail(
            CODE_VALIDATION,
            f"TypeCompatibilityException: column '{dotted}' is {arrow_type} but the XDM field is "
            f"{_describe(node)}",
        )
    elif convert:
        walk.conversions.append((path, kind))


def _values(table: pa.Table, path: tuple[str, ...]) -> pa.Array | None:
    """The values at a column path ('[]' steps into list items); None inside maps."""
    if "{}" in path:
        return None
    array = table.column(path[0]).combine_chunks()
    for step in path[1:]:
        if step == "[]":
            array = pc.list_flatten(array)
        else:
            array = pc.struct_field(array, [array.type.get_field_index(step)])
    return array


def _standard_root(name: str) -> bool:
    """Whether an unknown top-level field may come from a standard field group the emulator lacks.

    Standard field groups add plain names (`person`, `commerce`, ...) and Adobe's `_experience`;
    other underscore names are tenant namespaces, which must be declared (catches `_tenant` typos).
    """
    return not name.startswith("_") or name == "_experience"


def _check_table(check: FileCheck, resolved: ResolvedSchema, arrow_schema: pa.Schema, tenant: str):
    walk = _Walk(check)
    root_children = resolved.properties
    for arrow_field in arrow_schema:
        node = root_children.get(arrow_field.name)
        if node is None:
            if resolved.lenient_roots and _standard_root(arrow_field.name):
                continue
            check.fail(
                CODE_VALIDATION,
                f"column '{arrow_field.name}' is not a field of schema '{resolved.title}' "
                f"({resolved.id})",
            )
            continue
        _walk(walk, (arrow_field.name,), node, arrow_field.type)
    present = set(arrow_schema.names)
    for name in resolved.required:
        if name not in present:
            check.fail(
                CODE_REQUIRED_MISSING,
                f"required field '{name}' is missing from file '{check.name}'",
            )
        else:
            walk.required.append(((name,), name))
    return walk


def check_parquet(name: str, data: bytes, resolved: ResolvedSchema, tenant: str) -> FileCheck:
    """Validate one Parquet file against the dataset's resolved schema."""
    check = FileCheck(name=name)
    if not data:
        check.fail(CODE_EMPTY_FILE, f"dataset file '{name}' is empty (0 bytes)")
        return check
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        parquet_schema = parquet.schema
        arrow_schema = parquet.schema_arrow
    except Exception as exc:  # pyarrow raises several types for corrupt input
        check.fail(CODE_UNREADABLE, f"file '{name}' is not a readable Parquet file: {exc}")
        return check
    check.row_count = parquet.metadata.num_rows
    for i in range(len(parquet_schema)):
        column = parquet_schema.column(i)
        problem = _physical_problem(column)
        if problem:
            check.fail(CODE_VALIDATION, f"column '{column.path}' in file '{name}': {problem}")
    walk = _check_table(check, resolved, arrow_schema, tenant)
    if check.fatal:
        return check
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:
        check.fail(CODE_UNREADABLE, f"file '{name}' is not a readable Parquet file: {exc}")
        return check
    _check_values(check, table, walk)
    return check


def _check_values(check: FileCheck, table: pa.Table, walk: _Walk) -> None:
    for path, kind in walk.conversions:
        values = _values(table, path)
        if values is None:
            continue
        try:
            pc.cast(values, _CONVERSION_TARGETS[kind])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            check.fail(
                CODE_VALIDATION,
                f"TypeCompatibilityException: a value of string column '{'.'.join(path)}' in file "
                f"'{check.name}' cannot be converted to XDM {kind}: {exc}",
            )
    for path, dotted in walk.required:
        values = _values(table, path)
        if values is None:
            continue
        if len(path) > 1:
            parent = _values(table, path[:-1])
            bad = pc.and_(pc.is_valid(parent), pc.is_null(values))
        else:
            bad = pc.is_null(values)
        rows = pc.indices_nonzero(bad).to_pylist()
        if rows:
            description = f"required field '{dotted}' is null"
            check.bad_rows.setdefault(description, set()).update(rows)


def check_json(
    name: str, data: bytes, resolved: ResolvedSchema, tenant: str, multiline: bool
) -> tuple[FileCheck, list[dict]]:
    """Validate a JSON file (one object per line, or one array/object when `multiline`).

    Only paths and required fields are checked for JSON: JSON has no date types, so AEP converts values
    at ingestion; the emulator does not emulate that conversion.
    """
    check = FileCheck(name=name)
    if not data:
        check.fail(CODE_EMPTY_FILE, f"dataset file '{name}' is empty (0 bytes)")
        return check, []
    try:
        text = data.decode("utf-8")
        if multiline:
            parsed = json.loads(text)
            records = parsed if isinstance(parsed, list) else [parsed]
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        check.fail(CODE_UNREADABLE, f"file '{name}' is not valid JSON: {exc}")
        return check, []
    check.row_count = len(records)
    unknown: set[str] = set()
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            check.fail(CODE_UNREADABLE, f"record {row} of file '{name}' is not a JSON object")
            return check, []
        for path in _json_paths(record, resolved.node(), ()):
            unknown.add(path)
        for required in resolved.required:
            if record.get(required) is None:
                check.bad_rows.setdefault(f"required field '{required}' is null", set()).add(row)
    for path in sorted(unknown):
        top = path.split(".")[0]
        if resolved.lenient_roots and top not in resolved.properties and _standard_root(top):
            continue
        check.fail(CODE_VALIDATION, f"field '{path}' is not a field of schema '{resolved.title}'")
    return check, records


def _json_paths(value: dict, node: dict, path: tuple[str, ...]) -> Iterable[str]:
    """Paths in a JSON object that the schema node does not define."""
    children = node.get("properties")
    if not isinstance(children, dict):
        return
    for key, item in value.items():
        child = children.get(key)
        if child is None:
            yield ".".join((*path, key))
        elif isinstance(item, dict) and _xdm_kind(child) == "object":
            yield from _json_paths(item, child, (*path, key))


def summarize_row_errors(checks: list[FileCheck], with_rows: bool) -> list[dict]:
    """Catalog `errors[]` entries for row errors: one per description, batch-wide 0-based rows."""
    per_description: dict[str, list[int]] = {}
    offset = 0
    for check in checks:
        for description, rows in check.bad_rows.items():
            per_description.setdefault(description, []).extend(r + offset for r in rows)
        offset += check.row_count
    errors = []
    for description, rows in per_description.items():
        entry = {"code": CODE_REQUIRED_MISSING, "description": description}
        if with_rows:
            entry["rows"] = _ranges(sorted(rows))
            entry["recordCount"] = len(rows)
        errors.append(entry)
    return errors


def _ranges(rows: list[int]) -> list[str]:
    out: list[str] = []
    start = prev = None
    for row in rows:
        if start is None:
            start = prev = row
        elif row == prev + 1:
            prev = row
        else:
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = row
    if start is not None:
        out.append(str(start) if start == prev else f"{start}-{prev}")
    return out
