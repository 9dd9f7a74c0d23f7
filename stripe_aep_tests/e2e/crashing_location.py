"""A code location for the end-to-end crash test: `stripe_aep.definitions`, but every delivery
SIGKILLs its run right after the first file of a batch reached AEP.

`dagster asset materialize -m stripe_aep_tests.e2e.crashing_location` runs the product's assets,
resources and executor unchanged; only the aep assets are rebuilt with an `on_checkpoint` callback
(stripe_aep_tests/crash.py), the test-only way to kill a real run mid-delivery without a hook in
the shipped code. The run is on the same instance, lake and ledger as the deployment's own runs,
so the re-run that follows (from the UI, on the real code location) must recover it.
"""

from __future__ import annotations

import dagster as dg

import stripe_aep.definitions as product
from stripe_aep.assets.aep import build_aep_asset
from stripe_aep_tests.crash import sigkill_at

#: the checkpoint the run dies at: the batch is open in AEP, the ledger has one file uploaded
CRASH_AT = "after_upload:1"


def _crashing(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    layer, resource = asset.key.path
    if layer != "aep":
        return asset
    return build_aep_asset(resource, on_checkpoint=sigkill_at(CRASH_AT))


# `product.defs` is reached through its module: a second `Definitions` object at module level
# would leave Dagster unable to tell which one is the code location.
defs = dg.Definitions(
    assets=[_crashing(asset) for asset in product.defs.assets or []],
    resources=product.defs.resources,
    executor=product.defs.executor,
)
