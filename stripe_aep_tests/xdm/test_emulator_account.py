"""The whole synthetic account of the Stripe emulator converts: no record quarantined, none lost.

Why: the emulator's account is built from Stripe's own sample objects with the variation that
breaks naive mappings (zero/three-decimal currencies, buy-now-pay-later details, failed charges,
partial refunds, canceled subscriptions, inactive prices, older API shapes, null metadata). If the
mapping rejected any of it, a real account would lose those records to quarantine.
"""

from __future__ import annotations

from collections import Counter

import pytest

from stripe_aep.catalog import RESOURCE_NAMES as RESOURCES
from stripe_aep.emulators.stripe_account import StripeAccount
from stripe_aep.xdm.resources import mapping_for
from stripe_aep.xdm.schemas import metadata_paths
from stripe_aep_tests.xdm.conftest import TENANT, jsonl, run_convert

NS = f"_{TENANT}"


@pytest.fixture(scope="module")
def account() -> StripeAccount:
    return StripeAccount(seed=3, start="2026-11-01", days=3, charges_per_day=300)


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_emulator_object_converts(tmp_path, account, resource):
    objects = account.objects(resource)
    assert objects, f"the emulator account has no {resource}"
    run = run_convert(tmp_path, jsonl(objects), resource, account=account.account_id)

    assert Counter(q["reason"] for q in run.quarantine) == Counter()
    assert run.quarantine == []
    result = run.result
    assert (result.input_records, result.rows, result.quarantined) == (
        len(objects),
        len(objects),
        0,
    )
    assert result.slow_path_records == 0

    table = run.table()
    assert table.num_rows == len(objects)
    ids = [row["id"] for row in table.column(NS).combine_chunks().field("stripe").to_pylist()]
    assert ids == [o["id"] for o in objects] == account.ids(resource)
    assert [row_id.rpartition("-")[0] for row_id in table.column("_id").to_pylist()] == ids

    if metadata_paths(mapping_for(resource)):  # every key/value pair kept, sorted by key
        tenant = (
            table.column(NS).combine_chunks().field(mapping_for(resource).tenant_object).to_pylist()
        )
        expected = [
            None if o.get("metadata") is None else sorted(o["metadata"].items()) for o in objects
        ]
        assert [row["metadata"] for row in tenant] == expected
        if len(objects) >= 20:  # a handful of disputes may all have none, as most real ones do
            assert any(expected), "the account should hold non-empty metadata"
