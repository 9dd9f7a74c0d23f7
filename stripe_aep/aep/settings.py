"""AEP settings from the environment, validated once, with errors that name the variable.

Why here and not in each caller: the same credentials serve delivery, setup and doctor, and a typo
(an org id without `@AdobeOrg`, a tenant id with its leading underscore) should fail at start with a
message that says which variable to fix, not as an opaque 403 from Adobe's gateway an hour later.
The client secret is excluded from the repr and from every message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from stripe_aep.aep.errors import ConfigError
from stripe_aep.config import check_http_url, check_tenant, check_text, redact_key

DEFAULT_IMS_URL = "https://ims-na1.adobelogin.com"
DEFAULT_PLATFORM_URL = "https://platform.adobe.io"
DEFAULT_SANDBOX = "prod"
#: The scope set Adobe's Developer Console shows for Experience Platform API credentials.
DEFAULT_SCOPES: tuple[str, ...] = (
    "openid",
    "session",
    "AdobeID",
    "read_organizations",
    "additional_info.projectedProductContext",
)

_ORG_RE = re.compile(r"[A-Za-z0-9]+@AdobeOrg")
_SANDBOX_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
_SCOPE_RE = re.compile(r"[A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class AepSettings:
    """Credentials and addresses for Adobe IMS and the Platform gateway."""

    client_id: str
    client_secret: str = field(repr=False)
    org_id: str
    sandbox: str = DEFAULT_SANDBOX
    tenant_id: str | None = None
    ims_url: str = DEFAULT_IMS_URL
    platform_url: str = DEFAULT_PLATFORM_URL
    scopes: tuple[str, ...] = DEFAULT_SCOPES

    def __post_init__(self) -> None:
        # Strict: whitespace or a control character in a credential is refused, never stripped
        # silently (a newline in a header value makes `requests` raise an error that quotes it).
        if not self.client_id:
            raise ConfigError(
                "AEP_CLIENT_ID",
                "not set",
                "Set it to the Client ID of your OAuth Server-to-Server credential (Adobe Developer "
                "Console > project > Credentials); for a local run leave all AEP_* unset to use the "
                "emulator",
            )
        check_text("AEP_CLIENT_ID", self.client_id, secret=True)
        if not self.client_secret:
            raise ConfigError(
                "AEP_CLIENT_SECRET",
                "not set",
                "Set it to the client secret of the same OAuth Server-to-Server credential "
                "(Developer Console > Credentials > Retrieve client secret)",
            )
        check_text(
            "AEP_CLIENT_SECRET",
            self.client_secret,
            secret=True,
            fix=f"Remove it: the client secret ({redact_key(self.client_secret)}) must be set "
            "exactly as Developer Console shows it, without whitespace or control characters (a "
            "final newline usually comes from `echo` or a file; use `printf %s`)",
        )
        if not self.org_id:
            raise ConfigError(
                "AEP_ORG_ID",
                "not set",
                "Use the Organization ID shown on the credential, e.g. "
                "5C1328435BF324E90A49402A@AdobeOrg (it ends with @AdobeOrg)",
            )
        check_text("AEP_ORG_ID", self.org_id, secret=True)
        if not _ORG_RE.fullmatch(self.org_id):
            raise ConfigError(
                "AEP_ORG_ID",
                f"{self.org_id!r} is not an IMS organization id",
                "Use the Organization ID shown on the credential, e.g. "
                "5C1328435BF324E90A49402A@AdobeOrg (it ends with @AdobeOrg)",
            )
        check_text("AEP_SANDBOX", self.sandbox or "", secret=False)
        if not _SANDBOX_RE.fullmatch(self.sandbox or ""):
            raise ConfigError(
                "AEP_SANDBOX",
                f"{self.sandbox!r} is not a sandbox name",
                "Use the sandbox's technical name, all lowercase (e.g. prod, dev-stripe); it is "
                "shown in AEP > Sandboxes",
            )
        if self.tenant_id is not None:
            check_tenant(self.tenant_id)
        for name, url, example in (
            ("AEP_IMS_URL", self.ims_url, DEFAULT_IMS_URL),
            ("AEP_PLATFORM_URL", self.platform_url, DEFAULT_PLATFORM_URL),
        ):
            check_http_url(name, url or "", example)
        for scope in self.scopes:
            check_text("AEP_SCOPES", scope, secret=False)
        if not self.scopes or not all(_SCOPE_RE.fullmatch(s) for s in self.scopes):
            raise ConfigError(
                "AEP_SCOPES",
                f"{','.join(self.scopes)!r} is not a comma-separated scope list",
                "Copy the scopes shown on the credential in Developer Console, or leave AEP_SCOPES "
                "unset for the Experience Platform default",
            )

    def __repr__(self) -> str:  # explicit so a future field can never leak the secret by default
        return (
            f"AepSettings(client_id={self.client_id!r}, org_id={self.org_id!r}, "
            f"sandbox={self.sandbox!r}, tenant_id={self.tenant_id!r}, ims_url={self.ims_url!r}, "
            f"platform_url={self.platform_url!r})"
        )

    @classmethod
    def build(
        cls,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        org_id: str | None = None,
        sandbox: str | None = None,
        tenant_id: str | None = None,
        ims_url: str | None = None,
        platform_url: str | None = None,
        scopes: str | None = None,
    ) -> AepSettings:
        """Validate raw values (from the environment or the AEP resource's fields): None or blank
        means unset; anything else is taken as is, so validation sees a stray newline. A missing or
        malformed one raises `ConfigError` naming its variable."""

        def given(value: str | None) -> str | None:
            return value if value and value.strip() else None

        scopes_raw = given(scopes)
        parsed_scopes = (
            # spaces around the commas are fine ("openid, AdobeID"); inside a scope they are not
            tuple(s.strip(" ") for s in scopes_raw.split(",") if s.strip())
            if scopes_raw
            else DEFAULT_SCOPES
        )
        return cls(
            client_id=given(client_id) or "",
            client_secret=given(client_secret) or "",
            org_id=given(org_id) or "",
            sandbox=given(sandbox) or DEFAULT_SANDBOX,
            tenant_id=given(tenant_id),
            ims_url=(given(ims_url) or DEFAULT_IMS_URL).rstrip("/"),
            platform_url=(given(platform_url) or DEFAULT_PLATFORM_URL).rstrip("/"),
            scopes=parsed_scopes,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AepSettings:
        """Read `AEP_*` variables (the command line's path; Dagster's resources pass their fields
        to `build`)."""
        env = os.environ if environ is None else environ
        return cls.build(
            client_id=env.get("AEP_CLIENT_ID"),
            client_secret=env.get("AEP_CLIENT_SECRET"),
            org_id=env.get("AEP_ORG_ID"),
            sandbox=env.get("AEP_SANDBOX"),
            tenant_id=env.get("AEP_TENANT_ID"),
            ims_url=env.get("AEP_IMS_URL"),
            platform_url=env.get("AEP_PLATFORM_URL"),
            scopes=env.get("AEP_SCOPES"),
        )
