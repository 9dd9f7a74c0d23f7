"""The pipeline with its lake on S3 (moto_server): stripe → xdm → aep against the emulators.

What is proven here, on a real S3 HTTP server rather than a local folder:
- raw extraction writes whole objects only, its `created` cursor is derived from the stored keys
  (a second run asks Stripe nothing), and a run lists only the prefixes of the days it touches;
- XDM conversion reads raw from S3 and writes parts, quarantine, manifests and the charge → customer
  index to S3;
- a publish that fails between files leaves what a reader sees (files, cursor, manifests) as it was;
- the delivery step uploads the XDM parts it reads from S3 to the AEP emulator, exactly once.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest

from stripe_aep.assets.aep import aep_assets
from stripe_aep.assets.raw import raw_assets
from stripe_aep.assets.xdm import xdm_assets
from stripe_aep.charge_customers import INDEX_ROOT
from stripe_aep.definitions import resources_from_env
from stripe_aep.lake import Lake, SpooledFile
from stripe_aep.resources import LakeResource, StripeResource, XdmResource
from stripe_aep.secrets import SecretMasker
from stripe_aep.stripe.rawstore import RawPartition, day_bounds, read_objects
from stripe_aep.xdm_lake import XdmPartition
from stripe_aep_tests.conftest import ACCOUNT_DAYS, ACCOUNT_START, TEST_KEY
from stripe_aep_tests.s3.conftest import SECRET_ACCESS_KEY

TENANT = "stripeaep"
OLDER_API_VERSION = "2026-06-24.dahlia"  # refunds without `customer`: the charge index is needed
DAYS = [ACCOUNT_START + dt.timedelta(days=i) for i in range(ACCOUNT_DAYS)]


def _resources(stripe_url: str, root: str, api_version: str | None = None) -> dict:
    return {
        "stripe": StripeResource(
            api_key=TEST_KEY,
            api_base=stripe_url,
            max_rps=1000,
            visibility_lag_seconds=0,
            api_version=api_version or "",
        ),
        "lake": LakeResource(root=root),
        "xdm": XdmResource(tenant=TENANT),
        "aep": resources_from_env()["aep"],  # the AEP_* variables, as deployed
    }


def _tags(days: list[dt.date]) -> dict:
    return {
        "dagster/asset_partition_range_start": days[0].isoformat(),
        "dagster/asset_partition_range_end": days[-1].isoformat(),
    }


def _select(assets, layer: str, *resources: str):
    keys = {dg.AssetKey([layer, r]) for r in resources}
    return [a for a in assets if a.key in keys]


def _materialize(assets, resources, instance, days, **kwargs):
    result = dg.materialize(
        assets, resources=resources, instance=instance, tags=_tags(days), **kwargs
    )
    assert result.success
    return result


def _event_texts(instance) -> list[str]:
    """Every event the instance recorded (logs, metadata, errors), as text."""
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    )
    texts = [str(r.event_log_entry) for r in records]
    for run in instance.get_runs():
        texts.extend(str(e) for e in instance.all_logs(run.run_id))
    return texts


def test_raw_then_xdm_on_s3_cursor_from_stored_keys_and_bounded_listing(
    s3_server, s3_bucket, s3_root, stripe_emulator, stripe_account
):
    lake = Lake(s3_root)
    resources = _resources(stripe_emulator.url, s3_root, OLDER_API_VERSION)
    with dg.instance_for_test() as instance:
        mark = s3_server.mark()
        _materialize(_select(raw_assets, "stripe", "charges", "refunds"), resources, instance, DAYS)
        raw_requests = s3_server.requests_since(mark)

        keys = s3_server.keys(s3_bucket)
        assert keys and all(k.startswith("stripe-aep/") for k in keys)
        assert not [k for k in keys if ".tmp" in k or k.endswith("/")]  # whole objects only
        for resource in ("charges", "refunds"):
            for day in DAYS:
                part = RawPartition(lake, resource, day)
                stored = [o["id"] for f in part.files() for o in read_objects(lake, f)]
                truth = [o["id"] for o in stripe_account.objects(resource, *day_bounds(day))]
                assert sorted(stored) == sorted(truth), (resource, day)
                assert part.cursor() == day_bounds(day)[1]  # closed day: covered to midnight

        # Listing cost: only the prefixes of the partitions the run touched, a few per day.
        lists = [r for r in raw_requests if r.is_list]
        touched = {
            f"stripe-aep/stripe/{r}/{d.isoformat()}/" for r in ("charges", "refunds") for d in DAYS
        }
        # The derivation of versions reads the days' events and changes partitions, and lists
        # `changes/<r>/` once, when it builds the state store (stripe_aep/stripe/changes.py).
        derivation = {
            f"stripe-aep/{folder}/{d.isoformat()}/"
            for folder in ("stripe/events", "changes/charges", "changes/refunds")
            for d in DAYS
        } | {"stripe-aep/changes/charges/", "stripe-aep/changes/refunds/"}
        allowed = touched | derivation
        assert {r.prefix for r in lists} <= allowed, {r.prefix for r in lists} - allowed
        assert len(lists) <= 6 * len(touched) + 2 * len(derivation), len(lists)
        assert not [r for r in raw_requests if r.is_copy_or_single_put]  # no server-side copy

        # The cursor is derived from what is stored: a second run asks Stripe nothing.
        stripe_calls = len(stripe_emulator.log)
        _materialize(_select(raw_assets, "stripe", "charges", "refunds"), resources, instance, DAYS)
        assert len(stripe_emulator.log) == stripe_calls

        mark = s3_server.mark()
        _materialize(_select(xdm_assets, "xdm", "charges", "refunds"), resources, instance, DAYS)
        xdm_requests = s3_server.requests_since(mark)
        assert all(r.bucket == s3_bucket for r in xdm_requests)
        xdm_lists = [r for r in xdm_requests if r.is_list]
        # Bounded by the days touched (the refunds' charge index reads every charges day up to
        # the newest refund day: here the same days), never the bucket or the lake root. The
        # XDM layer also lists each day's change files (`changes/<r>/<day>/`).
        assert all(
            r.prefix.startswith(
                (
                    "stripe-aep/stripe/",
                    "stripe-aep/xdm/",
                    "stripe-aep/changes/",
                    f"stripe-aep/{INDEX_ROOT}",
                )
            )
            for r in xdm_lists
        ), {r.prefix for r in xdm_lists}
        # Per day, the XDM layer lists two raw folders (stripe/ and changes/) where it listed one.
        assert len(xdm_lists) <= 12 * 2 * len(touched), len(xdm_lists)
        for resource in ("charges", "refunds"):
            for day in DAYS:
                xdm = XdmPartition(lake, resource, day)
                manifests = xdm.manifests()
                assert set(manifests) == {f.stem for f in xdm.raw.files()}
                rows = sum(m.rows for m in manifests.values())
                quarantined = sum(m.quarantined for m in manifests.values())
                assert rows + quarantined + sum(m.duplicates for m in manifests.values()) == (
                    xdm.raw_objects()
                )
                assert sum(p.rows for p in xdm.parts()) == rows > 0
        index_keys = [k for k in s3_server.keys(s3_bucket, f"stripe-aep/{INDEX_ROOT}/")]
        assert len(index_keys) == sum(len(RawPartition(lake, "charges", d).files()) for d in DAYS)

        masker = SecretMasker([SECRET_ACCESS_KEY])
        assert [t for t in _event_texts(instance) if masker.contains_secret(t)] == []


def _one_day_runs_list_calls(s3_server, root, stripe_url, instance, day) -> list:
    """ListObjects calls of a raw run (charges, refunds) then an XDM run (refunds: it loads the
    charge → customer index over every charges day up to `day`) of one day."""
    resources = _resources(stripe_url, root, OLDER_API_VERSION)
    mark = s3_server.mark()
    _materialize(_select(raw_assets, "stripe", "charges", "refunds"), resources, instance, [day])
    _materialize(_select(xdm_assets, "xdm", "refunds"), resources, instance, [day])
    return [r for r in s3_server.requests_since(mark) if r.is_list]


def test_listing_calls_of_a_run_do_not_grow_with_the_history_on_the_lake(
    s3_server, s3_server_bucket_factory, stripe_emulator
):
    """Same one-day runs on an empty lake and on a lake holding 40 more days of raw charges and
    refunds: the same ListObjects calls, each of a prefix of the day's partitions (the charge
    index: one recursive listing of the raw charges and one of its sidecars, 1,000 keys a page)."""
    day = DAYS[-1]
    empty_root = f"s3://{s3_server_bucket_factory()}/stripe-aep"
    full_root = f"s3://{s3_server_bucket_factory()}/stripe-aep"
    history = Lake(full_root)
    first = ACCOUNT_START - dt.timedelta(days=40)
    for i in range(40):
        for resource in ("charges", "refunds"):
            part = RawPartition(history, resource, first + dt.timedelta(days=i))
            start, end = day_bounds(part.day)
            obj = {"id": f"{resource[:2]}_old{i}", "created": start, "customer": f"cus_{i}"}
            part.write(start, end, [json.dumps(obj).encode()], {"api_version": OLDER_API_VERSION})
    with dg.instance_for_test() as instance:
        empty = _one_day_runs_list_calls(s3_server, empty_root, stripe_emulator.url, instance, day)
    with dg.instance_for_test() as instance:
        full = _one_day_runs_list_calls(s3_server, full_root, stripe_emulator.url, instance, day)
    assert sorted(r.prefix for r in full) == sorted(r.prefix for r in empty)
    partitions = {f"stripe-aep/{layer}/{r}/{day.isoformat()}/"
                  for layer in ("stripe", "xdm", "changes")
                  for r in ("charges", "refunds")}  # fmt: skip
    recursive = {"stripe-aep/stripe/charges/", f"stripe-aep/{INDEX_ROOT}/"}
    # The derivation of versions: the day's events and changes partitions, and `changes/<r>/`
    # once, when it builds the state store (the same on both lakes: no changes history here).
    derivation = {
        f"stripe-aep/{folder}/{day.isoformat()}/"
        for folder in ("stripe/events", "changes/charges", "changes/refunds")
    } | {"stripe-aep/changes/charges/", "stripe-aep/changes/refunds/"}
    assert {r.prefix for r in full} <= partitions | recursive | derivation
    assert [r.prefix for r in full if r.prefix in recursive] == sorted(recursive)  # once each
    assert len(full) <= 8 * len(partitions | derivation), len(full)


def test_bad_records_are_quarantined_on_s3(s3_server, s3_bucket, s3_root, stripe_emulator):
    lake = Lake(s3_root)
    day = DAYS[0]
    resources = _resources(stripe_emulator.url, s3_root)
    with dg.instance_for_test() as instance:
        _materialize(_select(raw_assets, "stripe", "charges"), resources, instance, [day])
        part = RawPartition(lake, "charges", day)
        good = read_objects(lake, part.files()[0])[0]
        bad = [
            {**good, "id": "ch_bad_created", "created": "yesterday"},
            {**good, "id": "ch_bad_currency", "currency": "xyz"},
        ]
        start, _ = day_bounds(day)
        part.write(start, start + 60, [json.dumps(b).encode() for b in bad],
                   {"api_version": "2026-06-24.dahlia", "account": None}, refresh=1)  # fmt: skip
        _materialize(_select(xdm_assets, "xdm", "charges"), resources, instance, [day])
    manifests = XdmPartition(lake, "charges", day).manifests()
    q_paths = [m.quarantine for m in manifests.values() if m.quarantine]
    assert len(q_paths) == 1
    assert f"stripe-aep/{q_paths[0]}" in s3_server.keys(s3_bucket, "stripe-aep/quarantine/")
    lines = [json.loads(x) for x in lake.read_bytes(q_paths[0]).splitlines()]
    assert {line["record"]["id"] for line in lines} == {"ch_bad_created", "ch_bad_currency"}
    assert all(line["reason"] for line in lines)


class _FailPublish(Exception):
    pass


def _fail_publishing(monkeypatch, suffix: str) -> list[str]:
    """Make the upload of the next file whose key ends with `suffix` fail (after the files
    published before it); returns the keys published."""
    published: list[str] = []
    original = SpooledFile.commit

    def commit(self):
        if self.final.endswith(suffix):
            self.discard()
            raise _FailPublish(f"upload of {self.final} failed")
        original(self)
        published.append(self.final)

    monkeypatch.setattr(SpooledFile, "commit", commit)
    return published


def test_a_raw_window_failing_between_its_files_leaves_readers_and_cursor_as_they_were(
    s3_server, s3_bucket, s3_root, stripe_emulator, stripe_account
):
    """A raw window is a sidecar then its data file (which marks coverage): the upload failing
    after the sidecar is published leaves no covered window, so the cursor does not move and the
    next run fetches exactly that window."""
    lake = Lake(s3_root)
    day = DAYS[0]
    resources = _resources(stripe_emulator.url, s3_root)
    part = RawPartition(lake, "charges", day)
    with dg.instance_for_test() as instance:
        with pytest.MonkeyPatch.context() as patch:
            published = _fail_publishing(patch, ".jsonl.zst")
            failed = dg.materialize(
                _select(raw_assets, "stripe", "charges"),
                resources=resources,
                instance=instance,
                partition_key=day.isoformat(),
                raise_on_error=False,
            )
        assert not failed.success
        assert any(p.endswith(".meta.json") for p in published)  # it failed between the files
        assert part.files() == [] and part.cursor() == day_bounds(day)[0]
        assert not [k for k in s3_server.keys(s3_bucket) if k.endswith(".jsonl.zst")]
        _materialize(_select(raw_assets, "stripe", "charges"), resources, instance, [day])
    stored = [o["id"] for f in part.files() for o in read_objects(lake, f)]
    truth = [o["id"] for o in stripe_account.objects("charges", *day_bounds(day))]
    assert sorted(stored) == sorted(truth)  # every object once: nothing doubled, nothing missed
    assert part.cursor() == day_bounds(day)[1]


def test_an_xdm_conversion_failing_before_its_manifest_is_never_half_seen(
    s3_server, s3_bucket, s3_root, stripe_emulator
):
    """XDM parts, then quarantine, then the manifest (what readers key on). A reconversion that
    fails after its parts are uploaded leaves no manifest over a mix of old and new parts: the raw
    file reads as not converted, and the next run converts it again."""
    lake = Lake(s3_root)
    day = DAYS[0]
    resources = _resources(stripe_emulator.url, s3_root)
    with dg.instance_for_test() as instance:
        _materialize(_select(raw_assets, "stripe", "charges"), resources, instance, [day])
        with pytest.MonkeyPatch.context() as patch:
            published = _fail_publishing(patch, ".xdm.json")
            failed = dg.materialize(_select(xdm_assets, "xdm", "charges"), resources=resources,
                                    instance=instance, partition_key=day.isoformat(),
                                    raise_on_error=False)  # fmt: skip
        assert not failed.success
        assert any(p.endswith(".parquet") for p in published)
        xdm = XdmPartition(lake, "charges", day)
        assert xdm.manifests() == {} and xdm.parts() == []
        assert [p.why for p in xdm.pending(TENANT)] == ["not converted yet"]
        _materialize(_select(xdm_assets, "xdm", "charges"), resources, instance, [day])
        first = xdm.manifests()
        assert xdm.pending(TENANT) == [] and sum(p.rows for p in xdm.parts()) > 0

        # Converted again (another tenant, say): the failure after the parts removes the old
        # manifest first, so no reader pairs it with the new parts.
        other = {**resources, "xdm": XdmResource(tenant="othertenant")}
        with pytest.MonkeyPatch.context() as patch:
            published = _fail_publishing(patch, ".xdm.json")
            failed = dg.materialize(_select(xdm_assets, "xdm", "charges"), resources=other,
                                    instance=instance, partition_key=day.isoformat(),
                                    raise_on_error=False)  # fmt: skip
        assert not failed.success and any(p.endswith(".parquet") for p in published)
        assert xdm.manifests() == {}
        _materialize(_select(xdm_assets, "xdm", "charges"), resources, instance, [day])
        assert set(xdm.manifests()) == set(first) and xdm.pending(TENANT) == []


def test_delivery_uploads_the_xdm_parts_it_reads_from_s3_exactly_once(
    s3_server, s3_bucket, s3_root, stripe_emulator, stripe_account, aep_setup, monkeypatch, tmp_path
):
    """stripe → xdm → aep with the lake on S3 and the delivery ledger where `STRIPE_AEP_LEDGER_URL`
    puts it (an SQLite file here: the PostgreSQL form is tested in stripe_aep_tests/e2e)."""
    from stripe_aep_tests.assets.test_chain import read_back_ids

    client, datasets = aep_setup
    ledger_file = tmp_path / "ledger-home" / "aep_batches.sqlite"
    ledger_file.parent.mkdir()
    monkeypatch.setenv("STRIPE_AEP_LEDGER_URL", f"sqlite:///{ledger_file}")
    resources = _resources(stripe_emulator.url, s3_root)
    selection = [a for a in (*raw_assets, *xdm_assets, *aep_assets) if a.key.path[-1] == "charges"]
    run_config = {"ops": {"aep__charges": {"config": {"poll_interval_seconds": 0.05}}}}
    days = DAYS[:2]
    with dg.instance_for_test() as instance:
        mark = s3_server.mark()
        _materialize(selection, resources, instance, days, run_config=run_config)
        reads = {r.key for r in s3_server.requests_since(mark) if r.method == "GET" and r.key}
        ids = read_back_ids(client, datasets["charges"])
        truth = {o["id"] for d in days for o in stripe_account.objects("charges", *day_bounds(d))}
        assert len(ids) == len(set(ids)) and set(ids) == truth
        lake = Lake(s3_root)
        parts = [p.path for d in days for p in XdmPartition(lake, "charges", d).parts()]
        assert parts and {f"stripe-aep/{p}" for p in parts} <= reads  # read from S3
        assert ledger_file.is_file() and ledger_file.stat().st_size > 0
        batches = len(client.list_batches(dataset_id=datasets["charges"]))
        _materialize(selection, resources, instance, days, run_config=run_config)
        assert len(client.list_batches(dataset_id=datasets["charges"])) == batches
