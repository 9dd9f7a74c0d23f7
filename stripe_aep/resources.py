"""Dagster resources: thin, configurable wrappers that build the plain-Python clients.

Each setting is a typed field (`str`, `int`, `float`, all optional with the builder's default) whose
description names its environment variable. The code location (`definitions.resources_from_env`) feeds
every field from its variable, the way Dagster's own examples do: `dg.EnvVar` for strings and secrets,
`dg.EnvVar.int` for whole numbers, resolved at run start and never stored in run config or shown in
the UI; Dagster's `EnvVar` has no float form, so the few float settings are read (and bounded) when the
code location loads. Nothing here reads `os.environ`: a resource built in a test or in `make demo`
holds exactly the values it was given.

The fields are only typed here; the rules (bounds, shapes, "not set") live once, in the builders of
`stripe_aep.config` and `stripe_aep.aep.settings`, which the command line uses too. Every resource
runs them when first used, which each asset does before its first API call: a bad value — a key with
a stray newline, `STRIPE_MAX_RPS=nan`, a data folder that is a file — fails the step with a
`ConfigError` naming the variable and the fix. (Not in `setup_for_execution`: Dagster wraps an error
raised there in "Error executing resource_fn on ResourceDefinition …", which pushes the message that
names the variable down into the cause.)

The AEP tenant is configured once, on `XdmResource`: it names the XDM fields (`_<tenant>.…`) of every
row, while delivery addresses datasets by id or by a name that does not contain it, so `AepResource`
has no tenant and the XDM steps need no Adobe credential.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.settings import DEFAULT_IMS_URL, DEFAULT_PLATFORM_URL, AepSettings
from stripe_aep.config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DATA_DIR,
    DEFAULT_STRIPE_API_BASE,
    DEFAULT_STRIPE_API_VERSION,
    DEFAULT_VISIBILITY_LAG_SECONDS,
    StripeRateSettings,
    StripeSettings,
    check_data_dir,
    check_tenant,
)
from stripe_aep.lake import Lake
from stripe_aep.stripe.client import StripeClient


class StripeResource(dg.ConfigurableResource):
    """The Stripe account to read (key, base URL, pinned version, rate budget)."""

    api_key: str | None = Field(
        default=None, description="STRIPE_API_KEY: sk_… or rk_… key (secret: dg.EnvVar only)"
    )
    api_base: str | None = Field(
        default=None, description=f"STRIPE_API_BASE (default {DEFAULT_STRIPE_API_BASE})"
    )
    api_version: str | None = Field(
        default=None, description=f"STRIPE_API_VERSION (default {DEFAULT_STRIPE_API_VERSION})"
    )
    account: str | None = Field(
        default=None, description="STRIPE_ACCOUNT: Connect account acct_… (default: none)"
    )
    max_rps: float | None = Field(
        default=None,
        description="STRIPE_MAX_RPS: account budget, requests/s (default: Stripe's limit × the "
        "safety factor)",
    )
    visibility_lag_seconds: int | None = Field(
        default=None,
        description=f"STRIPE_VISIBILITY_LAG_SECONDS (default {DEFAULT_VISIBILITY_LAG_SECONDS})",
    )
    concurrency: int | None = Field(
        default=None,
        description=f"STRIPE_CONCURRENCY: threads a step (default {DEFAULT_CONCURRENCY})",
    )
    rate_safety_factor: float | None = Field(
        default=None,
        description="STRIPE_RATE_SAFETY_FACTOR: share of Stripe's limit (default 0.95)",
    )
    endpoint_rps: float | None = Field(
        default=None, description="STRIPE_ENDPOINT_RPS: per-endpoint budget (default 25)"
    )
    endpoint_rps_overrides: str | None = Field(
        default=None, description="STRIPE_ENDPOINT_RPS_OVERRIDES: e.g. /v1/charges=50"
    )
    max_in_flight: int | None = Field(
        default=None, description="STRIPE_MAX_IN_FLIGHT (default 20 test, 80 live)"
    )
    read_allocation: int | None = Field(
        default=None, description="STRIPE_READ_ALLOCATION: monthly reads (default: unknown)"
    )
    ledger_url: str | None = Field(
        default=None,
        description="STRIPE_AEP_LEDGER_URL: a PostgreSQL ledger shares the budgets between "
        "machines (secret: holds a password; dg.EnvVar only)",
    )

    def settings(self) -> StripeSettings:
        """The validated settings; a bad value raises `ConfigError` naming its variable."""
        return StripeSettings.build(
            api_key=self.api_key,
            api_base=self.api_base,
            api_version=self.api_version,
            account=self.account,
            max_rps=self.max_rps,
            visibility_lag_seconds=self.visibility_lag_seconds,
            concurrency=self.concurrency,
            rates=StripeRateSettings.build(
                safety_factor=self.rate_safety_factor,
                endpoint_rps=self.endpoint_rps,
                endpoint_rps_overrides=self.endpoint_rps_overrides,
                max_in_flight=self.max_in_flight,
                read_allocation=self.read_allocation,
                ledger_url=self.ledger_url,
            ),
        )

    def client(self) -> StripeClient:
        return StripeClient(self.settings())


class LakeResource(dg.ConfigurableResource):
    """Root of the local lake: a folder, or an s3:// / gs:// URI."""

    root: str = Field(
        default=DEFAULT_DATA_DIR,
        description="STRIPE_AEP_DATA_DIR: a folder, s3://bucket/prefix or gs://bucket/prefix",
    )
    _lake: Lake | None = PrivateAttr(default=None)

    def lake(self) -> Lake:
        """The lake, its folder checked on first use (which every asset does before its first API
        call): a folder that is a file or cannot be written fails here, naming the variable."""
        if self._lake is None:
            check_data_dir(self.root)
            self._lake = Lake(self.root)
        return self._lake


