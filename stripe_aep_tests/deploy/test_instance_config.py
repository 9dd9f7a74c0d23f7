"""The Dagster instance configuration that deploy/helm/values.yaml produces, validated by Dagster itself.

Why: the Helm chart turns the values into the instance's `dagster.yaml` (a ConfigMap). The schema
tests (test_helm_values.py) check the values' shape; this one checks that what the chart makes of
them is accepted by the pinned dagster 1.13.27, dagster-k8s and dagster-aws — the run launcher's
resources and security context, the pools and tag limits, run retries and monitoring, the S3 compute
logs, the PostgreSQL storage. `chart_instance_config` follows the chart's instance templates
(helm/dagster/templates/configmap-instance.yaml and helpers/instance/*.tpl) for the keys the values
set; without `helm` (docs/deploy.md "How the values are checked") this is the rendering step the
test does itself.
"""

from __future__ import annotations

import copy
import importlib

import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config, validate_concurrency_config

from stripe_aep_tests.deploy.test_helm_values import load_values

RELEASE, NAMESPACE = "stripe-aep", "stripe-aep"
_RUN_K8S_KEYS = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}


def chart_instance_config(values: dict) -> dict:
    """The instance config the chart renders from `values` (only the sections the values set)."""
    pg = values["postgresql"]
    postgres_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg.get("postgresqlParams", {}),
    }
    storage = {
        name: {
            "module": f"dagster_postgres.{module}",
            "class": cls,
            "config": {"postgres_db": postgres_db},
        }
        for name, module, cls in (
            ("run_storage", "run_storage", "PostgresRunStorage"),
            ("event_log_storage", "event_log", "PostgresEventLogStorage"),
            ("schedule_storage", "schedule_storage", "PostgresScheduleStorage"),
        )
    }
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": f"{RELEASE}-dagster",
        "dagster_home": {"env": "DAGSTER_HOME"},
        "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"}]
        + [c["name"] for c in k8s.get("envConfigMaps", [])],
    }
    if k8s.get("envSecrets"):
        launcher["env_secrets"] = [s["name"] for s in k8s["envSecrets"]]
    if k8s.get("envVars"):
        launcher["env_vars"] = k8s["envVars"]
    for key, target in (
        ("resources", "resources"),
        ("securityContext", "security_context"),
        ("labels", "labels"),
        ("failPodOnRunFailure", "fail_pod_on_run_failure"),
        ("schedulerName", "scheduler_name"),
    ):
        if key in k8s:
            launcher[target] = k8s[key]
    if k8s.get("runK8sConfig"):
        launcher["run_k8s_config"] = {
            _RUN_K8S_KEYS[key]: value for key, value in k8s["runK8sConfig"].items()
        }

    daemon = values["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    coordinator_keys = {
        "maxConcurrentRuns": "max_concurrent_runs",
        "dequeueIntervalSeconds": "dequeue_interval_seconds",
        "dequeueNumWorkers": "dequeue_num_workers",
        "dequeueUseThreads": "dequeue_use_threads",
    }
    concurrency = values["concurrency"]
    pools, runs = concurrency["pools"], concurrency["runs"]
    retries, monitoring = daemon["runRetries"], daemon["runMonitoring"]
    s3 = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    s3_keys = {
        "bucket": "bucket",
        "prefix": "prefix",
        "region": "region",
        "localDir": "local_dir",
        "useSsl": "use_ssl",
        "verify": "verify",
        "endpointUrl": "endpoint_url",
        "skipEmptyFiles": "skip_empty_files",
        "uploadInterval": "upload_interval",
        "showUrlOnly": "show_url_only",
    }
    return {
        "scheduler": {"module": "dagster._core.scheduler", "class": "DagsterDaemonScheduler"},
        **storage,
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {coordinator_keys[k]: v for k, v in queued.items()},
        },
        "concurrency": {
            "pools": {"default_limit": pools["defaultLimit"]},
            "runs": {
                "max_concurrent_runs": runs["maxConcurrentRuns"],
                "tag_concurrency_limits": [
                    {
                        "key": t["key"],
                        "limit": t["limit"],
                        **({"value": t["value"]} if "value" in t else {}),
                    }
                    for t in runs["tagConcurrencyLimits"]
                ],
            },
        },
        "run_retries": {
            "enabled": retries["enabled"],
            "max_retries": retries["maxRetries"],
            "retry_on_asset_or_op_failure": retries["retryOnAssetOrOpFailure"],
        },
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
        },
        "compute_logs": {
            "module": "dagster_aws.s3.compute_log_manager",
            "class": "S3ComputeLogManager",
            "config": {s3_keys[k]: v for k, v in s3.items()},
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }


