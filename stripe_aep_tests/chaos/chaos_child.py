"""Child process of the chaos test: one run of the selected resources' assets (`STRIPE_AEP_RESOURCES`)
over a range of days, then exit.

Run as `python -m stripe_aep_tests.chaos.chaos_child <lake> <first-day> <last-day> [<checkpoint>]`
with the `STRIPE_*` and `AEP_*` variables pointing at the emulators; a checkpoint of `deliver`
(stripe_aep_tests/crash.py) makes the aep assets SIGKILL the run when a delivery reaches it. It exits 0 when the run succeeded and 1
when it failed (a failed run is an expected outcome under faults; the test judges only the data).
The chaos test SIGKILLs it at random moments, so it must never rely on finishing.
"""

from __future__ import annotations

import os
import sys

import dagster as dg

from stripe_aep.assets.aep import aep_assets, build_aep_asset
from stripe_aep.assets.raw import raw_assets
from stripe_aep.assets.xdm import xdm_assets
from stripe_aep.config import selected_resources
from stripe_aep.definitions import resources_from_env
from stripe_aep.resources import LakeResource, StripeResource, XdmResource
from stripe_aep_tests.crash import sigkill_at


def main(argv: list[str]) -> int:
    lake, first, last, *crash_at = argv
    selection = selected_resources()
    on_checkpoint = sigkill_at(crash_at[0] if crash_at else None)
    delivery = [
        build_aep_asset(asset.key.path[-1], on_checkpoint=on_checkpoint)
        for asset in aep_assets
        if asset.key.path[-1] in selection
    ]
    resources = {
        "stripe": StripeResource(
            api_key=os.environ["STRIPE_API_KEY"],
            api_base=os.environ["STRIPE_API_BASE"],
            max_rps=200,
            visibility_lag_seconds=0,
        ),
        "lake": LakeResource(root=lake),
        "xdm": XdmResource(tenant=os.environ["AEP_TENANT_ID"]),
        "aep": resources_from_env()["aep"],  # the AEP_* variables, as deployed
    }
    run_config = {
        "ops": {
            f"aep__{r}": {"config": {"poll_interval_seconds": 0.05, "wait_timeout_seconds": 20}}
            for r in selection
        }
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [a for a in (*raw_assets, *xdm_assets) if a.key.path[-1] in selection] + delivery,
            resources=resources,
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
            run_config=run_config,
            raise_on_error=False,
        )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
