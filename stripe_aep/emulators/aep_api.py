"""A local Adobe Experience Platform: Adobe IMS and the Platform gateway in one Starlette app.

Why: stripe-aep must be testable end to end without an Adobe contract, and the tests must fail the way
real AEP fails. `AEP_IMS_URL` and `AEP_PLATFORM_URL` can both point at this app; the client changes only
its base URLs. Paths, headers, status codes and bodies follow Adobe's docs and OpenAPI specs
(`specs/aep/`, reference `aep-api.md`); where the docs are silent the choice is written in
`docs/emulators.md` (section "AEP emulator").

Served (all under the real paths):
- IMS: `POST /ims/token/v3` (OAuth Server-to-Server client credentials).
- Gateway checks on every Platform call (token, `x-api-key`, `x-gw-ims-org-id`, `x-sandbox-name`).
- Schema Registry (`/data/foundation/schemaregistry`): stats, classes (global), field groups, schemas,
  descriptors; identity namespaces (`/data/core/idnamespace/identities`).
- Catalog (`/data/foundation/catalog`): datasets and batches.
- Batch Ingestion (`/data/foundation/import`): create batch, PUT file, COMPLETE / ABORT / REVERT.
- Data Access (`/data/foundation/export`): a batch's files, file listing and download, failed files.
- Control (no auth, for tests and other processes): `/_emulator/health`, `/_emulator/faults`,
  `/_emulator/state`.

The rules themselves live in `aep_store.py` (state, lifecycle) and `aep_ingest.py` (file validation).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import pyarrow as pa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stripe_aep.emulators import aep_ingest
from stripe_aep.emulators._server import BackgroundServer
from stripe_aep.emulators.aep_store import (
    CATALOG_MAX_LIMIT,
    DEFAULT_MAX_FILE_BYTES,
    AepFaults,
    AepIdentity,
    AepStore,
    ApiError,
    problem,
    xdm_error,
)

__all__ = ["AepEmulator", "AepFaults", "AepState", "create_app"]

SR = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
IMPORT = "/data/foundation/import"
EXPORT = "/data/foundation/export"
IDNAMESPACE = "/data/core/idnamespace/identities"
MAX_URL_LENGTH = 2000
DATA_ACCESS_MAX_LIMIT = 100


@dataclass
class Call:
    """One request, read and decoded, handed to a synchronous handler in the thread pool."""

    request: Request
    body: bytes
    store: AepStore

    @property
    def params(self) -> dict[str, str]:
        return self.request.path_params

    @property
    def query(self):
        return self.request.query_params

    @property
    def headers(self):
        return self.request.headers

    @property
    def base(self) -> str:
        return str(self.request.base_url).rstrip("/")

    def json(self) -> Any:
        content_type = self.headers.get("content-type")
        if not content_type:
            raise ApiError(
                400,
                {
                    "type": "/placeholder/type/uri",
                    "status": 400,
                    "title": "BadRequestError",
                    "detail": "A valid content-type must be specified",
                },
            )
        media = content_type.split(";")[0].strip().lower()
        if media not in ("application/json", "application/json-patch+json"):
            raise problem(
                415,
                "UNSUPPORTED-MEDIA-TYPE-415",
                "Unsupported Media Type",
                f"Content-Type {media!r} is not supported here; send application/json",
            )
        try:
            return json.loads(self.body or b"null")
        except json.JSONDecodeError as exc:
            raise problem(
                400, "BAD-REQUEST-400", "Bad Request", f"the body is not JSON: {exc}"
            ) from exc


Handler = Callable[[Call], Response]


def _endpoint(
    store: AepStore, handler: Handler, *, gateway: bool = True, max_body: int | None = None
):
    async def run(request: Request) -> Response:
        try:
            url_length = len(request.url.path) + len(request.url.query)
            if url_length > MAX_URL_LENGTH:
                raise problem(
                    414,
                    "URI-TOO-LONG-414",
                    "URI Too Long",
                    "The URL exceeds the allowed 2000 characters",
                )
            if gateway:
                store.check_gateway(request.headers)
            if max_body is not None:
                declared = request.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_body:
                    raise _too_large(max_body)
            body = await request.body()
            if max_body is not None and len(body) > max_body:
                raise _too_large(max_body)
            return await run_in_threadpool(handler, Call(request, body, store))
        except ApiError as err:
            return JSONResponse(err.body, err.status, headers=err.headers)

    return run


def _too_large(limit: int) -> ApiError:
    return problem(
        413,
        "PAYLOAD-TOO-LARGE-413",
        "Payload Too Large",
        f"A single PUT accepts at most {limit} bytes (256 MB on the gateway); split the data into "
        "several files",
    )


# ---------------------------------------------------------------------------------------------------
# IMS


def ims_token(call: Call) -> Response:
    form = dict(parse_qsl(call.request.url.query))
    content_type = (call.headers.get("content-type") or "").split(";")[0].strip().lower()
    if call.body and content_type in ("application/x-www-form-urlencoded", ""):
        form.update(dict(parse_qsl(call.body.decode("utf-8", errors="replace"))))
    elif call.body:
        raise ApiError(
            400,
            {
                "error": "invalid_request",
                "error_description": "send the token request as application/x-www-form-urlencoded",
            },
        )
    return JSONResponse(call.store.issue_token(form))


# ---------------------------------------------------------------------------------------------------
# Schema Registry

_LOOKUP_ACCEPT = re.compile(
    r"application/vnd\.adobe\.(xed|xed-full|xed-notext|xed-full-notext|xed-full-desc)\+json"
    r"\s*;\s*version=(\d+)",
    re.IGNORECASE,
)


def _container(call: Call) -> str:
    container = call.params.get("container", "tenant")
    if container not in ("tenant", "global"):
        raise xdm_error(
            404,
            "XDM-1012-404",
            "Resource Not Found",
            f"container {container!r}: use tenant or global",
        )
    return container


def _matches(resource: dict, condition: str) -> bool:
    for op in ("!=", "==", "~"):
        if op in condition:
            key, value = condition.split(op, 1)
            actual = resource.get(key.strip())
            values = actual if isinstance(actual, list) else [actual]
            if op == "==":
                return any(str(v) == value for v in values if v is not None)
            if op == "!=":
                return all(str(v) != value for v in values if v is not None)
            return any(re.search(value, str(v)) for v in values if v is not None)
    return condition.strip() in resource


def _sort_key(resource: dict, field: str):
    value = resource.get(field)
    return "" if value is None else str(value)


def list_registry(kind: str) -> Handler:
    def handler(call: Call) -> Response:
        container = _container(call)
        accept = call.headers.get("accept", "")
        if "xed-id+json" in accept:
            mode = "id"
        elif re.search(r"application/vnd\.adobe\.xed\+json", accept):
            mode = "full"
        else:
            raise xdm_error(
                400,
                "XDM-1006-400",
                "Accept header invalid",
                f"The supplied Accept header is not valid: {accept or '(none)'} - for listing use "
                "application/vnd.adobe.xed-id+json or application/vnd.adobe.xed+json",
            )
        items = call.store.list_resources(kind, container)
        conditions = [c for c in (call.query.get("property") or "").split(",") if c.strip()]
        items = [r for r in items if all(_matches(r, c) for c in conditions)]
        orderby = call.query.get("orderby") or "title"
        fields = [f.strip() for f in orderby.split(",") if f.strip()]
        for field in reversed(fields):
            descending = field.startswith("-")
            name = field.lstrip("-")
            items.sort(key=lambda r, n=name: _sort_key(r, n), reverse=descending)
        primary = fields[0] if fields else "title"
        start = call.query.get("start")
        if start is not None:
            name = primary.lstrip("-")
            if primary.startswith("-"):
                items = [r for r in items if _sort_key(r, name) < start]
            else:
                items = [r for r in items if _sort_key(r, name) > start]
        limit = _int_param(call, "limit", 300, low=0, high=500)
        page, rest = items[:limit], items[limit:]
        next_start = _sort_key(page[-1], primary.lstrip("-")) if rest and page else None
        next_href = None
        if next_start is not None:
            next_href = (
                f"{call.base}{SR}/{container}/{kind}?orderby={quote(orderby)}&limit={limit}"
                f"&start={quote(next_start)}"
            )
        results = [_summary(r) for r in page] if mode == "id" else page
        links: dict[str, Any] = {"next": next_href}
        if kind == "schemas":
            links["global_schemas"] = {"href": f"{call.base}{SR}/global/schemas"}
        return JSONResponse(
            {
                "results": results,
                "_page": {"orderby": orderby, "next": next_start, "count": len(results)},
                "_links": links,
            }
        )

    return handler


def _summary(resource: dict) -> dict:
    return {
        "$id": resource["$id"],
        "meta:altId": resource.get("meta:altId"),
        "version": resource.get("version"),
        "title": resource.get("title"),
    }


def _strip_text(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_text(v) for k, v in node.items() if k not in ("title", "description")}
    if isinstance(node, list):
        return [_strip_text(v) for v in node]
    return node


def get_registry(kind: str) -> Handler:
    def handler(call: Call) -> Response:
        container = _container(call)
        ident = call.params["ident"]
        accept = call.headers.get("accept", "")
        match = _LOOKUP_ACCEPT.search(accept)
        if match is None:
            raise xdm_error(
                406,
                "XDM-1006-406",
                "Accept header invalid",
                f"The supplied Accept header is not valid: {accept or '(none)'} - a lookup needs e.g. "
                "application/vnd.adobe.xed+json; version=1",
            )
        if container == "global" and kind != "classes":
            raise xdm_error(
                404, "XDM-1012-404", "Resource Not Found", f"{ident} is not in the global container"
            )
        resource = call.store.get_resource(kind, ident)
        major = str(resource.get("version", "1")).split(".")[0]
        if match.group(2) != major:
            raise xdm_error(
                404,
                "XDM-1012-404",
                "Resource Not Found",
                f"Requested resource {resource['$id']} with version {match.group(2)} is not found",
            )
        variant = match.group(1).lower()
        if "full" in variant:
            if kind == "schemas":
                resolved = call.store.resolved_schema(resource["$id"])
                resource["properties"] = resolved.properties
                resource["required"] = resolved.required
            elif kind == "classes" and "properties" not in resource:
                properties, required = aep_ingest.class_properties(
                    resource["$id"], {resource["$id"]: resource}
                )
                resource["properties"] = properties
                resource["required"] = required
            elif kind == "fieldgroups":
                properties, required = aep_ingest.field_group_properties(resource)
                resource["properties"] = properties
                if required:
                    resource["required"] = required
        if "notext" in variant:
            resource = _strip_text(resource)
        elif variant == "xed-full-desc":
            resource = {k: v for k, v in resource.items() if k != "title"}
        return JSONResponse(resource)

    return handler


def create_fieldgroup(call: Call) -> Response:
    return JSONResponse(call.store.create_field_group(call.json()), 201)


def create_class(call: Call) -> Response:
    return JSONResponse(call.store.create_class(call.json()), 201)


def create_schema(call: Call) -> Response:
    return JSONResponse(call.store.create_schema(call.json()), 201)


def patch_fieldgroup(call: Call) -> Response:
    return JSONResponse(call.store.patch_field_group(call.params["ident"], call.json()))


def patch_schema(call: Call) -> Response:
    return JSONResponse(call.store.patch_schema(call.params["ident"], call.json()))


def stats(call: Call) -> Response:
    return JSONResponse(call.store.stats())


def create_descriptor(call: Call) -> Response:
    return JSONResponse(call.store.create_descriptor(call.json()), 201)


def list_descriptors(call: Call) -> Response:
    accept = call.headers.get("accept", "")
    match = re.search(r"application/vnd\.adobe\.xdm(-v2)?(-id|-link)?\+json", accept)
    if match is None:
        raise xdm_error(
            400,
            "XDM-1006-400",
            "Accept header invalid",
            f"The supplied Accept header is not valid: {accept or '(none)'} - descriptors use "
            "application/vnd.adobe.xdm-id+json, xdm-link+json, xdm+json or their -v2 forms",
        )
    v2, variant = bool(match.group(1)), match.group(2) or ""
    descriptors = call.store.list_descriptors()
    conditions = [c for c in (call.query.get("property") or "").split(",") if c.strip()]
    descriptors = [d for d in descriptors if all(_matches(d, c) for c in conditions)]

    def shape(d: dict) -> Any:
        if variant == "-id":
            return d["@id"]
        if variant == "-link":
            return f"/descriptors/{d['@id']}"
        return d

    if v2:
        results = [shape(d) for d in descriptors]
        return JSONResponse(
            {"results": results, "_page": {"count": len(results), "next": None}, "_links": {}}
        )
    grouped: dict[str, list] = {}
    for d in descriptors:
        grouped.setdefault(d["@type"], []).append(shape(d))
    return JSONResponse(grouped)


def get_descriptor(call: Call) -> Response:
    return JSONResponse(call.store.get_descriptor(call.params["ident"]))


def list_namespaces(call: Call) -> Response:
    return JSONResponse(call.store.list_namespaces())


def get_namespace(call: Call) -> Response:
    return JSONResponse(call.store.get_namespace(call.params["ident"]))


def create_namespace(call: Call) -> Response:
    return JSONResponse(call.store.create_namespace(call.json()))


# ---------------------------------------------------------------------------------------------------
# Catalog


def _int_param(call: Call, name: str, default: int, *, low: int, high: int) -> int:
    raw = call.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise problem(
            400,
            "BAD-REQUEST-400",
            "Bad Request",
            f"'{name}' must be an integer from {low} to {high}",
        )
    return value


def _project(resource: dict, properties: str | None) -> dict:
    """A Catalog object as listed (keyed by id, so without `id`), limited to `properties` if given."""
    resource = {k: v for k, v in resource.items() if k != "id"}
    if not properties:
        return resource
    keep = {p.strip() for p in properties.split(",") if p.strip()}
    return {k: v for k, v in resource.items() if k in keep}


def _order(items: list[dict], order_by: str | None) -> list[dict]:
    if not order_by:
        return items
    for term in reversed(order_by.split(",")):
        direction, _, name = term.strip().rpartition(":")
        items = sorted(
            items,
            key=lambda r, n=name: (r.get(n) is None, r.get(n) if r.get(n) is not None else 0),
            reverse=direction == "desc",
        )
    return items


def _page(call: Call, items: list[dict]) -> list[dict]:
    start = _int_param(call, "start", 0, low=0, high=10**9)
    limit = _int_param(call, "limit", 20, low=1, high=CATALOG_MAX_LIMIT)
    return items[start : start + limit]


def create_dataset(call: Call) -> Response:
    dataset_id = call.store.create_dataset(call.json())
    return JSONResponse(
        [f"@/dataSets/{dataset_id}"],
        201,
        headers={"Location": f"{call.base}{CATALOG}/dataSets/{dataset_id}"},
    )


def list_datasets(call: Call) -> Response:
    items = call.store.list_datasets()
    for name in ("name", "description"):
        if call.query.get(name) is not None:
            items = [d for d in items if d.get(name) == call.query[name]]
    items = _order(items, call.query.get("orderBy") or "asc:created")
    items = _page(call, items)
    properties = call.query.get("properties")
    return JSONResponse({d["id"]: _project(d, properties) for d in items})


def get_dataset(call: Call) -> Response:
    dataset = call.store.get_dataset(call.params["dataset_id"])
    return JSONResponse({dataset["id"]: _project(dataset, call.query.get("properties"))})


def patch_dataset(call: Call) -> Response:
    dataset_id = call.store.patch_dataset(call.params["dataset_id"], call.json())
    return JSONResponse([f"@/dataSets/{dataset_id}"])


#: the `GET /batches` query parameters the emulator implements (Adobe: "Filter Catalog data using
#: query parameters", experienceleague .../catalog/api/filter-data; SPEC-CAT `listBatches`). Any other
#: parameter — documented or not — is a 400 rather than silently ignored: a client must not pass a test
#: by relying on a filter the emulator would not apply.
BATCH_LIST_PARAMS = frozenset(
    {
        "dataSet",
        "batch",
        "externalId",
        "status",
        "createdAfter",
        "createdBefore",
        "tags",
        "orderBy",
        "start",
        "limit",
        "properties",
    }
)


def _simple_filter(items: list[dict], raw: str, value_of: Callable[[dict], Any]) -> list[dict]:
    """Adobe's simple filter `{PROPERTY}={VALUE}`: a comma list matches any value, `!` negates."""
    negate = raw.startswith("!")
    wanted = {v for v in (raw[1:] if negate else raw).split(",") if v != ""}
    return [b for b in items if (value_of(b) in wanted) != negate]


