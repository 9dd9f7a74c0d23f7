"""The production instance configuration (`dagster-postgres.yaml`) on a real PostgreSQL server.

The test starts its own server (Debian's `initdb` + `pg_ctl`, in a temporary folder, on 127.0.0.1
and a free port, password authentication) so it needs nothing running beforehand; `.ci/run`
installs the `postgresql` package when missing. Then the same UI backfill as on SQLite: five days
of every asset, one run, every object in AEP exactly once; and the runs, the backfill and the
event log are in PostgreSQL, not in a SQLite file.
"""

from __future__ import annotations

import pytest

from stripe_aep_tests.e2e.conftest import ALL_ASSET_PATHS, deployment
from stripe_aep_tests.e2e.test_dagster_dev import (
    assert_backfill_delivered_exactly_once,
    launch_five_day_backfill,
)
from stripe_aep_tests.paths import REPO_ROOT

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def dev_pg(tmp_path_factory, pg):
    with deployment(
        tmp_path_factory.mktemp("dev_pg"), REPO_ROOT / "dagster-postgres.yaml", extra_env=pg
    ) as d:
        yield d


def test_ui_backfill_on_postgres_instance_delivers_each_object_once(dev_pg, pg):
    backfill_id, status = launch_five_day_backfill(dev_pg)
    assert_backfill_delivered_exactly_once(dev_pg, status)

    # The instance really is on PostgreSQL: the backfill and its run are rows there, and the
    # instance folder holds no SQLite storage.
    import psycopg2

    conn = psycopg2.connect(
        host=pg["DAGSTER_PG_HOST"],
        port=int(pg["DAGSTER_PG_PORT"]),
        user=pg["DAGSTER_PG_USERNAME"],
        password=pg["DAGSTER_PG_PASSWORD"],
        dbname=pg["DAGSTER_PG_DB"],
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT key, status FROM bulk_actions")
            assert (backfill_id, "COMPLETED_SUCCESS") in cursor.fetchall()
            cursor.execute("SELECT run_id, status FROM runs")
            runs = cursor.fetchall()
            assert {(r["id"], "SUCCESS") for r in status["runs"]} <= set(runs), runs
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            )
            # every asset x 5 days, one materialization each.
            assert cursor.fetchone()[0] == len(ALL_ASSET_PATHS) * len(dev_pg.past_days)
    finally:
        conn.close()
    home = dev_pg.dagster.home
    assert not list(home.glob("**/*.db")), list(home.glob("**/*.db"))
