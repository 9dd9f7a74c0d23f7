"""Errors of the AEP layer: each says what went wrong, what Adobe said, and what to change.

Why a small hierarchy instead of bare `requests` exceptions: the pipeline surfaces these messages in
the Dagster UI, where the reader is an operator, not a developer. An `AepError` carries the HTTP
status, Adobe's own error code and message, the request id Adobe support asks for, and a fix hint
that names the setting to change (`AEP_CLIENT_SECRET`, `AEP_ORG_ID`, ...). Secrets (the client secret,
access tokens) are scrubbed from every message by the client before an error is raised.

`ConfigError` is the project-wide one from `stripe_aep.config` (re-exported here), so a missing
`AEP_*` variable looks exactly like a missing `STRIPE_*` one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stripe_aep.config import ConfigError

__all__ = [
    "AepBatchFailed",
    "AepError",
    "BatchError",
    "ConfigError",
    "DeliveryLockTimeout",
    "FileTooLargeError",
]


class AepError(Exception):
    """A Platform or IMS call failed (after retries, when the call was retryable)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        adobe_message: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.adobe_message = adobe_message
        self.request_id = request_id
        self.hint = hint
        self.method = method
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.message]
        if self.method and self.path:
            parts.append(f"({self.method} {self.path}")
            parts[-1] += f" -> HTTP {self.status})" if self.status is not None else ")"
        elif self.status is not None:
            parts.append(f"(HTTP {self.status})")
        if self.code or self.adobe_message:
            said = ": ".join(p for p in (self.code, self.adobe_message) if p)
            parts.append(f"Adobe said: {said}.")
        if self.hint:
            parts.append(f"Fix: {self.hint}")
        if self.request_id:
            parts.append(f"[x-request-id {self.request_id}]")
        return " ".join(parts)


class FileTooLargeError(AepError):
    """A file is larger than the 256 MB a single PUT accepts (or is empty)."""


class DeliveryLockTimeout(AepError):
    """Another delivery to the same dataset held the ledger lock for too long."""

    @classmethod
    def for_dataset(cls, dataset_id: str, timeout_s: float) -> DeliveryLockTimeout:
        return cls(
            f"another delivery to dataset {dataset_id} has been running for over {timeout_s:.0f} s",
            hint="wait for it to finish (see running Dagster runs of aep/*), then run again",
        )


@dataclass(frozen=True)
class BatchError:
    """One entry of a Catalog batch's `errors[]`: Adobe's code, description and affected rows."""

    code: str
    description: str
    record_count: int | None = None

    def __str__(self) -> str:
        rows = f" ({self.record_count} records)" if self.record_count is not None else ""
        return f"{self.code}: {self.description}{rows}"


class AepBatchFailed(Exception):
    """AEP finished one or more batches with a failure status; carries Adobe's codes and messages.

    The ledger has already recorded the failure when this is raised, so the batch's files are
    deliverable again: fix the cause (schema, data), then run the delivery again — nothing is doubled.
    """

    def __init__(self, failures: Sequence[tuple[str, str, Sequence[BatchError]]], report=None):
        #: (batch id, Catalog status, errors) per failed batch
        self.failures = [(b, s, list(e)) for b, s, e in failures]
        #: the DeliveryReport of the run that found the failures (None when raised elsewhere)
        self.report = report
        lines = []
        for batch_id, status, errors in self.failures:
            detail = "; ".join(str(e) for e in errors) or "no error details in Catalog"
            lines.append(f"batch {batch_id} {status}: {detail}")
        super().__init__(
            f"AEP rejected {len(self.failures)} batch(es): "
            + " | ".join(lines)
            + ". The files of these batches will be sent again by the next delivery run; fix the "
            "cause first (see the batch in AEP > Monitoring > Dataflows, or GET "
            "/data/foundation/export/batches/<id>/failed for the row errors)."
        )
