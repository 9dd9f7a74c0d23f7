"""AEP client: IMS OAuth server-to-server token, Batch Ingestion, Catalog, Schema Registry, Identity.

Why hand-written on `requests` rather than `aepp`: we need exact control over three things that decide
whether delivery is exactly-once and whether secrets stay secret.

* Retries. Idempotent calls (file PUT, COMPLETE, ABORT, every GET) are retried with exponential
  backoff + jitter on 429, 5xx and network errors, honouring `Retry-After`. Batch creation
  (`POST /batches`) is **never** retried blindly: a timeout there may have created a batch, so the
  failure goes back to the deliverer, which reconciles by `externalId` through Catalog.
* Tokens. One token per client, cached, refreshed before expiry (10 % of its lifetime, at most
  5 minutes early) and once when the gateway answers 401; a second 401 is an error, not a loop.
  A wrong secret fails on the first IMS answer with a message naming `AEP_CLIENT_SECRET`.
* Messages. Every error is an `AepError` with Adobe's code, message and `x-request-id`, and a fix hint
  naming the variable to change. The client secret and tokens are scrubbed from all of them, and
  neither appears in a repr or a log line (logs carry method, path, status and timing only). No
  `requests`/`urllib3` exception (which may quote a header, the form body or the URL) leaves the
  client: it becomes an `AepError` with every secret masked in every encoding (`stripe_aep.secrets`),
  raised `from None` so the original is not chained to it.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, BinaryIO
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from stripe_aep.aep.errors import AepError, BatchError, FileTooLargeError
from stripe_aep.aep.settings import AepSettings
from stripe_aep.secrets import SecretMasker, describe_exception

IMS_TOKEN_PATH = "/ims/token/v3"
IMPORT = "/data/foundation/import"
CATALOG = "/data/foundation/catalog"
SCHEMA_REGISTRY = "/data/foundation/schemaregistry"
IDENTITY_NAMESPACES = "/data/core/idnamespace/identities"

#: Gateway limit for a single PUT (Adobe: "size threshold of 256MB").
MAX_PUT_BYTES = 256 * 1024 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: failures of the connection itself (refused, reset, timed out, cut mid-answer): retryable
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
XED_ID = "application/vnd.adobe.xed-id+json"
XED_V1 = "application/vnd.adobe.xed+json; version=1"
XDM_DESCRIPTORS = "application/vnd.adobe.xdm+json"

#: Adobe gateway error codes → what to fix (the variable names are the ones in the README).
GATEWAY_HINTS: dict[str, str] = {
    "401013": "the access token was rejected even after a fresh one was fetched. Check that "
    "AEP_CLIENT_ID and AEP_CLIENT_SECRET belong to the same OAuth Server-to-Server credential and "
    "that AEP_IMS_URL and AEP_PLATFORM_URL point to the same Adobe environment",
    "403010": "no access token reached the gateway (a proxy may strip the Authorization header); "
    "check HTTPS proxy settings between this machine and AEP_PLATFORM_URL",
    "403000": "the x-api-key header is missing; AEP_CLIENT_ID must be set to the credential's "
    "Client ID",
    "403003": "the API key is not valid for this gateway; set AEP_CLIENT_ID to the Client ID of the "
    "OAuth Server-to-Server credential whose secret is in AEP_CLIENT_SECRET",
    "400003": "a required header is missing; check that AEP_ORG_ID (x-gw-ims-org-id) and "
    "AEP_SANDBOX (x-sandbox-name) are set",
    "403025": "the credential is not entitled for this organization: check AEP_ORG_ID is the "
    "organization of the credential, and that the Experience Platform API was added to the "
    "Developer Console project with a product profile",
}


def _status_hint(status: int, sandbox: str) -> str | None:
    if status == 401:
        return GATEWAY_HINTS["401013"]
    if status == 403:
        return (
            "the credential lacks permission for this operation in sandbox "
            f"{sandbox!r}: check AEP_SANDBOX, and that the product profile attached to the "
            "Developer Console project grants access to that sandbox (and to datasets/schemas)"
        )
    if status == 429:
        return "AEP is rate limiting this credential; run fewer deliveries concurrently"
    if status == 413:
        return "the request body is too large for the gateway; write smaller XDM files"
    if status >= 500:
        return "AEP is unavailable or overloaded; the call was retried, try again later"
    return None


class BatchState(StrEnum):
    """What a Catalog batch status means for the pipeline."""

    DONE = "done"  # success / active: the data is in the dataset
    FAILED = "failed"  # failed / failure / aborted / abandoned: no data visible
    ALERT = "alert"  # stalled: AEP exhausted its retries; a human should look
    PENDING = "pending"  # anything else: loading, processing, staging, retrying, ...


_DONE = frozenset({"success", "active"})
_FAILED = frozenset({"failed", "failure", "aborted", "abandoned"})
_ALERT = frozenset({"stalled"})


def classify_status(status: str) -> BatchState:
    s = (status or "").lower()
    if s in _DONE:
        return BatchState.DONE
    if s in _FAILED:
        return BatchState.FAILED
    if s in _ALERT:
        return BatchState.ALERT
    return BatchState.PENDING


@dataclass(frozen=True)
class BatchMetrics:
    """Catalog metrics of a batch (present once it reached success/active)."""

    records_read: int | None = None
    records_written: int | None = None
    records_failed: int | None = None
    input_bytes: int | None = None
    input_files: int | None = None


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class BatchStatus:
    """One Catalog batch, reduced to what the deliverer needs."""

    batch_id: str
    status: str
    state: BatchState
    errors: tuple[BatchError, ...] = ()
    metrics: BatchMetrics = BatchMetrics()
    external_id: str | None = None
    dataset_id: str | None = None
    created_ms: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_catalog(cls, batch_id: str, body: Mapping[str, Any]) -> BatchStatus:
        status = str(body.get("status") or "").lower()
        metrics = body.get("metrics") or {}
        errors = tuple(
            BatchError(
                code=str(e.get("code", "")),
                description=str(e.get("description") or e.get("message") or ""),
                record_count=_int_or_none(e.get("recordCount")),
            )
            for e in (body.get("errors") or [])
            if isinstance(e, Mapping)
        )
        dataset_id = next(
            (
                o.get("id")
                for o in body.get("relatedObjects") or []
                if isinstance(o, Mapping) and o.get("type") == "dataSet"
            ),
            None,
        )
        return cls(
            batch_id=batch_id,
            status=status,
            state=classify_status(status),
            errors=errors,
            metrics=BatchMetrics(
                records_read=_int_or_none(metrics.get("inputRecordCount")),
                records_written=_int_or_none(
                    metrics.get("outputRecordCount", body.get("recordCount"))
                ),
                records_failed=_int_or_none(
                    metrics.get("failedRecordCount", body.get("failedRecordCount"))
                ),
                input_bytes=_int_or_none(metrics.get("inputByteSize")),
                input_files=_int_or_none(metrics.get("inputFileCount")),
            ),
            external_id=body.get("externalId"),
            dataset_id=dataset_id,
            created_ms=_int_or_none(body.get("created")),
            raw=dict(body),
        )


@dataclass(frozen=True)
class TokenInfo:
    """What doctor may show about the token: never the token itself."""

    expires_in_s: float


Body = bytes | Callable[[], BinaryIO] | None


class AepClient:
    """A pooled, retrying client for the Adobe Experience Platform APIs stripe-aep uses."""

    def __init__(
        self,
        settings: AepSettings,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10.0, 300.0),
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 120.0,
        pool_size: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self._sleep = sleep
        self._clock = clock
        self.log = log or logging.getLogger("stripe_aep.aep")
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_expires_at = 0.0
        self._token_lock = threading.Lock()
        #: the client secret and every access token this client has received
        self._masker = SecretMasker([settings.client_secret])
        #: counters for metadata / tests: requests sent, retries, token fetches
        self.stats = {"requests": 0, "retries": 0, "token_fetches": 0, "token_refresh_on_401": 0}

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"AepClient(platform_url={s.platform_url!r}, org_id={s.org_id!r}, "
            f"sandbox={s.sandbox!r}, client_id={s.client_id!r})"
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> AepClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- secrets ---------------------------------------------------------------------------

    def scrub(self, text: str | None) -> str | None:
        """Replace the client secret and any token this client has seen (in any encoding) by `***`."""
        if not text:
            return text
        return self._masker.mask(text)

    def _transport_error(self, exc: Exception, method: str, path: str, hint: str) -> AepError:
        return self._error(
            f"{method} {path} could not be sent: {describe_exception(exc, self._masker)}",
            method=method,
            path=path,
            hint=hint,
        )

    def _error(self, message: str, **kw: Any) -> AepError:
        return self._error_of(AepError, message, **kw)

    def _error_of(self, cls: type[AepError], message: str, **kw: Any) -> AepError:
        for key in ("adobe_message", "hint"):
            if kw.get(key):
                kw[key] = self.scrub(kw[key])
        return cls(self.scrub(message) or "", **kw)

    # -- IMS token -------------------------------------------------------------------------

    def token_info(self) -> TokenInfo:
        """Fetch (or reuse) a token and say how long it stays valid — for `doctor`."""
        self._access_token()
        return TokenInfo(expires_in_s=max(0.0, self._token_expires_at - self._clock()))

    def _access_token(self) -> str:
        with self._token_lock:
            if self._token is None or self._clock() >= self._token_refresh_at:
                self._fetch_token_locked()
            assert self._token is not None
            return self._token

    def _fetch_token_locked(self) -> None:
        s = self.settings
        url = s.ims_url + IMS_TOKEN_PATH
        form = {
            "grant_type": "client_credentials",
            "client_id": s.client_id,
            "client_secret": s.client_secret,
            "scope": ",".join(s.scopes),
        }
        attempt = 0
        while True:
            self.stats["requests"] += 1
            self.stats["token_fetches"] += 1
            try:
                resp = self._session.post(url, data=form, timeout=self.timeout)
            except _NETWORK_ERRORS as exc:
                if attempt < self.max_retries:
                    self._backoff("POST", IMS_TOKEN_PATH, attempt, None, type(exc).__name__)
                    attempt += 1
                    continue
                raise self._error(
                    f"cannot reach Adobe IMS at {s.ims_url}: {type(exc).__name__}",
                    method="POST",
                    path=IMS_TOKEN_PATH,
                    hint="check network access to AEP_IMS_URL (proxy, firewall) and its value",
                ) from None
            except Exception as exc:  # may quote the form body (the secret) or the URL
                raise self._transport_error(
                    exc,
                    "POST",
                    IMS_TOKEN_PATH,
                    "check AEP_IMS_URL, AEP_CLIENT_ID and AEP_CLIENT_SECRET for stray characters",
                ) from None
            if resp.status_code == 200:
                break
            if resp.status_code in RETRY_STATUSES and attempt < self.max_retries:
                self._backoff("POST", IMS_TOKEN_PATH, attempt, resp, str(resp.status_code))
                attempt += 1
                continue
            raise self._ims_error(resp)
        try:
            body = resp.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in", 86399))
        except (ValueError, KeyError, TypeError):
            raise self._error(
                "Adobe IMS answered 200 without an access token",
                status=200,
                method="POST",
                path=IMS_TOKEN_PATH,
                hint="check AEP_IMS_URL points to Adobe IMS (https://ims-na1.adobelogin.com)",
            ) from None
        if expires_in > 30 * 86400:  # the retired JWT exchange answered in milliseconds
            expires_in /= 1000.0
        now = self._clock()
        early = min(300.0, 0.1 * expires_in)
        self._token = token
        self._masker.add(token)
        self._token_expires_at = now + expires_in
        self._token_refresh_at = now + expires_in - early
        self.log.debug("AEP: got an IMS access token valid for %.0f s", expires_in)

    def _ims_error(self, resp: requests.Response) -> AepError:
        body = _json_or_none(resp)
        code = description = None
        if isinstance(body, Mapping):
            code = body.get("error") or body.get("error_code")
            description = body.get("error_description") or body.get("message")
        code = str(code) if code else None
        desc = str(description or "").lower()
        if code == "invalid_client":
            if "secret" in desc:
                hint = (
                    "AEP_CLIENT_SECRET is wrong for this client id; copy it again from Developer "
                    "Console > project > OAuth Server-to-Server > Retrieve client secret"
                )
            elif "client_id" in desc or "client id" in desc:
                hint = (
                    "AEP_CLIENT_ID is not a known OAuth Server-to-Server client; copy the Client ID "
                    "from Developer Console > project > Credentials"
                )
            else:
                hint = (
                    "AEP_CLIENT_ID or AEP_CLIENT_SECRET is wrong; copy both from the same OAuth "
                    "Server-to-Server credential in Developer Console"
                )
        elif code == "invalid_scope":
            hint = "AEP_SCOPES lists a scope the credential does not have; copy the credential's scopes"
        elif code in ("unauthorized_client", "invalid_grant", "unsupported_grant_type"):
            hint = (
                "the credential is not an OAuth Server-to-Server credential (JWT credentials are "
                "retired); create one in Developer Console and set AEP_CLIENT_ID/AEP_CLIENT_SECRET"
            )
        else:
            hint = "check AEP_IMS_URL, AEP_CLIENT_ID and AEP_CLIENT_SECRET"
        return self._error(
            "Adobe IMS refused to issue an access token",
            status=resp.status_code,
            code=code,
            adobe_message=str(description) if description else _short_text(resp),
            request_id=resp.headers.get("x-request-id") or resp.headers.get("X-Debug-Id"),
            hint=hint,
            method="POST",
            path=IMS_TOKEN_PATH,
        )

    # -- transport -------------------------------------------------------------------------

    def _backoff(
        self,
        method: str,
        path: str,
        attempt: int,
        resp: requests.Response | None,
        reason: str,
    ) -> None:
        delay = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay = delay / 2 + random.uniform(0, delay / 2)
        retry_after = _retry_after_seconds(resp) if resp is not None else None
        if retry_after is not None:
            delay = min(self.retry_after_max_s, max(retry_after, 0.0))
        self.stats["retries"] += 1
        self.log.warning(
            "AEP %s %s: %s, retry %d/%d in %.1f s",
            method,
            path,
            reason,
            attempt + 1,
            self.max_retries,
            delay,
        )
        self._sleep(delay)

    def request(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        ok: Iterable[int] = (200,),
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        accept: str = "application/json",
        not_found_ok: bool = False,
    ) -> requests.Response | None:
        """One Platform call with the four Adobe headers; retried when `retry` (idempotent).

        A 401 fetches a fresh token and repeats the call once (whatever `retry` says: a 401 is
        answered by the gateway before the call reaches the service). Returns None on 404 when
        `not_found_ok`.
        """
        s = self.settings
        url = s.platform_url + path
        ok_codes = frozenset(ok)
        attempt = 0
        refreshed = False
        while True:
            token = self._access_token()
            hdrs = {
                "Authorization": f"Bearer {token}",
                "x-api-key": s.client_id,
                "x-gw-ims-org-id": s.org_id,
                "x-sandbox-name": s.sandbox,
                "Accept": accept,
            }
            if headers:
                hdrs.update(headers)
            stream = body() if callable(body) else body
            started = time.monotonic()
            self.stats["requests"] += 1
            try:
                resp = self._session.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    data=stream,
                    headers=hdrs,
                    timeout=self.timeout,
                )
            except _NETWORK_ERRORS as exc:
                if retry and attempt < self.max_retries:
                    self._backoff(method, path, attempt, None, type(exc).__name__)
                    attempt += 1
                    continue
                raise self._error(
                    f"network error talking to AEP: {type(exc).__name__}"
                    + ("" if retry else " (not retried: this call is not idempotent)"),
                    method=method,
                    path=path,
                    hint="check network access to AEP_PLATFORM_URL; the call may be run again",
                ) from None
            except Exception as exc:  # InvalidHeader quotes the Authorization value (the token)
                raise self._transport_error(
                    exc,
                    method,
                    path,
                    "check AEP_PLATFORM_URL, AEP_CLIENT_ID, AEP_ORG_ID and AEP_SANDBOX for stray "
                    "characters",
                ) from None
            finally:
                if stream is not None and hasattr(stream, "close"):
                    stream.close()
            self.log.debug(
                "AEP %s %s -> %d (%.0f ms)",
                method,
                path,
                resp.status_code,
                (time.monotonic() - started) * 1000,
            )
            if resp.status_code in ok_codes:
                return resp
            if resp.status_code == 404 and not_found_ok:
                return None
            if resp.status_code == 401 and not refreshed:
                refreshed = True
                self.stats["token_refresh_on_401"] += 1
                self.log.info("AEP %s %s: 401, fetching a fresh token once", method, path)
                with self._token_lock:
                    if self._token == token:
                        self._token = None
                continue
            if retry and resp.status_code in RETRY_STATUSES and attempt < self.max_retries:
                self._backoff(method, path, attempt, resp, f"HTTP {resp.status_code}")
                attempt += 1
                continue
            raise self._platform_error(resp, method, path)

    def _platform_error(self, resp: requests.Response, method: str, path: str) -> AepError:
        body = _json_or_none(resp)
        code = message = None
        if isinstance(body, Mapping):
            code = body.get("error_code") or body.get("code") or body.get("errorCode")
            problem_type = body.get("type")
            if not code and isinstance(problem_type, str) and "/errors/" in problem_type:
                code = problem_type.rstrip("/").rsplit("/", 1)[-1]  # RFC 7807 `type` URI
            message = (
                body.get("message")
                or body.get("detail")
                or body.get("title")
                or body.get("error_description")
                or body.get("error")
            )
        code = str(code) if code is not None else None
        hint = GATEWAY_HINTS.get(code or "") or _status_hint(
            resp.status_code, self.settings.sandbox
        )
        return self._error(
            "AEP call failed",
            status=resp.status_code,
            code=code,
            adobe_message=str(message) if message else _short_text(resp),
            request_id=resp.headers.get("x-request-id"),
            hint=hint,
            method=method,
            path=path,
        )

    # -- Batch Ingestion -------------------------------------------------------------------

    def create_batch(
        self,
        dataset_id: str,
        *,
        external_id: str,
        enable_error_diagnostics: bool = True,
        input_format: str = "parquet",
        tags: Mapping[str, Sequence[str]] | None = None,
    ) -> str:
        """POST /batches → the new batch id. Never retried: reconcile by `external_id` instead."""
        resp = self.request(
            "POST",
            f"{IMPORT}/batches",
            retry=False,
            ok=(200, 201),
            json_body=self.create_batch_body(
                dataset_id,
                external_id=external_id,
                enable_error_diagnostics=enable_error_diagnostics,
                input_format=input_format,
                tags=tags,
            ),
        )
        assert resp is not None
        body = _json_or_none(resp)
        if not isinstance(body, Mapping) or not body.get("id"):
            raise self._error(
                "AEP created a batch but its answer has no batch id",
                status=resp.status_code,
                method="POST",
                path=f"{IMPORT}/batches",
                request_id=resp.headers.get("x-request-id"),
                hint="the next delivery run reconciles it by externalId",
            )
        return str(body["id"])

    @staticmethod
    def create_batch_body(
        dataset_id: str,
        *,
        external_id: str,
        enable_error_diagnostics: bool = True,
        input_format: str = "parquet",
        tags: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "datasetId": dataset_id,
            "inputFormat": {"format": input_format},
            "externalId": external_id,
            "enableErrorDiagnostics": enable_error_diagnostics,
        }
        if tags:  # SPEC-BI IngestBatch.tags: {name: [string, ...]}; Catalog returns them
            body["tags"] = {name: [str(v) for v in values] for name, values in tags.items()}
        return body

    def upload_file(
        self,
        batch_id: str,
        dataset_id: str,
        file_path: str,
        data: bytes | Callable[[], BinaryIO],
        *,
        size: int | None = None,
    ) -> None:
        """PUT one file (≤ 256 MB) into a batch. Idempotent: a retry replaces the same path.

        `data` is the bytes, or a callable opening a fresh stream (called again on each retry).
        """
        n = len(data) if isinstance(data, bytes | bytearray) else size
        path = f"{IMPORT}/batches/{quote(batch_id, safe='')}/datasets/{quote(dataset_id, safe='')}/files/{quote(file_path, safe='/=')}"
        if n is None:
            raise ValueError("upload_file needs size= when data is a stream opener")
        if n > MAX_PUT_BYTES:
            raise self._error_of(
                FileTooLargeError,
                f"{file_path} is {n / 2**20:.1f} MiB; AEP accepts at most 256 MiB per file upload",
                method="PUT",
                path=path,
                hint="write smaller XDM Parquet files (the XDM layer splits output into parts); "
                "large-file chunked upload is being retired by Adobe and is not used",
            )
        if n == 0:
            raise self._error_of(
                FileTooLargeError,
                f"{file_path} is empty; AEP cannot ingest 0-byte files",
                method="PUT",
                path=path,
                hint="re-materialize the XDM partition that wrote it",
            )
        self.request(
            "PUT",
            path,
            retry=True,
            ok=(200, 201),
            body=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def complete_batch(self, batch_id: str) -> None:
        """Signal that all files are uploaded. Safe to repeat (Adobe returns success again)."""
        self.request(
            "POST",
            f"{IMPORT}/batches/{quote(batch_id, safe='')}",
            retry=True,
            params={"action": "COMPLETE"},
        )

    def abort_batch(self, batch_id: str) -> None:
        """Cancel an uncompleted batch (its files are discarded by AEP)."""
        self.request(
            "POST",
            f"{IMPORT}/batches/{quote(batch_id, safe='')}",
            retry=True,
            params={"action": "ABORT"},
        )

    # -- Catalog ---------------------------------------------------------------------------

    def get_batch(self, batch_id: str) -> BatchStatus:
        """Catalog batch lookup; the answer is keyed by batch id."""
        resp = self.request("GET", f"{CATALOG}/batches/{quote(batch_id, safe='')}", retry=True)
        assert resp is not None
        body = _json_or_none(resp)
        if not isinstance(body, Mapping):
            raise self._error("Catalog answered a batch lookup with no JSON object", status=200)
        entry = body.get(batch_id)
        if entry is None and len(body) == 1:  # tolerate a differently-spelled id key
            entry = next(iter(body.values()))
        if not isinstance(entry, Mapping):
            raise self._error(
                f"Catalog has no entry for batch {batch_id}",
                status=resp.status_code,
                request_id=resp.headers.get("x-request-id"),
            )
        return BatchStatus.from_catalog(batch_id, entry)

    def list_batches(
        self,
        *,
        dataset_id: str | None = None,
        external_id: str | None = None,
        status: str | None = None,
        page_size: int = 100,
        max_pages: int = 100,
    ) -> list[BatchStatus]:
        """Catalog batches matching the filters (all pages), newest first."""
        params: dict[str, Any] = {"orderBy": "desc:created", "limit": min(page_size, 100)}
        if dataset_id:
            params["dataSet"] = dataset_id
        if external_id:
            params["externalId"] = external_id
        if status:
            params["status"] = status
        out: dict[str, BatchStatus] = {}
        for page in range(max_pages):
            params["start"] = page * params["limit"]
            resp = self.request("GET", f"{CATALOG}/batches", retry=True, params=params)
            assert resp is not None
            body = _json_or_none(resp) or {}
            new = {
                k: BatchStatus.from_catalog(k, v)
                for k, v in body.items()
                if isinstance(v, Mapping) and k not in out
            }
            out.update(new)
            if len(body) < params["limit"] or not new:
                break
        batches = list(out.values())
        # Catalog filters are authoritative on Adobe's side; re-check so a server that ignores a
        # filter can never make the deliverer adopt somebody else's batch.
        if external_id:
            batches = [b for b in batches if b.external_id == external_id]
        if dataset_id:
            batches = [b for b in batches if b.dataset_id in (None, dataset_id)]
        return batches

    def list_batches_tagged(
        self,
        *,
        dataset_id: str,
        tags: Mapping[str, str],
        page_size: int = 100,
        max_pages: int = 1000,
    ) -> list[BatchStatus]:
        """Every Catalog batch of `dataset_id` whose tags have these exact values, oldest first.

        One filtered listing (`GET /batches?dataSet=…&tags=name:value[,name:value]`, AND between
        tags, Adobe's "Filter Catalog data" page), paged with `start`/`limit` (max 100) in
        `asc:created` order so batches created meanwhile land on later pages instead of shifting
        earlier ones. It never stops silently short: more than `max_pages` pages is an error, since
        a batch left unseen could be delivered again. Values must not contain `,` or `*` (filter
        syntax); the answers are re-checked here, so a server that ignored a filter cannot make the
        caller adopt another dataset's or another group's batch.
        """
        for name, value in tags.items():
            if not name or any(ch in f"{name}{value}" for ch in ",*") or ":" in name or not value:
                raise ValueError(
                    f"tag filter {name}:{value} cannot be expressed in a Catalog query"
                )
        limit = max(1, min(page_size, 100))
        params: dict[str, Any] = {
            "dataSet": dataset_id,
            "tags": ",".join(f"{name}:{value}" for name, value in tags.items()),
            "orderBy": "asc:created",
            "limit": limit,
        }
        out: dict[str, BatchStatus] = {}
        for page in range(max_pages):
            params["start"] = page * limit
            resp = self.request("GET", f"{CATALOG}/batches", retry=True, params=params)
            assert resp is not None
            body = _json_or_none(resp)
            if not isinstance(body, Mapping):
                raise self._error(
                    "Catalog answered a batch listing with no JSON object",
                    status=resp.status_code,
                    method="GET",
                    path=f"{CATALOG}/batches",
                    request_id=resp.headers.get("x-request-id"),
                )
            for batch_id, entry in body.items():
                if isinstance(entry, Mapping) and batch_id not in out:
                    out[batch_id] = BatchStatus.from_catalog(batch_id, entry)
            if len(body) < limit:
                break
        else:
            raise self._error(
                f"Catalog lists more than {max_pages * limit} batches of dataset {dataset_id} "
                f"tagged {params['tags']}; refusing to decide on a partial listing",
                method="GET",
                path=f"{CATALOG}/batches",
                hint="look at the dataset's batches in AEP > Monitoring; this many batches for "
                "one group points at a runaway delivery",
            )

        def tagged(b: BatchStatus) -> bool:
            have = b.raw.get("tags") if isinstance(b.raw.get("tags"), Mapping) else {}
            return (
                all(isinstance(have.get(n), list) and v in have[n] for n, v in tags.items())
                and b.dataset_id == dataset_id
            )

        return sorted(
            (b for b in out.values() if tagged(b)), key=lambda b: (b.created_ms or 0, b.batch_id)
        )

    def get_dataset(self, dataset_id: str) -> dict[str, Any] | None:
        """The dataset (with an `id` key added), or None when it does not exist."""
        resp = self.request(
            "GET", f"{CATALOG}/dataSets/{quote(dataset_id, safe='')}", retry=True, not_found_ok=True
        )
        if resp is None:
            return None
        body = _json_or_none(resp) or {}
        entry = body.get(dataset_id)
        if entry is None and len(body) == 1:
            dataset_id, entry = next(iter(body.items()))
        return {**entry, "id": dataset_id} if isinstance(entry, Mapping) else None

    def find_dataset_by_name(self, name: str) -> dict[str, Any] | None:
        """The dataset with exactly this name (with `id` added), or None."""
        resp = self.request(
            "GET", f"{CATALOG}/dataSets", retry=True, params={"name": name, "limit": 100}
        )
        assert resp is not None
        body = _json_or_none(resp) or {}
        matches = [
            {**v, "id": k}
            for k, v in body.items()
            if isinstance(v, Mapping) and v.get("name") == name
        ]
        if len(matches) > 1:
            ids = ", ".join(m["id"] for m in matches)
            raise self._error(
                f"{len(matches)} datasets are named {name!r} ({ids})",
                hint="set AEP_DATASET_<RESOURCE> to the one to use, or rename the others",
            )
        return matches[0] if matches else None

    def create_dataset(self, body: Mapping[str, Any]) -> str:
        """POST /dataSets → the new dataset id (Adobe answers `["@/dataSets/<id>"]`)."""
        resp = self.request(
            "POST", f"{CATALOG}/dataSets", retry=False, ok=(200, 201), json_body=dict(body)
        )
        assert resp is not None
        answer = _json_or_none(resp)
        if isinstance(answer, list) and answer and isinstance(answer[0], str):
            return answer[0].rsplit("/", 1)[-1]
        raise self._error(
            "Catalog created a dataset but did not return its id",
            status=resp.status_code,
            request_id=resp.headers.get("x-request-id"),
        )

    # -- Schema Registry -------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """GET /stats: `tenantId`, `imsOrg` and resource counts."""
        resp = self.request("GET", f"{SCHEMA_REGISTRY}/stats", retry=True)
        assert resp is not None
        return _json_or_none(resp) or {}

    def list_tenant_resources(self, kind: str) -> list[dict[str, Any]]:
        """Summaries (`$id`, `meta:altId`, `title`, `version`) of tenant `fieldgroups` or `schemas`."""
        if kind not in ("fieldgroups", "schemas", "classes", "datatypes"):
            raise ValueError(f"unknown Schema Registry resource kind {kind!r}")
        path = f"{SCHEMA_REGISTRY}/tenant/{kind}"
        params: dict[str, Any] | None = {"limit": 500, "orderby": "title"}
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(100):
            resp = self.request("GET", path, retry=True, params=params, accept=XED_ID)
            assert resp is not None
            body = _json_or_none(resp) or {}
            page = [r for r in body.get("results") or [] if isinstance(r, Mapping)]
            fresh = [r for r in page if r.get("$id") not in seen]
            results.extend(dict(r) for r in fresh)
            seen.update(str(r.get("$id")) for r in fresh)
            nxt = (body.get("_links") or {}).get("next")
            if isinstance(nxt, Mapping):  # Adobe: {"href": ...}; some answers give the URL itself
                nxt = nxt.get("href")
            if not nxt or not fresh:
                break
            path, params = self._relative(nxt), None
        return results

    def _create_sr(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        resp = self.request(
            "POST",
            f"{SCHEMA_REGISTRY}/tenant/{kind}",
            retry=False,
            ok=(200, 201),
            json_body=dict(body),
        )
        assert resp is not None
        return _json_or_none(resp) or {}

    def create_tenant_resource(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a tenant `classes`, `fieldgroups` or `schemas` resource; returns it (with `$id`)."""
        if kind not in ("classes", "fieldgroups", "schemas"):
            raise ValueError(f"cannot create Schema Registry resource kind {kind!r}")
        return self._create_sr(kind, body)

    def create_field_group(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._create_sr("fieldgroups", body)

    def create_schema(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._create_sr("schemas", body)

    def get_schema(self, schema_id: str) -> dict[str, Any] | None:
        resp = self.request(
            "GET",
            f"{SCHEMA_REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}",
            retry=True,
            accept=XED_V1,
            not_found_ok=True,
        )
        return None if resp is None else (_json_or_none(resp) or {})

    def get_field_group(self, field_group_id: str) -> dict[str, Any] | None:
        """The whole tenant field group (its `definitions`), None if it does not exist."""
        resp = self.request(
            "GET",
            f"{SCHEMA_REGISTRY}/tenant/fieldgroups/{quote(field_group_id, safe='')}",
            retry=True,
            accept=XED_V1,
            not_found_ok=True,
        )
        return None if resp is None else (_json_or_none(resp) or {})

    def patch_field_group(self, field_group_id: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """JSON Patch a tenant field group (Schema Registry `patchFieldGroup`)."""
        resp = self.request(
            "PATCH",
            f"{SCHEMA_REGISTRY}/tenant/fieldgroups/{quote(field_group_id, safe='')}",
            retry=False,
            json_body=ops,
        )
        assert resp is not None
        return _json_or_none(resp) or {}

    def patch_schema(self, schema_id: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        resp = self.request(
            "PATCH",
            f"{SCHEMA_REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}",
            retry=False,
            json_body=ops,
        )
        assert resp is not None
        return _json_or_none(resp) or {}

    def list_descriptors(self) -> list[dict[str, Any]]:
        """All tenant descriptors (Adobe groups them by `@type`; flattened here)."""
        resp = self.request(
            "GET", f"{SCHEMA_REGISTRY}/tenant/descriptors", retry=True, accept=XDM_DESCRIPTORS
        )
        assert resp is not None
        body = _json_or_none(resp)
        if isinstance(body, list):
            return [dict(d) for d in body if isinstance(d, Mapping)]
        out: list[dict[str, Any]] = []
        if isinstance(body, Mapping):
            groups = body.get("results") if isinstance(body.get("results"), list) else None
            if groups is not None:
                return [dict(d) for d in groups if isinstance(d, Mapping)]
            for group in body.values():
                if isinstance(group, list):
                    out.extend(dict(d) for d in group if isinstance(d, Mapping))
        return out

    def create_descriptor(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._create_sr("descriptors", body)

    # -- Identity Service ------------------------------------------------------------------

    def list_identity_namespaces(self) -> list[dict[str, Any]]:
        resp = self.request("GET", IDENTITY_NAMESPACES, retry=True)
        assert resp is not None
        body = _json_or_none(resp)
        if isinstance(body, Mapping):  # tolerate a wrapped list
            body = body.get("results") or body.get("namespaces") or []
        return [dict(n) for n in body or [] if isinstance(n, Mapping)]

    def create_identity_namespace(self, body: Mapping[str, Any]) -> dict[str, Any]:
        resp = self.request(
            "POST", IDENTITY_NAMESPACES, retry=False, ok=(200, 201), json_body=dict(body)
        )
        assert resp is not None
        return _json_or_none(resp) or {}

    # -- helpers ---------------------------------------------------------------------------

    def _relative(self, href: str) -> str:
        base = self.settings.platform_url
        if href.startswith(base):
            return href[len(base) :]
        if href.startswith("http://") or href.startswith("https://"):
            # another host than the configured gateway: keep only the path + query
            rest = href.split("://", 1)[1]
            return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        if href.startswith("/data/"):
            return href
        return f"{SCHEMA_REGISTRY}/{href.lstrip('/')}"


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _short_text(resp: requests.Response) -> str | None:
    text = (resp.text or "").strip()
    return text[:300] if text else None


def _retry_after_seconds(resp: requests.Response) -> float | None:
    raw = resp.headers.get("Retry-After")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
