"""Two Dagster runs of the same raw partition, in two real processes, at the same moment."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from stripe_aep.lake import Lake
from stripe_aep.stripe.rawstore import RawPartition, day_bounds, read_objects
from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY

DAY = ACCOUNT_START.isoformat()

#: Imports everything, says "ready", waits for the go file, then materializes stripe/charges.
RUN_SCRIPT = """
import json, os, sys, time
import dagster as dg
from stripe_aep.assets.raw import raw_assets
from stripe_aep.resources import LakeResource, StripeResource
url, root, day, go, key = sys.argv[1:6]
asset = [a for a in raw_assets if a.key == dg.AssetKey(["stripe", "charges"])]
resources = {
    "stripe": StripeResource(api_key=key, api_base=url, max_rps="4",
                             visibility_lag_seconds="0", concurrency="2"),
    "lake": LakeResource(root=root),
}
with dg.instance_for_test() as instance:
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.01)
    result = dg.materialize(asset, resources=resources, partition_key=day, instance=instance,
                            raise_on_error=False)
    meta = result.get_asset_materialization_events()[0].materialization.metadata if \
        result.success else {}
    print(json.dumps({"success": result.success, "run_id": result.run_id,
                      "requests": meta["run_requests"].value if meta else None}), flush=True)
"""


def test_two_runs_of_one_raw_partition_do_not_interleave(stripe_emulator, stripe_account, tmp_path):
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUN_SCRIPT,
                stripe_emulator.url,
                str(tmp_path / "lake"),
                DAY,
                go,
                TEST_KEY,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    go.touch()  # both start paging the same day at the same moment
    outputs = [proc.communicate(timeout=300) for proc in procs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(r["success"] for r in results), [err[-3000:] for _, err in outputs]

    # One run paged the day; the other waited for it, then found the day covered: no request.
    holder, waiter = sorted(range(2), key=lambda i: -results[i]["requests"])
    assert results[holder]["requests"] > 0 and results[waiter]["requests"] == 0
    waiter_log = outputs[waiter][1]
    assert (
        f"partition stripe/charges/{DAY} is being written by run {results[holder]['run_id']}"
        in (waiter_log)
    )
    # Every request Stripe saw (the list pages and one account lookup) came from the holder.
    assert len(stripe_emulator.log) == results[holder]["requests"]

    lake = Lake(str(tmp_path / "lake"))
    part = RawPartition(lake, "charges", ACCOUNT_START)
    ids = [o["id"] for f in part.files() for o in read_objects(lake, f)]
    truth = {o["id"] for o in stripe_account.objects("charges", *day_bounds(ACCOUNT_START))}
    assert len(ids) == len(set(ids)) and set(ids) == truth
    assert part.gaps(day_bounds(ACCOUNT_START)[1]) == []
    # The lock file stays; once released it holds no description.
    assert (tmp_path / "lake" / "locks" / "stripe" / "charges" / f"{DAY}.lock").read_text() == ""


def test_xdm_step_waits_for_a_running_extraction_of_its_days(stripe_emulator, tmp_path):
    import dagster as dg

    from stripe_aep.assets.raw import raw_assets
    from stripe_aep.assets.xdm import xdm_assets
    from stripe_aep.resources import LakeResource, StripeResource, XdmResource
    from stripe_aep_tests.test_locks import _start, _wait_held

    root = tmp_path / "lake"
    resources = {
        "stripe": StripeResource(
            api_key=TEST_KEY, api_base=stripe_emulator.url, visibility_lag_seconds="0"
        ),
        "lake": LakeResource(root=str(root)),
        "xdm": XdmResource(tenant="stripeaep"),
    }
    charges = [a for a in raw_assets + xdm_assets if a.key.path[-1] == "charges"]
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            charges[:1], resources=resources, partition_key=DAY, instance=instance
        ).success
        # Another process is extracting the day (it holds the raw lock for a moment).
        log = tmp_path / "holder.log"
        holder = _start(root / "locks", "run-raw", -1, log, f"stripe/charges/{DAY}")
        _wait_held(holder)

        def release_once_the_xdm_step_holds_its_lock():
            xdm_lock = root / "locks" / "xdm" / "charges" / f"{DAY}.lock"
            while not (xdm_lock.exists() and xdm_lock.read_text()):
                time.sleep(0.01)
            time.sleep(0.5)  # the step is now waiting for the raw lock
            Path(f"{log}.release").touch()

        releaser = threading.Thread(target=release_once_the_xdm_step_holds_its_lock)
        releaser.start()
        result = dg.materialize(
            charges[1:], resources=resources, partition_key=DAY, instance=instance
        )
        releaser.join()
        assert result.success
        assert holder.wait(timeout=60) == 0
        warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == 30]
        assert any(
            f"partition stripe/charges/{DAY} is being written by run run-raw" in w for w in warnings
        )
    # The conversion ran after the extraction released the day.
    assert log.read_text().splitlines()[-1] == "end run-raw"


def test_delivery_of_a_held_partition_fails_naming_the_holder(tmp_path, monkeypatch):
    import dagster as dg

    from stripe_aep.assets.aep import aep_assets
    from stripe_aep.resources import AepResource, LakeResource
    from stripe_aep_tests.test_locks import _start, _wait_held

    monkeypatch.setenv("STRIPE_AEP_LOCK_WAIT_SECONDS", "0")
    root = tmp_path / "lake"
    holder = _start(root / "locks", "run-aep", 60, tmp_path / "log", f"aep/charges/{DAY}")
    try:
        _wait_held(holder)
        asset = [a for a in aep_assets if a.key.path[-1] == "charges"]
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                asset,
                resources={"aep": AepResource(), "lake": LakeResource(root=str(root))},
                partition_key=DAY,
                instance=instance,
                raise_on_error=False,
            )
        assert not result.success
        error = str(
            next(e for e in result.all_events if e.is_step_failure).event_specific_data.error
        )
        assert f"partition aep/charges/{DAY} is being written by run run-aep" in error
        assert f"pid {holder.pid}" in error and "STRIPE_AEP_LOCK_WAIT_SECONDS" in error
    finally:
        holder.kill()
        holder.wait()
