"""Refunds carry their customer identity at every API version: from the refund where the version
sends `customer` (2026-07-29.dahlia on), else from the refunded charge already on the lake —
without asking Stripe for anything."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stripe_aep.assets.raw import raw_assets
from stripe_aep.assets.xdm import xdm_assets
from stripe_aep.charge_customers import INDEX_ROOT, ChargeCustomerIndex, carries_customer
from stripe_aep.config import DEFAULT_STRIPE_API_VERSION
from stripe_aep.lake import Lake
from stripe_aep.resources import LakeResource, StripeResource, XdmResource
from stripe_aep.stripe.rawstore import RawPartition, day_bounds
from stripe_aep.xdm.mappings.common import CHARGE_CUSTOMERS
from stripe_aep.xdm_lake import XdmPartition
from stripe_aep_tests.conftest import ACCOUNT_DAYS, ACCOUNT_START, TEST_KEY
from stripe_aep_tests.xdm.conftest import TENANT, jsonl, sample

OLDER = "2026-06-24.dahlia"


def refund_customers(run) -> dict[str, str | None]:
    table = run.table()
    tenant = table.column(f"_{TENANT}").combine_chunks()
    ids = tenant.field("stripe").field("id").to_pylist()
    return dict(zip(ids, tenant.field("refund").field("customer").to_pylist(), strict=True))


def test_the_refund_customer_comes_from_the_charge_only_where_the_refund_has_none(convert):
    base = sample("refunds")
    own = {**base, "id": "re_own", "charge": "ch_a", "customer": "cus_own"}
    older = {k: v for k, v in base.items() if k not in ("customer", "customer_account")}
    via_charge = {**older, "id": "re_via_charge", "charge": "ch_a"}
    expanded = {**older, "id": "re_expanded", "charge": {"id": "ch_b", "object": "charge"}}
    orphan = {**older, "id": "re_orphan", "charge": "ch_not_on_the_lake"}
    lookup = (pa.array(["ch_a", "ch_b"]), pa.array(["cus_a", "cus_b"]))
    run = convert(
        jsonl([own, via_charge, expanded, orphan]), "refunds", lookups={CHARGE_CUSTOMERS: lookup}
    )
    assert run.result.rows == 4 and run.result.quarantined == 0
    assert refund_customers(run) == {
        "re_own": "cus_own",  # the refund's own value wins
        "re_via_charge": "cus_a",
        "re_expanded": "cus_b",
        "re_orphan": None,  # its charge is not on the lake: no identity, nothing invented
    }
    without_lookup = convert(jsonl([via_charge]), "refunds")
    assert refund_customers(without_lookup) == {"re_via_charge": None}


def test_which_versions_carry_refund_customer():
    assert carries_customer("refund", DEFAULT_STRIPE_API_VERSION)
    assert not carries_customer("refund", OLDER)
    assert not carries_customer("refund", "2022-11-15")
    assert not carries_customer("refund", "unknown") and not carries_customer("refund", None)
    assert not carries_customer("refund", "2026-10-28.endive")  # newer than vendored: look it up
    # A dispute names only its charge, at every version; a charge always has `customer`.
    assert not any(carries_customer("dispute", v) for v in (OLDER, DEFAULT_STRIPE_API_VERSION))
    assert carries_customer("charge", OLDER) and carries_customer("invoice", OLDER)


def test_the_index_is_one_sidecar_per_live_raw_charges_file(tmp_path):
    lake = Lake(str(tmp_path))
    day = dt.date(2026, 3, 1)
    start, end = day_bounds(day)
    partition = RawPartition(lake, "charges", day)
    charge = sample("charges")
    first = [
        {**charge, "id": "ch_1", "customer": "cus_1"},
        {**charge, "id": "ch_2", "customer": None},
        {**charge, "id": "ch_3", "customer": {"id": "cus_3", "object": "customer"}},
    ]
    meta = {"api_version": OLDER, "account": None}
    raw_a = partition.write(start, start + 100, [json.dumps(c).encode() for c in first], meta)
    raw_b = partition.write(start + 100, end, [json.dumps({**charge, "id": "ch_4",
                                                           "customer": "cus_4"}).encode()], meta)  # fmt: skip
    index = ChargeCustomerIndex(lake)
    charges, customers = index.pairs(until=day)
    assert dict(zip(charges.to_pylist(), customers.to_pylist(), strict=True)) == {
        "ch_1": "cus_1",
        "ch_3": "cus_3",  # an expanded customer is read the slow way
        "ch_4": "cus_4",
    }
    sidecars = {f.path for f in lake.list_files(f"{INDEX_ROOT}/{day.isoformat()}")}
    assert sidecars == {index.sidecar_path(day, raw_a), index.sidecar_path(day, raw_b)}
    assert pq.read_table(lake.full_path(index.sidecar_path(day, raw_b))).num_rows == 1
    # A merged file supersedes both: their sidecars go, the merged file's appears.
    merged = partition.write(start, end, [json.dumps(c).encode() for c in first[:1]], meta)
    charges, _ = index.pairs(until=day)
    assert charges.to_pylist() == ["ch_1"]
    assert {f.path for f in lake.list_files(f"{INDEX_ROOT}/{day.isoformat()}")} == {
        index.sidecar_path(day, merged)
    }
    assert index.pairs(until=day - dt.timedelta(days=1))[0].to_pylist() == []


def _resources(url: str, root, version: str) -> dict:
    return {
        "stripe": StripeResource(
            api_key=TEST_KEY,
            api_base=url,
            max_rps="1000",
            visibility_lag_seconds="0",
            api_version=version,
        ),  # fmt: skip
        "lake": LakeResource(root=str(root)),
        "xdm": XdmResource(tenant=TENANT),
    }


@pytest.mark.parametrize("version", [DEFAULT_STRIPE_API_VERSION, OLDER])
def test_refunds_carry_a_customer_identity_at_the_pinned_and_an_older_version(
    stripe_emulator, stripe_account, tmp_path, version
):
    """stripe/charges + stripe/refunds + xdm/refunds over every day of the account: each refund's
    XDM identity is its charge's customer, whether the raw refund had `customer` or not, and the
    conversion sent no request to Stripe."""
    days = [ACCOUNT_START + dt.timedelta(days=i) for i in range(ACCOUNT_DAYS)]
    keys = {dg.AssetKey(["stripe", "charges"]), dg.AssetKey(["stripe", "refunds"])}
    with dg.instance_for_test() as instance:
        tags = {
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat(),
        }
        resources = _resources(stripe_emulator.url, tmp_path, version)
        raw = dg.materialize([a for a in raw_assets if a.key in keys], resources=resources,
                             instance=instance, tags=tags)  # fmt: skip
        assert raw.success
        requests_before = len(stripe_emulator.log)
        xdm = dg.materialize(
            [a for a in xdm_assets if a.key == dg.AssetKey(["xdm", "refunds"])],
            resources=resources, instance=instance, tags=tags,
        )  # fmt: skip
        assert xdm.success
        assert len(stripe_emulator.log) == requests_before  # no request per refund, no expansion
    assert {r.api_version for r in stripe_emulator.log} == {version}
    lake = Lake(str(tmp_path))
    raw_has_customer = set()
    got: dict[str, str | None] = {}
    for day in days:
        for raw_file in RawPartition(lake, "refunds", day).files():
            lines = lake.open_input(raw_file.path, compression="zstd").read().splitlines()
            raw_has_customer |= {"customer" in json.loads(line) for line in lines}
        for part in XdmPartition(lake, "refunds", day).parts():
            table = pq.read_table(lake.full_path(part.path))
            tenant = table.column(f"_{TENANT}").combine_chunks()
            ids = tenant.field("stripe").field("id").to_pylist()
            got.update(zip(ids, tenant.field("refund").field("customer").to_pylist(), strict=True))
    assert raw_has_customer == {version == DEFAULT_STRIPE_API_VERSION}
    charge_customer = {c["id"]: c["customer"] for c in stripe_account.objects("charges")}
    expected = {
        r["id"]: charge_customer[r["charge"]]
        for day in days
        for r in stripe_account.objects("refunds", *day_bounds(day))
    }
    assert got == expected
    assert sum(1 for c in expected.values() if c) > 10  # most refunds have a customer to find
    assert (tmp_path / INDEX_ROOT).exists() == (version == OLDER)  # built only when needed