def _tag_terms(raw: str) -> list[tuple[str, re.Pattern[str]]]:
    """`tags={NAME}:{VALUE}[,{NAME}:{VALUE}...]`: AND of terms; `*` in a value is a wildcard.

    Adobe documents `test*` (prefix) and `*` alone (the tag exists, any value); the value is
    everything after the first `:` (values such as `enabled:true` contain colons). A term without a
    name and a colon is refused, as is an empty value.
    """
    terms = []
    for term in raw.split(","):
        name, sep, value = term.partition(":")
        if not sep or not name or not value:
            raise problem(
                400,
                "BAD-REQUEST-400",
                "Bad Request",
                f"tags filter term {term!r} must be {{TAG_NAME}}:{{TAG_VALUE}} (the value may "
                "use * as a wildcard)",
            )
        pattern = ".*".join(re.escape(part) for part in value.split("*"))
        terms.append((name, re.compile(pattern, re.DOTALL)))
    return terms


def _has_tags(batch: dict, terms: list[tuple[str, re.Pattern[str]]]) -> bool:
    tags = batch.get("tags") or {}
    return all(
        any(isinstance(v, str) and pattern.fullmatch(v) for v in tags.get(name) or [])
        for name, pattern in terms
    )


def list_batches(call: Call) -> Response:
    query = call.query
    unknown = sorted(set(query.keys()) - BATCH_LIST_PARAMS)
    if unknown:
        raise problem(
            400,
            "BAD-REQUEST-400",
            "Bad Request",
            f"query parameter(s) {', '.join(unknown)} are not emulated; the emulator filters "
            f"batches by {', '.join(sorted(BATCH_LIST_PARAMS))} only",
        )
    items = call.store.list_batches()
    simple = (
        ("dataSet", lambda b: b["relatedObjects"][0]["id"]),
        ("batch", lambda b: b["id"]),
        ("externalId", lambda b: b["externalId"]),
        ("status", lambda b: b["status"]),
    )
    for name, value_of in simple:
        if query.get(name):
            items = _simple_filter(items, query[name], value_of)
    if query.get("tags"):
        terms = _tag_terms(query["tags"])
        items = [b for b in items if _has_tags(b, terms)]
    for name, compare in (("createdAfter", int.__gt__), ("createdBefore", int.__lt__)):
        if query.get(name):
            try:
                bound = int(query[name])
            except ValueError as exc:
                raise problem(
                    400, "BAD-REQUEST-400", "Bad Request", f"'{name}' must be epoch milliseconds"
                ) from exc
            items = [b for b in items if compare(b["created"], bound)]
    items = _order(items, query.get("orderBy") or "asc:created")
    items = _page(call, items)
    properties = query.get("properties")
    return JSONResponse({b["id"]: _project(b, properties) for b in items})


