"""`stripe-aep doctor` for the AEP side: is every prerequisite of a delivery in place?

Why: the first contact with a real AEP organization usually fails on configuration (a secret from
another credential, a product profile without the sandbox, a tenant id with its underscore, setup
never run). Each check names exactly what is missing and how to fix it, so the operator does not
have to read an Adobe gateway error. Checks stop early when a prerequisite fails (no token → no
Platform checks) and never print a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.errors import AepError, ConfigError
from stripe_aep.aep.setup import IDENTITY_NAMESPACE, dataset_env_var, resolve_dataset_id


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def __str__(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        fix = f"\n      fix: {self.fix}" if self.fix and not self.ok else ""
        return f"[{mark}] {self.name}: {self.detail}{fix}"


def _failed(name: str, exc: AepError | ConfigError) -> Check:
    if isinstance(exc, AepError):
        return Check(
            name,
            False,
            exc.message + (f" ({exc.adobe_message})" if exc.adobe_message else ""),
            exc.hint,
        )
    return Check(name, False, str(exc), None)


def doctor_aep(
    client: AepClient,
    *,
    tenant: str | None,
    resources: Sequence[str],
    environ: Mapping[str, str] | None = None,
    dataset_names: Mapping[str, str] | None = None,
) -> list[Check]:
    """Token, org/sandbox access, tenant id, identity namespace, one dataset per resource."""
    s = client.settings
    checks: list[Check] = []
    try:
        info = client.token_info()
        checks.append(
            Check(
                "AEP token",
                True,
                f"IMS issued a token for client {s.client_id} (valid {info.expires_in_s / 3600:.1f} h)",
            )
        )
    except AepError as exc:
        checks.append(_failed("AEP token", exc))
        checks.append(Check("AEP access", False, "skipped: no access token", "fix the token first"))
        return checks

    try:
        stats = client.get_stats()
        checks.append(
            Check(
                "AEP access",
                True,
                f"organization {s.org_id}, sandbox {s.sandbox!r} reachable (Schema Registry)",
            )
        )
    except AepError as exc:
        checks.append(_failed("AEP access", exc))
        return checks

    actual = str(stats.get("tenantId") or "").lstrip("_")
    if not tenant:
        checks.append(
            Check(
                "AEP tenant id",
                False,
                f"AEP_TENANT_ID is not set; this organization's tenant id is {actual!r}",
                f"Set AEP_TENANT_ID={actual}",
            )
        )
    elif actual and actual != tenant.lstrip("_"):
        checks.append(
            Check(
                "AEP tenant id",
                False,
                f"AEP_TENANT_ID is {tenant!r} but the organization's tenant id is {actual!r}",
                f"Set AEP_TENANT_ID={actual}",
            )
        )
    else:
        checks.append(Check("AEP tenant id", True, f"{tenant} (custom fields under _{tenant})"))

    try:
        codes = {str(n.get("code", "")).lower() for n in client.list_identity_namespaces()}
        code = IDENTITY_NAMESPACE["code"]
        if code.lower() in codes:
            checks.append(Check("AEP identity namespace", True, f"{code} exists"))
        else:
            checks.append(
                Check(
                    "AEP identity namespace",
                    False,
                    f"namespace {code} does not exist in sandbox {s.sandbox!r}",
                    "Run `stripe-aep setup`",
                )
            )
    except AepError as exc:
        checks.append(_failed("AEP identity namespace", exc))

    for resource in resources:
        name = f"AEP dataset {resource}"
        try:
            dataset_id = resolve_dataset_id(
                client,
                resource,
                environ,
                dataset_name=(dataset_names or {}).get(resource),
            )
        except ConfigError as exc:
            checks.append(
                Check(
                    name,
                    False,
                    f"no dataset: {exc}",
                    f"Run `stripe-aep setup`, or set {dataset_env_var(resource)}",
                )
            )
            continue
        except AepError as exc:
            checks.append(_failed(name, exc))
            continue
        checks.append(Check(name, True, f"dataset {dataset_id}"))
    return checks
