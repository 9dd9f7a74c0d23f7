"""deploy/helm/values.yaml against Dagster's Helm chart and against the settings the code reads.

Why not `helm template`: neither the `helm` binary nor Dagster's chart is served by the package
registries this project can reach (PyPI, npm, Debian — docs/deploy.md "How the values are
checked"), so the values are validated against schemas instead, with `jsonschema`:

* the `dagster-user-deployments` deployment (image, args, env, secrets, pod settings) against the
  chart's own `values.schema.json` of that subchart, vendored in deploy/helm/chart-schema/ (its
  Kubernetes `$ref`s point at a web server this machine cannot reach; they resolve to the few
  Kubernetes v1 definitions written below, the rest stay unchecked);
* the main chart's sections set here (run launcher, PostgreSQL, daemon, concurrency, compute logs)
  against `CHART_SECTIONS`, written from the chart's schema models for 1.13
  (helm/dagster/schema/schema/charts/dagster/…) — stricter than Helm: unknown keys are refused even
  where the chart would silently ignore them, because an ignored typo is a silently missing setting.

Then the environment: every variable the package reads is set in the values or listed in
`NOT_DEPLOYED` with the reason; the ones the code requires are set; the ones it treats as secrets
come from a Kubernetes Secret (`secretKeyRef`), never a literal; and the literal values pass the
project's own settings parsers. Each check also runs on a broken copy of the values, so a check
that cannot fail would show.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from stripe_aep_tests.paths import REPO_ROOT

VALUES = REPO_ROOT / "deploy" / "helm" / "values.yaml"
CHART_SCHEMA_DIR = REPO_ROOT / "deploy" / "helm" / "chart-schema"
USER_DEPLOYMENTS_SCHEMA = CHART_SCHEMA_DIR / "dagster-user-deployments.values.schema.json"
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
PACKAGE = REPO_ROOT / "stripe_aep"
K8S_DEFINITIONS_URI = "https://kubernetesjsonschema.dev/v1.18.0/_definitions.json"

#: Variables the package reads that the deployment deliberately leaves unset, and why.
NOT_DEPLOYED = {
    "STRIPE_API_BASE": "the emulator's address for local runs; production uses Stripe's default",
    "AEP_IMS_URL": "the emulator's address for local runs; production uses Adobe IMS's default",
    "AEP_PLATFORM_URL": "the emulator's address; production uses platform.adobe.io",
    "AEP_DATASET_": "AEP_DATASET_<RESOURCE> pins a dataset id; by default found by name",
    "STRIPE_AEP_DEV_EMULATORS": "`make dev` only",
    "STRIPE_AEP_FRESH_CRON": "the fresh-data schedule's cron; the default (every 15 min) is kept",
    "STRIPE_CURRENCIES": "a Python constant (stripe_aep.xdm), not an environment variable",
    "STRIPE_RESOURCES": "a Python constant (stripe_aep.catalog), not an environment variable",
}
#: Secrets of the deployment itself, beyond the ones the code marks (`check_text(..., secret=True)`).
DEPLOYMENT_SECRETS = {
    "STRIPE_AEP_LEDGER_URL": "postgresql://user:PASSWORD@host/db holds the database password",
    "AWS_ACCESS_KEY_ID": "S3 credentials",
    "AWS_SECRET_ACCESS_KEY": "S3 credentials",
}
#: Set by the deployment for the lake and the ledger, though not parsed by the package itself.
DEPLOYMENT_REQUIRED = {"STRIPE_AEP_DATA_DIR", "STRIPE_AEP_LEDGER_URL", "AWS_REGION"}

# ---- Kubernetes v1 definitions the vendored chart schema refers to ------------------------------
# Written for this test from the Kubernetes API reference (core/v1): only the objects the values
# use; unknown fields are refused so a misspelt `secretKeyRef` fails here, not in the cluster.
_QUANTITY = {
    "anyOf": [
        {"type": "string", "pattern": r"^[0-9.]+(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"},
        {"type": "number"},
    ]
}
_K8S = {
    "io.k8s.api.core.v1.EnvVar": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "value": {"type": "string"},
            "valueFrom": {"$ref": "#/definitions/io.k8s.api.core.v1.EnvVarSource"},
        },
        "additionalProperties": False,
        "not": {"required": ["value", "valueFrom"]},
    },
    "io.k8s.api.core.v1.EnvVarSource": {
        "type": "object",
        "properties": {
            "secretKeyRef": {"$ref": "#/definitions/io.k8s.api.core.v1.SecretKeySelector"},
            "configMapKeyRef": {"$ref": "#/definitions/io.k8s.api.core.v1.SecretKeySelector"},
            "fieldRef": {"type": "object"},
            "resourceFieldRef": {"type": "object"},
        },
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
    },
    "io.k8s.api.core.v1.SecretKeySelector": {
        "type": "object",
        "required": ["name", "key"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "key": {"type": "string", "minLength": 1},
            "optional": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    "io.k8s.api.core.v1.SecretEnvSource": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}, "optional": {"type": "boolean"}},
        "additionalProperties": False,
    },
    "io.k8s.api.core.v1.ResourceRequirements": {
        "type": "object",
        "properties": {
            "limits": {"type": "object", "additionalProperties": _QUANTITY},
            "requests": {"type": "object", "additionalProperties": _QUANTITY},
            "claims": {"type": "array"},
        },
        "additionalProperties": False,
    },
    "io.k8s.api.core.v1.SecurityContext": {
        "type": "object",
        "properties": {
            "allowPrivilegeEscalation": {"type": "boolean"},
            "appArmorProfile": {"type": "object"},
            "capabilities": {
                "type": "object",
                "properties": {
                    "add": {"type": "array", "items": {"type": "string"}},
                    "drop": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            },
            "privileged": {"type": "boolean"},
            "procMount": {"type": "string"},
            "readOnlyRootFilesystem": {"type": "boolean"},
            "runAsGroup": {"type": "integer"},
            "runAsNonRoot": {"type": "boolean"},
            "runAsUser": {"type": "integer"},
            "seLinuxOptions": {"type": "object"},
            "seccompProfile": {"type": "object"},
            "windowsOptions": {"type": "object"},
        },
        "additionalProperties": False,
    },
    "io.k8s.api.core.v1.PodSecurityContext": {
        "type": "object",
        "properties": {
            name: {"type": kind}
            for name, kind in {
                "appArmorProfile": "object",
                "fsGroup": "integer",
                "fsGroupChangePolicy": "string",
                "runAsGroup": "integer",
                "runAsNonRoot": "boolean",
                "runAsUser": "integer",
                "seLinuxChangePolicy": "string",
                "seLinuxOptions": "object",
                "seccompProfile": "object",
                "supplementalGroups": "array",
                "supplementalGroupsPolicy": "string",
                "sysctls": "array",
                "windowsOptions": "object",
            }.items()
        },
        "additionalProperties": False,
    },
}
_SECRET_ENV_SOURCE = {
    "$ref": f"{K8S_DEFINITIONS_URI}#/definitions/io.k8s.api.core.v1.SecretEnvSource"
}
_RESOURCES = {"$ref": f"{K8S_DEFINITIONS_URI}#/definitions/io.k8s.api.core.v1.ResourceRequirements"}
_SECURITY_CONTEXT = {
    "$ref": f"{K8S_DEFINITIONS_URI}#/definitions/io.k8s.api.core.v1.SecurityContext"
}


def _strict(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


# ---- the main chart's sections used here (from the chart's schema models for 1.13) ---------------
_TAG_LIMIT = _strict(
    {
        "key": {"type": "string"},
        "value": {"anyOf": [{"type": "string"}, {"type": "object"}]},
        "limit": {"type": "integer", "minimum": 0},
    },
    ("key", "limit"),
)
CHART_SECTIONS = _strict(
    {
        # DagsterHelmValues' top-level fields (values.py); unknown top-level keys are refused.
        **{
            key: {}
            for key in [
                "dagsterWebserver",
                "rabbitmq",
                "redis",
                "flower",
                "ingress",
                "imagePullSecrets",
                "scheduler",
                "pythonLogs",
                "busybox",
                "migrate",
                "serviceAccount",
                "retention",
                "additionalInstanceConfig",
                "generateCeleryConfigSecret",
            ]
        },
        "dagster-user-deployments": _strict(
            {
                "enabled": {"const": True},
                "enableSubchart": {"const": True},
                "imagePullSecrets": {"type": "array"},
                "deployments": {"type": "array", "minItems": 1},
            },
            ("enabled", "enableSubchart", "deployments"),
        ),
        "global": _strict(
            {
                "postgresqlSecretName": {"type": "string", "minLength": 1},
                "dagsterHome": {"type": "string"},
                "serviceAccountName": {"type": "string"},
                "celeryConfigSecretName": {"type": "string"},
            },
            ("postgresqlSecretName",),
        ),
        "generatePostgresqlPasswordSecret": {"const": False},
        "postgresql": _strict(
            {
                "postgresqlScheme": {"type": "string"},
                "image": {"type": "object"},
                "enabled": {"const": False},  # an external server, not a pod of the chart
                "postgresqlHost": {"type": "string", "minLength": 1},
                "postgresqlUsername": {"type": "string", "minLength": 1},
                "postgresqlPassword": {"const": ""},  # read from global.postgresqlSecretName
                "postgresqlDatabase": {"type": "string", "minLength": 1},
                "postgresqlParams": {"type": "object", "additionalProperties": {"type": "string"}},
                "service": _strict({"port": {"type": "integer"}}, ("port",)),
            },
            ("enabled", "postgresqlHost", "postgresqlUsername", "postgresqlDatabase"),
        ),
        "runLauncher": _strict(
            {
                "type": {"const": "K8sRunLauncher"},
                "config": _strict(
                    {
                        "k8sRunLauncher": _strict(
                            {
                                "image": {"type": "object"},
                                "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                                "jobNamespace": {"type": "string"},
                                "loadInclusterConfig": {"type": "boolean"},
                                "kubeconfigFile": {"type": "string"},
                                "envConfigMaps": {"type": "array"},
                                "envSecrets": {"type": "array", "items": _SECRET_ENV_SOURCE},
                                "envVars": {"type": "array", "items": {"type": "string"}},
                                "volumeMounts": {"type": "array"},
                                "volumes": {"type": "array"},
                                "labels": {"type": "object"},
                                "failPodOnRunFailure": {"type": "boolean"},
                                "resources": _RESOURCES,
                                "schedulerName": {"type": "string"},
                                "securityContext": _SECURITY_CONTEXT,
                                "runK8sConfig": _strict(
                                    {
                                        key: {"type": "object"}
                                        for key in (
                                            "containerConfig",
                                            "podSpecConfig",
                                            "podTemplateSpecMetadata",
                                            "jobSpecConfig",
                                            "jobMetadata",
                                        )
                                    }
                                ),
                            },
                            ("imagePullPolicy", "loadInclusterConfig", "resources"),
                        )
                    },
                    ("k8sRunLauncher",),
                ),
            },
            ("type", "config"),
        ),
        "concurrency": _strict(
            {
                "enabled": {"const": True},
                "pools": _strict(
                    {
                        "defaultLimit": {"type": "integer", "minimum": 1},
                        "granularity": {"enum": ["run", "op"]},
                        "opGranularityRunBuffer": {"type": "integer"},
                    }
                ),
                "runs": _strict(
                    {
                        "maxConcurrentRuns": {"type": "integer", "minimum": 1},
                        "tagConcurrencyLimits": {"type": "array", "items": _TAG_LIMIT},
                    }
                ),
            },
            ("enabled", "pools", "runs"),
        ),
        "dagsterDaemon": _strict(
            {
                **{
                    key: {}
                    for key in [
                        "image",
                        "heartbeatTolerance",
                        "env",
                        "envConfigMaps",
                        "deploymentLabels",
                        "labels",
                        "nodeSelector",
                        "affinity",
                        "tolerations",
                        "podSecurityContext",
                        "securityContext",
                        "resources",
                        "checkDbReadyInitContainer",
                        "livenessProbe",
                        "readinessProbe",
                        "startupProbe",
                        "annotations",
                        "sensors",
                        "schedules",
                        "backfills",
                        "schedulerName",
                        "logFormat",
                        "volumeMounts",
                        "volumes",
                        "initContainerResources",
                        "extraContainers",
                        "extraPrependedInitContainers",
                    ]
                },
                "envSecrets": {"type": "array", "items": _SECRET_ENV_SOURCE},
                "enabled": {"const": True},
                "runCoordinator": _strict(
                    {
                        "enabled": {"const": True},
                        "type": {"const": "QueuedRunCoordinator"},
                        "config": _strict(
                            {
                                "queuedRunCoordinator": _strict(
                                    {
                                        "maxConcurrentRuns": {"type": "integer"},
                                        "tagConcurrencyLimits": {"type": "array"},
                                        "dequeueIntervalSeconds": {"type": "integer"},
                                        "dequeueNumWorkers": {"type": "integer"},
                                        "dequeueUseThreads": {"type": "boolean"},
                                        "blockOpConcurrencyLimitedRuns": {"type": "object"},
                                    }
                                )
                            }
                        ),
                    },
                    ("enabled", "type"),
                ),
                "runRetries": _strict(
                    {
                        "enabled": {"type": "boolean"},
                        "maxRetries": {"type": "integer", "minimum": 0},
                        "retryOnAssetOrOpFailure": {"type": "boolean"},
                    },
                    ("enabled",),
                ),
                "runMonitoring": _strict(
                    {
                        "enabled": {"type": "boolean"},
                        "startTimeoutSeconds": {"type": "integer"},
                        "pollIntervalSeconds": {"type": "integer"},
                        "maxResumeRunAttempts": {"type": "integer"},
                        "freeSlotsAfterRunEndSeconds": {"type": "integer"},
                    },
                    ("enabled",),
                ),
            },
            ("enabled", "runCoordinator"),
        ),
        "computeLogManager": _strict(
            {
                "type": {"const": "S3ComputeLogManager"},
                "config": _strict(
                    {
                        "s3ComputeLogManager": _strict(
                            {
                                "bucket": {"type": "string", "minLength": 3},
                                "localDir": {"type": "string"},
                                "prefix": {"type": "string"},
                                "useSsl": {"type": "boolean"},
                                "verify": {"type": "boolean"},
                                "verifyCertPath": {"type": "string"},
                                "endpointUrl": {"type": "string"},
                                "skipEmptyFiles": {"type": "boolean"},
                                "uploadInterval": {"type": "integer"},
                                "uploadExtraArgs": {"type": "object"},
                                "showUrlOnly": {"type": "boolean"},
                                "region": {"type": "string"},
                            },
                            ("bucket",),
                        )
                    },
                    ("s3ComputeLogManager",),
                ),
            },
            ("type", "config"),
        ),
        "telemetry": _strict({"enabled": {"type": "boolean"}}),
    },
    ("dagster-user-deployments", "postgresql", "runLauncher", "concurrency", "dagsterDaemon"),
)


def _k8s_document() -> dict:
    """The resource served for kubernetesjsonschema.dev: the definitions above, and an empty (any
    value) schema at every other path the vendored schema points at."""
    document: dict = {"definitions": copy.deepcopy(_K8S)}
    refs = re.findall(
        re.escape(K8S_DEFINITIONS_URI) + r"#/definitions/([^\"]+)",
        USER_DEPLOYMENTS_SCHEMA.read_text(),
    )
    for pointer in refs:
        node = document["definitions"]
        for part in pointer.split("/"):
            node = node.setdefault(part, {})
    return document


def _registry() -> Registry:
    chart = json.loads(USER_DEPLOYMENTS_SCHEMA.read_text())
    return Registry().with_resources(
        [
            ("urn:dagster-user-deployments", DRAFT7.create_resource(chart)),
            (K8S_DEFINITIONS_URI, Resource.from_contents(_k8s_document(), DRAFT7)),
        ]
    )


def load_values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def schema_problems(values: dict) -> list[str]:
    """Every schema violation: the deployments against the chart's subchart schema, the rest
    against CHART_SECTIONS."""
    registry = _registry()
    problems = []
    deployment_schema = {"$ref": "urn:dagster-user-deployments#/definitions/UserDeployment"}
    chart_properties = json.loads(USER_DEPLOYMENTS_SCHEMA.read_text())["definitions"][
        "UserDeployment"
    ]["properties"]
    for index, deployment in enumerate(values["dagster-user-deployments"]["deployments"]):
        validator = jsonschema.Draft7Validator(deployment_schema, registry=registry)
        for error in validator.iter_errors(deployment):
            # an anyOf (env: a map or a list) fails as a whole; its branches say what is wrong
            for cause in [error, *error.context]:
                where = "/".join(str(p) for p in cause.absolute_path)
                problems.append(f"deployments[{index}]/{where}: {cause.message}")
        for key in deployment:
            if key not in chart_properties:
                problems.append(f"deployments[{index}]: {key!r} is not a field of the chart")
    validator = jsonschema.Draft7Validator(CHART_SECTIONS, registry=registry)
    for error in validator.iter_errors(values):
        where = "/".join(str(p) for p in error.absolute_path)
        problems.append(f"{where}: {error.message}")
    # The chart's own `fail`: run limits in `concurrency` or in the run coordinator, not both.
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    for key in ("maxConcurrentRuns", "tagConcurrencyLimits"):
        if queued.get(key) and values["concurrency"]["runs"].get(key):
            problems.append(f"{key} is set in both concurrency.runs and queuedRunCoordinator")
    return problems


# ---- the variables the package reads --------------------------------------------------------------


def _package_sources() -> str:
    return "\n".join(p.read_text() for p in sorted(PACKAGE.rglob("*.py")))


def variables_read() -> set[str]:
    return set(re.findall(r"\"((?:STRIPE|AEP)_[A-Z0-9_]+)\"", _package_sources()))


def required_variables() -> set[str]:
    """The ones whose absence the code reports as `ConfigError(NAME, "not set", …)`."""
    return set(re.findall(r"ConfigError\(\s*\"([A-Z0-9_]+)\",\s*\"not set\"", _package_sources()))


def secret_variables() -> set[str]:
    """The ones the code validates as secrets (`check_text(NAME, …, secret=True)`)."""
    found = re.findall(r"check_text\(\s*\"([A-Z0-9_]+)\",[^)]*?secret=True", _package_sources())
    return set(found) | set(DEPLOYMENT_SECRETS)


def deployment_env(values: dict) -> dict[str, dict]:
    env = values["dagster-user-deployments"]["deployments"][0]["env"]
    assert isinstance(env, list), "env must be a list of EnvVar (only that form takes valueFrom)"
    return {entry["name"]: entry for entry in env}


def env_problems(values: dict) -> list[str]:
    env = deployment_env(values)
    problems = []
    for name in sorted(variables_read()):
        if name in env or name in NOT_DEPLOYED:
            continue
        problems.append(f"{name} is read by the package but neither set nor listed in NOT_DEPLOYED")
    for name in sorted(required_variables() | DEPLOYMENT_REQUIRED):
        entry = env.get(name)
        if entry is None:
            problems.append(f"{name} is required and not set")
        elif "value" in entry and not entry["value"]:
            problems.append(f"{name} is required and empty")
        elif entry.get("valueFrom", {}).get("secretKeyRef", {}).get("optional"):
            problems.append(f"{name} is required but its secret key is optional")
    for name in sorted(secret_variables()):
        entry = env.get(name)
        if entry is None:
            continue  # absent ones are reported above when required
        if "value" in entry or "secretKeyRef" not in entry.get("valueFrom", {}):
            problems.append(f"{name} is a secret and must come from a secretKeyRef, not a value")
    for name, entry in env.items():
        value = entry.get("value", "")
        if re.search(r"\b(sk|rk)_(live|test)_|whsec_|://[^/@\s]+:[^/@\s]+@", value):
            problems.append(f"{name} holds a credential-looking literal")
    return problems


# ---- tests -----------------------------------------------------------------------------------------


def test_values_match_the_chart_schemas():
    assert schema_problems(load_values()) == []


def test_every_setting_the_package_reads_is_deployed_and_secrets_come_from_secrets():
    assert env_problems(load_values()) == []


def test_the_package_reads_what_this_test_expects():
    """Guards the regular expressions above: they must find the known settings."""
    assert {"STRIPE_API_KEY", "AEP_CLIENT_SECRET", "STRIPE_AEP_DATA_DIR"} <= variables_read()
    assert {
        "STRIPE_API_KEY",
        "AEP_CLIENT_ID",
        "AEP_CLIENT_SECRET",
        "AEP_ORG_ID",
        "AEP_TENANT_ID",
    } <= required_variables()
    assert {"STRIPE_API_KEY", "STRIPE_ACCOUNT", "AEP_CLIENT_SECRET"} <= secret_variables()
    assert "AEP_TENANT_ID" not in secret_variables()
    stale = [name for name in NOT_DEPLOYED if name not in variables_read()]
    assert not stale, f"NOT_DEPLOYED lists names the package no longer reads: {stale}"


def test_literal_values_pass_the_projects_own_settings_parsers():
    import dagster as dg

    from stripe_aep.aep.settings import AepSettings
    from stripe_aep.automation.sensors import default_sensor_status
    from stripe_aep.config import (
        StripeRateSettings,
        StripeSettings,
        check_data_dir,
        data_dir_from_env,
        executor_from_env,
        start_date_from_env,
    )
    from stripe_aep.locks import lock_wait_seconds

    env = {n: e["value"] for n, e in deployment_env(load_values()).items() if "value" in e}
    # Secrets come from Kubernetes at run time; stand-ins of the right shape, built here so no
    # key-looking literal is committed.
    env |= {
        "STRIPE_API_KEY": "sk_" + "live_" + "0" * 24,
        "AEP_CLIENT_ID": "a" * 32,
        "AEP_CLIENT_SECRET": "p8e-" + "b" * 28,
        "AEP_ORG_ID": "0" * 24 + "@AdobeOrg",
    }
    stripe = StripeSettings.from_env(env)
    assert stripe.api_base == "https://api.stripe.com"  # the real API, not an emulator
    assert stripe.max_rps == pytest.approx(95.0)  # empty STRIPE_MAX_RPS: the live default
    assert StripeRateSettings.from_env(env).in_flight_cap(live=True) == 80
    aep = AepSettings.from_env(env)
    assert (aep.platform_url, aep.sandbox) == ("https://platform.adobe.io", "prod")
    root = data_dir_from_env(env)
    assert root.startswith("s3://") and check_data_dir(root) == root
    assert executor_from_env(env) == "multiprocess"
    assert default_sensor_status(env) == dg.DefaultSensorStatus.STOPPED
    assert start_date_from_env(env).isoformat() == env["STRIPE_START_DATE"]
    assert lock_wait_seconds(env) == 900


def test_pools_let_a_run_use_the_account_budget_within_the_pod_memory():
    """The `stripe_api` pool lets six raw steps of a run extract together (docs/operations.md):
    enough to use the account's budget (100/s live, 25/s per endpoint: at least four endpoints at
    once), few enough for the run pod's memory (≈ 520 MB a step at full load, docs/deploy.md); the
    other steps of a run with more resources wait for a slot."""
    from stripe_aep.assets.aep import aep_assets
    from stripe_aep.assets.raw import raw_assets
    from stripe_aep.catalog import RESOURCE_NAMES

    values = load_values()
    assert [a.op.pool for a in raw_assets] == ["stripe_api"] * len(RESOURCE_NAMES)
    assert {a.op.pool for a in aep_assets} == {"aep_api"}
    assert 100 / 25 <= values["concurrency"]["pools"]["defaultLimit"] == 6
    runs = values["concurrency"]["runs"]
    backfill = next(t for t in runs["tagConcurrencyLimits"] if t["key"] == "dagster/backfill")
    assert backfill["limit"] < runs["maxConcurrentRuns"], "backfills must leave slots for schedules"


def test_every_secret_the_values_reference_is_created_in_the_deploy_doc():
    """docs/deploy.md's `kubectl create secret` commands create each (secret, key) the values use."""
    doc = DEPLOY_DOC.read_text()
    values = load_values()
    references = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in deployment_env(values).values()
        if "valueFrom" in e
    }
    references.add((values["global"]["postgresqlSecretName"], "postgresql-password"))
    for secret in values["dagsterWebserver"].get("envSecrets", []):
        references.add((secret["name"], "AWS_ACCESS_KEY_ID"))
    for name, key in sorted(references):
        block = re.search(
            rf"kubectl (?:-n \S+ )?create secret generic {re.escape(name)}\b(?P<body>(?:.*\\\n)*.*)",
            doc,
        )
        assert block, f"docs/deploy.md does not create the secret {name}"
        assert f"--from-literal={key}=" in block.group("body") or (
            f"--from-file={key}=" in block.group("body")
        ), f"docs/deploy.md's secret {name} has no key {key}"


