"""The AEP emulator's state: IMS tokens, Schema Registry, identity namespaces, Catalog and batches.

Why a separate module: the HTTP layer (`aep_api.py`) only translates requests; every rule of the emulated
services (who may call, what a valid field group is, how a batch moves from `loading` to `success`) lives
here, behind one lock, so it can be read and tested without HTTP.

Batch processing is driven by time, not by a worker thread: COMPLETE stamps a deadline
(`now + processing_delay_s`) and the batch is validated and finalised the first time anything reads it at
or after that deadline (`_advance`). Nothing runs in the background, so there is nothing to stop or race.

With `state_dir` the state is saved after each change as `state.json` (no tokens, no secrets) and the
uploaded files under `files/<batchId>/<path>`, so `stripe-aep emulate` survives a restart. Tokens are kept in
memory only: after a restart clients get 401013 and fetch a new token, as they would from real IMS.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stripe_aep.emulators import aep_ingest
from stripe_aep.emulators.aep_ingest import STANDARD_CLASSES, ResolvedSchema

MAX_FILES_PER_BATCH = 1500
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
CATALOG_MAX_LIMIT = 100
STATE_VERSION = 2

IDENTITY_TYPES = ("COOKIE", "CROSS_DEVICE", "DEVICE", "EMAIL", "MOBILE", "NON_PEOPLE", "PHONE")

# Adobe's standard namespaces (a subset; ids are illustrative, codes are the real ones).
STANDARD_NAMESPACES = [
    ("ECID", "ECID", "COOKIE", 4, "Experience Cloud ID"),
    ("Email", "Email", "EMAIL", 6, "Email"),
    ("Phone", "Phone", "PHONE", 7, "Phone"),
    ("Email_LC_SHA256", "Emails (SHA256, lowercased)", "EMAIL", 11, "Hashed email"),
    ("Phone_E.164", "Phone (E.164)", "PHONE", 12, "Phone number in E.164 format"),
    ("CRMID", "CRM ID", "CROSS_DEVICE", 13, "CRM identifier"),
]


@dataclass
class AepFaults:
    """Faults to inject, mutable at run time. Counters mean "the next N"; they count down to 0."""

    put_5xx: int = 0
    """The next N file PUTs answer 503 (the file is not stored)."""
    complete_5xx: int = 0
    """The next N `action=COMPLETE` calls answer 503 (the batch is not completed)."""
    fail_next_batches: int = 0
    """The next N batches completed end in status `failed` with code INGEST-EMULATOR-FAULT."""
    processing_delay_s: float = 0.2
    """Time from COMPLETE to a final status (`processing` until then)."""
    token_expires_in: int = 86399
    """`expires_in` (seconds) of tokens issued from now on."""
    expire_all_tokens: bool = False
    """Set True: every token issued so far becomes invalid (401013). Consumed by the next request."""

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from a JSON object, rejecting unknown names and wrong types."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {sorted(known)}")
        for name, value in values.items():
            kind = type(getattr(self, name))
            if kind is bool and not isinstance(value, bool):
                raise ValueError(f"fault {name} must be true or false, got {value!r}")
            if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"fault {name} must be a non-negative integer, got {value!r}")
            if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"fault {name} must be a number of seconds, got {value!r}")
            setattr(self, name, kind(value))


class ApiError(Exception):
    """An HTTP error response: status and JSON body (never containing secrets)."""

    def __init__(self, status: int, body: dict, headers: dict | None = None) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def gateway_error(status: int, code: str, message: str) -> ApiError:
    """Adobe I/O gateway errors: `{"error_code", "message"}` (reference §6)."""
    return ApiError(status, {"error_code": code, "message": message})


def problem(status: int, code: str, title: str, detail: str) -> ApiError:
    """RFC 7807-style errors as Platform services return them; `code` becomes the `type` URI."""
    return ApiError(
        status,
        {
            "type": f"http://ns.adobe.com/aep/errors/{code}",
            "title": title,
            "status": status,
            "detail": detail,
        },
    )


def xdm_error(status: int, code: str, title: str, detail: str) -> ApiError:
    """Schema Registry errors (`errorBasic` in the spec, with a `report`)."""
    err = problem(status, code, title, detail)
    err.body["report"] = {
        "registryRequestId": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).strftime("%m-%d-%Y %H:%M:%S"),
        "detailed-message": detail,
        "sub-errors": [],
    }
    return err


def now_ms() -> int:
    return int(time.time() * 1000)


def _hex(n: int = 16) -> str:
    return secrets.token_hex(n)


# ---------------------------------------------------------------------------------------------------
# JSON Patch (RFC 6902), enough for Schema Registry and Catalog PATCH bodies


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_json_patch(document: dict, operations: Any) -> dict:
    """Apply add/remove/replace/test operations to a copy of `document`."""
    if not isinstance(operations, list):
        raise ValueError("a JSON Patch body must be an array of operations")
    doc = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ValueError(f"each operation needs 'op' and 'path': {op!r}")
        parts = _pointer(op["path"])
        if not parts:
            raise ValueError("operations on the whole document are not supported")
        parent: Any = doc
        for part in parts[:-1]:
            if isinstance(parent, list):
                parent = parent[int(part)]
            elif isinstance(parent, dict) and part in parent:
                parent = parent[part]
            else:
                raise ValueError(f"path {op['path']!r} does not exist")
        last = parts[-1]
        kind = op["op"]
        if kind in ("add", "replace") and "value" not in op:
            raise ValueError(f"'{kind}' needs a 'value': {op!r}")
        if isinstance(parent, list):
            if kind == "add":
                index = len(parent) if last == "-" else int(last)
                parent.insert(index, op["value"])
            elif kind == "replace":
                parent[int(last)] = op["value"]
            elif kind == "remove":
                parent.pop(int(last))
            elif kind == "test":
                if parent[int(last)] != op.get("value"):
                    raise ValueError(f"test failed at {op['path']!r}")
            else:
                raise ValueError(f"unsupported JSON Patch op {kind!r}")
        elif isinstance(parent, dict):
            if kind == "add":
                parent[last] = op["value"]
            elif kind == "replace":
                if last not in parent:
                    raise ValueError(f"path {op['path']!r} does not exist")
                parent[last] = op["value"]
            elif kind == "remove":
                if last not in parent:
                    raise ValueError(f"path {op['path']!r} does not exist")
                del parent[last]
            elif kind == "test":
                if parent.get(last) != op.get("value"):
                    raise ValueError(f"test failed at {op['path']!r}")
            else:
                raise ValueError(f"unsupported JSON Patch op {kind!r}")
        else:
            raise ValueError(f"path {op['path']!r} does not exist")
    return doc


# ---------------------------------------------------------------------------------------------------
# File storage


class FileStore:
    """Uploaded file bytes, in memory or under `<state_dir>/files` (keyed by batch id and path)."""

    def __init__(self, root: Path | None) -> None:
        self._root = root
        self._memory: dict[tuple[str, str], bytes] = {}

    def _path(self, batch_id: str, name: str) -> Path:
        assert self._root is not None
        target = (self._root / batch_id / name).resolve()
        if self._root.resolve() not in target.parents:
            raise ValueError(f"file path {name!r} escapes the batch folder")
        return target

    def put(self, batch_id: str, name: str, data: bytes) -> None:
        if self._root is None:
            self._memory[(batch_id, name)] = data
            return
        target = self._path(batch_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def get(self, batch_id: str, name: str) -> bytes:
        if self._root is None:
            return self._memory[(batch_id, name)]
        return self._path(batch_id, name).read_bytes()


# ---------------------------------------------------------------------------------------------------


@dataclass
class AepIdentity:
    """Who the emulator is: the one client, organisation, sandbox and tenant it accepts."""

    client_id: str
    client_secret: str
    org_id: str
    sandbox: str
    tenant: str

    def __repr__(self) -> str:  # never show the secret
        return (
            f"AepIdentity(client_id={self.client_id!r}, org_id={self.org_id!r}, "
            f"sandbox={self.sandbox!r}, tenant={self.tenant!r})"
        )


@dataclass
class _Token:
    expires_at: float
    generation: int


class AepStore:
    """All emulated state, guarded by one lock. Methods raise `ApiError` for client mistakes."""

    def __init__(
        self,
        identity: AepIdentity,
        faults: AepFaults,
        state_dir: Path | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.identity = identity
        self.faults = faults
        self.max_file_bytes = max_file_bytes
        self._lock = threading.RLock()
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._tokens: dict[str, _Token] = {}  # sha256(token) → token info
        self._token_generation = 0
        self.tokens_issued = 0
        self.fieldgroups: dict[str, dict] = {}
        self.classes: dict[str, dict] = {}
        self.schemas: dict[str, dict] = {}
        self.descriptors: dict[str, dict] = {}
        self.namespaces: list[dict] = self._standard_namespaces()
        self.datasets: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.files = FileStore(self._state_dir / "files" if self._state_dir else None)
        if self._state_dir is not None:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            self._load()

    # -- persistence ---------------------------------------------------------------------------

    def _standard_namespaces(self) -> list[dict]:
        created = 1_500_000_000_000
        return [
            {
                "id": ns_id,
                "code": code,
                "name": name,
                "idType": id_type,
                "description": description,
                "status": "ACTIVE",
                "custom": False,
                "createTime": created,
                "updateTime": created,
            }
            for code, name, id_type, ns_id, description in STANDARD_NAMESPACES
        ]

    def _load(self) -> None:
        assert self._state_dir is not None
        path = self._state_dir / "state.json"
        if not path.exists():
            return
        state = json.loads(path.read_text())
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"{path} was written by another emulator version ({state.get('version')}); "
                "delete the state directory to start afresh"
            )
        if (
            state.get("orgId") != self.identity.org_id
            or state.get("tenant") != self.identity.tenant
        ):
            raise ValueError(
                f"{path} belongs to org {state.get('orgId')!r} / tenant {state.get('tenant')!r}, not "
                f"{self.identity.org_id!r} / {self.identity.tenant!r}; use another state directory"
            )
        self.fieldgroups = state["fieldgroups"]
        self.classes = state["classes"]
        self.schemas = state["schemas"]
        self.descriptors = state["descriptors"]
        self.namespaces = state["namespaces"]
        self.datasets = state["datasets"]
        self.batches = state["batches"]

    def _save(self) -> None:
        if self._state_dir is None:
            return
        state = {
            "version": STATE_VERSION,
            "orgId": self.identity.org_id,
            "tenant": self.identity.tenant,
            "fieldgroups": self.fieldgroups,
            "classes": self.classes,
            "schemas": self.schemas,
            "descriptors": self.descriptors,
            "namespaces": self.namespaces,
            "datasets": self.datasets,
            "batches": self.batches,
        }
        path = self._state_dir / "state.json"
        tmp = path.with_name("state.json.tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def take_fault(self, name: str) -> bool:
        """Consume one unit of a counter fault (`put_5xx`, `complete_5xx`); True if it fired."""
        with self._lock:
            remaining = getattr(self.faults, name)
            if remaining > 0:
                setattr(self.faults, name, remaining - 1)
                return True
            return False

    # -- IMS -----------------------------------------------------------------------------------

    def _consume_expire_all(self) -> None:
        if self.faults.expire_all_tokens:
            self.faults.expire_all_tokens = False
            self._token_generation += 1

    def issue_token(self, form: dict[str, str]) -> dict:
        with self._lock:
            self._consume_expire_all()
            required = ("grant_type", "client_id", "client_secret", "scope")
            missing = [name for name in required if not form.get(name)]
            if missing:
                raise ApiError(
                    400,
                    {
                        "error": "invalid_request",
                        "error_description": f"missing required parameter(s): {', '.join(missing)}",
                    },
                )
            if form["grant_type"] != "client_credentials":
                raise ApiError(
                    400,
                    {
                        "error": "unsupported_grant_type",
                        "error_description": "grant_type must be client_credentials (OAuth Server-to-Server)",
                    },
                )
            if form["client_id"] != self.identity.client_id:
                raise ApiError(
                    400,
                    {"error": "invalid_client", "error_description": "invalid client_id parameter"},
                )
            if not secrets.compare_digest(form["client_secret"], self.identity.client_secret):
                raise ApiError(
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "invalid client_secret parameter",
                    },
                )
            token = secrets.token_urlsafe(48)
            expires_in = int(self.faults.token_expires_in)
            self._tokens[_digest(token)] = _Token(
                expires_at=time.time() + expires_in, generation=self._token_generation
            )
            self.tokens_issued += 1
            return {"access_token": token, "token_type": "bearer", "expires_in": expires_in}

    def check_gateway(self, headers) -> None:
        """The Adobe I/O gateway's checks on every Platform call (reference §1 and §6)."""
        with self._lock:
            self._consume_expire_all()
            auth = headers.get("authorization") or ""
            scheme, _, token = auth.partition(" ")
            if not token.strip() or scheme.lower() != "bearer":
                raise gateway_error(401, "403010", "Oauth token is missing.")
            api_key = headers.get("x-api-key")
            if not api_key:
                raise gateway_error(403, "403000", "Api Key is required")
            if api_key != self.identity.client_id:
                raise gateway_error(403, "403003", "Api Key is invalid")
            info = self._tokens.get(_digest(token.strip()))
            if (
                info is None
                or info.expires_at <= time.time()
                or info.generation != self._token_generation
            ):
                raise gateway_error(401, "401013", "Oauth token is not valid")
            org = headers.get("x-gw-ims-org-id")
            if not org:
                raise gateway_error(400, "400003", "Missing header: x-gw-ims-org-id")
            if org != self.identity.org_id:
                raise gateway_error(403, "403025", "Profile is not valid")
            sandbox = headers.get("x-sandbox-name")
            if not sandbox:
                raise gateway_error(
                    400,
                    "400003",
                    "Missing header: x-sandbox-name (the all-lowercase sandbox name, e.g. 'prod')",
                )
            if sandbox != self.identity.sandbox:
                raise problem(
                    403,
                    "SANDBOX-403",
                    "Sandbox not found",
                    f"Sandbox '{sandbox}' does not exist in organization {org}; this emulator serves "
                    f"sandbox '{self.identity.sandbox}' (set AEP_SANDBOX to it)",
                )

    @property
    def tokens_valid(self) -> int:
        with self._lock:
            now = time.time()
            return sum(
                1
                for t in self._tokens.values()
                if t.expires_at > now and t.generation == self._token_generation
            )

    # -- Schema Registry -------------------------------------------------------------------------

    def _registry_metadata(self, created: int | None = None) -> dict:
        now = now_ms()
        return {
            "eTag": _hex(32),
            "repo:createdDate": created or now,
            "repo:lastModifiedDate": now,
            "xdm:createdClientId": self.identity.client_id,
            "xdm:lastModifiedClientId": self.identity.client_id,
            "xdm:createdUserId": f"{self.identity.client_id}@AdobeID",
            "xdm:lastModifiedUserId": f"{self.identity.client_id}@AdobeID",
        }

    def _containers(self) -> dict:
        return {
            "meta:containerId": "tenant",
            "meta:sandboxId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.identity.sandbox)),
            "meta:sandboxType": "production" if self.identity.sandbox == "prod" else "development",
            "imsOrg": self.identity.org_id,
            "meta:tenantNamespace": f"_{self.identity.tenant}",
        }

    def _find(self, collection: dict[str, dict], ident: str, kind: str) -> dict:
        if ident in collection:
            return collection[ident]
        for resource in collection.values():
            if resource.get("meta:altId") == ident:
                return resource
        raise xdm_error(
            404,
            "XDM-1012-404",
            "Resource Not Found",
            f"Requested {kind} {ident} is not found in the tenant container",
        )

    def _title_taken(self, collection: dict[str, dict], title: str, kind: str) -> None:
        if any(r.get("title") == title for r in collection.values()):
            raise xdm_error(
                409,
                "XDM-409",
                "Conflict",
                f"A {kind} titled {title!r} already exists in the tenant container; "
                "list by title and reuse it instead of creating another",
            )

    def _check_fields(self, properties: Any, path: str, errors: list[str]) -> None:
        if not isinstance(properties, dict):
            errors.append(f"'{path or '/'}' properties must be an object")
            return
        for name, node in properties.items():
            where = f"{path}/{name}"
            if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
                errors.append(f"field name {where!r} may only use letters, digits, '-' and '_'")
            if not isinstance(node, dict):
                errors.append(f"field {where!r} must be an object")
                continue
            if "$ref" in node:
                ref = node["$ref"]
                if isinstance(ref, str) and ref.startswith(
                    f"https://ns.adobe.com/{self.identity.tenant}/"
                ):
                    errors.append(
                        f"field {where!r} refers to tenant resource {ref}, which this emulator does not hold "
                        "(define the fields inline)"
                    )
                continue
            kind = node.get("type")
            if kind not in ("string", "integer", "number", "boolean", "object", "array"):
                errors.append(f"field {where!r} needs a valid 'type' (got {kind!r})")
                continue
            if kind == "object":
                if "properties" in node:
                    self._check_fields(node["properties"], where, errors)
                elif "additionalProperties" not in node:
                    errors.append(
                        f"object field {where!r} needs 'properties' or 'additionalProperties'"
                    )
                elif node.get("meta:xdmType") == "map":
                    values = node["additionalProperties"]
                    if not isinstance(values, dict) or values.get("type") not in (
                        "string",
                        "integer",
                    ):
                        errors.append(
                            f"map field {where!r}: additionalProperties.type must be string or integer"
                        )
            if kind == "array":
                items = node.get("items")
                if not isinstance(items, dict):
                    errors.append(f"array field {where!r} needs 'items'")
                else:
                    self._check_fields({"items": items}, where, errors)

    def _check_definitions(self, definitions: dict, errors: list[str]) -> None:
        namespace = f"_{self.identity.tenant}"
        for name, definition in definitions.items():
            props = definition.get("properties") if isinstance(definition, dict) else None
            if not isinstance(props, dict):
                errors.append(f"definition {name!r} needs 'properties'")
                continue
            outside = [p for p in props if p != namespace]
            if outside:
                errors.append(
                    f"definition {name!r} defines {outside} outside the tenant namespace; "
                    f"custom fields must be nested under '{namespace}'"
                )
            self._check_fields(props, "", errors)

    def _is_class(self, ref: str) -> bool:
        return ref in STANDARD_CLASSES or ref in self.classes

    def _class_ids(self) -> list[str]:
        return sorted([*STANDARD_CLASSES, *self.classes])

    def _behavior(self, class_id: str) -> str:
        if class_id in STANDARD_CLASSES:
            return STANDARD_CLASSES[class_id].behavior
        return self.classes[class_id]["meta:behavior"]

    def _tenant_resource(self, resource: dict, kind: str, *, abstract: bool) -> dict:
        """Give a new tenant resource the identity and registry fields AEP adds on creation."""
        hexid, tenant = _hex(), self.identity.tenant
        resource.update(
            {
                "$id": f"https://ns.adobe.com/{tenant}/{kind}/{hexid}",
                "meta:altId": f"_{tenant}.{kind}.{hexid}",
                "meta:resourceType": kind,
                "version": "1.0",
                "meta:abstract": abstract,
                "meta:extensible": abstract,
                "meta:xdmType": "object",
                "meta:registryMetadata": self._registry_metadata(),
                **self._containers(),
            }
        )
        return resource

    def _store(self, collection: dict, resource: dict, key: str = "$id") -> dict:
        """Keep a created resource, persist the state, return a copy the caller may change."""
        collection[resource[key]] = resource
        self._save()
        return copy.deepcopy(resource)

    def create_class(self, body: Any) -> dict:
        """A custom class (`POST /tenant/classes`): one behavior in `allOf`, optional tenant fields."""
        with self._lock:
            errors, title = _titled_object_errors(body)
            refs = [i.get("$ref") for i in body.get("allOf") or [] if isinstance(i, dict)]
            behaviors = [r for r in refs if r in aep_ingest.BEHAVIORS]
            if len(behaviors) != 1:
                errors.append(
                    f"a class needs exactly one behavior in allOf ({sorted(aep_ingest.BEHAVIORS)}), "
                    f"found {behaviors or 'none'}"
                )
            definitions = body.get("definitions")
            if definitions is not None:
                if isinstance(definitions, dict):
                    self._check_definitions(definitions, errors)
                else:
                    errors.append("'definitions' must be an object")
            for ref in refs:
                local = isinstance(ref, str) and ref.startswith("#/definitions/")
                if ref not in aep_ingest.BEHAVIORS and not (
                    local and ref.split("/")[-1] in (definitions or {})
                ):
                    errors.append(f"allOf reference {ref!r} is neither a behavior nor a definition")
            if errors:
                raise xdm_error(400, "XDM-1000-400", "Bad Request", "; ".join(errors))
            self._title_taken(self.classes, title, "class")
            resource = self._tenant_resource(copy.deepcopy(body), "classes", abstract=True)
            resource["meta:behavior"] = behaviors[0]
            resource["meta:extends"] = [behaviors[0], "https://ns.adobe.com/xdm/common/extensible"]
            return self._store(self.classes, resource)

    def create_field_group(self, body: Any) -> dict:
        with self._lock:
            errors, title = _titled_object_errors(body)
            extends = body.get("meta:intendedToExtend")
            if not isinstance(extends, list) or not extends:
                errors.append(
                    "'meta:intendedToExtend' must list the $id of the class(es) it extends"
                )
            else:
                unknown = [c for c in extends if not self._is_class(c)]
                if unknown:
                    errors.append(
                        f"meta:intendedToExtend names unknown class(es) {unknown}; known: "
                        f"{self._class_ids()}"
                    )
            definitions = body.get("definitions")
            if not isinstance(definitions, dict) or not definitions:
                errors.append("'definitions' must hold the field group's fields")
            else:
                self._check_definitions(definitions, errors)
            for item in body.get("allOf") or []:
                ref = item.get("$ref") if isinstance(item, dict) else None
                if (
                    isinstance(ref, str)
                    and ref.startswith("#/definitions/")
                    and ref.split("/")[-1] not in (definitions or {})
                ):
                    errors.append(f"allOf refers to missing definition {ref}")
            if errors:
                raise xdm_error(400, "XDM-1000-400", "Bad Request", "; ".join(errors))
            self._title_taken(self.fieldgroups, title, "field group")
            resource = self._tenant_resource(copy.deepcopy(body), "mixins", abstract=True)
            if not resource.get("allOf"):
                resource["allOf"] = [{"$ref": f"#/definitions/{n}"} for n in definitions]
            return self._store(self.fieldgroups, resource)

    def patch_field_group(self, ident: str, operations: Any) -> dict:
        """`PATCH /tenant/fieldgroups/{id}` (JSON Patch, Schema Registry spec `patchFieldGroup`).

        The result must still be a valid field group, and the change must be one AEP allows on a
        field group in use: Experience League ("Update schemas", platform-learn tutorial): "You can
        always add new fields and make mandatory fields optional", but not remove, rename or
        redefine fields, move them, make more fields mandatory, or remove/restrict supported
        values. The emulator applies the rule whether or not data was ingested (never kinder).
        """
        with self._lock:
            current = self._find(self.fieldgroups, ident, "field group")
            patched = _patched(current, operations)
            errors = _identity_changes(current, patched)
            definitions = patched.get("definitions")
            if not isinstance(definitions, dict) or not definitions:
                errors.append("'definitions' must hold the field group's fields")
            else:
                self._check_definitions(definitions, errors)
            extends = patched.get("meta:intendedToExtend")
            if not isinstance(extends, list) or not set(
                current.get("meta:intendedToExtend") or []
            ) <= set(extends):
                errors.append("meta:intendedToExtend may only gain classes")
            if not errors:
                before, before_required = aep_ingest.field_group_properties(current)
                after, after_required = aep_ingest.field_group_properties(patched)
                _breaking_changes(before, after, "", errors)
                added = sorted(set(after_required) - set(before_required))
                if added:
                    errors.append(f"fields {added} cannot be made required")
            if errors:
                raise xdm_error(400, "XDM-1000-400", "Bad Request", "; ".join(errors))
            major, _, minor = str(current.get("version", "1.0")).partition(".")
            patched["version"] = f"{major}.{int(minor or 0) + 1}"
            patched["meta:registryMetadata"] = self._registry_metadata(
                current["meta:registryMetadata"]["repo:createdDate"]
            )
            self.fieldgroups[current["$id"]] = patched
            self._save()
            return copy.deepcopy(patched)

    def _schema_refs(self, all_of: Any) -> tuple[str, list[str]]:
        if not isinstance(all_of, list) or not all_of:
            raise xdm_error(
                400,
                "XDM-1000-400",
                "Bad Request",
                "'allOf' must list one class and its field groups",
            )
        refs = []
        for item in all_of:
            ref = item.get("$ref") if isinstance(item, dict) else None
            if not isinstance(ref, str):
                raise xdm_error(
                    400, "XDM-1000-400", "Bad Request", f"allOf item {item!r} needs a '$ref'"
                )
            refs.append(ref)
        classes = [r for r in refs if self._is_class(r)]
        if len(classes) != 1:
            raise xdm_error(
                400,
                "XDM-1000-400",
                "Bad Request",
                f"a schema needs exactly one class in allOf, found {classes or 'none'}; known classes: "
                f"{self._class_ids()}",
            )
        class_id = classes[0]
        groups = [r for r in refs if r != class_id]
        tenant_prefix = f"https://ns.adobe.com/{self.identity.tenant}/"
        for ref in groups:
            if ref.startswith(tenant_prefix):
                group = self.fieldgroups.get(ref)
                if group is None:
                    raise xdm_error(
                        400,
                        "XDM-1000-400",
                        "Bad Request",
                        f"field group {ref} does not exist; create it first (POST /tenant/fieldgroups)",
                    )
                if class_id not in group.get("meta:intendedToExtend", []):
                    raise xdm_error(
                        400,
                        "XDM-1000-400",
                        "Bad Request",
                        f"field group {ref} is not intended to extend class {class_id}",
                    )
            elif not ref.startswith("https://ns.adobe.com/"):
                raise xdm_error(
                    400, "XDM-1000-400", "Bad Request", f"unknown allOf reference {ref}"
                )
        return class_id, groups

    def _schema_meta(self, resource: dict) -> None:
        class_id, groups = self._schema_refs(resource.get("allOf"))
        resource["meta:class"] = class_id
        resource["meta:extends"] = [class_id, self._behavior(class_id), *groups]
        resource["refs"] = [class_id, *groups]

    def create_schema(self, body: Any) -> dict:
        with self._lock:
            if not isinstance(body, dict):
                raise xdm_error(
                    400, "XDM-1000-400", "Bad Request", "the body must be a JSON object"
                )
            title = body.get("title")
            if not isinstance(title, str) or not title.strip():
                raise xdm_error(400, "XDM-1000-400", "Bad Request", "'title' is required")
            if body.get("type", "object") != "object":
                raise xdm_error(400, "XDM-1000-400", "Bad Request", "'type' must be 'object'")
            resource = copy.deepcopy(body)
            resource["type"] = "object"
            self._schema_meta(resource)
            self._title_taken(self.schemas, title, "schema")
            return self._store(
                self.schemas, self._tenant_resource(resource, "schemas", abstract=False)
            )

    def patch_schema(self, ident: str, operations: Any) -> dict:
        with self._lock:
            current = self._find(self.schemas, ident, "schema")
            patched = _patched(current, operations)
            for problem in _identity_changes(current, patched):
                raise xdm_error(400, "XDM-1000-400", "Bad Request", problem)
            tags = patched.get("meta:immutableTags", [])
            if not isinstance(tags, list) or any(t != "union" for t in tags):
                raise xdm_error(
                    400, "XDM-1000-400", "Bad Request", "meta:immutableTags may only hold 'union'"
                )
            if "union" in current.get("meta:immutableTags", []) and "union" not in tags:
                raise xdm_error(
                    400,
                    "XDM-1000-400",
                    "Bad Request",
                    "a schema enabled for Profile cannot be disabled",
                )
            if tags:
                patched["meta:immutableTags"] = sorted(set(tags))
            else:
                patched.pop("meta:immutableTags", None)
            self._schema_meta(patched)
            major, _, minor = str(current.get("version", "1.0")).partition(".")
            patched["version"] = f"{major}.{int(minor or 0) + 1}"
            patched["meta:registryMetadata"] = self._registry_metadata(
                current["meta:registryMetadata"]["repo:createdDate"]
            )
            self.schemas[current["$id"]] = patched
            self._save()
            return copy.deepcopy(patched)

    def get_resource(self, kind: str, ident: str) -> dict:
        with self._lock:
            if kind == "classes":
                if ident in STANDARD_CLASSES:
                    return STANDARD_CLASSES[ident].resource()
                for cls in STANDARD_CLASSES.values():
                    if cls.alt_id == ident:
                        return cls.resource()
                return copy.deepcopy(self._find(self.classes, ident, "class"))
            collection = self.schemas if kind == "schemas" else self.fieldgroups
            return copy.deepcopy(self._find(collection, ident, kind))

    def list_resources(self, kind: str, container: str) -> list[dict]:
        with self._lock:
            if kind == "classes":
                if container == "global":
                    return [c.resource() for c in STANDARD_CLASSES.values()]
                return copy.deepcopy(list(self.classes.values()))
            if container == "global":
                return []
            collection = self.schemas if kind == "schemas" else self.fieldgroups
            return copy.deepcopy(list(collection.values()))

    def resolved_schema(self, ident: str) -> ResolvedSchema:
        with self._lock:
            schema = self._find(self.schemas, ident, "schema")
            return aep_ingest.resolve_schema(
                schema, self.fieldgroups, self.identity.tenant, self.classes
            )

    def create_descriptor(self, body: Any) -> dict:
        with self._lock:
            if not isinstance(body, dict):
                raise xdm_error(
                    400, "XDM-1000-400", "Bad Request", "the body must be a JSON object"
                )
            kinds = (
                "xdm:descriptorIdentity",
                "xdm:alternateDisplayInfo",
                "xdm:descriptorReferenceIdentity",
                "xdm:descriptorOneToOne",
                "xdm:descriptorRelationship",
            )
            kind = body.get("@type")
            if kind not in kinds:
                raise xdm_error(
                    400, "XDM-1000-400", "Bad Request", f"'@type' must be one of {list(kinds)}"
                )
            source = body.get("xdm:sourceSchema")
            if not isinstance(source, str) or source not in self.schemas:
                raise xdm_error(
                    400,
                    "XDM-1000-400",
                    "Bad Request",
                    f"xdm:sourceSchema {source!r} is not a schema of the tenant container",
                )
            version = body.get("xdm:sourceVersion")
            if version is None or str(version) != "1":
                raise xdm_error(
                    400,
                    "XDM-1000-400",
                    "Bad Request",
                    "xdm:sourceVersion must be 1 (the major version)",
                )
            prop = body.get("xdm:sourceProperty")
            resolved = aep_ingest.resolve_schema(
                self.schemas[source], self.fieldgroups, self.identity.tenant, self.classes
            )
            if not isinstance(prop, str) or not aep_ingest.property_exists(resolved, prop):
                raise xdm_error(
                    400,
                    "XDM-1000-400",
                    "Bad Request",
                    f"xdm:sourceProperty {prop!r} is not a field of schema {source}",
                )
            if kind == "xdm:descriptorIdentity":
                namespace = body.get("xdm:namespace")
                if body.get("xdm:property", "xdm:code") == "xdm:code":
                    known = {n["code"] for n in self.namespaces}
                else:
                    known = {n["id"] for n in self.namespaces}
                if namespace not in known:
                    raise xdm_error(
                        400,
                        "XDM-1000-400",
                        "Bad Request",
                        f"identity namespace {namespace!r} does not exist; create it with "
                        "POST /data/core/idnamespace/identities",
                    )
                if body.get("xdm:isPrimary"):
                    for other in self.descriptors.values():
                        if (
                            other.get("@type") == kind
                            and other.get("xdm:sourceSchema") == source
                            and other.get("xdm:isPrimary")
                        ):
                            raise xdm_error(
                                400,
                                "XDM-1000-400",
                                "Bad Request",
                                f"schema {source} already has a primary identity "
                                f"({other['xdm:sourceProperty']})",
                            )
            resource = copy.deepcopy(body)
            containers = self._containers()
            containers.pop("meta:tenantNamespace")
            resource.update(
                {
                    "@id": _hex(20),
                    "version": "1",
                    "meta:registryMetadata": self._registry_metadata(),
                    **containers,
                }
            )
            return self._store(self.descriptors, resource, key="@id")

    def list_descriptors(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(list(self.descriptors.values()))

    def get_descriptor(self, ident: str) -> dict:
        with self._lock:
            if ident not in self.descriptors:
                raise xdm_error(
                    404, "XDM-1012-404", "Resource Not Found", f"descriptor {ident} is not found"
                )
            return copy.deepcopy(self.descriptors[ident])

    def stats(self) -> dict:
        with self._lock:
            usage: dict[str, list[dict]] = {}
            for schema in self.schemas.values():
                usage.setdefault(schema["meta:class"], []).append(
                    {
                        "$id": schema["$id"],
                        "meta:altId": schema["meta:altId"],
                        "title": schema["title"],
                    }
                )
            recent = sorted(
                [*self.schemas.values(), *self.fieldgroups.values()],
                key=lambda r: r["meta:registryMetadata"]["repo:createdDate"],
                reverse=True,
            )[:5]
            return {
                "imsOrg": self.identity.org_id,
                "tenantId": self.identity.tenant,
                "counts": {
                    "schemas": len(self.schemas),
                    "mixins": len(self.fieldgroups),
                    "datatypes": 0,
                    "classes": len(self.classes),
                    "unions": sum(
                        1
                        for s in self.schemas.values()
                        if "union" in s.get("meta:immutableTags", [])
                    ),
                },
                "recentlyCreatedResources": [_summary(r) for r in recent],
                "recentlyUpdatedResources": [_summary(r) for r in recent],
                "classUsage": [
                    {
                        "$id": class_id,
                        "title": STANDARD_CLASSES[class_id].title
                        if class_id in STANDARD_CLASSES
                        else self.classes[class_id]["title"],
                        "numberOfSchemas": len(items),
                        "schemas": items,
                    }
                    for class_id, items in usage.items()
                ],
            }

    # -- identity namespaces -------------------------------------------------------------------

    def list_namespaces(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self.namespaces)

    def get_namespace(self, ident: str) -> dict:
        with self._lock:
            for ns in self.namespaces:
                if str(ns["id"]) == ident or ns["code"] == ident:
                    return copy.deepcopy(ns)
            raise problem(
                404, "IDNAMESPACE-404", "Not Found", f"identity namespace {ident} not found"
            )

    def create_namespace(self, body: Any) -> dict:
        with self._lock:
            if not isinstance(body, dict):
                raise problem(
                    400, "IDNAMESPACE-400", "Bad Request", "the body must be a JSON object"
                )
            missing = [k for k in ("name", "code", "idType") if not body.get(k)]
            if missing:
                raise problem(
                    400, "IDNAMESPACE-400", "Bad Request", f"missing required field(s): {missing}"
                )
            if str(body["idType"]).upper() not in IDENTITY_TYPES:
                raise problem(
                    400,
                    "IDNAMESPACE-400",
                    "Bad Request",
                    f"idType {body['idType']!r} is not one of {list(IDENTITY_TYPES)}",
                )
            code = body["code"]
            if any(ns["code"].lower() == str(code).lower() for ns in self.namespaces):
                raise problem(
                    409,
                    "IDNAMESPACE-409",
                    "Conflict",
                    f"an identity namespace with code {code!r} already exists; reuse it",
                )
            created = now_ms()
            namespace = {
                "id": max(ns["id"] for ns in self.namespaces) + 10_000_000,
                "code": code,
                "name": body["name"],
                "idType": body["idType"],
                "description": body.get("description", ""),
                "status": "ACTIVE",
                "custom": True,
                "createTime": created,
                "updateTime": created,
            }
            self.namespaces.append(namespace)
            self._save()
            return copy.deepcopy(namespace)

    # -- Catalog: datasets -----------------------------------------------------------------------

    def create_dataset(self, body: Any) -> str:
        with self._lock:
            if not isinstance(body, dict):
                raise problem(400, "CATALOG-400", "Bad Request", "the body must be a JSON object")
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise problem(400, "CATALOG-400", "Bad Request", "'name' is required")
            ref = body.get("schemaRef")
            schema_id = ref.get("id") if isinstance(ref, dict) else None
            if not isinstance(schema_id, str):
                raise problem(
                    400,
                    "CATALOG-400",
                    "Bad Request",
                    "'schemaRef': {'id': <schema $id>, 'contentType': "
                    "'application/vnd.adobe.xed+json;version=1'} is required",
                )
            if schema_id not in self.schemas:
                raise problem(
                    400,
                    "CATALOG-400",
                    "Bad Request",
                    f"schemaRef.id {schema_id} is not a schema in the Schema Registry of sandbox "
                    f"'{self.identity.sandbox}'; create the schema first",
                )
            tags = body.get("tags", {})
            if not isinstance(tags, dict) or any(
                not isinstance(v, list) or not all(isinstance(x, str) for x in v)
                for v in tags.values()
            ):
                raise problem(
                    400, "CATALOG-400", "Bad Request", "'tags' must map names to lists of strings"
                )
            dataset_id = secrets.token_hex(12)
            created = now_ms()
            dataset = {
                "id": dataset_id,
                "name": name,
                "description": body.get("description", ""),
                "imsOrg": self.identity.org_id,
                "tags": tags,
                "version": "1.0.0",
                "created": created,
                "updated": created,
                "createdClient": self.identity.client_id,
                "createdUser": f"{self.identity.client_id}@AdobeID",
                "updatedUser": f"{self.identity.client_id}@AdobeID",
                "viewId": secrets.token_hex(12),
                "files": f"@/dataSetFiles?dataSetId={dataset_id}",
                "schemaRef": {
                    "id": schema_id,
                    "contentType": (ref or {}).get(
                        "contentType", "application/vnd.adobe.xed+json;version=1"
                    ),
                },
            }
            if "enableErrorDiagnostics" in body:
                dataset["enableErrorDiagnostics"] = bool(body["enableErrorDiagnostics"])
            self.datasets[dataset_id] = dataset
            self._save()
            return dataset_id

    def get_dataset(self, dataset_id: str) -> dict:
        with self._lock:
            self._advance()
            if dataset_id not in self.datasets:
                raise problem(
                    404, "CATALOG-404", "Not Found", f"dataset {dataset_id} was not found"
                )
            return copy.deepcopy(self.datasets[dataset_id])

    def list_datasets(self) -> list[dict]:
        with self._lock:
            self._advance()
            return copy.deepcopy(list(self.datasets.values()))

    def patch_dataset(self, dataset_id: str, operations: Any) -> str:
        with self._lock:
            current = self.get_dataset(dataset_id)
            try:
                patched = apply_json_patch(current, operations)
            except (ValueError, IndexError, KeyError) as exc:
                raise problem(
                    400, "CATALOG-400", "Bad Request", f"invalid JSON Patch: {exc}"
                ) from exc
            for fixed in ("id", "imsOrg", "created", "viewId"):
                if patched.get(fixed) != current.get(fixed):
                    raise problem(400, "CATALOG-400", "Bad Request", f"'{fixed}' cannot be changed")
            patched["updated"] = now_ms()
            self.datasets[dataset_id] = patched
            self._save()
            return dataset_id

    # -- Batch ingestion ---------------------------------------------------------------------------

    def create_batch(self, body: Any) -> dict:
        with self._lock:
            if not isinstance(body, dict):
                raise problem(400, "INGEST-400", "Bad Request", "the body must be a JSON object")
            dataset_id = body.get("datasetId")
            if not isinstance(dataset_id, str) or not dataset_id:
                raise problem(400, "INGEST-400", "Bad Request", "'datasetId' is required")
            if dataset_id not in self.datasets:
                raise problem(
                    400,
                    "INGEST-400",
                    "Bad Request",
                    f"dataset {dataset_id} does not exist in sandbox '{self.identity.sandbox}'; "
                    "create it (POST /data/foundation/catalog/dataSets) or fix the dataset id",
                )
            input_format = body.get("inputFormat")
            fmt = input_format.get("format") if isinstance(input_format, dict) else None
            if not isinstance(fmt, str) or fmt.lower() not in ("parquet", "json"):
                raise problem(
                    400,
                    "INGEST-400",
                    "Bad Request",
                    f"inputFormat.format must be 'parquet' or 'json' (got {fmt!r}); CSV is legacy "
                    "and not emulated",
                )
            tags = body.get("tags") or {}
            # SPEC-BI IngestBatch.tags: an object whose values are arrays of strings
            if not isinstance(tags, dict) or any(
                not isinstance(v, list) or not all(isinstance(x, str) for x in v)
                for v in tags.values()
            ):
                raise problem(
                    400,
                    "INGEST-400",
                    "Bad Request",
                    "'tags' must map tag names to arrays of strings",
                )
            tags = copy.deepcopy(tags)
            diagnostics = bool(body.get("enableErrorDiagnostics", False))
            partial = body.get("partialIngestionPercent")
            if partial is not None and (
                isinstance(partial, bool)
                or not isinstance(partial, int | float)
                or not 0 <= partial <= 100
            ):
                raise problem(
                    400,
                    "INGEST-400",
                    "Bad Request",
                    "partialIngestionPercent must be a number between 0 and 100",
                )
            if diagnostics:
                tags["acp_enableErrorDiagnostics"] = ["true"]
            if partial is not None:
                tags["acp_partialIngestionPercent"] = [str(partial)]
            batch_id = secrets.token_hex(16)
            created = now_ms()
            batch = {
                "id": batch_id,
                "datasetId": dataset_id,
                "status": "loading",
                "created": created,
                "updated": created,
                "externalId": body.get("externalId") or batch_id,
                "inputFormat": {
                    "format": fmt.lower(),
                    **(
                        {"isMultiLineJson": bool(input_format["isMultiLineJson"])}
                        if "isMultiLineJson" in input_format
                        else {}
                    ),
                },
                "tags": tags,
                "diagnostics": diagnostics,
                "partialIngestionPercent": partial,
                "files": {},
                "deadline": None,
                "forcedFailure": False,
                "badRows": {},
            }
            replay = body.get("replay")
            if isinstance(replay, dict):
                batch["replay"] = copy.deepcopy(replay)
            self.batches[batch_id] = batch
            self._save()
            return self.catalog_batch(batch)

    def _loading_batch(self, batch_id: str, dataset_id: str) -> dict:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise problem(404, "INGEST-404", "Not Found", f"batch {batch_id} was not found")
        if dataset_id not in self.datasets:
            raise problem(404, "INGEST-404", "Not Found", f"dataset {dataset_id} was not found")
        if batch["datasetId"] != dataset_id:
            raise problem(
                400,
                "INGEST-400",
                "Bad Request",
                f"batch {batch_id} was created for dataset {batch['datasetId']}, not {dataset_id}",
            )
        if batch["status"] != "loading":
            raise problem(
                400,
                "INGEST-400",
                "Bad Request",
                f"batch {batch_id} is {batch['status']}; files can only be uploaded while it is "
                "loading (create a new batch)",
            )
        return batch

    def put_file(self, batch_id: str, dataset_id: str, path: str, data: bytes) -> bool:
        """Store a file; True when it replaced an earlier upload to the same path."""
        with self._lock:
            self._advance()
            batch = self._loading_batch(batch_id, dataset_id)
            if not path or path.startswith("/") or ".." in path.split("/"):
                raise problem(400, "INGEST-400", "Bad Request", f"invalid file path {path!r}")
            replaced = path in batch["files"]
            if not replaced and len(batch["files"]) >= MAX_FILES_PER_BATCH:
                raise problem(
                    400,
                    "INGEST-400",
                    "Bad Request",
                    f"a batch holds at most {MAX_FILES_PER_BATCH} files; start another batch",
                )
            self.files.put(batch_id, path, data)
            batch["files"][path] = len(data)
            batch["updated"] = now_ms()
            self._save()
            return replaced

    def batch_action(self, batch_id: str, action: str) -> dict:
        with self._lock:
            self._advance()
            batch = self.batches.get(batch_id)
            if batch is None:
                raise problem(404, "INGEST-404", "Not Found", f"batch {batch_id} was not found")
            status = batch["status"]
            if action == "COMPLETE":
                if status == "aborted":
                    raise problem(
                        400,
                        "INGEST-400",
                        "Bad Request",
                        f"batch {batch_id} was aborted; it cannot complete",
                    )
                if status == "loading":
                    started = now_ms()
                    delay_ms = round(max(0.0, float(self.faults.processing_delay_s)) * 1000)
                    batch["status"] = "processing"
                    batch["started"] = started
                    batch["updated"] = started
                    batch["deadline"] = started + delay_ms  # epoch milliseconds
                    if self.faults.fail_next_batches > 0:
                        self.faults.fail_next_batches -= 1
                        batch["forcedFailure"] = True
                    self._save()
                    self._advance()
                # already completed: COMPLETE is idempotent (reference §2.4)
            elif action == "ABORT":
                if status in ("loading", "processing"):
                    batch["status"] = "aborted"
                    batch["updated"] = now_ms()
                    batch["deadline"] = None
                    self._save()
                elif status != "aborted":
                    raise problem(
                        400,
                        "INGEST-400",
                        "Bad Request",
                        f"batch {batch_id} is {status}; only a loading or processing batch can be "
                        "aborted (use REVERT to remove a finished batch)",
                    )
            elif action == "REVERT":
                if status not in ("success", "failed", "inactive"):
                    raise problem(
                        400,
                        "INGEST-400",
                        "Bad Request",
                        f"batch {batch_id} is {status}; only a finished batch can be reverted "
                        "(use ABORT while it is loading or processing)",
                    )
                if status != "inactive":
                    batch["status"] = "inactive"
                    batch["updated"] = now_ms()
                    self._save()
            else:
                raise problem(
                    400,
                    "INGEST-400",
                    "Bad Request",
                    f"action {action!r} is not supported by the emulator; use COMPLETE, ABORT or REVERT",
                )
            return self.catalog_batch(batch)

    # -- lifecycle ---------------------------------------------------------------------------------

    def finish_processing(self) -> int:
        """End the processing delay of every processing batch now; returns how many were finalised."""
        with self._lock:
            due = [b for b in self.batches.values() if b["status"] == "processing"]
            now = now_ms()
            for batch in due:
                batch["deadline"] = min(batch["deadline"] or now, now)
            self._advance()
            return len(due)

    def _advance(self) -> None:
        """Finalise every batch whose processing deadline (epoch ms) has passed."""
        now = now_ms()
        changed = False
        for batch in self.batches.values():
            deadline = batch["deadline"]
            if batch["status"] == "processing" and deadline is not None and deadline <= now:
                self._finish(batch)
                changed = True
        if changed:
            self._save()

    def _finish(self, batch: dict) -> None:
        finished = int(batch["deadline"])
        dataset = self.datasets.get(batch["datasetId"])
        names = sorted(batch["files"])
        input_bytes = sum(batch["files"].values())
        errors: list[dict] = []
        total = bad = 0
        if batch["forcedFailure"]:
            errors.append(
                {
                    "code": "INGEST-EMULATOR-FAULT",
                    "description": "Failure injected by the AEP emulator (AepFaults.fail_next_batches)",
                }
            )
        elif dataset is None:
            errors.append(
                {"code": aep_ingest.CODE_VALIDATION, "description": "the dataset was deleted"}
            )
        elif not names:
            errors.append(
                {
                    "code": aep_ingest.CODE_EMPTY_FILE,
                    "description": "the batch has no files; upload at least one file before COMPLETE",
                }
            )
        else:
            schema_id = dataset["schemaRef"]["id"]
            if schema_id not in self.schemas:
                errors.append(
                    {
                        "code": aep_ingest.CODE_VALIDATION,
                        "description": f"schema {schema_id} is gone",
                    }
                )
            else:
                resolved = aep_ingest.resolve_schema(
                    self.schemas[schema_id], self.fieldgroups, self.identity.tenant, self.classes
                )
                checks = []
                for name in names:
                    data = self.files.get(batch["id"], name)
                    if batch["inputFormat"]["format"] == "json":
                        check, _ = aep_ingest.check_json(
                            name,
                            data,
                            resolved,
                            self.identity.tenant,
                            bool(batch["inputFormat"].get("isMultiLineJson")),
                        )
                    else:
                        check = aep_ingest.check_parquet(name, data, resolved, self.identity.tenant)
                    checks.append(check)
                total = sum(c.row_count for c in checks)
                bad = sum(len(c.bad_row_numbers) for c in checks)
                errors.extend(e for c in checks for e in c.fatal)
                row_errors = aep_ingest.summarize_row_errors(checks, with_rows=batch["diagnostics"])
                partial = batch["partialIngestionPercent"]
                if not errors and bad and partial is not None and bad * 100 <= partial * total:
                    errors.append(
                        {
                            "code": aep_ingest.CODE_PARTIAL_SUMMARY,
                            "description": f"Encountered {bad} errors in the data. Successfully ingested "
                            f"{total - bad} rows. Review the associated diagnostic files for more details.",
                        }
                    )
                    batch["badRows"] = {
                        c.name: sorted(c.bad_row_numbers) for c in checks if c.bad_row_numbers
                    }
                elif bad and not batch["diagnostics"]:
                    errors.append(
                        {
                            "code": aep_ingest.CODE_VALIDATION,
                            "description": f"Encountered {bad} errors while parsing, converting or "
                            "otherwise validating the data. Resend the data with error diagnostics "
                            "enabled to collect row-level information.",
                        }
                    )
                errors.extend(row_errors)
        failed = bool(errors) and errors[0]["code"] != aep_ingest.CODE_PARTIAL_SUMMARY
        good = 0 if failed else total - bad
        batch["status"] = "failed" if failed else "success"
        batch["completed"] = finished
        batch["updated"] = finished
        batch["recordCount"] = good
        batch["failedRecordCount"] = total - good
        batch["size"] = input_bytes
        batch["errors"] = errors
        batch["metrics"] = {
            "inputByteSize": input_bytes,
            "inputFileCount": len(names),
            "inputRecordCount": total,
            "outputRecordCount": good,
            "failedRecordCount": total - good,
            "outputFileCount": 0 if failed else len(names),
            "partitionCount": 0 if failed else 1,
        }
        if not failed:
            for predecessor in (batch.get("replay") or {}).get("predecessors", []):
                other = self.batches.get(str(predecessor).lstrip("$"))
                if other is not None and other["status"] == "success":
                    other["status"] = "inactive"
                    other["updated"] = finished
        if dataset is not None:
            dataset["lastBatchId"] = batch["id"]
            dataset["lastBatchStatus"] = batch["status"]
            key = "lastFailedBatch" if failed else "lastSuccessfulBatch"
            dataset[key] = batch["id"]

    # -- views -------------------------------------------------------------------------------------

    def catalog_batch(self, batch: dict) -> dict:
        """The batch as Catalog (and Batch Ingestion) return it."""
        identity = self.identity
        out: dict[str, Any] = {
            "id": batch["id"],
            "imsOrg": identity.org_id,
            "status": batch["status"],
            "created": batch["created"],
            "updated": batch["updated"],
            "createdClient": identity.client_id,
            "createdUser": f"{identity.client_id}@AdobeID",
            "updatedUser": f"{identity.client_id}@AdobeID",
            "externalId": batch["externalId"],
            "version": "1.0.0",
            "inputFormat": copy.deepcopy(batch["inputFormat"]),
            "relatedObjects": [{"type": "dataSet", "id": batch["datasetId"]}],
            "tags": copy.deepcopy(batch["tags"]),
        }
        for key in ("started", "completed", "recordCount", "failedRecordCount", "size"):
            if key in batch:
                out[key] = batch[key]
        for key in ("metrics", "errors", "replay"):
            if key in batch:
                out[key] = copy.deepcopy(batch[key])
        return out

    def get_batch(self, batch_id: str) -> dict:
        with self._lock:
            self._advance()
            batch = self.batches.get(batch_id)
            if batch is None:
                raise problem(404, "CATALOG-404", "Not Found", f"batch {batch_id} was not found")
            return self.catalog_batch(batch)

    def list_batches(self) -> list[dict]:
        with self._lock:
            self._advance()
            return [self.catalog_batch(b) for b in self.batches.values()]

    def batch_record(self, batch_id: str) -> dict:
        """The internal batch record (files, bad rows) for Data Access."""
        with self._lock:
            self._advance()
            batch = self.batches.get(batch_id)
            if batch is None:
                raise problem(404, "DATAACCESS-404", "Not Found", f"batch {batch_id} was not found")
            return copy.deepcopy(batch)

    def file_bytes(self, batch_id: str, name: str) -> bytes:
        with self._lock:
            return self.files.get(batch_id, name)

    def rows(self, dataset_id: str) -> pa.Table:
        """Every ingested row of every successful batch of a dataset (bad rows of partial batches left out)."""
        with self._lock:
            self._advance()
            if dataset_id not in self.datasets:
                raise KeyError(f"dataset {dataset_id} does not exist")
            tables = []
            batches = sorted(
                (b for b in self.batches.values() if b["datasetId"] == dataset_id),
                key=lambda b: (b["created"], b["id"]),
            )
            for batch in batches:
                if batch["status"] != "success":
                    continue
                for name in sorted(batch["files"]):
                    data = self.files.get(batch["id"], name)
                    if batch["inputFormat"]["format"] == "json":
                        multiline = bool(batch["inputFormat"].get("isMultiLineJson"))
                        text = data.decode("utf-8")
                        if multiline:
                            parsed = json.loads(text)
                            records = parsed if isinstance(parsed, list) else [parsed]
                        else:
                            records = [json.loads(x) for x in text.splitlines() if x.strip()]
                        table = pa.Table.from_pylist(records)
                    else:
                        table = pq.read_table(io.BytesIO(data))
                    bad = batch["badRows"].get(name)
                    if bad:
                        keep = sorted(set(range(table.num_rows)) - set(bad))
                        table = table.take(pa.array(keep, pa.int64()))
                    tables.append(table)
            if not tables:
                return pa.table({})
            return pa.concat_tables(tables, promote_options="permissive")

    def summary(self) -> dict:
        with self._lock:
            self._advance()
            return {
                "tokensIssued": self.tokens_issued,
                "tokensValid": self.tokens_valid,
                "fieldGroups": {k: v["title"] for k, v in self.fieldgroups.items()},
                "schemas": {k: v["title"] for k, v in self.schemas.items()},
                "descriptors": len(self.descriptors),
                "identityNamespaces": [n["code"] for n in self.namespaces],
                "datasets": {k: v["name"] for k, v in self.datasets.items()},
                "batches": {
                    k: {
                        "dataSet": b["datasetId"],
                        "status": b["status"],
                        "files": dict(b["files"]),
                        "recordCount": b.get("recordCount"),
                        "errors": [e["code"] for e in b.get("errors", [])],
                    }
                    for k, b in self.batches.items()
                },
                "faults": asdict(self.faults),
            }


def _summary(resource: dict) -> dict:
    return {
        "$id": resource["$id"],
        "meta:altId": resource["meta:altId"],
        "version": resource["version"],
        "title": resource["title"],
    }


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _breaking_changes(before: dict, after: dict, path: str, errors: list[str]) -> None:
    """Changes to existing fields that AEP refuses on a field group in use (see
    `patch_field_group`): a field removed, its type/format redefined, a new required entry, or
    its allowed values restricted. New fields anywhere are fine."""
    for name, old in before.items():
        where = f"{path}/{name}"
        new = after.get(name)
        if not isinstance(old, dict):
            continue
        if not isinstance(new, dict):
            errors.append(f"field {where} cannot be removed")
            continue
        for key in ("type", "format", "meta:xdmType"):
            if old.get(key) != new.get(key):
                errors.append(
                    f"field {where} cannot be redefined ({key} {old.get(key)!r} -> "
                    f"{new.get(key)!r})"
                )
        if "enum" in new and not set(new["enum"]) >= set(old.get("enum") or new["enum"]):
            errors.append(f"field {where} cannot lose allowed values")
        if "enum" in new and "enum" not in old:
            errors.append(f"field {where} cannot gain an enum (it restricts its values)")
        added = sorted(set(new.get("required") or []) - set(old.get("required") or []))
        if added:
            errors.append(f"fields {added} of {where} cannot be made required")
        if isinstance(old.get("properties"), dict):
            _breaking_changes(old["properties"], new.get("properties") or {}, where, errors)
        items_old, items_new = old.get("items"), new.get("items")
        if isinstance(items_old, dict) and isinstance(items_old.get("properties"), dict):
            new_items = (items_new or {}).get("properties") if isinstance(items_new, dict) else {}
            _breaking_changes(items_old["properties"], new_items or {}, f"{where}[]", errors)


def _titled_object_errors(body: Any) -> tuple[list[str], Any]:
    """The checks every Schema Registry resource body shares: a JSON object, with a title and
    `type: object`. Returns the problems found so far and the title."""
    if not isinstance(body, dict):
        raise xdm_error(400, "XDM-1000-400", "Bad Request", "the body must be a JSON object")
    errors: list[str] = []
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        errors.append("'title' is required")
    if body.get("type") != "object":
        errors.append("'type' must be 'object'")
    return errors, title


def _patched(current: dict, operations: Any) -> dict:
    """`current` with a JSON Patch applied (a copy); the Schema Registry's 400 when it cannot be."""
    try:
        return apply_json_patch(current, operations)
    except (ValueError, IndexError, KeyError) as exc:
        raise xdm_error(400, "XDM-1000-400", "Bad Request", f"invalid JSON Patch: {exc}") from exc


def _identity_changes(current: dict, patched: dict) -> list[str]:
    """What a patch may not change: the resource's ids and kind."""
    return [
        f"'{fixed}' cannot be changed"
        for fixed in ("$id", "meta:altId", "meta:resourceType", "meta:containerId")
        if patched.get(fixed) != current.get(fixed)
    ]
