"""A small in-memory Stripe for the events tests where the emulator cannot set the scene (it cannot
create a new customer on demand, for instance).

Serves `GET /v1/<resource>` and `GET /v1/events` the way Stripe documents them and the client relies
upon: newest first, `created[gte|lt]`, `limit`, `starting_after`, `types[]` (at most 20, else 400
like Stripe), the hidden-default filters ignored (every object is returned for each pass, the client
de-duplicates); `GET /v1/account`. Every request is logged, so tests count what a run cost.
Objects and events are plain dicts the test adds with `add` / `add_event`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stripe_aep.emulators._server import BackgroundServer


@dataclass
class FakeStripe:
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    log: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.objects.setdefault(resource, []).append(obj)
        return obj

    def add_event(self, event_type: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
        n = len(self.objects.get("events", []))
        return self.add(
            "events",
            {
                "id": f"evt_{n:06d}",
                "object": "event",
                "type": event_type,
                "created": created,
                "api_version": "2026-07-29.dahlia",
                "data": {"object": json.loads(json.dumps(obj))},
            },
        )

    def paths(self) -> list[str]:
        return [p for p, _ in self.log if p.startswith("/v1/")]

    async def _list(self, request: Request):
        resource = request.path_params["resource"]
        query: dict[str, list[str]] = {}
        for k, v in request.query_params.multi_items():
            query.setdefault(k, []).append(v)
        self.log.append((request.url.path, query))
        if resource == "account":
            return JSONResponse({"id": "acct_fake", "object": "account"})
        types = query.get("types[]")
        if types is not None and len(types) > 20:
            return JSONResponse(
                {"error": {"type": "invalid_request_error", "message": "types: at most 20"}},
                status_code=400,
            )
        gte = int(query.get("created[gte]", ["0"])[0])
        lt = int(query.get("created[lt]", [str(1 << 40)])[0])
        limit = int(query.get("limit", ["10"])[0])
        with self._lock:
            rows = [
                o
                for o in self.objects.get(resource, [])
                if gte <= o["created"] < lt and (types is None or o.get("type") in types)
            ]
        rows.sort(key=lambda o: (-o["created"], o["id"]))
        after = query.get("starting_after", [None])[0]
        if after is not None:
            ids = [o["id"] for o in rows]
            rows = rows[ids.index(after) + 1 :]
        page = rows[:limit]
        return JSONResponse(
            {
                "object": "list",
                "data": page,
                "has_more": len(rows) > limit,
                "url": f"/v1/{resource}",
            },
            headers={"Request-Id": f"req_fake{len(self.log)}"},
        )

    def serve(self) -> BackgroundServer:
        app = Starlette(routes=[Route("/v1/{resource}", self._list, methods=["GET"])])
        return BackgroundServer(app)  # use as a context manager