def get_batch(call: Call) -> Response:
    batch = call.store.get_batch(call.params["batch_id"])
    return JSONResponse({batch["id"]: _project(batch, call.query.get("properties"))})


# ---------------------------------------------------------------------------------------------------
# Batch Ingestion


def create_batch(call: Call) -> Response:
    return JSONResponse(call.store.create_batch(call.json()), 201)


def put_file(call: Call) -> Response:
    store = call.store
    media = (call.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != "application/octet-stream":
        raise problem(
            415,
            "INGEST-415",
            "Unsupported Media Type",
            f"Content-Type must be application/octet-stream for file uploads (got {media or 'none'}); "
            "send the raw file bytes, not multipart",
        )
    if store.take_fault("put_5xx"):
        raise problem(
            503,
            "INGEST-503",
            "Service Unavailable",
            "The service is unavailable (fault injected by the AEP emulator); retry",
        )
    store.put_file(
        call.params["batch_id"], call.params["dataset_id"], call.params["file_path"], call.body
    )
    return Response(status_code=200)


def batch_action(call: Call) -> Response:
    action = call.query.get("action")
    if not action:
        raise problem(
            400,
            "INGEST-400",
            "Bad Request",
            "query parameter 'action' is required (COMPLETE or ABORT)",
        )
    store = call.store
    if action == "COMPLETE" and store.take_fault("complete_5xx"):
        raise problem(
            503,
            "INGEST-503",
            "Service Unavailable",
            "The service is unavailable (fault injected by the AEP emulator); retry COMPLETE",
        )
    return JSONResponse(store.batch_action(call.params["batch_id"], action))


# ---------------------------------------------------------------------------------------------------
# Data Access


def _file_id(batch_id: str, index: int) -> str:
    return f"{batch_id}-{index + 1}"


def _parse_file_id(store: AepStore, file_id: str) -> tuple[dict, str]:
    batch_id, _, index = file_id.rpartition("-")
    not_found = problem(404, "DATAACCESS-404", "Not Found", f"dataset file {file_id} was not found")
    if not batch_id or not index.isdigit():
        raise not_found
    try:
        batch = store.batch_record(batch_id)
    except ApiError:
        raise not_found from None
    names = sorted(batch["files"]) if batch["status"] == "success" else []
    position = int(index) - 1
    if not 0 <= position < len(names):
        raise not_found
    return batch, names[position]


def _download(call: Call, data: bytes) -> Response:
    range_header = call.headers.get("range")
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
    if match:
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else len(data) - 1
        end = min(end, len(data) - 1)
        if start > end:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
        return Response(
            data[start : end + 1],
            206,
            media_type="application/octet-stream",
            headers={"Content-Range": f"bytes {start}-{end}/{len(data)}", "Accept-Ranges": "bytes"},
        )
    return Response(data, media_type="application/octet-stream", headers={"Accept-Ranges": "bytes"})


def batch_files(call: Call) -> Response:
    batch_id = call.params["batch_id"]
    batch = call.store.batch_record(batch_id)
    dataset = call.store.get_dataset(batch["datasetId"])
    names = sorted(batch["files"]) if batch["status"] == "success" else []
    start = _int_param(call, "start", 0, low=0, high=10**9)
    limit = _int_param(call, "limit", DATA_ACCESS_MAX_LIMIT, low=1, high=DATA_ACCESS_MAX_LIMIT)
    data = []
    for index, name in list(enumerate(names))[start : start + limit]:
        file_id = _file_id(batch_id, index)
        data.append(
            {
                "dataSetFileId": file_id,
                "dataSetViewId": dataset["viewId"],
                "version": "1.0.0",
                "created": str(batch.get("completed", batch["created"])),
                "updated": str(batch.get("completed", batch["updated"])),
                "isValid": True,
                "size": str(batch["files"][name]),
                "_links": {"self": {"href": f"{call.base}{EXPORT}/files/{file_id}"}},
            }
        )
    body: dict[str, Any] = {"data": data, "_page": {"limit": limit, "count": len(data)}}
    if start + limit < len(names):
        body["_links"] = {
            "next": {
                "href": f"{call.base}{EXPORT}/batches/{batch_id}/files?start={start + limit}&limit={limit}"
            }
        }
    return JSONResponse(body)


def get_file(call: Call) -> Response:
    file_id = call.params["file_id"]
    batch, name = _parse_file_id(call.store, file_id)
    path = call.query.get("path")
    if path is not None:
        if path != name:
            raise problem(
                404,
                "DATAACCESS-404",
                "Not Found",
                f"{path!r} is not a file of dataset file {file_id}",
            )
        return _download(call, call.store.file_bytes(batch["id"], name))
    return JSONResponse(
        {
            "data": [
                {
                    "name": name,
                    "length": str(batch["files"][name]),
                    "_links": {
                        "self": {"href": f"{call.base}{EXPORT}/files/{file_id}?path={quote(name)}"}
                    },
                }
            ],
            "_page": {"limit": DATA_ACCESS_MAX_LIMIT, "count": 1},
        }
    )


def failed_files(call: Call) -> Response:
    batch_id = call.params["batch_id"]
    batch = call.store.batch_record(batch_id)
    names = sorted(batch["files"]) if batch["status"] == "failed" else []
    path = call.query.get("path")
    if path is not None:
        if path not in names:
            raise problem(
                404,
                "DATAACCESS-404",
                "Not Found",
                f"{path!r} is not a failed file of batch {batch_id}",
            )
        return _download(call, call.store.file_bytes(batch_id, path))
    data = [
        {
            "name": name,
            "length": str(batch["files"][name]),
            "_links": {
                "self": {
                    "href": f"{call.base}{EXPORT}/batches/{batch_id}/failed?path={quote(name)}"
                }
            },
        }
        for name in names
    ]
    return JSONResponse(
        {"data": data, "_page": {"limit": DATA_ACCESS_MAX_LIMIT, "count": len(data)}}
    )


# ---------------------------------------------------------------------------------------------------
# Control


def health(call: Call) -> Response:
    return JSONResponse({"status": "ok", "service": "aep-emulator"})


def get_faults(call: Call) -> Response:
    with call.store._lock:
        return JSONResponse(asdict(call.store.faults))


def set_faults(call: Call) -> Response:
    values = call.json()
    if not isinstance(values, dict):
        raise problem(
            400, "BAD-REQUEST-400", "Bad Request", "send a JSON object of AepFaults fields"
        )
    with call.store._lock:
        try:
            call.store.faults.update(values)
        except ValueError as exc:
            raise problem(400, "BAD-REQUEST-400", "Bad Request", str(exc)) from exc
        return JSONResponse(asdict(call.store.faults))


def state_summary(call: Call) -> Response:
    return JSONResponse(call.store.summary())


# ---------------------------------------------------------------------------------------------------


def _routes(store: AepStore) -> list[Route]:
    def r(path: str, handler: Handler, methods: list[str], **kw) -> Route:
        return Route(path, _endpoint(store, handler, **kw), methods=methods)

    return [
        r("/_emulator/health", health, ["GET"], gateway=False),
        r("/_emulator/faults", get_faults, ["GET"], gateway=False),
        r("/_emulator/faults", set_faults, ["POST"], gateway=False),
        r("/_emulator/state", state_summary, ["GET"], gateway=False),
        r("/ims/token/v3", ims_token, ["POST"], gateway=False),
        r(f"{SR}/stats", stats, ["GET"]),
        r(f"{SR}/tenant/fieldgroups", create_fieldgroup, ["POST"]),
        r(f"{SR}/tenant/mixins", create_fieldgroup, ["POST"]),
        r(f"{SR}/tenant/schemas", create_schema, ["POST"]),
        r(f"{SR}/tenant/classes", create_class, ["POST"]),
        r(f"{SR}/tenant/schemas/{{ident:path}}", patch_schema, ["PATCH"]),
        r(f"{SR}/tenant/fieldgroups/{{ident:path}}", patch_fieldgroup, ["PATCH"]),
        r(f"{SR}/tenant/mixins/{{ident:path}}", patch_fieldgroup, ["PATCH"]),
        r(f"{SR}/tenant/descriptors", create_descriptor, ["POST"]),
        r(f"{SR}/tenant/descriptors", list_descriptors, ["GET"]),
        r(f"{SR}/tenant/descriptors/{{ident}}", get_descriptor, ["GET"]),
        r(f"{SR}/{{container}}/fieldgroups", list_registry("fieldgroups"), ["GET"]),
        r(f"{SR}/{{container}}/mixins", list_registry("fieldgroups"), ["GET"]),
        r(f"{SR}/{{container}}/schemas", list_registry("schemas"), ["GET"]),
        r(f"{SR}/{{container}}/classes", list_registry("classes"), ["GET"]),
        r(f"{SR}/{{container}}/fieldgroups/{{ident:path}}", get_registry("fieldgroups"), ["GET"]),
        r(f"{SR}/{{container}}/mixins/{{ident:path}}", get_registry("fieldgroups"), ["GET"]),
        r(f"{SR}/{{container}}/schemas/{{ident:path}}", get_registry("schemas"), ["GET"]),
        r(f"{SR}/{{container}}/classes/{{ident:path}}", get_registry("classes"), ["GET"]),
        r(IDNAMESPACE, list_namespaces, ["GET"]),
        r(IDNAMESPACE, create_namespace, ["POST"]),
        r(f"{IDNAMESPACE}/{{ident}}", get_namespace, ["GET"]),
        r(f"{CATALOG}/dataSets", create_dataset, ["POST"]),
        r(f"{CATALOG}/dataSets", list_datasets, ["GET"]),
        r(f"{CATALOG}/dataSets/{{dataset_id}}", get_dataset, ["GET"]),
        r(f"{CATALOG}/dataSets/{{dataset_id}}", patch_dataset, ["PATCH"]),
        r(f"{CATALOG}/batches", list_batches, ["GET"]),
        r(f"{CATALOG}/batches/{{batch_id}}", get_batch, ["GET"]),
        r(f"{IMPORT}/batches", create_batch, ["POST"]),
        r(
            f"{IMPORT}/batches/{{batch_id}}/datasets/{{dataset_id}}/files/{{file_path:path}}",
            put_file,
            ["PUT"],
            max_body=store.max_file_bytes,
        ),
        r(f"{IMPORT}/batches/{{batch_id}}", batch_action, ["POST"]),
        r(f"{EXPORT}/batches/{{batch_id}}/files", batch_files, ["GET"]),
        r(f"{EXPORT}/batches/{{batch_id}}/failed", failed_files, ["GET"]),
        r(f"{EXPORT}/files/{{file_id}}", get_file, ["GET"]),
    ]


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {
            "type": "http://ns.adobe.com/aep/errors/NOT-FOUND-404",
            "title": "Not Found",
            "status": 404,
            "detail": f"{request.method} {request.url.path} is not served by the AEP emulator",
        },
        404,
    )


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {
            "type": "http://ns.adobe.com/aep/errors/METHOD-NOT-ALLOWED-405",
            "title": "Method Not Allowed",
            "status": 405,
            "detail": f"{request.method} is not allowed on {request.url.path}",
        },
        405,
    )


