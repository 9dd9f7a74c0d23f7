"""Create (idempotently) what the pipeline needs in an AEP sandbox, and find the datasets later.

Why find-first instead of create-and-ignore-409: Schema Registry and Catalog do not reject a second
resource with the same title/name — they create a duplicate, and a duplicated dataset silently splits
the data. So every resource is looked up by title (field groups, schemas), by content (descriptors),
by code (identity namespace) or by name (datasets) before anything is created, and running setup
twice changes nothing.

The per-resource payloads come from the XDM mapping (`stripe_aep.xdm.schema_registry_payloads`):
`field_group`, `schema`, `descriptors`, `dataset`, `class_id`, and optionally `class` (a custom
tenant class body, e.g. for prices) and `identity_namespace`. References to resources that do not
exist yet are written as placeholders `{{class:<resource>}}`, `{{fieldgroup:<resource>}}`,
`{{schema:<resource>}}` and are replaced here by the real `$id`s.

Dataset ids may be pinned with `AEP_DATASET_<RESOURCE>` (e.g. `AEP_DATASET_BALANCE_TRANSACTIONS`);
a pinned id always wins over the name lookup, and setup does not create a dataset for it.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.errors import ConfigError
from stripe_aep.xdm.standard import PROFILE_CLASSES, identity_namespace_payload

IDENTITY_NAMESPACE = identity_namespace_payload()
PAYLOAD_KEYS = ("field_group", "schema", "descriptors", "dataset", "class_id")
_PLACEHOLDER = re.compile(r"\{\{(class|fieldgroup|schema):([A-Za-z0-9_]+)\}\}")


def dataset_env_var(resource: str) -> str:
    """`charges` → `AEP_DATASET_CHARGES`."""
    return "AEP_DATASET_" + re.sub(r"[^A-Za-z0-9]", "_", resource).upper()


def _substitute(value: Any, ids: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            key = f"{m.group(1)}:{m.group(2)}"
            if key not in ids:
                raise ValueError(
                    f"payload refers to {m.group(0)}, which setup has not created (is "
                    f"{m.group(2)!r} among the resources passed to setup?)"
                )
            return ids[key]

        return _PLACEHOLDER.sub(repl, value)
    if isinstance(value, Mapping):
        return {_substitute(k, ids): _substitute(v, ids) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_substitute(v, ids) for v in value]
    return value


def _descriptor_key(d: Mapping[str, Any]) -> tuple[str, str, str]:
    return (
        str(d.get("@type")),
        str(d.get("xdm:sourceSchema")),
        str(d.get("xdm:sourceProperty")),
    )


def _check_payloads(payloads: Mapping[str, Mapping[str, Any]]) -> None:
    if not payloads:
        raise ValueError("run_setup needs at least one resource payload")
    for resource, p in payloads.items():
        missing = [k for k in PAYLOAD_KEYS if k not in p]
        if missing:
            raise ValueError(f"payload for {resource!r} lacks {', '.join(missing)}")
        for part in ("field_group", "schema"):
            if not p[part].get("title"):
                raise ValueError(f"payload {resource!r}.{part} has no title")
        if not p["dataset"].get("name"):
            raise ValueError(f"payload {resource!r}.dataset has no name")


def run_setup(
    client: AepClient,
    *,
    tenant: str,
    payloads: Mapping[str, Mapping[str, Any]],
    profile: bool = False,
    environ: Mapping[str, str] | None = None,
    log: Any = None,
) -> dict[str, str]:
    """Create what is missing (field groups, schemas, namespace, descriptors, datasets).

    Returns resource → dataset id. Idempotent: a second run creates nothing.
    """
    log = log or logging.getLogger("stripe_aep.aep.setup")
    env = os.environ if environ is None else environ
    _check_payloads(payloads)
    stats = client.get_stats()
    actual_tenant = str(stats.get("tenantId") or "").lstrip("_")
    if actual_tenant and actual_tenant != tenant.lstrip("_"):
        raise ConfigError(
            "AEP_TENANT_ID",
            f"is {tenant!r} but the organization's tenant id is {actual_tenant!r}",
            f"Set AEP_TENANT_ID={actual_tenant} (custom fields must live under _{actual_tenant})",
        )
    created: list[str] = []
    ids: dict[str, str] = {}

    # 1. identity namespaces (descriptors refer to them by code); StripeCustomerId always
    wanted = {IDENTITY_NAMESPACE["code"].lower(): dict(IDENTITY_NAMESPACE)}
    for p in payloads.values():
        if p.get("identity_namespace"):
            wanted[str(p["identity_namespace"]["code"]).lower()] = dict(p["identity_namespace"])
    codes = {str(n.get("code", "")).lower() for n in client.list_identity_namespaces()}
    for code, body in wanted.items():
        if code not in codes:
            client.create_identity_namespace(body)
            created.append(f"identity namespace {body['code']}")

    # 2. custom classes, 3. field groups (which extend classes), 4. schemas (which use both)
    for kind, part, prefix in (
        ("classes", "class", "class"),
        ("fieldgroups", "field_group", "fieldgroup"),
        ("schemas", "schema", "schema"),
    ):
        todo = {r: p[part] for r, p in payloads.items() if p.get(part)}
        if not todo:
            continue
        existing = {r.get("title"): r for r in client.list_tenant_resources(kind)}
        for resource, payload in todo.items():
            body = _substitute(copy.deepcopy(payload), ids)
            found = existing.get(body["title"])
            if found is None:
                made = client.create_tenant_resource(kind, body)
                if not made.get("$id"):
                    raise RuntimeError(
                        f"Schema Registry created {kind} {body['title']!r} without $id"
                    )
                found = made
                created.append(f"{part} {body['title']!r}")
            ids[f"{prefix}:{resource}"] = str(found["$id"])
            if part == "field_group" and not made_now(created, part, body):
                added = _add_missing_fields(client, str(found["$id"]), body)
                created.extend(f"field {p} in {part} {body['title']!r}" for p in added)

    # 5. identity descriptors (matched on type, schema and field)
    existing_desc = {_descriptor_key(d) for d in client.list_descriptors()}
    for p in payloads.values():
        for d in p["descriptors"] or []:
            body = _substitute(copy.deepcopy(d), ids)
            key = _descriptor_key(body)
            if key not in existing_desc:
                client.create_descriptor(body)
                existing_desc.add(key)
                created.append(f"descriptor {key[0]} on {key[2]}")

    # 6. Profile (optional, only for classes Profile accepts, and only with a primary identity)
    profile_resources: set[str] = set()
    if profile:
        for resource, p in payloads.items():
            has_primary = any(d.get("xdm:isPrimary") for d in p["descriptors"] or [])
            class_id = _substitute(p["class_id"], ids)
            if class_id not in PROFILE_CLASSES or not has_primary:
                log.warning(
                    "AEP setup: %s is not Profile-enabled (class %s%s)",
                    resource,
                    class_id,
                    "" if has_primary else ", no primary identity",
                )
                continue
            profile_resources.add(resource)
            schema_id = ids[f"schema:{resource}"]
            schema = client.get_schema(schema_id) or {}
            if "union" not in (schema.get("meta:immutableTags") or []):
                client.patch_schema(
                    schema_id, [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
                )
                created.append(f"union tag on schema of {resource}")

    # 7. datasets (a pinned AEP_DATASET_<RESOURCE> wins)
    datasets: dict[str, str] = {}
    for resource, p in payloads.items():
        pinned = (env.get(dataset_env_var(resource)) or "").strip()
        if pinned:
            datasets[resource] = _pinned_dataset(client, resource, pinned)
            continue
        body = _substitute(copy.deepcopy(p["dataset"]), ids)
        found = client.find_dataset_by_name(body["name"])
        if found is not None:
            datasets[resource] = found["id"]
            continue
        body.setdefault("enableErrorDiagnostics", True)
        if resource in profile_resources:
            tags = dict(body.get("tags") or {})
            tags["unifiedProfile"] = ["enabled:true"]
            tags["unifiedIdentity"] = ["enabled:true"]
            body["tags"] = tags
        datasets[resource] = client.create_dataset(body)
        created.append(f"dataset {body['name']!r}")

    if created:
        log.info("AEP setup created %d resource(s): %s", len(created), "; ".join(created))
    else:
        log.info("AEP setup: everything already exists, nothing created")
    return datasets


def made_now(created: list[str], part: str, body: Mapping[str, Any]) -> bool:
    return f"{part} {body['title']!r}" in created


def _pointer_token(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _missing_fields(have: Any, want: Any, pointer: str) -> list[tuple[str, Any]]:
    """(JSON pointer, definition) of every field of `want` that `have` lacks, outermost only:
    a missing object is added whole. Fields present in both are left as they are (AEP refuses
    to redefine a field in use; a mapping never changes a field's type)."""
    out: list[tuple[str, Any]] = []
    if not isinstance(have, Mapping) or not isinstance(want, Mapping):
        return out
    have_props, want_props = have.get("properties"), want.get("properties")
    if isinstance(want_props, Mapping) and isinstance(have_props, Mapping):
        for name, node in want_props.items():
            path = f"{pointer}/properties/{_pointer_token(name)}"
            if name not in have_props:
                out.append((path, node))
            else:
                out.extend(_missing_fields(have_props[name], node, path))
    if isinstance(want.get("items"), Mapping) and isinstance(have.get("items"), Mapping):
        out.extend(_missing_fields(have["items"], want["items"], f"{pointer}/items"))
    return out


def _add_missing_fields(client: AepClient, field_group_id: str, wanted: Mapping[str, Any]) -> list:
    """Bring a field group created by an earlier version of the mapping up to date: add (JSON
    Patch `add`, one request) the fields the mapping has gained since, e.g. the version fields of
    `_{TENANT}.stripe`. Only additions: the Schema Registry allows a field group in use to gain
    optional fields, nothing else (Experience League, "Update schemas": "You can always add new
    fields and make mandatory fields optional"; removing, renaming, retyping fields or making
    more of them required is refused). Returns the pointers added (none: nothing sent)."""
    existing = client.get_field_group(field_group_id) or {}
    have_defs = existing.get("definitions") or {}
    ops: list[dict[str, Any]] = []
    for name, definition in (wanted.get("definitions") or {}).items():
        pointer = f"/definitions/{_pointer_token(name)}"
        if name not in have_defs:
            ops.append({"op": "add", "path": pointer, "value": definition})
            continue
        ops.extend(
            {"op": "add", "path": path, "value": node}
            for path, node in _missing_fields(have_defs[name], definition, pointer)
        )
    if ops:
        client.patch_field_group(field_group_id, ops)
    return [op["path"] for op in ops]


def _pinned_dataset(client: AepClient, resource: str, dataset_id: str) -> str:
    var = dataset_env_var(resource)
    if client.get_dataset(dataset_id) is None:
        raise ConfigError(
            var,
            f"dataset {dataset_id!r} does not exist in sandbox {client.settings.sandbox!r}",
            f"Unset {var} to let `stripe-aep setup` create the dataset, or set it to an "
            "existing dataset id (AEP > Datasets)",
        )
    return dataset_id


def default_dataset_name(resource: str, tenant: str | None) -> str:
    """The dataset name the XDM payloads use for a resource (what setup creates)."""
    from stripe_aep.xdm import schema_registry_payloads  # the single source of truth

    return str(schema_registry_payloads(resource, tenant or "tenant")["dataset"]["name"])


def resolve_dataset_id(
    client: AepClient,
    resource: str,
    environ: Mapping[str, str] | None = None,
    *,
    dataset_name: str | None = None,
) -> str:
    """The dataset to deliver `resource` to: `AEP_DATASET_<RESOURCE>` if set, else by name."""
    env = os.environ if environ is None else environ
    var = dataset_env_var(resource)
    pinned = (env.get(var) or "").strip()
    if pinned:
        return _pinned_dataset(client, resource, pinned)
    name = dataset_name or default_dataset_name(resource, env.get("AEP_TENANT_ID"))
    found = client.find_dataset_by_name(name)
    if found is None:
        raise ConfigError(
            var,
            f"not set, and sandbox {client.settings.sandbox!r} has no dataset named {name!r}",
            "Run `stripe-aep setup` to create the schemas and datasets, or set "
            f"{var} to an existing dataset id",
        )
    return str(found["id"])
