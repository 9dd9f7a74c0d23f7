"""The Dagster code location: assets, checks, schedules, sensors and resources of stripe-aep."""

import os
from collections.abc import Sequence

import dagster as dg

from stripe_aep.assets.aep import aep_assets
from stripe_aep.assets.events import build_events_asset
from stripe_aep.assets.raw import raw_assets
from stripe_aep.assets.xdm import xdm_assets
from stripe_aep.automation.schedules import schedules
from stripe_aep.automation.sensors import sensors
from stripe_aep.config import (
    data_dir_from_env,
    executor_from_env,
    float_setting,
    ledger_url_from_env,
    selected_resources,
)
from stripe_aep.resources import AepResource, LakeResource, StripeResource, XdmResource

EXECUTORS = {"multiprocess": dg.multiprocess_executor, "in_process": dg.in_process_executor}

# STRIPE_AEP_LEDGER_URL is checked when the code location loads (a malformed URL, or none with an
# object-store lake, fails here naming the variable) rather than in every aep/* step.
ledger_url_from_env()


def selected_assets(resources: Sequence[str]) -> list[dg.AssetsDefinition]:
    """`stripe/events` asking the event types of `resources`, and the `stripe/`, `xdm/` and `aep/`
    assets of each of them (in catalog order within each layer)."""
    chosen = set(resources)
    layers = [a for a in (*raw_assets, *xdm_assets, *aep_assets) if a.key.path[-1] in chosen]
    return [build_events_asset(resources), *layers]


# STRIPE_AEP_RESOURCES is checked when the code location loads too: an unknown name fails here,
# naming the variable and the valid names, before any asset exists.
RESOURCES = selected_resources()


def _from_set_variables(**fields: dg.EnvVar | int) -> dict[str, dg.EnvVar | int]:
    """The fields whose variable is set (not blank) where the code location loads.

    Dagster fails a whole run whose `EnvVar` names an unset variable, before any step, with a
    generic "environment variable … is not set"; an unset optional setting must instead leave its
    field at the default (and an unset required one fail the step that needs it, with the builder's
    `ConfigError` that says what to set). Run workers inherit the code location's environment
    (`dagster dev`; the Helm chart's `includeConfigInLaunchedRuns`), so "set here" means "set there".
    (`dg.EnvVar.int` is an `int` carrying the variable's name, hence the annotation.)
    """
    return {
        name: var
        for name, var in fields.items()
        if (os.environ.get(var.env_var_name) or "").strip()
    }


def _floats_from_env(**fields: str) -> dict[str, float]:
    """The float fields whose variable is set, read and bounded now: Dagster's `EnvVar` has no float
    form (strings, `EnvVar.int`, booleans), so these are validated when the code location loads."""
    values = {name: float_setting(variable) for name, variable in fields.items()}
    return {name: value for name, value in values.items() if value is not None}


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The code location's resources, every setting a typed field fed from its environment variable.

    Secrets (`STRIPE_API_KEY`, `AEP_CLIENT_SECRET`, `STRIPE_AEP_LEDGER_URL`, …) only ever as
    `dg.EnvVar`: resolved at run start, never in run config or the UI. `make demo` and the tests use
    this too, after setting the variables.
    """
    return {
        "stripe": StripeResource(
            **_from_set_variables(
                api_key=dg.EnvVar("STRIPE_API_KEY"),
                api_base=dg.EnvVar("STRIPE_API_BASE"),
                api_version=dg.EnvVar("STRIPE_API_VERSION"),
                account=dg.EnvVar("STRIPE_ACCOUNT"),
                visibility_lag_seconds=dg.EnvVar.int("STRIPE_VISIBILITY_LAG_SECONDS"),
                concurrency=dg.EnvVar.int("STRIPE_CONCURRENCY"),
                endpoint_rps_overrides=dg.EnvVar("STRIPE_ENDPOINT_RPS_OVERRIDES"),
                max_in_flight=dg.EnvVar.int("STRIPE_MAX_IN_FLIGHT"),
                read_allocation=dg.EnvVar.int("STRIPE_READ_ALLOCATION"),
                ledger_url=dg.EnvVar("STRIPE_AEP_LEDGER_URL"),
            ),
            **_floats_from_env(
                max_rps="STRIPE_MAX_RPS",
                rate_safety_factor="STRIPE_RATE_SAFETY_FACTOR",
                endpoint_rps="STRIPE_ENDPOINT_RPS",
            ),
        ),
        # Read when the code location loads, like the sensors do: its shape is checked here, the
        # folder itself (created, writable) at run start.
        "lake": LakeResource(root=data_dir_from_env()),
        # The tenant, once: the XDM steps name their fields after it; delivery does not need it.
        "xdm": XdmResource(**_from_set_variables(tenant=dg.EnvVar("AEP_TENANT_ID"))),
        "aep": AepResource(
            **_from_set_variables(
                client_id=dg.EnvVar("AEP_CLIENT_ID"),
                client_secret=dg.EnvVar("AEP_CLIENT_SECRET"),
                org_id=dg.EnvVar("AEP_ORG_ID"),
                sandbox=dg.EnvVar("AEP_SANDBOX"),
                ims_url=dg.EnvVar("AEP_IMS_URL"),
                platform_url=dg.EnvVar("AEP_PLATFORM_URL"),
                scopes=dg.EnvVar("AEP_SCOPES"),
            )
        ),
    }


defs = dg.Definitions(
    assets=selected_assets(RESOURCES),
    executor=EXECUTORS[executor_from_env()],
    schedules=schedules,
    sensors=sensors,
    resources=resources_from_env(),
)
