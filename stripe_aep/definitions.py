"""The Dagster code location: assets, checks, schedules, sensors and resources of stripe-aep."""

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

defs = dg.Definitions(
    assets=selected_assets(RESOURCES),
    executor=EXECUTORS[executor_from_env()],
    schedules=schedules,
    sensors=sensors,
    resources={
        "stripe": StripeResource(api_key=dg.EnvVar("STRIPE_API_KEY")),
        "lake": LakeResource(root=data_dir_from_env()),
        "xdm": XdmResource(tenant=dg.EnvVar("AEP_TENANT_ID")),
        # Non-secret AEP settings are read from the environment at run start (blank fields fall
        # back to AEP_ORG_ID, AEP_SANDBOX, ...); the two secrets go through EnvVar.
        "aep": AepResource(
            client_id=dg.EnvVar("AEP_CLIENT_ID"), client_secret=dg.EnvVar("AEP_CLIENT_SECRET")
        ),
    },
)
