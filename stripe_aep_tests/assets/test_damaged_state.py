"""Damaged or stale state, through the Dagster assets: healed by the next run, or a loud failure that
names the file and the fix."""

import json
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from stripe_aep.assets.aep import aep_assets
from stripe_aep.assets.raw import raw_assets
from stripe_aep.assets.xdm import xdm_assets
from stripe_aep.definitions import resources_from_env
from stripe_aep.lake import Lake
from stripe_aep.resources import LakeResource, StripeResource, XdmResource
from stripe_aep.stripe.rawstore import RawPartition, day_bounds, read_objects
from stripe_aep.xdm_lake import XdmPartition
from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY

DAY = ACCOUNT_START.isoformat()
TENANT = "stripeaep"


def _only(assets, resource="charges"):
    return [a for a in assets if a.key.path[-1] == resource]


def _resources(url, root, tenant=TENANT):
    return {
        "stripe": StripeResource(
            api_key=TEST_KEY, api_base=url, max_rps=1000, visibility_lag_seconds=0
        ),
        "lake": LakeResource(root=str(root)),
        "xdm": XdmResource(tenant=tenant),
        "aep": resources_from_env()["aep"],  # the AEP_* variables, as deployed
    }


def _checks(result):
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def _warnings(instance, result):
    return [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.level == 30 and e.user_message  # logging.WARNING
    ]


def _truth(account):
    return {o["id"] for o in account.objects("charges", *day_bounds(ACCOUNT_START))}


def _materialize(instance, assets, url, root, **kwargs):
    return dg.materialize(
        assets,
        resources=_resources(url, root, tenant=kwargs.pop("tenant", TENANT)),
        partition_key=DAY,
        instance=instance,
        **kwargs,
    )


def test_truncated_raw_file_is_named_and_refetched(stripe_emulator, stripe_account, tmp_path):
    lake = Lake(str(tmp_path))
    with dg.instance_for_test() as instance:
        assert _materialize(instance, _only(raw_assets), stripe_emulator.url, tmp_path).success
        part = RawPartition(lake, "charges", ACCOUNT_START)
        [damaged] = part.files()
        path = tmp_path / damaged.path
        path.write_bytes(path.read_bytes()[:1000])
        stripe_emulator.log.clear()
        again = _materialize(instance, _only(raw_assets), stripe_emulator.url, tmp_path)
        assert again.success
        [warning] = [w for w in _warnings(instance, again) if "is damaged" in w]
        assert damaged.path in warning and "truncated" in warning and "re-fetches it" in warning
    assert any(r.path == "/v1/charges" for r in stripe_emulator.log)  # the window was paged again
    ids = [o["id"] for f in part.files() for o in read_objects(lake, f)]
    assert len(ids) == len(set(ids)) and set(ids) == _truth(stripe_account)
    assert list((tmp_path / "damaged").rglob("*.jsonl.zst"))  # kept for inspection


def test_missing_xdm_part_is_converted_again_and_the_check_sees_it(
    stripe_emulator, stripe_account, tmp_path, monkeypatch
):
    lake = Lake(str(tmp_path))
    chain = _only(raw_assets) + _only(xdm_assets)
    with dg.instance_for_test() as instance:
        assert _materialize(instance, chain, stripe_emulator.url, tmp_path).success
        xdm = XdmPartition(lake, "charges", ACCOUNT_START)
        [part] = xdm.parts()
        (tmp_path / part.path).unlink()

        # Delivery refuses to start a batch it cannot finish, naming the part and the fix.
        with pytest.raises(Exception, match="Materialize xdm/charges for") as info:
            _materialize(instance, _only(aep_assets), stripe_emulator.url, tmp_path)
        assert part.path in str(info.value)

        # The reconciliation check does not take the manifest's word for it.
        monkeypatch.setattr(XdmPartition, "pending", lambda self, tenant: [])
        blind = _materialize(
            instance, _only(xdm_assets), stripe_emulator.url, tmp_path, raise_on_error=False
        )
        assert not blind.success  # the check is blocking
        check = _checks(blind)["raw_objects_reconcile"]
        assert not check.passed
        assert part.path in check.metadata["problems"].value
        monkeypatch.undo()

        # The next run converts the raw file again: the part is back, the check passes.
        healed = _materialize(instance, _only(xdm_assets), stripe_emulator.url, tmp_path)
        assert healed.success and _checks(healed)["raw_objects_reconcile"].passed
        assert any(f"{part.path} is missing" in w for w in _warnings(instance, healed))
    table = pq.read_table(tmp_path / part.path)
    ids = table.column(f"_{TENANT}").combine_chunks().field("stripe").field("id").to_pylist()
    assert set(ids) == _truth(stripe_account) and len(ids) == len(set(ids))


