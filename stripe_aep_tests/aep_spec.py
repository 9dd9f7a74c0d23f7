"""Validate AEP request and response bodies against Adobe's published OpenAPI specs.

Why: the AEP emulator claims its responses are shaped like real AEP's, and the AEP client claims its
requests are shaped like Adobe documents them. Both claims are checked against Adobe's own specs
(`specs/aep/` in this repository, from `AdobeDocs/experience-platform-apis`): Batch Ingestion, Catalog and Data
Access are OpenAPI 3.0, the Schema Registry is Swagger 2.0. `$ref`s are resolved inside each spec.

Where a spec contradicts Adobe's own documented examples (and the behaviour of the real API), the spec is
patched before validating, and every patch is listed in `ERRATA` with the evidence; the tests in
`stripe_aep_tests/emulators/test_aep_conformance.py` prove each erratum is real (the documented example
fails the unpatched spec and passes the patched one). Pass `patched=False` to validate against the
specs exactly as published.

    validate_response("catalog", "get", "/batches/{BATCH_ID}", 200, body)  # -> True (validated)
    validate_request("batch-ingestion", "post", "/batches", body)

Both return True when the spec defines a JSON schema for that call and the body conforms, False when the
spec defines no JSON schema for it (for example a 200 with empty `content`), and raise `SpecViolation`
(an AssertionError) listing every violation otherwise. An unknown spec, path, method or status raises
KeyError: a typo must never pass silently.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from stripe_aep_tests.paths import AEP_SPECS

SPEC_DIR = Path(os.environ.get("STRIPE_AEP_SPEC_DIR", str(AEP_SPECS)))
SPEC_NAMES = ("batch-ingestion", "catalog", "data-access", "schema-registry")
BATCH_STATUSES_CATALOG = [
    "processing",
    "success",
    "failure",
    "queued",
    "retrying",
    "stalled",
    "aborted",
    "abandoned",
    "inactive",
    "failed",
    "loading",
    "loaded",
    "staged",
    "active",
    "staging",
    "deleted",
]


class SpecViolation(AssertionError):
    """A body does not conform to the spec; the message lists every violation with its location."""


@dataclass(frozen=True)
class Erratum:
    """A correction to a published spec, with the evidence that the spec (not the API) is wrong."""

    spec: str
    location: str
    problem: str
    evidence: str
    apply: Callable[[dict], None]


def _at(doc: dict, *path: str) -> Any:
    node: Any = doc
    for key in path:
        node = node[key]
    return node


def _add_enum_values(values: list[str], *path: str) -> Callable[[dict], None]:
    def apply(spec: dict) -> None:
        node = _at(spec, *path)
        node["enum"] = list(dict.fromkeys([*node["enum"], *values]))

    return apply


def _set(key: str, value: Any, *path: str) -> Callable[[dict], None]:
    def apply(spec: dict) -> None:
        _at(spec, *path)[key] = value

    return apply


def _drop_type(*path: str) -> Callable[[dict], None]:
    def apply(spec: dict) -> None:
        _at(spec, *path).pop("type", None)

    return apply


def _rename_ref_keys(*path: str) -> Callable[[dict], None]:
    def apply(spec: dict) -> None:
        properties = _at(spec, *path)
        properties["$ref"] = properties.pop("$ref ")

    return apply


def _nullable_strings(*paths: tuple[str, ...]) -> Callable[[dict], None]:
    def apply(spec: dict) -> None:
        for path in paths:
            _at(spec, *path)["type"] = ["string", "null"]

    return apply


ERRATA: tuple[Erratum, ...] = (
    Erratum(
        spec="batch-ingestion",
        location="components.schemas.Batch.properties.status.enum",
        problem="the enum lacks `loading`, `aborted`, `inactive` and the other Catalog statuses",
        evidence="Experience League create-batch example: a new batch is returned with status "
        "`loading`; ABORT yields `aborted`; Catalog's batchStatus enum lists all of them",
        apply=_add_enum_values(
            BATCH_STATUSES_CATALOG, "components", "schemas", "Batch", "properties", "status"
        ),
    ),
    Erratum(
        spec="batch-ingestion",
        location="components.schemas.IngestBatch.properties.inputFormat.properties.format.enum",
        problem="the enum is `JSON`, `Parquet`, `CSV` but every documented request uses lowercase",
        evidence='Experience League batch ingestion examples send `"format": "parquet"` / `json`; the '
        "same spec's Batch.inputFormat.format enum is lowercase; Catalog's is lowercase",
        apply=_add_enum_values(
            ["json", "parquet", "csv"],
            "components",
            "schemas",
            "IngestBatch",
            "properties",
            "inputFormat",
            "properties",
            "format",
        ),
    ),
    Erratum(
        spec="schema-registry",
        location="definitions.createDescriptor.properties.xdm:sourceVersion",
        problem="typed `string`, but descriptors carry the integer major version",
        evidence='Experience League descriptor examples send `"xdm:sourceVersion": 1`; the spec\'s own '
        "createDescriptorResponse and identityDescriptorResponse examples show 1; "
        "lookupDescriptorResponse types it integer",
        apply=_set(
            "type",
            ["integer", "string"],
            "definitions",
            "createDescriptor",
            "properties",
            "xdm:sourceVersion",
        ),
    ),
    Erratum(
        spec="schema-registry",
        location="definitions.patchSchema.items.properties.value",
        problem="typed `string`, but JSON Patch values are any JSON value",
        evidence="Experience League enables a schema for Profile with "
        '`{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}` and adds field groups '
        'with `{"op": "add", "path": "/allOf/-", "value": {"$ref": ...}}`',
        apply=_drop_type("definitions", "patchSchema", "items", "properties", "value"),
    ),
    Erratum(
        spec="schema-registry",
        location="definitions.listResponseBasic.properties._page.properties.next, "
        "definitions.linksBasic.properties.next",
        problem="typed `string`, but the last page has `next: null`",
        evidence="the spec's own listResponseBasic and listFieldGroupsResponse examples show "
        '`"next": null` in both `_page` and `_links`',
        apply=_nullable_strings(
            ("definitions", "listResponseBasic", "properties", "_page", "properties", "next"),
            ("definitions", "linksBasic", "properties", "next"),
        ),
    ),
    Erratum(
        spec="schema-registry",
        location="definitions.createSchema.properties.allOf.items.properties['$ref ']",
        problem="the property is spelled `$ref ` (trailing space), so `allOf[].$ref` is never checked",
        evidence="every documented schema payload uses `$ref`; the typo only weakens validation "
        "(the patch makes the check stricter, never looser)",
        apply=_rename_ref_keys(
            "definitions", "createSchema", "properties", "allOf", "items", "properties"
        ),
    ),
)


@cache
def _load(name: str, patched: bool) -> dict:
    if name not in SPEC_NAMES:
        raise KeyError(f"unknown AEP spec {name!r}; known: {list(SPEC_NAMES)}")
    path = SPEC_DIR / f"{name}.yaml"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; set STRIPE_AEP_SPEC_DIR to the folder of the specs"
        )
    # JSON round trip: YAML status codes such as `200:` load as int keys; JSON pointers need strings.
    spec = json.loads(json.dumps(yaml.safe_load(path.read_text())))
    if patched:
        for erratum in ERRATA:
            if erratum.spec == name:
                erratum.apply(spec)
    return spec


def load_spec(name: str, *, patched: bool = True) -> dict:
    """The spec as a dict (a copy), with `ERRATA` applied unless `patched=False`."""
    return copy.deepcopy(_load(name, patched))


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _operation(spec: dict, name: str, method: str, path_template: str) -> dict:
    paths = spec["paths"]
    if path_template not in paths:
        raise KeyError(f"{name}: no path {path_template!r}; known: {sorted(paths)}")
    item = paths[path_template]
    if method.lower() not in item:
        raise KeyError(f"{name}: {path_template} has no {method.upper()} operation")
    return item[method.lower()]


def _response_pointer(
    spec: dict, name: str, method: str, path_template: str, status: int
) -> str | None:
    operation = _operation(spec, name, method, path_template)
    responses = operation.get("responses", {})
    key = str(status)
    if key not in responses:
        raise KeyError(
            f"{name}: {method.upper()} {path_template} documents no {status} response "
            f"(documented: {sorted(responses)})"
        )
    base = f"/paths/{_escape(path_template)}/{method.lower()}/responses/{key}"
    response = responses[key]
    if "swagger" in spec:
        return f"{base}/schema" if "schema" in response else None
    content = response.get("content") or {}
    for media in ("application/json", *content):
        if media in content and "schema" in content[media] and "json" in media:
            return f"{base}/content/{_escape(media)}/schema"
    return None


def _request_pointer(spec: dict, name: str, method: str, path_template: str) -> str | None:
    operation = _operation(spec, name, method, path_template)
    base = f"/paths/{_escape(path_template)}/{method.lower()}"
    if "swagger" in spec:
        for index, parameter in enumerate(operation.get("parameters", [])):
            if "$ref" in parameter:
                target = parameter["$ref"].split("/")[-1]
                if spec["parameters"][target].get("in") == "body":
                    return f"/parameters/{_escape(target)}/schema"
            elif parameter.get("in") == "body":
                return f"{base}/parameters/{index}/schema"
        return None
    content = (operation.get("requestBody") or {}).get("content") or {}
    for media in content:
        if "json" in media and "schema" in content[media]:
            return f"{base}/requestBody/content/{_escape(media)}/schema"
    return None


def _validate(
    name: str, patched: bool, pointer: str, body: Any, *, request: bool, what: str
) -> None:
    spec = _load(name, patched)
    uri = f"urn:aep-spec:{name}"
    registry = Registry().with_resource(uri, Resource(contents=spec, specification=DRAFT4))
    schema = {"$ref": f"{uri}#{pointer}"}
    if "swagger" in spec:
        validator = jsonschema.Draft4Validator(schema, registry=registry)
    else:
        cls = OAS30WriteValidator if request else OAS30ReadValidator
        validator = cls(schema, registry=registry)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [
            f"  at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in errors[:20]
        ]
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise SpecViolation(f"{what} does not conform to {name} spec:\n" + "\n".join(lines) + more)


def validate_response(
    spec_name: str,
    method: str,
    path_template: str,
    status: int,
    body: Any,
    *,
    patched: bool = True,
) -> bool:
    """Validate a response body; True if validated, False if the spec defines no JSON schema for it."""
    spec = _load(spec_name, patched)
    pointer = _response_pointer(spec, spec_name, method, path_template, status)
    if pointer is None:
        return False
    what = f"{method.upper()} {path_template} {status} response"
    _validate(spec_name, patched, pointer, body, request=False, what=what)
    return True


def validate_request(
    spec_name: str, method: str, path_template: str, body: Any, *, patched: bool = True
) -> bool:
    """Validate a request body; True if validated, False if the spec defines no JSON body schema."""
    spec = _load(spec_name, patched)
    pointer = _request_pointer(spec, spec_name, method, path_template)
    if pointer is None:
        return False
    what = f"{method.upper()} {path_template} request body"
    _validate(spec_name, patched, pointer, body, request=True, what=what)
    return True


def schema_at(spec_name: str, pointer: str, *, patched: bool = True) -> Callable[[Any], None]:
    """A validator for any schema of a spec by JSON pointer (e.g. `/components/schemas/files`)."""

    def check(body: Any) -> None:
        _validate(spec_name, patched, pointer, body, request=False, what=f"body at {pointer}")

    return check
