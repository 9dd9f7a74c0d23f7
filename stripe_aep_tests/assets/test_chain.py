"""The whole chain, stripe/* → xdm/* → aep/*, against both emulators, read back through Data Access."""

import datetime as dt
import io
import json
from dataclasses import dataclass

import dagster as dg
import pyarrow.parquet as pq

from stripe_aep.aep.client import AepClient
from stripe_aep.assets.aep import aep_assets
from stripe_aep.assets.raw import raw_assets
from stripe_aep.assets.xdm import xdm_assets
from stripe_aep.definitions import resources_from_env
from stripe_aep.lake import Lake
from stripe_aep.records import DeliverySummary
from stripe_aep.resources import LakeResource, StripeResource, XdmResource
from stripe_aep.stripe.client import list_passes
from stripe_aep.stripe.rawstore import day_bounds
from stripe_aep.xdm_lake import XdmPartition
from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY, only
from stripe_aep_tests.conftest import AEP_SOURCE_RESOURCES as RESOURCES

TENANT = "stripeaep"
EXPORT = "/data/foundation/export"
DAYS = [ACCOUNT_START, ACCOUNT_START + dt.timedelta(days=1)]
ALL_ASSETS = only([*raw_assets, *xdm_assets, *aep_assets], RESOURCES)


def _resources(stripe_url, root):
    return {
        "stripe": StripeResource(
            api_key=TEST_KEY, api_base=stripe_url, max_rps=1000, visibility_lag_seconds=0
        ),
        "lake": LakeResource(root=str(root)),
        "xdm": XdmResource(tenant=TENANT),
        "aep": resources_from_env()["aep"],  # the AEP_* variables, as deployed
    }


def _range_tags(days):
    return {
        "dagster/asset_partition_range_start": days[0].isoformat(),
        "dagster/asset_partition_range_end": days[-1].isoformat(),
    }


def _poll_config(**extra):
    return {
        "ops": {
            f"aep__{r}": {"config": {"poll_interval_seconds": 0.05, **extra}} for r in RESOURCES
        }
    }


def read_back_ids(client: AepClient, dataset_id: str, tenant: str = TENANT) -> list[str]:
    """Every Stripe id in the dataset, read the way a user would: Catalog batches → Data Access."""
    return [row.stripe_id for row in read_back_rows(client, dataset_id, tenant)]


@dataclass(frozen=True)
class DeliveredRow:
    """What identifies one delivered record: its Stripe id, its `_id` and how it was observed
    (`list` for a listing row, `event`/`refetch`/`reread` for a later version)."""

    stripe_id: str
    record_id: str
    source: str | None


def read_back_rows(client: AepClient, dataset_id: str, tenant: str = TENANT) -> list[DeliveredRow]:
    """Every record of the dataset's successful batches, read back through Data Access."""
    rows: list[DeliveredRow] = []
    for batch in client.list_batches(dataset_id=dataset_id):
        if batch.status in ("success", "active"):
            rows.extend(read_batch_rows(client, batch.batch_id, tenant))
    return rows


def read_batch_ids(client: AepClient, batch_id: str, tenant: str = TENANT) -> list[str]:
    """The Stripe ids of one batch, read back through Data Access."""
    return [row.stripe_id for row in read_batch_rows(client, batch_id, tenant)]


def read_batch_rows(client: AepClient, batch_id: str, tenant: str = TENANT) -> list[DeliveredRow]:
    rows: list[DeliveredRow] = []
    listing = client.request("GET", f"{EXPORT}/batches/{batch_id}/files", retry=True)
    for entry in listing.json()["data"]:
        href = entry["_links"]["self"]["href"]
        path = href[href.index(EXPORT) :]
        for f in client.request("GET", path, retry=True).json()["data"]:
            link = f["_links"]["self"]["href"]
            data = client.request("GET", link[link.index(EXPORT) :], retry=True).content
            table = pq.read_table(io.BytesIO(data))
            stripe = table.column(f"_{tenant}").combine_chunks().field("stripe")
            sources = stripe.field("versionSource").to_pylist()
            rows.extend(
                DeliveredRow(sid, rid, source)
                for sid, rid, source in zip(
                    stripe.field("id").to_pylist(),
                    table.column("_id").to_pylist(),
                    sources,
                    strict=True,
                )
            )
    return rows


def test_chain_delivers_every_object_exactly_once(
    stripe_emulator, stripe_account, aep_setup, tmp_path
):
    client, datasets = aep_setup
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            ALL_ASSETS,
            resources=_resources(stripe_emulator.url, tmp_path),
            instance=instance,
            tags=_range_tags(DAYS),
            run_config=_poll_config(),
        )
        assert result.success
        checks = [
            e.event_specific_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        assert len(checks) == 3 * len(RESOURCES)
        assert all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]

        for resource in RESOURCES:
            truth = {
                o["id"] for day in DAYS for o in stripe_account.objects(resource, *day_bounds(day))
            }
            ids = read_back_ids(client, datasets[resource])
            assert len(ids) == len(set(ids)), f"{resource}: an object was delivered twice"
            assert set(ids) == truth, resource

        # A second run of the same range sends nothing to Stripe and creates no AEP batch.
        batches_before = {r: len(client.list_batches(dataset_id=datasets[r])) for r in RESOURCES}
        stripe_requests = len(stripe_emulator.log)
        again = dg.materialize(
            ALL_ASSETS,
            resources=_resources(stripe_emulator.url, tmp_path),
            instance=instance,
            tags=_range_tags(DAYS),
            run_config=_poll_config(),
        )
        assert again.success
        assert len(stripe_emulator.log) == stripe_requests
        for r in RESOURCES:
            assert len(client.list_batches(dataset_id=datasets[r])) == batches_before[r], r


