"""Schemas generated from the mappings: the Arrow/Parquet XDM schema, the flattened column list,
the XDM JSON Schema of the tenant field group, and the pyarrow parse schema of the raw Stripe JSON.

Why generated: the mappings (`mappings/<resource>.py`) are the single source of truth; these functions only
walk it, so the Parquet files, the Schema Registry payloads and the parser can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from stripe_aep.xdm.resources import ResourceMapping, mapping_for
from stripe_aep.xdm.spec import (
    CHANGE_INPUTS,
    INPUT_KINDS,
    LONG_SCHEMA_MAX,
    LONG_SCHEMA_MIN,
    Field,
    XdmType,
)

#: An AEP tenant id as `GET /data/foundation/schemaregistry/stats` returns it (`tenantId`, without
#: the leading underscore of the `_<tenant>` field namespace): lower-case letters, digits and
#: underscores, at most 128 characters.
_TENANT_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,127}")


def validate_tenant(tenant: str) -> str:
    """Check an AEP tenant id (`AEP_TENANT_ID`, without the leading underscore): the one tenant
    rule of the project (the settings and the XDM resource call it too)."""
    if not isinstance(tenant, str) or not _TENANT_RE.fullmatch(tenant):
        hint = " (pass it without the leading underscore)" if str(tenant).startswith("_") else ""
        raise ValueError(
            f"invalid AEP tenant id {tenant!r}{hint}: expected lower-case letters, digits and "
            "underscores (at most 128), as returned by GET /data/foundation/schemaregistry/stats "
            "(tenantId)"
        )
    return tenant


# ------------------------------------------------------------------------------------------
# Arrow / Parquet
# ------------------------------------------------------------------------------------------


def xdm_schema_for(resource: str, tenant: str) -> pa.Schema:
    """The Arrow schema of the XDM Parquet files of `resource` (nested structs = XDM paths)."""
    mapping = mapping_for(resource)
    validate_tenant(tenant)
    return pa.schema([f.arrow_field() for f in mapping.fields(tenant)])


def _type_str(f: Field) -> str:
    if f.type is XdmType.ARRAY:
        return f"array<{f.items.value if f.items else 'object'}>"
    if f.type is XdmType.MAP:
        return "map<string,string>"
    return f.type.value


@dataclass(frozen=True)
class ColumnInfo:
    """One flattened XDM leaf (or array) with its field definition."""

    path: str
    field: Field
    depth_in_array: bool = False


def iter_columns(fields: tuple[Field, ...], prefix: str = "", in_array: bool = False):
    """Flatten fields to dotted XDM paths (`[]` marks array elements); yields ColumnInfo."""
    for f in fields:
        path = f"{prefix}{f.name}"
        if f.type is XdmType.OBJECT:
            yield from iter_columns(f.children, f"{path}.", in_array)
        elif f.type is XdmType.ARRAY and f.children:
            yield ColumnInfo(path, f, in_array)
            yield from iter_columns(f.children, f"{path}[].", True)
        else:
            yield ColumnInfo(path, f, in_array)


def column_schema(resource: str, tenant: str) -> list[tuple[str, str, str]]:
    """Flattened XDM paths as (name, XDM type, description), for Dagster column metadata."""
    validate_tenant(tenant)
    mapping = mapping_for(resource)
    return [
        (c.path, _type_str(c.field), c.field.description)
        for c in iter_columns(mapping.fields(tenant))
    ]


# ------------------------------------------------------------------------------------------
# XDM JSON Schema (field group definitions)
# ------------------------------------------------------------------------------------------


def xdm_json_schema(f: Field) -> dict[str, Any]:
    """JSON Schema of one field as the Schema Registry expects it in a field group."""
    out: dict[str, Any] = {"title": f.display_title, "description": f.description}
    if f.type is XdmType.OBJECT:
        out["type"] = "object"
        out["properties"] = {c.name: xdm_json_schema(c) for c in f.children}
        required = [c.name for c in f.children if c.required]
        if required:
            out["required"] = required
    elif f.type is XdmType.ARRAY:
        out["type"] = "array"
        if f.children:
            item: dict[str, Any] = {
                "type": "object",
                "properties": {c.name: xdm_json_schema(c) for c in f.children},
            }
        else:
            item = _scalar_json(f.items)
        out["items"] = item
    else:
        out.update(_scalar_json(f.type))
    if f.enum is not None:
        out["enum"] = list(f.enum)
    if f.suggested:
        out["meta:enum"] = {v: v for v in f.suggested}
    if f.pattern is not None:
        out["pattern"] = f.pattern
    if f.minimum is not None:
        out["minimum"] = f.minimum
    if f.maximum is not None:
        out["maximum"] = f.maximum
    return out


def _scalar_json(t: XdmType | None) -> dict[str, Any]:
    if t is XdmType.STRING:
        return {"type": "string"}
    if t is XdmType.LONG:
        return {"type": "integer", "minimum": LONG_SCHEMA_MIN, "maximum": LONG_SCHEMA_MAX}
    if t is XdmType.NUMBER:
        return {"type": "number"}
    if t is XdmType.BOOLEAN:
        return {"type": "boolean"}
    if t is XdmType.DATETIME:
        return {"type": "string", "format": "date-time"}
    if t is XdmType.MAP:
        return {"type": "object", "meta:xdmType": "map", "additionalProperties": {"type": "string"}}
    raise ValueError(f"not a scalar XDM type: {t}")


# ------------------------------------------------------------------------------------------
# Parse schema of the raw Stripe JSON
# ------------------------------------------------------------------------------------------


@dataclass
class _Node:
    kind: str | None = None
    is_list: bool = False
    children: dict[str, _Node] = field(default_factory=dict)


def input_error_path(path: str) -> str:
    """The column path pyarrow's JSON reader prints for a Stripe input path."""
    return "/" + path.replace("[]", "/[]").replace(".", "/")