def instance_problems(config: dict, tmp_path) -> list[str]:
    """What dagster (and each configured class) refuses in `config`; empty when it is accepted."""
    problems = []
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    try:
        dagster_instance_config(str(home))
    except Exception as exc:  # DagsterInvalidConfigError names every bad entry
        problems.append(f"instance: {exc}")
    for section in ("run_launcher", "run_coordinator", "compute_logs", "run_storage"):
        entry = config[section]
        cls = getattr(importlib.import_module(entry["module"]), entry["class"])
        result = validate_config(cls.config_type(), entry.get("config", {}))
        problems += [f"{section}: {error.message}" for error in result.errors or []]
    try:
        validate_concurrency_config(config)
    except Exception as exc:
        problems.append(f"concurrency: {exc}")
    return problems


def test_dagster_accepts_the_instance_the_values_produce(tmp_path):
    config = chart_instance_config(load_values())
    assert instance_problems(config, tmp_path) == []
    # what the deployment relies on, as Dagster reads it
    home = tmp_path / "dagster_home"
    read, _ = dagster_instance_config(str(home))
    assert read["run_launcher"]["class"] == "K8sRunLauncher"
    assert read["concurrency"]["pools"]["default_limit"] == 6
    assert read["run_retries"] == {
        "enabled": True,
        "max_retries": 2,
        "retry_on_asset_or_op_failure": False,
    }
    launcher = read["run_launcher"]["config"]
    assert launcher["resources"]["limits"]["memory"] == "4Gi"
    assert launcher["run_k8s_config"]["job_spec_config"]["ttlSecondsAfterFinished"] == 86400


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda v: v["runLauncher"]["config"]["k8sRunLauncher"]["resources"].update(
                limitz={"cpu": "1"}
            ),
            'unexpected config entry "limitz"',
        ),
        (
            lambda v: v["concurrency"]["runs"]["tagConcurrencyLimits"].append(
                {"key": "dagster/backfill", "limit": "four"}
            ),
            "four",
        ),
        (lambda v: v["dagsterDaemon"]["runRetries"].update(maxRetries="two"), "two"),
        (
            lambda v: v["computeLogManager"]["config"]["s3ComputeLogManager"].pop("bucket"),
            "bucket",
        ),
    ],
)
def test_dagster_refuses_a_broken_instance(tmp_path, mutate, expected):
    values = copy.deepcopy(load_values())
    mutate(values)
    problems = instance_problems(chart_instance_config(values), tmp_path)
    assert any(expected in p for p in problems), problems


# ---- what a run pod gets: the run launcher's settings merged with the code location's ------------


def location_container_context(values: dict) -> dict:
    """The container context the chart gives the code server (`DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT`,
    helper `dagsterUserDeployments.k8sContainerContext`) when includeConfigInLaunchedRuns is on:
    launched runs carry it."""
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    k8s: dict = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [f"{RELEASE}-dagster-user-deployments-{deployment['name']}-user-env"]
        + [c["name"] for c in deployment.get("envConfigMaps", [])],
        "namespace": NAMESPACE,
        "service_account_name": f"{RELEASE}-dagster-user-deployments-user-deployments",
    }
    if deployment.get("envSecrets"):
        k8s["env_secrets"] = [s["name"] for s in deployment["envSecrets"]]
    for key, target in (
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("labels", "labels"),
        ("resources", "resources"),
        ("schedulerName", "scheduler_name"),
    ):
        if deployment.get(key):
            k8s[target] = deployment[key]
    if isinstance(deployment.get("env"), list):
        k8s["env"] = deployment["env"]
    return {"k8s": k8s}


def run_pod_container_config(values: dict) -> dict:
    """The run pod's container settings, merged by dagster-k8s the way `K8sContainerContext.
    create_for_run` does: the run launcher's first, the code location's context over it."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    launcher = chart_instance_config(values)["run_launcher"]["config"]
    base = K8sContainerContext(
        resources=launcher.get("resources"),
        security_context=launcher.get("security_context"),
        env_secrets=launcher.get("env_secrets"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher.get("run_k8s_config", {})),
    )
    location = K8sContainerContext.create_from_config(location_container_context(values))
    return K8sContainerContext().merge(base).merge(location).run_k8s_config.container_config


def test_run_pods_get_the_run_launchers_size_and_the_code_locations_secrets():
    values = load_values()
    container = run_pod_container_config(values)
    assert container["resources"] == values["runLauncher"]["config"]["k8sRunLauncher"]["resources"]
    assert container["security_context"]["run_as_non_root"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["STRIPE_API_KEY"]["value_from"]["secret_key_ref"] == {
        "name": "stripe-aep-stripe",
        "key": "api-key",
    }
    assert env["STRIPE_AEP_DATA_DIR"]["value"].startswith("s3://")
    assert "STRIPE_AEP_LEDGER_URL" in env and "value" not in env["STRIPE_AEP_LEDGER_URL"]


def test_code_server_resources_would_override_the_run_pods():
    """Why the deployment sets no `resources`: the code location's would win on every run pod."""
    values = copy.deepcopy(load_values())
    values["dagster-user-deployments"]["deployments"][0]["resources"] = {
        "limits": {"memory": "512Mi"}
    }
    # merged key by key: the code server's memory limit replaces the run launcher's 4Gi
    assert run_pod_container_config(values)["resources"]["limits"]["memory"] == "512Mi"