def _by_partition(result, layer: str, resource: str) -> dict[str, dict]:
    """The run's materializations of one asset: partition key → its metadata values."""
    out = {}
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey([layer, resource]):
            assert event.partition not in out, "one materialization per partition"
            out[event.partition] = {k: v.value for k, v in event.materialization.metadata.items()}
    return out


def test_range_run_records_each_days_own_figures_on_its_partition(
    stripe_emulator, stripe_account, aep_setup, tmp_path
):
    """A 3-day range run of the whole chain: every raw, XDM and AEP materialization carries its own
    day's row count (and cursor, batches, path), not the range's totals; the days add up to the run
    totals and to what AEP received."""
    client, datasets = aep_setup
    days = [ACCOUNT_START + dt.timedelta(days=i) for i in range(3)]
    keys = [d.isoformat() for d in days]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            ALL_ASSETS,
            resources=_resources(stripe_emulator.url, tmp_path),
            instance=instance,
            tags=_range_tags(days),
            run_config=_poll_config(),
        )
        assert result.success
    for resource in RESOURCES:
        truth = {
            d.isoformat(): {o["id"] for o in stripe_account.objects(resource, *day_bounds(d))}
            for d in days
        }
        # Days of different sizes, or a day showing the range's total could pass unnoticed.
        counts = [len(truth[k]) for k in keys]
        assert sum(counts) > max(counts) > 0, (resource, counts)
        raw = _by_partition(result, "stripe", resource)
        xdm = _by_partition(result, "xdm", resource)
        aep = _by_partition(result, "aep", resource)
        assert sorted(raw) == sorted(xdm) == sorted(aep) == keys, resource

        received = read_back_ids(client, datasets[resource])
        assert len(received) == len(set(received)), f"{resource}: an object was delivered twice"
        for day, key in zip(days, keys, strict=True):
            n, where = len(truth[key]), (resource, key)
            r, x, a = raw[key], xdm[key], aep[key]
            assert r["dagster/row_count"] == r["objects"] == r["new_objects"] == n, where
            # The day's own pages: ceil(n / 100) per list pass (prices list active and inactive),
            # plus at most one partial page for each split the run made (idle workers may split a
            # day with pages left; how often depends on timing).
            passes = len(list_passes(resource))
            fewest = -(-n // 100)
            assert fewest <= r["pages"] <= fewest + passes - 1 + r["run_splits"], where
            assert r["cursor"].startswith((day + dt.timedelta(days=1)).isoformat()), where
            assert x["dagster/row_count"] == x["rows_converted"] == x["raw_objects"] == n, where
            assert x["quarantined"] == x["duplicates_dropped"] == 0, where
            assert x["files"] >= 1 and x["raw_files_converted"] >= 1, where
            assert x["path"].endswith(f"xdm/{resource}/{key}"), where
            assert a["dagster/row_count"] == a["xdm_rows"] == a["rows_sent"] == n, where
            assert a["files"] == a["files_sent"] == x["files"], where
            assert a["pending_batches"] == [], where
            # The day's batches hold the day's objects (and, a batch spanning days, maybe others).
            day_batches = a["batch_ids"]
            assert day_batches, where
            in_batches = {i for b in day_batches for i in read_batch_ids(client, b)}
            assert truth[key] <= in_batches, where
            assert truth[key] <= set(received), where

        # The days add up to the run's totals (the same on every day's event) and to AEP's count.
        total = sum(counts)
        for layer in (raw, xdm, aep):
            assert sum(m["dagster/row_count"] for m in layer.values()) == total, resource
            assert (
                len(
                    {
                        repr({k: v for k, v in m.items() if k.startswith("run_")})
                        for m in layer.values()
                    }
                )
                == 1
            ), "run_ figures differ between days"
        run_raw, run_xdm, run_aep = raw[keys[0]], xdm[keys[0]], aep[keys[0]]
        assert run_raw["run_row_count"] == run_raw["run_objects"] == total, resource
        assert run_raw["run_pages"] == sum(m["pages"] for m in raw.values()), resource
        assert run_xdm["run_rows"] == run_xdm["run_rows_converted"] == total, resource
        assert run_xdm["run_files"] == sum(m["files"] for m in xdm.values()), resource
        assert run_aep["run_rows_delivered"] == run_aep["run_records_written"] == total, resource
        assert run_aep["run_rows_sent"] == sum(m["rows_sent"] for m in aep.values()), resource
        delivery = DeliverySummary.from_json(run_aep["run_delivery"])
        assert set(delivery.batch_ids) == {b for m in aep.values() for b in m["batch_ids"]}
        assert delivery.records_written == delivery.rows_confirmed == total, resource
        assert delivery.statuses == dict.fromkeys(delivery.batch_ids, "success"), resource
        assert delivery.pending_batches == delivery.stalled_batches == (), resource
        assert len(received) == total, resource


def test_bad_records_are_quarantined_and_reconciled(stripe_emulator, tmp_path):
    """Records a Stripe bug or a version change could produce: quarantined with a reason, not lost."""
    lake = Lake(str(tmp_path))
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            [a for a in raw_assets if a.key == dg.AssetKey(["stripe", "charges"])],
            resources=_resources(stripe_emulator.url, tmp_path),
            instance=instance,
            partition_key=DAYS[0].isoformat(),
        ).success
        # Add a raw window with deliberately bad records beside the good ones (a refresh file).
        from stripe_aep.stripe.rawstore import RawPartition

        part = RawPartition(lake, "charges", DAYS[0])
        start, _ = day_bounds(DAYS[0])
        good = json.loads(
            lake.open_input(part.files()[0].path, compression="zstd").read().split(b"\n")[0]
        )
        bad = [
            {k: v for k, v in good.items() if k != "id"},
            {**good, "id": "ch_bad_created", "created": "yesterday"},
            {**good, "id": "ch_bad_currency", "currency": "xyz"},
            {**good, "id": "ch_bad_amount", "amount": "12.00"},
            {**good, "id": "ch_bad_null", "payment_method_details": None, "outcome": None},
        ]
        part.write(
            start,
            start + 60,
            [json.dumps(b).encode() for b in bad],
            {"api_version": "2026-06-24.dahlia", "account": None},
            refresh=1,
        )
        result = dg.materialize(
            [a for a in xdm_assets if a.key == dg.AssetKey(["xdm", "charges"])],
            resources=_resources(stripe_emulator.url, tmp_path),
            instance=instance,
            partition_key=DAYS[0].isoformat(),
        )
        assert result.success
        checks = {
            e.event_specific_data.check_name: e.event_specific_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        assert checks["raw_objects_reconcile"].passed
        assert not checks["quarantine_empty"].passed
    xdm = XdmPartition(lake, "charges", DAYS[0])
    manifests = xdm.manifests()
    quarantined = sum(m.quarantined for m in manifests.values())
    rows = sum(m.rows for m in manifests.values())
    assert xdm.raw_objects() == rows + quarantined
    assert quarantined >= 4  # the null-object record may be legitimately mappable
    q_path = next(m.quarantine for m in manifests.values() if m.quarantine)
    lines = [json.loads(x) for x in lake.read_bytes(q_path).splitlines()]
    assert all(line["reason"] and "record" in line for line in lines)
    assert {"ch_bad_created", "ch_bad_currency", "ch_bad_amount"} <= {
        line["record"].get("id") for line in lines if isinstance(line["record"], dict)
    }


def test_rejected_batch_fails_the_step_then_redelivers_once(
    stripe_emulator, stripe_account, aep_setup, aep_emulator, tmp_path, monkeypatch
):
    client, datasets = aep_setup
    tokens: list[str] = []
    original = AepClient._access_token

    def spy(self):
        token = original(self)
        tokens.append(token)
        return token

    monkeypatch.setattr(AepClient, "_access_token", spy)
    day = DAYS[0].isoformat()
    selection = [a for a in ALL_ASSETS if a.key.path[-1] == "charges"]
    with dg.instance_for_test() as instance:
        aep_emulator.faults.fail_next_batches = 1
        failed = dg.materialize(
            selection,
            resources=_resources(stripe_emulator.url, tmp_path),
            instance=instance,
            partition_key=day,
            run_config={"ops": {"aep__charges": {"config": {"poll_interval_seconds": 0.05}}}},
            raise_on_error=False,
        )
        assert not failed.success
        failure = next(e for e in failed.all_events if e.is_step_failure)
        message = str(failure.event_specific_data.error)
        assert "INGEST" in message and "failed" in message
        assert read_back_ids(client, datasets["charges"]) == []

        # The cause is gone (the fault was one-shot): the next run delivers, once.
        again = dg.materialize(
            selection,
            resources=_resources(stripe_emulator.url, tmp_path),
            instance=instance,
            partition_key=day,
            run_config={"ops": {"aep__charges": {"config": {"poll_interval_seconds": 0.05}}}},
        )
        assert again.success
        ids = read_back_ids(client, datasets["charges"])
        truth = {o["id"] for o in stripe_account.objects("charges", *day_bounds(DAYS[0]))}
        assert len(ids) == len(set(ids)) and set(ids) == truth

        # No secret, no token anywhere in the event logs of both runs or in the data directory.
        secret = aep_emulator.identity.client_secret
        assert tokens
        texts = [
            dg.serialize_value(e) for run in (failed, again) for e in instance.all_logs(run.run_id)
        ]
        blob = "\n".join(texts)
        for value in {secret, TEST_KEY, *tokens}:
            assert value not in blob
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in {secret, TEST_KEY, *tokens}:
                assert value.encode() not in data, path
