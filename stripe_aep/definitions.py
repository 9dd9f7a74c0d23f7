"""The Dagster code location: assets, checks, schedules, sensors and resources of stripe-aep."""

from __future__ import annotations

import dagster as dg

from stripe_aep.assets.raw import raw_assets
from stripe_aep.config import data_dir_from_env
from stripe_aep.resources import LakeResource, StripeResource

defs = dg.Definitions(
    assets=[*raw_assets],
    resources={
        "stripe": StripeResource(api_key=dg.EnvVar("STRIPE_API_KEY")),
        "lake": LakeResource(root=data_dir_from_env()),
    },
)