def _input_tree(mapping: ResourceMapping, changes: bool = False) -> _Node:
    """The Stripe paths the mapping reads, as a tree; `changes`: with the `_change` key of change
    lines (versions), which listing lines do not carry."""
    root = _Node()
    for inp in [*mapping.inputs(), *(CHANGE_INPUTS if changes else ())]:
        node = root
        parts = inp.path.split(".")
        for i, part in enumerate(parts):
            name, is_list = (part[:-2], True) if part.endswith("[]") else (part, False)
            child = node.children.setdefault(name, _Node(is_list=is_list))
            if child.is_list != is_list:
                raise ValueError(f"{mapping.resource}: {inp.path} is both a list and not a list")
            last = i == len(parts) - 1
            if last:
                if child.children or (child.kind is not None and child.kind != inp.kind):
                    raise ValueError(
                        f"{mapping.resource}: Stripe path {inp.path} declared as {inp.kind} and "
                        f"as {child.kind or 'an object'}"
                    )
                child.kind = inp.kind
            elif child.kind is not None:
                raise ValueError(
                    f"{mapping.resource}: Stripe path {inp.path} goes through leaf {name}"
                )
            node = child
    return root


def stripe_parse_schema(
    mapping: ResourceMapping,
    expanded: frozenset[str] = frozenset(),
    object_keys: dict[str, tuple[str, ...]] | None = None,
    changes: bool = False,
) -> pa.Schema:
    """Explicit pyarrow JSON parse schema for the Stripe paths the mapping reads.

    Expandable paths parse as strings unless listed in `expanded` (then as `struct<id>`).
    Metadata paths parse as an empty struct whose keys the reader must infer, unless
    `object_keys` gives their keys (path → keys): then as `struct<key: string, ...>`, which lets
    the reader skip every undeclared field. `changes`: change lines, whose `_change` key is
    declared too.
    """

    def child_path(path: str, name: str, node: _Node) -> str:
        p = f"{path}.{name}" if path else name
        return f"{p}[]" if node.is_list else p

    root = _input_tree(mapping, changes)

    def arrow_node(node: _Node, path: str) -> pa.DataType:
        if node.kind is not None:
            if node.kind == "expandable" and path in expanded:
                typ: pa.DataType = pa.struct([("id", pa.string())])
            elif node.kind == "metadata" and object_keys is not None and path in object_keys:
                typ = pa.struct([(k, pa.string()) for k in object_keys[path]])
            else:
                typ = INPUT_KINDS[node.kind]
        else:
            typ = pa.struct(
                [
                    pa.field(n, arrow_node(c, child_path(path, n, c)))
                    for n, c in node.children.items()
                ]
            )
        return pa.list_(typ) if node.is_list else typ

    return pa.schema(
        [pa.field(n, arrow_node(c, child_path("", n, c))) for n, c in root.children.items()]
    )


def expandable_paths(mapping: ResourceMapping) -> list[str]:
    """Stripe input paths (with `[]` for list elements) of expandable fields."""
    return sorted({i.path for i in mapping.inputs() if i.kind == "expandable"})


def metadata_paths(mapping: ResourceMapping) -> list[str]:
    """Stripe input paths of free-form objects of strings (`metadata`)."""
    return sorted({i.path for i in mapping.inputs() if i.kind == "metadata"})


def input_kinds(mapping: ResourceMapping) -> dict[str, str]:
    """Stripe input path → kind, for the slow-path diagnosis."""
    return {i.path: i.kind for i in mapping.inputs()}
