"""The pipeline driven through the real `dagster dev` (webserver + daemon) on the embedded SQLite
instance (`dagster.yaml`), as a user drives it from the UI: a backfill launched with the UI's GraphQL
mutation, a schedule switched on and ticked by the daemon, and the pages seen in a real browser.

The tests share one deployment and run in file order: the backfill of the five past days first,
then today's scheduled run, then the browser, which shows both.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import requests

from stripe_aep.config import DEFAULT_STRIPE_API_VERSION
from stripe_aep.emulators.stripe_limits import busiest_second
from stripe_aep.stripe.rawstore import day_bounds
from stripe_aep_tests.assets.test_change_delivery import (
    batch_tables,
    latest_records,
    object_state,
    record_of,
)
from stripe_aep_tests.conftest import TEST_KEY
from stripe_aep_tests.e2e.conftest import (
    ALL_ASSET_PATHS,
    RESOURCES,
    Deployment,
    deployment,
    require_binary,
)
from stripe_aep_tests.paths import REPO_ROOT
from stripe_aep_tests.xdm.conftest import TENANT

pytestmark = pytest.mark.timeout(2400)

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    # The fresh-data schedule ticks every minute here, not every 15: the daemon's real tick, sooner.
    with deployment(
        tmp_path_factory.mktemp("dev"),
        REPO_ROOT / "dagster.yaml",
        extra_env={"STRIPE_AEP_FRESH_CRON": "* * * * *"},
    ) as d:
        yield d


def launch_five_day_backfill(dev: Deployment) -> tuple[str, dict]:
    backfill_id = dev.dagster.launch_backfill(
        [d.isoformat() for d in dev.past_days], ALL_ASSET_PATHS, "e2e: five past days"
    )
    return backfill_id, dev.dagster.wait_backfill_done(backfill_id)


def assert_backfill_delivered_exactly_once(dev: Deployment, status: dict) -> None:
    """The backfill succeeded and AEP holds exactly the Stripe objects of the five days, once."""
    assert status["status"] == "COMPLETED_SUCCESS", (status, dev.dagster.log_tail())
    assert status["numPartitions"] == len(dev.past_days)
    runs = status["runs"]
    assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
    delivered = dev.delivered_ids()
    for resource in RESOURCES:
        dev.assert_listed_once(resource, delivered[resource], dev.past_days)


@pytest.fixture(scope="module")
def five_day_backfill(dev):
    return launch_five_day_backfill(dev)


def test_ui_backfill_of_five_days_delivers_each_object_once(dev, five_day_backfill):
    _, status = five_day_backfill
    assert_backfill_delivered_exactly_once(dev, status)
    # BackfillPolicy.multi_run: the five days of every asset run as one range run, not one a day.
    assert len(status["runs"]) == 1, status["runs"]


MATERIALIZATIONS = """
query($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) { ... on Asset {
    assetMaterializations(partitions: $partitions, limit: 100) {
      partition runId
      metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
    } } } }
