"""The whole chain as it runs beyond one machine: nothing shared but S3 and PostgreSQL.

The deployment of docs/deploy.md, short of Kubernetes: both emulators, the lake on an S3-compatible
server (`moto_server`, the same fixture as stripe_aep_tests/s3/), the delivery ledger, partition
locks and Stripe budgets on a real PostgreSQL server (`STRIPE_AEP_LEDGER_URL`, its own database), and
the Dagster instance on the same server (`dagster-postgres.yaml`). `dagster dev` runs the webserver,
the daemon and the code server; each run is its own process (the default run launcher), as each run
is its own pod under the K8sRunLauncher, and the queued run coordinator launches several at once.

1. One backfill per day, launched together through the UI's GraphQL: the daemon turns them into
   runs that execute in parallel. Every Stripe object of those days is in AEP exactly once, the
   ledger's rows are in PostgreSQL, the lake's files in the bucket (no local lake, no SQLite file),
   and Stripe saw no more than a test key's limits in any one-second window, summed over all runs.
2. A run SIGKILLed in the middle of a delivery (a `dagster asset materialize` run of the test code
   location stripe_aep_tests/e2e/crashing_location.py, whose aep assets kill their process at a
   delivery checkpoint, on the same instance, S3 and PostgreSQL), then the day backfilled again
   through the UI: every object in AEP exactly once, no file committed twice.

The tests share one deployment and run in file order.
"""

# ruff: noqa: F811 (the imported s3_server fixture is requested by name below)
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from stripe_aep.assets.aep import AEP_POOL
from stripe_aep.assets.raw import STRIPE_POOL
from stripe_aep.emulators.stripe_limits import busiest_second
from stripe_aep_tests.e2e.conftest import ALL_ASSET_PATHS, RESOURCES, Deployment, deployment
from stripe_aep_tests.e2e.harness import wait_for
from stripe_aep_tests.paths import REPO_ROOT
from stripe_aep_tests.pg import create_database, postgres_url

# s3_server: the session's moto_server fixture, imported so pytest registers it here
from stripe_aep_tests.s3.conftest import (  # noqa: F401
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    s3_server,
)

pytestmark = pytest.mark.timeout(1800)

#: the test key's published limits (Stripe: 25 requests/s in a sandbox, for the account and for
#: each endpoint), which the emulator enforces and the runs must keep together
TEST_KEY_RPS = 25
PREFIX = "stripe-aep"
CHARGES_PER_DAY = 1000
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")


@pytest.fixture(scope="module")
def bucket(s3_server):
    name = f"lake-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return name


@pytest.fixture(scope="module")
def ledger_url(pg):
    """The ledger, locks and budgets in their own database of the same server as the instance."""
    return create_database(pg, "stripe_aep_ledger")


@pytest.fixture(scope="module")
def dist(tmp_path_factory, pg, s3_server, bucket, ledger_url):
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for name in aws:  # the runs get the test server's settings, not the machine's
        os.environ.pop(name)
    try:
        with deployment(
            tmp_path_factory.mktemp("dist"),
            REPO_ROOT / "dagster-postgres.yaml",
            extra_env={
                **pg,
                "AWS_ENDPOINT_URL": s3_server.endpoint,
                "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
                "STRIPE_AEP_DATA_DIR": f"s3://{bucket}/{PREFIX}",
                "STRIPE_AEP_LEDGER_URL": ledger_url,
            },
            # enough pages (a page holds 100 objects) that runs extracting at once would exceed
            # the test key's 25 requests/s per endpoint without the shared budget
            charges_per_day=CHARGES_PER_DAY,
        ) as d:
            _set_pool_limits(d)
            yield d
    finally:
        os.environ.update(aws)


#: the pools of the definitions and their limit (dagster-postgres.yaml's `pools.default_limit`)
_POOL_LIMIT = yaml.safe_load((REPO_ROOT / "dagster-postgres.yaml").read_text())["concurrency"][
    "pools"
]["default_limit"]
POOL_LIMITS = {STRIPE_POOL: _POOL_LIMIT, AEP_POOL: _POOL_LIMIT}


