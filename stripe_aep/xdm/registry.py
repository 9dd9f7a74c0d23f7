"""Schema Registry / Catalog payloads per resource, generated from the mapping, and their export.

Why placeholders: AEP assigns `$id`s when a class, field group or schema is created, so a payload
that refers to another one cannot contain its final id. References use `{{kind:<resource>}}`
placeholders that the setup code replaces with the `$id` returned by the earlier POST:

- `{{class:<resource>}}`      — a custom class (`POST /tenant/classes`; custom record classes),
- `{{fieldgroup:<resource>}}` — the tenant field group (`POST /tenant/fieldgroups`),
- `{{schema:<resource>}}`     — the schema (`POST /tenant/schemas`).

Creation order: identity namespace (if missing) → class (if any) → field group → schema →
descriptors → dataset. Titles are stable (`stripe-aep <resource> …`), so an idempotent setup can find
an existing resource by title before creating it. `xdm:sourceVersion` is the integer 1, as in
Adobe's descriptor guide and the spec's own example (the spec's request schema types it as a
string; see the tests).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from stripe_aep.catalog import RESOURCE_NAMES
from stripe_aep.xdm.resources import mapping_for
from stripe_aep.xdm.schemas import validate_tenant, xdm_json_schema
from stripe_aep.xdm.standard import (
    CUSTOMER_NAMESPACE,
    RECORD_BEHAVIOR,
    identity_namespace_payload,
    placeholder,
)


def schema_registry_payloads(resource: str, tenant: str) -> dict[str, Any]:
    """The payloads to create the XDM schema and dataset of `resource` in tenant `tenant`.

    Keys: `class_id`, `class` (custom class body or None), `field_group`, `schema`,
    `descriptors` (list), `dataset`, `identity_namespace` (or None), `titles`, `placeholders`.
    """
    validate_tenant(tenant)
    m = mapping_for(resource)
    titles = {
        "class": m.custom_class_title,
        "field_group": f"stripe-aep {resource} ({m.stripe_object} fields)",
        "schema": f"stripe-aep {resource}",
        "dataset": f"stripe-aep {resource}",
    }
    class_payload = None
    if m.custom_class_title:
        class_payload = {
            "title": m.custom_class_title,
            "description": f"Stripe {m.stripe_object} records, written by stripe-aep.",
            "type": "object",
            "allOf": [{"$ref": RECORD_BEHAVIOR}],
        }
    definition = f"stripe-{resource.replace('_', '-')}"
    tenant_field = m.tenant_field(tenant)
    field_group = {
        "title": titles["field_group"],
        "description": (
            f"Stripe {m.stripe_object} fields under _{tenant}: common Stripe fields "
            f"(_{tenant}.stripe) and the {m.stripe_object} object (_{tenant}.{m.tenant_object})."
        ),
        "type": "object",
        "meta:intendedToExtend": [m.xdm_class],
        "definitions": {
            definition: {
                "properties": {tenant_field.name: xdm_json_schema(tenant_field)},
            }
        },
        "allOf": [{"$ref": f"#/definitions/{definition}"}],
    }
    schema = {
        "title": titles["schema"],
        "description": (
            f"Stripe {resource} as {'ExperienceEvents' if m.is_event else 'records'} "
            f"({m.xdm_class}), written by stripe-aep. {m.why.replace('{TENANT}', tenant)}"
        ),
        "type": "object",
        "allOf": [
            {"$ref": m.xdm_class},
            *({"$ref": fg} for fg in m.standard_field_groups),
            {"$ref": placeholder("fieldgroup", resource)},
        ],
    }
    descriptors = [
        {
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": placeholder("schema", resource),
            "xdm:sourceVersion": 1,
            "xdm:sourceProperty": ident.for_tenant(tenant),
            "xdm:namespace": ident.namespace,
            "xdm:property": "xdm:code",
            "xdm:isPrimary": ident.primary,
        }
        for ident in m.identities
    ]
    dataset = {
        "name": titles["dataset"],
        "description": f"Stripe {resource} delivered by stripe-aep as XDM Parquet.",
        "schemaRef": {
            "id": placeholder("schema", resource),
            "contentType": "application/vnd.adobe.xed-full+json;version=1",
        },
        "fileDescription": {"format": "parquet"},
        "tags": {"stripe-aep": [resource]},
    }
    uses_namespace = any(i.namespace == CUSTOMER_NAMESPACE for i in m.identities)
    return {
        "resource": resource,
        "class_id": m.xdm_class,
        "class": class_payload,
        "field_group": field_group,
        "schema": schema,
        "descriptors": descriptors,
        "dataset": dataset,
        "identity_namespace": identity_namespace_payload() if uses_namespace else None,
        "titles": titles,
        "placeholders": {
            "class": placeholder("class", resource) if class_payload else None,
            "fieldgroup": placeholder("fieldgroup", resource),
            "schema": placeholder("schema", resource),
        },
    }


def export_schemas(tenant: str, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Write every resource's payloads as JSON files under `out_dir/<resource>/`.

    Files per resource, in creation order: `class.json` (prices only), `fieldgroup.json`,
    `schema.json`, `descriptors.json`, `dataset.json`; plus `identity-namespace.json` and a
    `manifest.json` at the top. Returns the written paths (sorted, deterministic content).
    """
    validate_tenant(tenant)
    out_dir = pathlib.Path(out_dir)
    written: list[pathlib.Path] = []

    def dump(path: pathlib.Path, payload: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        written.append(path)

    manifest: dict[str, Any] = {
        "tenant": tenant,
        "placeholders": "{{class:<resource>}}, {{fieldgroup:<resource>}}, {{schema:<resource>}} "
        "are replaced by the $id returned when that resource is created",
        "order": [
            "identity-namespace.json",
            "class.json",
            "fieldgroup.json",
            "schema.json",
            "descriptors.json",
            "dataset.json",
        ],
        "resources": {},
    }
    dump(out_dir / "identity-namespace.json", identity_namespace_payload())
    for resource in RESOURCE_NAMES:
        p = schema_registry_payloads(resource, tenant)
        files = []
        if p["class"] is not None:
            dump(out_dir / resource / "class.json", p["class"])
            files.append("class.json")
        dump(out_dir / resource / "fieldgroup.json", p["field_group"])
        dump(out_dir / resource / "schema.json", p["schema"])
        dump(out_dir / resource / "descriptors.json", p["descriptors"])
        dump(out_dir / resource / "dataset.json", p["dataset"])
        files += ["fieldgroup.json", "schema.json", "descriptors.json", "dataset.json"]
        manifest["resources"][resource] = {
            "class_id": p["class_id"],
            "files": files,
            "titles": p["titles"],
        }
    dump(out_dir / "manifest.json", manifest)
    return written