"""


def test_each_day_of_the_backfill_shows_its_own_figures_in_the_ui(dev, five_day_backfill):
    """The backfill's one range run, as the UI reads it: one materialization per asset and day,
    each with that day's own row count (and cursor for the raw layer), which add up to the five
    days' objects instead of showing the five days' total on every day."""
    _, status = five_day_backfill
    [run] = status["runs"]
    keys = [d.isoformat() for d in dev.past_days]
    for resource in RESOURCES:
        per_day = {d.isoformat(): len(dev.truth(resource, [d])) for d in dev.past_days}
        for layer in ("stripe", "xdm", "aep"):
            data = dev.dagster.graphql(
                MATERIALIZATIONS, {"path": [layer, resource], "partitions": keys}
            )
            events = [
                e for e in data["assetOrError"]["assetMaterializations"] if e["runId"] == run["id"]
            ]
            assert sorted(e["partition"] for e in events) == keys, (layer, resource)
            for event in events:
                meta = {
                    m["label"]: m.get("intValue", m.get("text")) for m in event["metadataEntries"]
                }
                day, where = event["partition"], (layer, resource, event["partition"])
                assert meta["dagster/row_count"] == per_day[day], where
                if layer == "stripe":
                    next_day = dt.date.fromisoformat(day) + dt.timedelta(days=1)
                    assert meta["cursor"].startswith(next_day.isoformat()), where
                    assert meta["run_row_count"] == sum(per_day.values()), where


def test_schedule_tick_delivers_todays_new_objects(dev, five_day_backfill):
    schedule = "stripe_aep_fresh_data"
    before = {r: dev.truth(r, [dev.today]) for r in RESOURCES}
    state_id = dev.dagster.start_schedule(schedule)
    try:
        tags = {"dagster/schedule_name": schedule}
        _wait(lambda: dev.dagster.runs(tags), "the schedule's first run", dev, 240)
    finally:
        # Stop before the next tick: one run is what this test measures.
        dev.dagster.stop_schedule(state_id)

    # Wait for every run of the tick: under load the run monitor may count a slow start as a
    # crash and re-launch it (run_retries), which must still deliver each object once.
    def settled():
        runs = dev.dagster.runs(tags)
        return (
            runs if all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs) else None
        )

    runs = _wait(settled, "the scheduled run to finish", dev, 900)
    ok = [r for r in runs if r["status"] == "SUCCESS"]
    assert ok, (runs, dev.dagster.log_tail())
    run = ok[0]
    assert {"key": "dagster/partition", "value": dev.today.isoformat()} in run["tags"], run["tags"]

    after = {r: dev.truth(r, [dev.today]) for r in RESOURCES}
    past = {r: dev.truth(r, dev.past_days) for r in RESOURCES}
    delivered = dev.delivered_ids()
    assert any(before.values()), "no object was created today before the tick: nothing to prove"
    for resource in RESOURCES:
        ids = delivered[resource]
        assert len(ids) == len(set(ids)), f"{resource}: an object was delivered twice"
        todays = set(ids) - past[resource]
        # Every object created before the schedule was switched on arrived; nothing that does not
        # exist today did (objects created during the run may or may not be in it).
        assert before[resource] <= todays <= after[resource], resource
        assert past[resource] <= set(ids), f"{resource}: the backfilled days lost objects"


def _mutate_one(dev: Deployment, resource: str, kind: str, skip: set[str], **fields) -> str:
    """Apply `kind` to the first object of the backfilled days that accepts it; its id."""
    for day in dev.past_days:
        for obj in dev.account.objects(resource, *day_bounds(day)):
            if obj["id"] in skip:
                continue
            try:
                dev.account.mutate(resource, obj["id"], kind, **fields)
            except ValueError:
                continue  # e.g. a charge already refunded, a subscription already ended
            return obj["id"]
    raise AssertionError(f"no {resource} of the backfilled days accepts {kind}")


def test_changes_in_stripe_reach_aep_after_the_next_scheduled_run(dev, five_day_backfill, tmp_path):
    """Objects of the backfilled days change in Stripe (a customer edited, one deleted, a price
    deactivated, a subscription canceled, a charge refunded); after the fresh-data schedule's next
    tick, the latest record of each in AEP (docs/change-capture.md, "Reading the latest state")
    equals the object as Stripe returns it now, the deleted customer's is a tombstone, and no
    record was delivered twice."""
    changed: dict[str, list[str]] = {r: [] for r in RESOURCES}
    edited = _mutate_one(dev, "customers", "update", set(), email="changed@example.com")
    changed["customers"].append(edited)
    deleted = _mutate_one(dev, "customers", "delete", {edited})
    changed["prices"].append(_mutate_one(dev, "prices", "deactivate", set()))
    canceled = _mutate_one(dev, "subscriptions", "cancel", set())
    changed["subscriptions"].append(canceled)
    changed["charges"].append(_mutate_one(dev, "charges", "refund", set()))

    schedule = "stripe_aep_fresh_data"
    tags = {"dagster/schedule_name": schedule}
    before = {r["runId"] for r in dev.dagster.runs(tags)}
    state_id = dev.dagster.start_schedule(schedule)
    try:
        _wait(
            lambda: [r for r in dev.dagster.runs(tags) if r["runId"] not in before],
            "the schedule's next run",
            dev,
            240,
        )
    finally:
        dev.dagster.stop_schedule(state_id)

    def settled():
        runs = [r for r in dev.dagster.runs(tags) if r["runId"] not in before]
        return runs if all(r["status"] in FINISHED for r in runs) else None

    runs = _wait(settled, "the scheduled run to finish", dev, 900)
    assert any(r["status"] == "SUCCESS" for r in runs), (runs, dev.dagster.log_tail())

    client = dev.aep_client()
    try:
        tables = {
            r: batch_tables(client, dev.datasets[r]).values()
            for r in ("customers", "prices", "subscriptions", "charges")
        }
    finally:
        client.close()
    for resource, batches in tables.items():
        latest = latest_records(batches)
        for oid in changed.get(resource, []) + ([deleted] if resource == "customers" else []):
            record = latest[oid]
            assert record[f"_{TENANT}"]["stripe"]["versionSource"] != "list", (resource, oid)
            # A deleted customer, and a canceled subscription (customer.subscription.deleted), end
            # as tombstones: the last state, flagged deleted.
            assert record[f"_{TENANT}"]["stripe"]["deleted"] is (oid in (deleted, canceled)), oid
            if oid == deleted:
                continue
            now = requests.get(
                f"{dev.stripe.url}/v1/{resource}/{oid}",
                headers={
                    "Authorization": f"Bearer {TEST_KEY}",
                    "Stripe-Version": DEFAULT_STRIPE_API_VERSION,
                },
                timeout=30,
            )
            assert now.status_code == 200, now.text
            expected = record_of(tmp_path, now.json(), resource, dev.account.account_id)
            assert object_state(record) == object_state(expected), (resource, oid)


BATCH_STATUS_SENSOR = "stripe_aep_batch_status"
GAPS_SENSOR = "stripe_aep_gaps"
SENSOR_TAG = "stripe_aep/sensor"


def _sensor_run(dev: Deployment, sensor: str) -> dict:
    """Switch `sensor` on, wait for the first run it requests, switch it off, wait for the run."""
    state_id = dev.dagster.start_sensor(sensor)
    tags = {SENSOR_TAG: sensor}
    try:
        _wait(lambda: dev.dagster.runs(tags), f"a run requested by {sensor}", dev, 300)
    finally:
        dev.dagster.stop_sensor(state_id)

    def settled():
        runs = dev.dagster.runs(tags)
        return (
            runs if all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs) else None
        )

    runs = _wait(settled, f"the runs {sensor} requested to finish", dev, 900)
    ok = [r for r in runs if r["status"] == "SUCCESS"]
    assert ok, (runs, dev.dagster.log_tail())
    return ok[0]


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def test_failed_batch_is_rerun_by_the_batch_status_sensor(dev, five_day_backfill):
    """A batch AEP fails (fault injected in the emulator) is re-run by the batch-status sensor;
    the day then holds each of its objects exactly once."""
    day = dev.spare_day
    dev.aep.faults.fail_next_batches = 1
    backfill_id = dev.dagster.launch_backfill(
        [day.isoformat()], ALL_ASSET_PATHS, "e2e: one AEP batch fails"
    )
    dev.dagster.wait_backfill_done(backfill_id)
    assert dev.aep.faults.fail_next_batches == 0, "no batch was completed: the fault is unused"
    client = dev.aep_client()
    try:
        failed = {
            r: [b for b in client.list_batches(dataset_id=dev.datasets[r]) if b.status == "failed"]
            for r in RESOURCES
        }
    finally:
        client.close()
    failed = {r: batches for r, batches in failed.items() if batches}
    assert len(failed) == 1 and len(next(iter(failed.values()))) == 1, failed
    (resource,) = failed
    missing = dev.truth(resource, [day])
    assert missing and not missing & set(dev.delivered_ids()[resource]), "nothing was missing"

    run = _sensor_run(dev, BATCH_STATUS_SENSOR)
    assert _tag(run, "dagster/partition") == day.isoformat(), run["tags"]
    delivered = dev.delivered_ids()
    for r in RESOURCES:
        ids = delivered[r]
        assert len(ids) == len(set(ids)), f"{r}: an object was delivered twice"
        assert set(ids) & dev.truth(r, [day]) == dev.truth(r, [day]), r


def test_day_deleted_from_the_lake_is_repaired_by_the_gap_sensor(dev, five_day_backfill):
    """A delivered day whose raw and XDM files vanish from the lake is noticed by the gaps sensor,
    re-run, and its files are back; AEP still holds each object once (nothing re-sent twice)."""
    day = dev.past_days[0]
    folders = [dev.lake_root / layer / "charges" / day.isoformat() for layer in ("stripe", "xdm")]
    for folder in folders:
        assert folder.is_dir() and any(folder.iterdir()), folder
        shutil.rmtree(folder)

    run = _sensor_run(dev, GAPS_SENSOR)
    first, last = _tag(run, RANGE_START), _tag(run, RANGE_END)
    assert first and last and first <= day.isoformat() <= last, run["tags"]
    for folder in folders:
        assert folder.is_dir() and any(folder.iterdir()), f"{folder} was not rebuilt"
    delivered = dev.delivered_ids()
    for r in RESOURCES:
        ids = delivered[r]
        assert len(ids) == len(set(ids)), f"{r}: an object was delivered twice"
        assert dev.truth(r, dev.past_days) <= set(ids), r


def _wait(probe, what: str, dev: Deployment, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}\n{dev.dagster.log_tail()}")


#: The Debian package's browser; Playwright drives it (no browser download of its own).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where the screenshots go: a temporary folder, or the README's `docs/img` when
#: `STRIPE_AEP_SCREENSHOTS_DIR` says so (`make screenshots`), so a test run leaves the tree clean.
SCREENSHOTS_ENV = "STRIPE_AEP_SCREENSHOTS_DIR"
EXPANDED_GRAPH = "/asset-groups/?expanded=" + "%2C".join(
    f"global%40global%3A{group}" for group in ("aep", "stripe", "xdm")
)


def _wait_until_no_run_is_in_progress(dev: Deployment, quiet_seconds: float = 15.0) -> None:
    """Every run of the instance finished, and still so `quiet_seconds` later: the run monitor may
    re-launch a run it took for crashed (run_retries) just after the sensor tests saw it end, and a
    check still running in that run is what the UI would show as the latest evaluation."""

    def quiet():
        def busy():
            return [r["runId"] for r in dev.dagster.runs() if r["status"] not in FINISHED]

        if busy():
            return False
        time.sleep(quiet_seconds)
        return not busy()

    _wait(quiet, "every run to finish", dev, 900)


FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


def test_browser_shows_assets_checks_and_backfill(dev, five_day_backfill, tmp_path):
    """Headless Chromium on the running webserver: the asset graph with every asset and their
    check results, an asset's checks, the backfill page with its status; no console error."""
    require_binary(CHROMIUM, "apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install '.[test]'")
    _wait_until_no_run_is_in_progress(dev)
    backfill_id, _ = five_day_backfill
    # What the "Join the community" dialog's Skip button records, so it covers no screenshot.
    assert dev.dagster.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    errors: list[str] = []
    SCREENSHOTS = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)  # noqa: N806
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))

            # The asset graph, every group expanded: every asset node; the xdm/aep ones show their
            # checks passed (the stripe/* assets have none).
            # 2400 px wide: stripe/events fans out to the raw assets, which widens the stripe
            # group; at 1600 px the graph is zoomed out below the scale at which nodes show text.
            page.set_viewport_size({"width": 2400, "height": 2000})
            page.goto(dev.dagster.url + EXPANDED_GRAPH, wait_until="load")
            nodes = page.get_by_text("Latest event", exact=True)
            sync_api.expect(nodes).to_have_count(len(ALL_ASSET_PATHS), timeout=60_000)
            passed = page.get_by_text(re.compile(r"^\d+ / \d+ Passed$"))
            sync_api.expect(passed).to_have_count(2 * len(RESOURCES), timeout=60_000)
            for resource in RESOURCES:
                assert page.get_by_text(resource, exact=True).count() >= 3, resource
            page.wait_for_timeout(1500)  # let the edges settle before the picture
            page.screenshot(path=str(SCREENSHOTS / "asset-graph.png"))

            # An asset's checks tab: the delivery check, passed, with its metadata.
            page.set_viewport_size({"width": 1600, "height": 1000})
            page.goto(dev.dagster.url + "/assets/aep/charges?view=checks", wait_until="load")
            sync_api.expect(page.get_by_text("aep_rows_match_xdm_rows").first).to_be_visible(
                timeout=60_000
            )
            # The latest evaluation: a run the run monitor re-launched (run_retries) may still be
            # evaluating it; the page refreshes its live data until then.
            sync_api.expect(page.get_by_text("Passed", exact=True).first).to_be_visible(
                timeout=180_000
            )
            sync_api.expect(page.get_by_text("rows_delivered", exact=True).first).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "asset-checks.png"))

            # The backfill: succeeded, every asset's row 100% completed (tall enough for every
            # asset's row: the table draws only the rows in view).
            page.set_viewport_size({"width": 1600, "height": 400 + 60 * len(ALL_ASSET_PATHS)})
            page.goto(f"{dev.dagster.url}/runs/b/{backfill_id}", wait_until="load")
            sync_api.expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible(
                timeout=60_000
            )
            for path in ALL_ASSET_PATHS:
                sync_api.expect(
                    page.get_by_text(" / ".join(path), exact=True).first
                ).to_be_visible()
            sync_api.expect(page.get_by_text("100% completed")).to_have_count(len(ALL_ASSET_PATHS))
            page.screenshot(path=str(SCREENSHOTS / "backfill.png"))
        finally:
            browser.close()
    assert not errors, errors
    for name in ("asset-graph.png", "asset-checks.png", "backfill.png"):
        assert (SCREENSHOTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_stripe_saw_no_more_than_its_published_limits(dev, five_day_backfill):
    """Everything the deployment sent (backfill, schedule ticks, sensors' re-runs), audited from the
    emulator's arrival log against a test key's limits: at most 25 requests in any one-second
    window for the account and for each endpoint, and fewer than 1 % answered 429."""
    log = [r for r in dev.stripe.log if r.path.startswith("/v1/")]
    assert len(log) > 50, "too few requests to audit"
    by_endpoint: dict[str, list[float]] = {}
    for record in log:
        by_endpoint.setdefault(record.endpoint, []).append(record.t)

    account = busiest_second([r.t for r in log])
    per_endpoint = {e: busiest_second(ts) for e, ts in by_endpoint.items()}
    assert account <= 25, (account, per_endpoint)
    assert max(per_endpoint.values()) <= 25, per_endpoint
    limited = [r.limited_by for r in log if r.status == 429]
    assert len(limited) < 0.01 * len(log), limited
