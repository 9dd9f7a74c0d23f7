"""The real services the end-to-end tests drive: `dagster dev`, a PostgreSQL server, GraphQL over HTTP.

Why not in-process: the UI's behaviour (backfills processed by the daemon, schedule ticks, runs in
their own processes, the instance in `$DAGSTER_HOME`) only exists when the webserver and the daemon
run as they do for a user. These helpers start them as a user would (`dagster dev -w workspace.yaml`)
and talk to them only over HTTP, the way the UI does.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

from stripe_aep_tests.paths import REPO_ROOT
from stripe_aep_tests.pg import postgres_binaries, postgres_server  # noqa: F401 (used by e2e tests)

#: The code location `workspace.yaml` loads and the repository name `Definitions` get in Dagster.
LOCATION = "stripe_aep"
REPOSITORY = "__repository__"
#: Daemons that must be healthy before the UI's backfills, schedules and queued runs do anything.
NEEDED_DAEMONS = {"BACKFILL", "SCHEDULER", "QUEUED_RUN_COORDINATOR"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    what: str,
    probe: Callable[[], Any],
    timeout: float,
    interval: float = 1.0,
    log: Path | None = None,
) -> Any:
    """Call `probe` until it returns something truthy; fail naming `what` (and the log's tail)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    tail = ""
    if log is not None and log.exists():
        tail = "\n--- log tail ---\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-40:]
        )
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}{tail}")


class DagsterDev:
    """`dagster dev` (webserver, daemon and code server as separate processes) on a free port, with
    its own `DAGSTER_HOME` holding a copy of an instance file, and the pipeline's settings in the
    environment. Use as a context manager; `graphql()` queries it over HTTP."""

    def __init__(self, home: Path, instance_yaml: Path, env: Mapping[str, str]) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "dagster-dev.log"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(instance_yaml, home / "dagster.yaml")
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()

    def __enter__(self) -> DagsterDev:
        dagster = Path(sys.executable).parent / "dagster"
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child, closed on stop
        self.proc = subprocess.Popen(
            [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for("the webserver", self._webserver_up, 180, log=self.log_path)
            wait_for("the code location to load", self._location_loaded, 180, log=self.log_path)
            wait_for("the daemons to be healthy", self._daemons_healthy, 180, log=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # Ctrl-C, as a user stops it: `dagster dev` then shuts its webserver and daemon down.
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        # Run workers are in the same session: end any that outlived the daemon.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict:
        """POST to /graphql; fail on transport or GraphQL errors, return `data`."""
        response = self.session.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        assert response.ok, f"GraphQL {response.status_code}: {response.text[:2000]}"
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def _webserver_up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"dagster dev exited ({self.proc.returncode}):\n{self.log_tail()}")
        try:
            return self.session.get(f"{self.url}/server_info", timeout=5).ok
        except requests.RequestException:
            return False

    def _location_loaded(self) -> bool:
        data = self.graphql(
            """{ workspaceOrError { ... on Workspace { locationEntries {
                 name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        for entry in data["workspaceOrError"]["locationEntries"]:
            if entry["name"] != LOCATION or entry["loadStatus"] != "LOADED":
                continue
            loaded = entry["locationOrLoadError"]
            assert loaded["__typename"] == "RepositoryLocation", loaded
            return True
        return False

    def _daemons_healthy(self) -> bool:
        data = self.graphql(
            "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"
        )
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        healthy = {s["daemonType"] for s in statuses if s["healthy"]}
        return healthy >= NEEDED_DAEMONS

    # -- what the UI does -------------------------------------------------------------------------

    def launch_backfill(
        self, partitions: list[str], asset_paths: list[list[str]], title: str
    ) -> str:
        from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION

        launched = self.graphql(
            LAUNCH_PARTITION_BACKFILL_MUTATION,
            {
                "backfillParams": {
                    "partitionNames": partitions,
                    "assetSelection": [{"path": p} for p in asset_paths],
                    "title": title,
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        return launched["backfillId"]

    def backfill(self, backfill_id: str) -> dict:
        return self.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename
                 ... on PartitionBackfill { id status numPartitions runs(limit: 50) { id status } }
                 ... on PythonError { message } } }""",
            {"id": backfill_id},
        )["partitionBackfillOrError"]

    def wait_backfill_done(self, backfill_id: str, timeout: float = 900) -> dict:
        def settled():
            status = self.backfill(backfill_id)
            return status if status["status"] not in ("REQUESTED", "FAILING", "CANCELING") else None

        return wait_for(f"backfill {backfill_id}", settled, timeout, 2.0, self.log_path)

    def runs(self, tags: Mapping[str, str] | None = None) -> list[dict]:
        data = self.graphql(
            """query($filter: RunsFilter) { runsOrError(filter: $filter, limit: 100) {
                 ... on Runs { results { runId status tags { key value } } } } }""",
            {"filter": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}},
        )
        return data["runsOrError"]["results"]

    def start_schedule(self, name: str) -> str:
        """Switch a schedule on, as its toggle in the UI does; returns its state id."""
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "scheduleName": name,
        }
        result = self.graphql(
            """mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) {
                 __typename ... on ScheduleStateResult { scheduleState { id status } }
                 ... on PythonError { message } } }""",
            {"s": selector},
        )["startSchedule"]
        assert result["__typename"] == "ScheduleStateResult", result
        assert result["scheduleState"]["status"] == "RUNNING", result
        return result["scheduleState"]["id"]

    def stop_schedule(self, state_id: str) -> None:
        result = self.graphql(
            """mutation($id: String!) { stopRunningSchedule(id: $id) {
                 __typename ... on ScheduleStateResult { scheduleState { status } }
                 ... on PythonError { message } } }""",
            {"id": state_id},
        )["stopRunningSchedule"]
        assert result["__typename"] == "ScheduleStateResult", result
        assert result["scheduleState"]["status"] == "STOPPED", result

    def start_sensor(self, name: str) -> str:
        """Switch a sensor on, as its toggle in the UI does; returns its state id."""
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "sensorName": name,
        }
        result = self.graphql(
            """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
                 __typename ... on Sensor { sensorState { id status } }
                 ... on PythonError { message } } }""",
            {"s": selector},
        )["startSensor"]
        assert result["__typename"] == "Sensor", result
        assert result["sensorState"]["status"] == "RUNNING", result
        return result["sensorState"]["id"]

    def stop_sensor(self, state_id: str) -> None:
        result = self.graphql(
            """mutation($id: String!) { stopSensor(id: $id) {
                 __typename ... on StopSensorMutationResult { instigationState { status } }
                 ... on PythonError { message } } }""",
            {"id": state_id},
        )["stopSensor"]
        assert result["__typename"] == "StopSensorMutationResult", result
        assert result["instigationState"]["status"] == "STOPPED", result

    def wait_run_done(self, run_id: str, timeout: float = 900) -> dict:
        def finished():
            data = self.graphql(
                """query($id: ID!) { runOrError(runId: $id) {
                     ... on Run { runId status tags { key value } } } }""",
                {"id": run_id},
            )["runOrError"]
            return data if data["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

        return wait_for(f"run {run_id} to finish", finished, timeout, 2.0, self.log_path)