# ---- the checks catch what they are for -------------------------------------------------------------


def _break(mutate) -> dict:
    values = load_values()
    mutate(values)
    return values


def _env_entry(values: dict, name: str) -> dict:
    return deployment_env(values)[name]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda v: v["runLauncher"]["config"]["k8sRunLauncher"].update(envSecret=[]),
            "'envSecret' was unexpected",
        ),
        (
            lambda v: v["runLauncher"]["config"]["k8sRunLauncher"]["resources"].update(
                limits={"memory": "4 GB"}
            ),
            "resources/limits/memory",
        ),
        (lambda v: v["concurrency"]["runs"].update(maxConcurrentRuns="8"), "'8' is not of type"),
        (
            lambda v: v["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"].update(
                maxConcurrentRuns=4
            ),
            "maxConcurrentRuns is set in both",
        ),
        (lambda v: v["postgresql"].update(postgresqlPassword="hunter2"), "postgresqlPassword"),
        (
            lambda v: v["dagster-user-deployments"]["deployments"][0].update(envSecret=[]),
            "'envSecret' is not a field of the chart",
        ),
        (
            lambda v: v["dagster-user-deployments"]["deployments"][0].update(port="3030"),
            "deployments[0]/port: '3030' is not of type 'integer'",
        ),
        (
            lambda v: _env_entry(v, "STRIPE_API_KEY")["valueFrom"]["secretKeyRef"].pop("key"),
            "'key' is a required property",
        ),
        (
            lambda v: _env_entry(v, "AEP_CLIENT_SECRET")["valueFrom"].update(
                secretKeyref={"name": "x", "key": "y"}
            ),
            "'secretKeyref' was unexpected",
        ),
    ],
)
def test_schema_checks_flag_broken_values(mutate, expected):
    problems = schema_problems(_break(mutate))
    assert any(expected in p for p in problems), problems