def _build_app(store: AepStore) -> Starlette:
    app = Starlette(routes=_routes(store), exception_handlers={404: _not_found, 405: _not_allowed})
    app.state.aep_store = store
    return app


def create_app(
    *,
    client_id: str = "stripe-aep-local",
    client_secret: str = "local-secret",
    org_id: str = "0000000000000000000000AA@AdobeOrg",
    sandbox: str = "prod",
    tenant: str = "stripeaep",
    faults: AepFaults | None = None,
    state_dir: Path | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Starlette:
    """The emulator as an ASGI app (its store is `app.state.aep_store`)."""
    identity = AepIdentity(client_id, client_secret, org_id, sandbox, tenant)
    store = AepStore(identity, faults or AepFaults(), state_dir, max_file_bytes)
    return _build_app(store)


@dataclass
class AepState:
    """A snapshot of the emulator's state for tests (copies; changing them changes nothing)."""

    datasets: dict[str, dict]
    """Catalog dataset views by id."""
    batches: dict[str, dict]
    """Catalog batch views by id, plus `files`: {path: size in bytes}."""
    schemas: dict[str, dict]
    field_groups: dict[str, dict]
    descriptors: dict[str, dict]
    identity_namespaces: list[dict]
    tokens_issued: int
    tokens_valid: int


class AepEmulator:
    """The AEP emulator served by uvicorn in a background thread; use as a context manager.

    >>> with AepEmulator() as aep:
    ...     requests.post(f"{aep.url}/ims/token/v3", data={...})
    """

    def __init__(
        self,
        *,
        client_id: str = "stripe-aep-local",
        client_secret: str = "local-secret",
        org_id: str = "0000000000000000000000AA@AdobeOrg",
        sandbox: str = "prod",
        tenant: str = "stripeaep",
        faults: AepFaults | None = None,
        state_dir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.app = create_app(
            client_id=client_id,
            client_secret=client_secret,
            org_id=org_id,
            sandbox=sandbox,
            tenant=tenant,
            faults=faults,
            state_dir=state_dir,
            max_file_bytes=max_file_bytes,
        )
        self.store: AepStore = self.app.state.aep_store
        self.faults: AepFaults = self.store.faults
        self._server = BackgroundServer(self.app, host, port)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def identity(self) -> AepIdentity:
        return self.store.identity

    def client_environment(self, tenant: str) -> dict[str, str]:
        """The AEP variables that point stripe-aep at this emulator, with its local identity (not
        secrets: they exist only inside the emulator) and `tenant`."""
        ident = self.identity
        return {
            "AEP_CLIENT_ID": ident.client_id,
            "AEP_CLIENT_SECRET": ident.client_secret,
            "AEP_ORG_ID": ident.org_id,
            "AEP_SANDBOX": ident.sandbox,
            "AEP_TENANT_ID": tenant,
            "AEP_IMS_URL": self.url,
            "AEP_PLATFORM_URL": self.url,
        }

    def start(self) -> AepEmulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> AepEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"AepEmulator(url={self.url!r}, identity={self.identity!r})"

    @property
    def state(self) -> AepState:
        store = self.store
        with store._lock:
            batches = {}
            for batch in store.list_batches():
                batch["files"] = dict(store.batches[batch["id"]]["files"])
                batches[batch["id"]] = batch
            return AepState(
                datasets={d["id"]: d for d in store.list_datasets()},
                batches=batches,
                schemas=copy.deepcopy(store.schemas),
                field_groups=copy.deepcopy(store.fieldgroups),
                descriptors=copy.deepcopy(store.descriptors),
                identity_namespaces=store.list_namespaces(),
                tokens_issued=store.tokens_issued,
                tokens_valid=store.tokens_valid,
            )

    def finish_processing(self) -> int:
        """Finalise every `processing` batch now, whatever `processing_delay_s` said (for tests)."""
        return self.store.finish_processing()

    def rows(self, dataset_id: str) -> pa.Table:
        """Every row of every successful batch of the dataset, in batch creation order."""
        return self.store.rows(dataset_id)
