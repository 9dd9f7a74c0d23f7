"""Dagster resources: thin, configurable wrappers that build the plain-Python clients.

Secrets come in through `dg.EnvVar`, so they are resolved at run start and never stored in run config or
shown in the UI. Every resource validates its settings when first used, which each asset does before its
first API call: a bad value — a key with a stray newline, `STRIPE_MAX_RPS=nan`, a data folder that is a
file — fails the step with a `ConfigError` naming the variable and the fix. (Not in
`setup_for_execution`: Dagster wraps an error raised there in "Error executing resource_fn on
ResourceDefinition …", which pushes the message that names the variable down into the cause.)
"""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field, PrivateAttr

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.settings import AepSettings
from stripe_aep.config import (
    DEFAULT_STRIPE_API_BASE,
    DEFAULT_STRIPE_API_VERSION,
    ConfigError,
    StripeRateSettings,
    StripeSettings,
    check_data_dir,
    check_text,
)
from stripe_aep.lake import Lake
from stripe_aep.stripe.client import StripeClient


class StripeResource(dg.ConfigurableResource):
    """The Stripe account to read (key, base URL, pinned version, rate budget)."""

    api_key: str = Field(description="STRIPE_API_KEY (secret; pass as dg.EnvVar)")
    api_base: str = Field(default="", description=f"default {DEFAULT_STRIPE_API_BASE}")
    api_version: str = Field(default="", description=f"default {DEFAULT_STRIPE_API_VERSION}")
    account: str = ""
    max_rps: str = ""
    visibility_lag_seconds: str = ""
    concurrency: str = ""

    def settings(self) -> StripeSettings:
        """Explicit values win; blank ones fall back to the environment variable of the same name."""
        env = os.environ
        return StripeSettings.build(
            api_key=self.api_key,
            api_base=self.api_base or env.get("STRIPE_API_BASE"),
            api_version=self.api_version or env.get("STRIPE_API_VERSION"),
            account=self.account or env.get("STRIPE_ACCOUNT"),
            max_rps=self.max_rps or env.get("STRIPE_MAX_RPS"),
            visibility_lag_seconds=self.visibility_lag_seconds
            or env.get("STRIPE_VISIBILITY_LAG_SECONDS"),
            concurrency=self.concurrency or env.get("STRIPE_CONCURRENCY"),
            rates=StripeRateSettings.from_env(env),
        )

    def client(self) -> StripeClient:
        return StripeClient(self.settings())


class LakeResource(dg.ConfigurableResource):
    """Root of the local lake (`STRIPE_AEP_DATA_DIR`): a folder, or an s3:// / gs:// URI."""

    root: str = "data"
    _lake: Lake | None = PrivateAttr(default=None)

    def lake(self) -> Lake:
        """The lake, its folder checked on first use (which every asset does before its first API
        call): a folder that is a file or cannot be written fails here, naming the variable."""
        if self._lake is None:
            check_data_dir(self.root)
            self._lake = Lake(self.root)
        return self._lake


class XdmResource(dg.ConfigurableResource):
    """The AEP tenant namespace (`AEP_TENANT_ID`, no leading underscore) the XDM rows are built for."""

    tenant: str

    def tenant_id(self) -> str:
        from stripe_aep.xdm import validate_tenant

        tenant = self.tenant or ""
        if not tenant.strip():
            raise ConfigError(
                "AEP_TENANT_ID",
                "not set",
                "Set it to your AEP tenant id without the leading underscore (GET /stats on the "
                "Schema Registry shows it); the local emulator uses `stripeaep`",
            )
        check_text("AEP_TENANT_ID", tenant, secret=False)
        try:
            validate_tenant(tenant)
        except ValueError as exc:
            raise ConfigError(
                "AEP_TENANT_ID", str(exc), "Use lowercase letters and digits"
            ) from None
        return tenant


class AepResource(dg.ConfigurableResource):
    """Adobe credentials and addresses. Secrets arrive through `dg.EnvVar`; blanks fall back to the
    environment variable of the same name."""

    client_id: str = ""
    client_secret: str = ""
    org_id: str = ""
    sandbox: str = ""
    tenant: str = ""
    ims_url: str = ""
    platform_url: str = ""

    def settings(self) -> AepSettings:
        env = dict(os.environ)
        for name, value in (
            ("AEP_CLIENT_ID", self.client_id),
            ("AEP_CLIENT_SECRET", self.client_secret),
            ("AEP_ORG_ID", self.org_id),
            ("AEP_SANDBOX", self.sandbox),
            ("AEP_TENANT_ID", self.tenant),
            ("AEP_IMS_URL", self.ims_url),
            ("AEP_PLATFORM_URL", self.platform_url),
        ):
            if value:
                env[name] = value
        return AepSettings.from_env(env)

    def client(self) -> AepClient:
        return AepClient(self.settings())