class XdmResource(dg.ConfigurableResource):
    """The AEP tenant the XDM rows are built for: configured once, here, for the whole code location."""

    tenant: str | None = Field(
        default=None,
        description="AEP_TENANT_ID: the tenant id without the leading underscore (stripeaep "
        "on the emulator)",
    )

    def tenant_id(self) -> str:
        """The tenant, checked (`stripe_aep.config.check_tenant`: set, clean, the XDM rule)."""
        return check_tenant(self.tenant)


class AepResource(dg.ConfigurableResource):
    """Adobe credentials and addresses for delivery (the tenant is `XdmResource`'s)."""

    client_id: str | None = Field(
        default=None, description="AEP_CLIENT_ID: OAuth Server-to-Server client id (dg.EnvVar)"
    )
    client_secret: str | None = Field(
        default=None, description="AEP_CLIENT_SECRET: its client secret (secret: dg.EnvVar only)"
    )
    org_id: str | None = Field(default=None, description="AEP_ORG_ID: …@AdobeOrg (dg.EnvVar)")
    sandbox: str | None = Field(default=None, description="AEP_SANDBOX (default prod)")
    ims_url: str | None = Field(
        default=None, description=f"AEP_IMS_URL (default {DEFAULT_IMS_URL})"
    )
    platform_url: str | None = Field(
        default=None, description=f"AEP_PLATFORM_URL (default {DEFAULT_PLATFORM_URL})"
    )
    scopes: str | None = Field(
        default=None, description="AEP_SCOPES: comma-separated (default Experience Platform's)"
    )

    def settings(self) -> AepSettings:
        """The validated settings; a bad value raises `ConfigError` naming its variable."""
        return AepSettings.build(
            client_id=self.client_id,
            client_secret=self.client_secret,
            org_id=self.org_id,
            sandbox=self.sandbox,
            ims_url=self.ims_url,
            platform_url=self.platform_url,
            scopes=self.scopes,
        )

    def client(self) -> AepClient:
        return AepClient(self.settings())
