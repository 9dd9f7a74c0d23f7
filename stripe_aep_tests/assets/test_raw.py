"""The raw assets of AEP's six resources with `dg.materialize` against the Stripe emulator."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from stripe_aep.assets.raw import raw_assets as every_raw_asset
from stripe_aep.lake import Lake
from stripe_aep.resources import LakeResource, StripeResource
from stripe_aep.stripe.rawstore import RawPartition, day_bounds, read_objects
from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY, only
from stripe_aep_tests.conftest import AEP_SOURCE_RESOURCES as RESOURCES

DAY = ACCOUNT_START.isoformat()
raw_assets = only(every_raw_asset, RESOURCES)
#: The selection is these resources (the reads ledger and its projection cover the selection).
pytestmark = pytest.mark.usefixtures("aep_source_selection")


def _resources(url, root, **extra):
    return {
        "stripe": StripeResource(
            api_key=TEST_KEY, api_base=url, max_rps=1000, visibility_lag_seconds=0, **extra
        ),
        "lake": LakeResource(root=str(root)),
    }


def _ids_on_disk(root, resource, day):
    lake = Lake(str(root))
    part = RawPartition(lake, resource, day)
    return [o["id"] for f in part.files() for o in read_objects(lake, f)]


def _truth(account, resource, day):
    return {o["id"] for o in account.objects(resource, *day_bounds(day))}


def test_day_partition_holds_exactly_the_days_objects(stripe_emulator, stripe_account, tmp_path):
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            raw_assets,
            resources=_resources(stripe_emulator.url, tmp_path),
            partition_key=DAY,
            instance=instance,
        )
        assert result.success
        for resource in RESOURCES:
            ids = _ids_on_disk(tmp_path, resource, ACCOUNT_START)
            assert len(ids) == len(set(ids)), resource
            assert set(ids) == _truth(stripe_account, resource, ACCOUNT_START), resource
        charges = next(
            e
            for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(["stripe", "charges"])
        ).materialization.metadata
        n = len(_truth(stripe_account, "charges", ACCOUNT_START))
        assert charges["dagster/row_count"].value == n
        assert charges["objects"].value == charges["new_objects"].value == n
        assert charges["run_requests"].value >= -(-n // 100)
        # Frugal: a day paged as one window costs its pages and no more.
        assert charges["run_min_requests"].value == -(-n // 100)
        # (+1: the account id lookup, made once per key and then remembered on the lake)
        assert charges["run_requests"].value <= charges["run_min_requests"].value + 1
        assert charges["pages"].value == -(-n // 100)
        assert charges["cursor"].value.startswith(
            (ACCOUNT_START + dt.timedelta(days=1)).isoformat()
        )
        # One file per partition after the run's merge.
        assert len(RawPartition(Lake(str(tmp_path)), "charges", ACCOUNT_START).files()) == 1

        # A second run of the closed day sends no request at all.
        before = len(stripe_emulator.log)
        again = dg.materialize(
            raw_assets,
            resources=_resources(stripe_emulator.url, tmp_path),
            partition_key=DAY,
            instance=instance,
        )
        assert again.success
        assert len(stripe_emulator.log) == before
        meta = again.get_asset_materialization_events()[0].materialization.metadata
        assert meta["run_requests"].value == 0 and meta["new_objects"].value == 0


def test_backfill_range_in_one_run_equals_day_by_day(stripe_emulator, stripe_account, tmp_path):
    days = [ACCOUNT_START + dt.timedelta(days=i) for i in range(3)]
    one_run, by_day = tmp_path / "range", tmp_path / "days"
    with dg.instance_for_test() as instance:
        ranged = dg.materialize(
            raw_assets,
            resources=_resources(stripe_emulator.url, one_run),
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": days[0].isoformat(),
                "dagster/asset_partition_range_end": days[-1].isoformat(),
            },
        )
        assert ranged.success
        # Each day's own figures on that day's partition, not the range's totals on every day.
        events = [
            e
            for e in ranged.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(["stripe", "charges"])
        ]
        assert sorted(e.partition for e in events) == [d.isoformat() for d in days]
        for event in events:
            day = dt.date.fromisoformat(event.partition)
            meta = event.materialization.metadata
            n = len(_truth(stripe_account, "charges", day))
            assert meta["dagster/row_count"].value == meta["objects"].value == n
            assert meta["pages"].value == -(-n // 100)
            assert meta["cursor"].value.startswith((day + dt.timedelta(days=1)).isoformat())
            run_total = sum(len(_truth(stripe_account, "charges", d)) for d in days)
            assert meta["run_requests"].value == meta["run_min_requests"].value
            assert meta["run_min_requests"].value == sum(
                -(-len(_truth(stripe_account, "charges", d)) // 100) for d in days
            )
            assert n < run_total
        for day in days:
            assert dg.materialize(
                raw_assets,
                resources=_resources(stripe_emulator.url, by_day),
                partition_key=day.isoformat(),
                instance=instance,
            ).success
    for resource in RESOURCES:
        for day in days:
            a = _ids_on_disk(one_run, resource, day)
            b = _ids_on_disk(by_day, resource, day)
            assert sorted(a) == sorted(b) and len(a) == len(set(a)), (resource, day)
            assert set(a) == _truth(stripe_account, resource, day)


def test_killed_run_is_completed_by_the_next_without_gaps_or_doubles(stripe_account, tmp_path):
    from stripe_aep.emulators.stripe_api import StripeEmulator

    # Paced at 5 requests/s over two windows of several pages each, so the first window is written
    # while the other still has pages to fetch: the kill lands mid-partition.
    with StripeEmulator(stripe_account, rate_limit_rps=0, latency_ms=20) as emu:
        script = (
            "import datetime as dt\n"
            "from stripe_aep.config import StripeSettings\n"
            "from stripe_aep.lake import Lake\n"
            "from stripe_aep.stripe.client import StripeClient\n"
            "from stripe_aep.stripe.extract import PartitionExtractor\n"
            f"s = StripeSettings.build(api_key='{TEST_KEY}', api_base='{emu.url}', max_rps='5',"
            " concurrency='2')\n"
            f"PartitionExtractor(StripeClient(s, shared_limiter=False), Lake(r'{tmp_path}'), 'charges',"
            " concurrency=2, visibility_lag_seconds=0, max_piece_seconds=3600)"
            f".run([dt.date.fromisoformat('{DAY}')])\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", script])
        folder = Path(tmp_path, "stripe", "charges", DAY)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if folder.exists() and list(folder.glob("*.jsonl.zst")):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        part = RawPartition(Lake(str(tmp_path)), "charges", ACCOUNT_START)
        start, end = day_bounds(ACCOUNT_START)
        assert part.gaps(end), "the killed run must have left part of the day uncovered"
        covered_before = part.coverage()
        assert covered_before, "the killed run must have written some windows"

        emu.log.clear()
        with dg.instance_for_test() as instance:
            assert dg.materialize(
                [a for a in raw_assets if a.key == dg.AssetKey(["stripe", "charges"])],
                resources=_resources(emu.url, tmp_path),
                partition_key=DAY,
                instance=instance,
            ).success
        # The rerun asked Stripe only about the gaps.
        charge_requests = [r for r in emu.log if r.path == "/v1/charges"]
        assert charge_requests
        for record in charge_requests:
            gte = int(record.query["created[gte]"])
            assert not any(a <= gte < b for a, b in covered_before), record.query
    ids = _ids_on_disk(tmp_path, "charges", ACCOUNT_START)
    assert len(ids) == len(set(ids))
    assert set(ids) == _truth(stripe_account, "charges", ACCOUNT_START)
    assert part.gaps(end) == []


def test_api_key_never_reaches_event_log_or_data(stripe_emulator, tmp_path):
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            raw_assets,
            resources=_resources(stripe_emulator.url, tmp_path / "lake"),
            partition_key=DAY,
            instance=instance,
        )
        assert result.success
        logs = instance.all_logs(result.run_id)
        text = "\n".join(dg.serialize_value(e) for e in logs)
        assert len(logs) > 10 and "stripe/charges" in text or "charges" in text
        assert TEST_KEY not in text
        assert TEST_KEY[8:] not in text
    for path in (tmp_path / "lake").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".zst":
                import pyarrow as pa

                data = pa.input_stream(str(path), compression="zstd").read()
            assert TEST_KEY.encode() not in data, path


def test_missing_key_fails_at_run_start_naming_the_variable(stripe_emulator, tmp_path, monkeypatch):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    resources = {
        "stripe": StripeResource(api_key=dg.EnvVar("STRIPE_API_KEY"), api_base=stripe_emulator.url),
        "lake": LakeResource(root=str(tmp_path)),
    }
    with pytest.raises(Exception) as exc:
        dg.materialize(raw_assets[:1], resources=resources, partition_key=DAY)
    assert "STRIPE_API_KEY" in str(exc.value)
    assert len(stripe_emulator.log) == 0


def test_malformed_key_fails_before_any_request(stripe_emulator, tmp_path):
    resources = {
        "stripe": StripeResource(api_key="pk_test_nope", api_base=stripe_emulator.url),
        "lake": LakeResource(root=str(tmp_path)),
    }
    with pytest.raises(Exception) as exc:
        dg.materialize(raw_assets[:1], resources=resources, partition_key=DAY)
    assert "STRIPE_API_KEY" in str(exc.value)
    assert len(stripe_emulator.log) == 0


def test_malformed_start_date_fails_at_load_naming_the_variable():
    env = {**os.environ, "STRIPE_START_DATE": "20-11-2026"}
    proc = subprocess.run(
        [sys.executable, "-c", "import stripe_aep.definitions"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "STRIPE_START_DATE" in proc.stderr and "YYYY-MM-DD" in proc.stderr


@pytest.mark.parametrize("allocation", ["10000", "100000000", None])
def test_idle_tick_reports_reads_and_warns_over_the_allocation(
    stripe_emulator, tmp_path, allocation
):
    """Today's partition on an account with nothing new: one request per list pass, and the
    schedules' projected monthly reads (every tick of every resource) against the allocation: a
    warning when the projection exceeds it, none when it fits or no allocation is set."""
    # STRIPE_READ_ALLOCATION, as the code location feeds it (dg.EnvVar.int) when set
    stripe_fields = {} if allocation is None else {"read_allocation": int(allocation)}
    today = dt.datetime.now(dt.UTC).date().isoformat()
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            raw_assets,
            resources=_resources(stripe_emulator.url, tmp_path, **stripe_fields),
            partition_key=today,
            instance=instance,
        )
        assert result.success
        lists = [r for r in stripe_emulator.log if r.path != "/v1/account"]
        assert len(lists) == sum(2 if r == "prices" else 1 for r in RESOURCES)
        meta = {
            e.asset_key.path[-1]: e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        assert meta["prices"]["run_min_requests"].value == 2
        assert meta["charges"]["run_min_requests"].value == 1
        if allocation is None:
            assert "read_allocation" not in meta["charges"]
        else:
            assert meta["charges"]["read_allocation"].value == int(allocation)
        # Without stripe/events (not in this run, so no probe): seven list requests a tick (+1 the
        # first time: the account id, then remembered) and the events' one request a tick it has
        # not reported yet, 96 ticks a day: ~23,000 reads a month, over the 10,000 floor of a
        # small account (with the events asset an idle tick costs 2: stripe_aep_tests/stripe/
        # test_events.py and bench/idle_reads.py).
        projected = meta["prices"]["projected_monthly_reads"].value
        assert 8 * (96 * 30 + 30) <= projected <= 9 * (96 * 30 + 30)
        warnings = [
            e
            for e in instance.all_logs(result.run_id)
            if e.level == 30 and "STRIPE_READ_ALLOCATION" in (e.user_message or "")
        ]
        assert len(warnings) == (len(RESOURCES) if allocation == "10000" else 0)