def test_changed_tenant_converts_everything_again(stripe_emulator, tmp_path):
    lake = Lake(str(tmp_path))
    chain = _only(raw_assets) + _only(xdm_assets)
    with dg.instance_for_test() as instance:
        assert _materialize(
            instance, chain, stripe_emulator.url, tmp_path, tenant="wrongtenant"
        ).success
        again = _materialize(instance, _only(xdm_assets), stripe_emulator.url, tmp_path)
        assert again.success and _checks(again)["raw_objects_reconcile"].passed
        meta = again.get_asset_materialization_events()[0].materialization.metadata
        assert meta["raw_files_converted"].value == 1 and meta["tenant"].value == TENANT
        assert any("converted for tenant 'wrongtenant'" in w for w in _warnings(instance, again))
    xdm = XdmPartition(lake, "charges", ACCOUNT_START)
    assert {m.tenant for m in xdm.manifests().values()} == {TENANT}
    [part] = xdm.parts()
    assert f"_{TENANT}" in pq.read_schema(tmp_path / part.path).names
    assert "_wrongtenant" not in pq.read_schema(tmp_path / part.path).names


def test_duplicates_and_objects_outside_the_day_are_counted_by_the_checks(
    stripe_emulator, stripe_account, tmp_path
):
    lake = Lake(str(tmp_path))
    with dg.instance_for_test() as instance:
        assert _materialize(instance, _only(raw_assets), stripe_emulator.url, tmp_path).success
        part = RawPartition(lake, "charges", ACCOUNT_START)
        start, end = day_bounds(ACCOUNT_START)
        first = read_objects(lake, part.files()[0])[0]
        odd = [
            first,  # the same id again
            {**first, "id": "ch_next_day", "created": end + 5},
        ]
        part.write(
            start,
            end,
            [json.dumps(o).encode() for o in odd],
            {"api_version": "2026-06-24.dahlia", "account": None},
            refresh=1,
        )
        result = _materialize(instance, _only(xdm_assets), stripe_emulator.url, tmp_path)
        assert result.success
        checks = _checks(result)
        reconcile = checks["raw_objects_reconcile"]
        assert reconcile.passed
        n = len(_truth(stripe_account))
        assert reconcile.metadata["raw_objects"].value == n + 2
        assert reconcile.metadata["xdm_rows"].value == n
        assert reconcile.metadata["duplicates_dropped"].value == 1
        assert reconcile.metadata["quarantined"].value == 1
        assert not checks["quarantine_empty"].passed
        assert "created_outside_partition" in checks["quarantine_empty"].metadata["reasons"].value
    quarantine = [
        json.loads(line)
        for path in Path(tmp_path, "quarantine").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [(q["id"], q["reason"]) for q in quarantine] == [
        ("ch_next_day", "created_outside_partition")
    ]


def test_unreadable_raw_file_fails_the_xdm_step_loudly_then_heals(
    stripe_emulator, stripe_account, tmp_path
):
    lake = Lake(str(tmp_path))
    chain = _only(raw_assets) + _only(xdm_assets)
    with dg.instance_for_test() as instance:
        assert _materialize(instance, _only(raw_assets), stripe_emulator.url, tmp_path).success
        [raw] = RawPartition(lake, "charges", ACCOUNT_START).files()
        path = tmp_path / raw.path
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64  # same size, bad content
        path.write_bytes(bytes(data))
        failed = _materialize(
            instance, _only(xdm_assets), stripe_emulator.url, tmp_path, raise_on_error=False
        )
        assert not failed.success
        error = str(
            next(e for e in failed.all_events if e.is_step_failure).event_specific_data.error
        )
        assert raw.path in error and "cannot be read" in error
        assert "stripe/charges for 2026-11-10 re-fetches it" in error
        # The next run of the chain re-fetches the window and converts it.
        healed = _materialize(instance, chain, stripe_emulator.url, tmp_path)
        assert healed.success and _checks(healed)["raw_objects_reconcile"].passed
    xdm = XdmPartition(lake, "charges", ACCOUNT_START)
    assert sum(p.rows for p in xdm.parts()) == len(_truth(stripe_account))