def _set_pool_limits(dist: Deployment) -> None:
    """Step 6 of docs/deploy.md: the pools' rows created once, before the first runs. Left to the
    runs, two of them starting a pool's first steps at once race to create its row and one fails
    (Dagster's `initialize_concurrency_limit_to_default` on PostgreSQL, dagster-io/dagster#33552);
    the run retry then re-runs it, but the test wants every run to succeed at its first try."""
    dagster = Path(sys.executable).parent / "dagster"
    for pool, limit in POOL_LIMITS.items():
        done = subprocess.run(
            [str(dagster), "instance", "concurrency", "set", pool, str(limit)],
            env=dist.dagster.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]


def _query(url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def _run_times(dist: Deployment, run_ids: list[str]) -> dict[str, tuple[float, float]]:
    times = {}
    for run_id in run_ids:
        run = dist.dagster.graphql(
            """query($id: ID!) { runOrError(runId: $id) { ... on Run { startTime endTime } } }""",
            {"id": run_id},
        )["runOrError"]
        times[run_id] = (run["startTime"], run["endTime"])
    return times


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of runs that were executing at one instant."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    at_once = most = 0
    for _, step in edges:
        at_once += step
        most = max(most, at_once)
    return most


def _wait_no_run_in_progress(dist: Deployment) -> list[dict]:
    def settled():
        runs = dist.dagster.runs()
        return runs if all(r["status"] in TERMINAL for r in runs) else None

    return wait_for("every run to finish", settled, 900, 2.0, dist.dagster.log_path)


def _assert_exactly_once(dist: Deployment, days: list[dt.date]) -> None:
    delivered = dist.delivered_ids()
    for resource in RESOURCES:
        dist.assert_listed_once(resource, delivered[resource], days)


def _no_local_state(dist: Deployment) -> None:
    """Nothing the pipeline or the instance keeps is on the local disk: no lake folder, no SQLite."""
    assert not dist.lake_root.exists(), list(dist.lake_root.rglob("*"))
    home = dist.dagster.home
    local_dbs = [p for p in home.rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3")]
    assert not local_dbs, local_dbs


@pytest.fixture(scope="module")
def parallel_days(dist):
    return dist.past_days[:-1]


@pytest.fixture(scope="module")
def crash_day(dist):
    return dist.past_days[-1]


@pytest.fixture(scope="module")
def parallel_backfills(dist, parallel_days):
    """One backfill per day, launched at once: the daemon makes one run of each and the queued run
    coordinator (max_concurrent_runs 8 in dagster-postgres.yaml) launches them together."""
    ids = [
        dist.dagster.launch_backfill([day.isoformat()], ALL_ASSET_PATHS, f"distributed: {day}")
        for day in parallel_days
    ]
    return [dist.dagster.wait_backfill_done(i) for i in ids]


def test_parallel_runs_on_s3_and_postgres_deliver_each_object_once_within_stripe_limits(
    dist,
    parallel_days,
    parallel_backfills,
    s3_server,
    bucket,
    ledger_url,
    pg,
):
    runs = []
    for status in parallel_backfills:
        assert status["status"] == "COMPLETED_SUCCESS", (status, dist.dagster.log_tail())
        assert [r["status"] for r in status["runs"]] == ["SUCCESS"], status["runs"]
        runs.append(status["runs"][0]["id"])
    assert len(set(runs)) == len(parallel_days)
    # Several run processes really executed at once (each run is its own process).
    spans = list(_run_times(dist, runs).values())
    assert _most_at_once(spans) >= 2, spans

    _assert_exactly_once(dist, parallel_days)

    # The ledger is in PostgreSQL: a successful attempt per resource and day, its files uploaded.
    rows = _query(
        ledger_url,
        "SELECT a.dataset_id, f.file_key FROM batch_attempts a JOIN batch_files f "
        "USING (attempt_id) WHERE a.state = 'success' AND f.state = 'uploaded'",
    )
    delivered_keys = {key for _, key in rows}
    assert {ds for ds, _ in rows} == set(dist.datasets.values()), rows
    # The lake is in the bucket: raw and XDM files of every resource and day, and every file the
    # ledger says was delivered is an object there.
    keys = s3_server.keys(bucket, f"{PREFIX}/")
    for resource in RESOURCES:
        for day in parallel_days:
            for layer in ("stripe", "xdm"):
                where = f"{PREFIX}/{layer}/{resource}/{day.isoformat()}/"
                assert any(k.startswith(where) for k in keys), (where, keys[:20])
    assert {f"{PREFIX}/{k}" for k in delivered_keys} <= set(keys), sorted(delivered_keys)[:5]
    _no_local_state(dist)
    # The instance is on PostgreSQL too: the runs are rows there.
    instance_runs = dict(
        _query(postgres_url(pg), "SELECT run_id, status FROM runs")  # the `dagster` database
    )
    assert all(instance_runs.get(r) == "SUCCESS" for r in runs), instance_runs


def test_run_killed_mid_delivery_then_backfilled_delivers_each_object_once(
    dist, parallel_backfills, parallel_days, crash_day
):
    # A run on the same instance, lake and ledger, SIGKILLed right after the first file of a
    # batch reached AEP (the batch is open, the ledger says one file uploaded).
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "stripe_aep_tests.e2e.crashing_location",
            "--select",
            "*",
            "--partition",
            crash_day.isoformat(),
        ],  # fmt: skip
        cwd=REPO_ROOT,
        env=dist.dagster.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == -9, (done.returncode, done.stderr[-3000:])
    open_batches = [
        b for b in dist.aep.state.batches.values() if b["status"] == "loading" and b["files"]
    ]
    assert open_batches, "the run was not killed in the middle of a delivery"
    # Nothing watches a run started from the CLI (no run launcher to ask about its worker), so the
    # instance shows it STARTED until someone ends it: the operator marks it canceled in the UI.
    [killed] = [r for r in dist.dagster.runs() if r["status"] == "STARTED"]
    ended = dist.dagster.graphql(
        """mutation($id: String!) {
             terminateRun(runId: $id, terminatePolicy: MARK_AS_CANCELED_IMMEDIATELY) {
               __typename ... on PythonError { message } } }""",
        {"id": killed["runId"]},
    )["terminateRun"]
    assert ended["__typename"] == "TerminateRunSuccess", ended

    # The day again, as a user re-launches it from the UI.
    backfill_id = dist.dagster.launch_backfill(
        [crash_day.isoformat()], ALL_ASSET_PATHS, f"distributed: {crash_day} again"
    )
    status = dist.dagster.wait_backfill_done(backfill_id)
    assert status["status"] == "COMPLETED_SUCCESS", (status, dist.dagster.log_tail())
    _wait_no_run_in_progress(dist)

    _assert_exactly_once(dist, [*parallel_days, crash_day])
    # No file was committed twice: each file key is in at most one successful batch.
    committed: dict[str, str] = {}
    for batch in dist.aep.state.batches.values():
        if batch["status"] != "success":
            continue
        for path in batch["files"]:
            assert path not in committed, (path, committed[path], batch["id"])
            committed[path] = batch["id"]
    # The interrupted batch was not completed as it stood: resumed to completion, or aborted.
    for batch in open_batches:
        assert dist.aep.state.batches[batch["id"]]["status"] != "loading", batch["id"]
    _no_local_state(dist)


def test_stripe_saw_no_more_than_a_test_keys_limits_across_all_runs(dist, parallel_backfills):
    """Everything every run process sent (the parallel runs, the killed run, the re-run), audited
    from the Stripe emulator's arrival log: the budgets are shared through PostgreSQL only."""
    log = [r for r in dist.stripe.log if r.path.startswith("/v1/")]
    assert len(log) > 100, f"too few requests to audit: {len(log)}"
    by_endpoint: dict[str, list[float]] = {}
    for record in log:
        by_endpoint.setdefault(record.endpoint, []).append(record.t)
    account = busiest_second([r.t for r in log])
    per_endpoint = {e: busiest_second(ts) for e, ts in by_endpoint.items()}
    assert account <= TEST_KEY_RPS, (account, per_endpoint)
    assert max(per_endpoint.values()) <= TEST_KEY_RPS, per_endpoint
    limited = [r.limited_by for r in log if r.status == 429]
    assert len(limited) < 0.01 * len(log), limited
