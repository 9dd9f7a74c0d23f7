"""A tiny scripted stand-in for Adobe IMS + the Platform gateway, for client edge cases.

Why next to the real emulator: some client behaviours (a `Retry-After` header, a specific gateway
error code, a token that is never accepted) are easier to provoke with a script than with emulator
faults. Every request is logged with its headers so tests can assert what was sent.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stripe_aep.emulators._server import BackgroundServer

SECRET = "s3cr3t-FAKE-client-secret-value"
CLIENT_ID = "fake-client-id"
ORG_ID = "ABCDEF0123456789ABCDEF01@AdobeOrg"


@dataclass
class Logged:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body_len: int


@dataclass
class FakeGateway:
    expires_in: int = 86399
    reject_all_tokens: bool = False
    requests: list[Logged] = field(default_factory=list)
    #: (method, path) → list of (status, json body, headers) served before the default answer
    script: dict[tuple[str, str], list[tuple[int, Any, dict[str, str]]]] = field(
        default_factory=dict
    )
    _valid: set[str] = field(default_factory=set)
    _n: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def expire_all_tokens(self) -> None:
        with self._lock:
            self._valid.clear()

    def add(self, method: str, path: str, status: int, body: Any = None, headers=None) -> None:
        self.script.setdefault((method, path), []).append((status, body, headers or {}))

    def count(self, method: str, path: str | None = None) -> int:
        return sum(
            1 for r in self.requests if r.method == method and (path is None or r.path == path)
        )

    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        self.requests.append(Logged("POST", request.url.path, "", dict(request.headers), 0))
        if form.get("client_id") != CLIENT_ID:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "invalid client_id parameter"},
                status_code=400,
            )
        if form.get("client_secret") != SECRET:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "invalid client_secret parameter"},
                status_code=401,
            )
        with self._lock:
            self._n += 1
            token = f"eyFAKE-token-{self._n}-abcdefghijklmnop"
            self._valid.add(token)
        return JSONResponse(
            {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in}
        )

    async def platform(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(
            Logged(
                request.method,
                request.url.path,
                request.url.query,
                dict(request.headers),
                len(body),
            )
        )
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        if self.reject_all_tokens or token not in self._valid:
            return JSONResponse(
                {"error_code": "401013", "message": "Oauth token is not valid"}, status_code=401
            )
        queue = self.script.get((request.method, request.url.path))
        if queue:
            status, payload, headers = queue.pop(0)
            headers = {"x-request-id": "req-fake-123", **headers}
            if payload is None:
                return Response(status_code=status, headers=headers)
            return JSONResponse(payload, status_code=status, headers=headers)
        return JSONResponse({}, status_code=200)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/ims/token/v3", self.token, methods=["POST"]),
                Route(
                    "/{path:path}",
                    self.platform,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                ),
            ]
        )

    def serve(self) -> BackgroundServer:
        return BackgroundServer(self.app())