def _set_literal(values: dict, name: str, value: str) -> None:
    entry = _env_entry(values, name)
    entry.pop("valueFrom", None)
    entry["value"] = value


def _drop(values: dict, name: str) -> None:
    env = values["dagster-user-deployments"]["deployments"][0]["env"]
    env[:] = [e for e in env if e["name"] != name]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda v: _set_literal(v, "STRIPE_API_KEY", "from-a-values-file"),
            "STRIPE_API_KEY is a secret and must come from a secretKeyRef",
        ),
        (
            lambda v: _set_literal(v, "STRIPE_AEP_LEDGER_URL", "postgresql://u:pw@db/stripe_aep"),
            "STRIPE_AEP_LEDGER_URL is a secret",
        ),
        (lambda v: _drop(v, "AEP_CLIENT_SECRET"), "AEP_CLIENT_SECRET is required and not set"),
        (lambda v: _drop(v, "AEP_TENANT_ID"), "AEP_TENANT_ID is required and not set"),
        (lambda v: _drop(v, "STRIPE_CONCURRENCY"), "STRIPE_CONCURRENCY is read by the package"),
        (lambda v: _set_literal(v, "STRIPE_AEP_DATA_DIR", ""), "STRIPE_AEP_DATA_DIR is required"),
        (
            lambda v: _set_literal(v, "STRIPE_ACCOUNT", "acct_1"),
            "STRIPE_ACCOUNT is a secret",
        ),
        (
            lambda v: _set_literal(v, "AEP_SCOPES", "sk_" + "test_" + "1" * 20),
            "AEP_SCOPES holds a credential-looking literal",
        ),
    ],
)
def test_env_checks_flag_broken_values(mutate, expected):
    problems = env_problems(_break(mutate))
    assert any(expected in p for p in problems), problems


def test_vendored_chart_schema_is_the_one_noted_in_its_readme():
    readme = (CHART_SCHEMA_DIR / "README.md").read_text()
    assert "b8d7b2530862566f7ae5450a0e5387ab04c784c6" in readme and "Apache-2.0" in readme
    schema = json.loads(USER_DEPLOYMENTS_SCHEMA.read_text())
    assert schema["title"] == "DagsterUserDeploymentsHelmValues"
    assert "codeServerArgs" in schema["definitions"]["UserDeployment"]["properties"]


def test_k8s_stand_in_covers_every_reference_of_the_vendored_schema():
    document = _k8s_document()
    for pointer in re.findall(
        r"_definitions\.json#/definitions/([^\"]+)", USER_DEPLOYMENTS_SCHEMA.read_text()
    ):
        node = document["definitions"]
        for part in pointer.split("/"):
            node = node[part]
    assert Path(USER_DEPLOYMENTS_SCHEMA).stat().st_size > 10_000
