"""A backfill launched the way the Dagster UI launches one: GraphQL `launchPartitionBackfill` over a
range of days, processed by the backfill daemon, runs launched in their own processes."""

import datetime as dt
import logging
import time

import dagster as dg
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from stripe_aep.lake import Lake
from stripe_aep.stripe.rawstore import RawPartition, day_bounds, read_objects
from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY
from stripe_aep_tests.paths import REPO_ROOT

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numPartitions runs(limit: 10) { id status } }
  }
}
"""


def test_ui_backfill_of_a_range_runs_as_one_run_and_fills_every_day(
    stripe_emulator, stripe_account, tmp_path, monkeypatch, aep_source_selection
):
    RESOURCES = aep_source_selection  # the code location of this test moves AEP's six
    days = [ACCOUNT_START + dt.timedelta(days=i) for i in range(3)]
    lake_root = tmp_path / "lake"
    for name, value in {
        "STRIPE_API_KEY": TEST_KEY,
        "STRIPE_API_BASE": stripe_emulator.url,
        "STRIPE_MAX_RPS": "500",
        "STRIPE_VISIBILITY_LAG_SECONDS": "0",
        "STRIPE_START_DATE": "2026-11-01",
        "STRIPE_AEP_DATA_DIR": str(lake_root),
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "home").mkdir()
    with (
        dg.instance_for_test(
            temp_dir=str(tmp_path / "home"), synchronous_run_coordinator=True
        ) as instance,
        define_out_of_process_context(
            str(REPO_ROOT / "stripe_aep" / "definitions.py"), "defs", instance
        ) as context,
    ):
        result = execute_dagster_graphql(
            context,
            LAUNCH_PARTITION_BACKFILL_MUTATION,
            variables={
                "backfillParams": {
                    "partitionNames": [d.isoformat() for d in days],
                    "assetSelection": [{"path": ["stripe", r]} for r in RESOURCES],
                    "title": "test backfill",
                }
            },
        )
        launched = result.data["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        logger = logging.getLogger("backfill-test")
        deadline = time.monotonic() + 150
        status = None
        while time.monotonic() < deadline:
            list(execute_backfill_iteration(context.process_context, logger))
            status = execute_dagster_graphql(
                context, BACKFILL_STATUS, variables={"id": backfill_id}
            ).data["partitionBackfillOrError"]
            if status["status"] not in ("REQUESTED", "FAILING", "CANCELING"):
                break
            time.sleep(1)
        assert status and status["status"] == "COMPLETED_SUCCESS", status
        # BackfillPolicy.multi_run: the three days of one asset run as a single run, not three.
        runs = instance.get_runs()
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert len(runs) == 1, [r.tags for r in runs]

    lake = Lake(str(lake_root))
    for resource in RESOURCES:
        for day in days:
            part = RawPartition(lake, resource, day)
            ids = [o["id"] for f in part.files() for o in read_objects(lake, f)]
            truth = {o["id"] for o in stripe_account.objects(resource, *day_bounds(day))}
            assert len(ids) == len(set(ids)) and set(ids) == truth, (resource, day)
