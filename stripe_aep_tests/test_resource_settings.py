"""How settings reach the Dagster resources: typed fields, each fed from its variable by
`definitions.resources_from_env` (`dg.EnvVar`, `dg.EnvVar.int`, floats read on load), and checked
by the one set of builders (`stripe_aep.config`, `stripe_aep.aep.settings`) that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
import typing

import dagster as dg
import pytest

from stripe_aep.aep.settings import AepSettings
from stripe_aep.config import ConfigError, check_tenant, fresh_cron_from_env
from stripe_aep.resources import AepResource, LakeResource, StripeResource, XdmResource
from stripe_aep_tests.conftest import TEST_KEY

SECRET = "p8e-Secret-Value-0123456789"
LEDGER_PASSWORD = "ledger-pw-0123456789"
#: A valid value for every variable the resources read (what a deployment sets).
FULL_ENV = {
    "STRIPE_API_KEY": TEST_KEY,
    "STRIPE_API_BASE": "http://127.0.0.1:1",
    "STRIPE_API_VERSION": "2026-07-29.dahlia",
    "STRIPE_ACCOUNT": "acct_1AbCdEfGh",
    "STRIPE_MAX_RPS": "12.5",
    "STRIPE_VISIBILITY_LAG_SECONDS": "30",
    "STRIPE_CONCURRENCY": "3",
    "STRIPE_RATE_SAFETY_FACTOR": "0.5",
    "STRIPE_ENDPOINT_RPS": "7.5",
    "STRIPE_ENDPOINT_RPS_OVERRIDES": "/v1/charges=9",
    "STRIPE_MAX_IN_FLIGHT": "11",
    "STRIPE_READ_ALLOCATION": "20000",
    "STRIPE_AEP_LEDGER_URL": f"postgresql://stripe:{LEDGER_PASSWORD}@db.internal:5432/ledger",
    "AEP_TENANT_ID": "acme",
    "AEP_CLIENT_ID": "0123456789abcdef0123456789abcdef",
    "AEP_CLIENT_SECRET": SECRET,
    "AEP_ORG_ID": "5C1328435BF324E90A49402A@AdobeOrg",
    "AEP_SANDBOX": "dev-stripe",
    "AEP_IMS_URL": "http://127.0.0.1:2",
    "AEP_PLATFORM_URL": "http://127.0.0.1:3",
    "AEP_SCOPES": "openid,AdobeID",
}
SECRETS = {"STRIPE_API_KEY", "STRIPE_ACCOUNT", "STRIPE_AEP_LEDGER_URL"} | {
    "AEP_CLIENT_ID",
    "AEP_CLIENT_SECRET",
    "AEP_ORG_ID",
}
RESOURCE_CLASSES = (StripeResource, LakeResource, XdmResource, AepResource)


def _set_env(monkeypatch, env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith(("STRIPE_", "AEP_")) and name != "STRIPE_AEP_DATA_DIR":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _variable(resource_class, field: str) -> str:
    """The variable a field's description names (its first word)."""
    description = resource_class.model_fields[field].description or ""
    return description.split(":")[0].split(" ")[0]


def _fed_by(value) -> str | None:
    """The variable an `EnvVar` / `EnvVar.int` field value stands for; None for a literal."""
    name = getattr(value, "env_var_name", None)
    return name if isinstance(value, dg.EnvVar) or hasattr(value, "env_var_name") else None


def _resources_from_env():
    from stripe_aep.definitions import resources_from_env

    return resources_from_env()


def test_every_field_is_typed_and_names_its_variable():
    seen = set()
    for resource_class in RESOURCE_CLASSES:
        for field, info in resource_class.model_fields.items():
            variable = _variable(resource_class, field)
            assert variable.startswith(("STRIPE_", "AEP_")), (resource_class, field)
            assert variable not in seen, f"{variable} configured twice"
            seen.add(variable)
            types = set(typing.get_args(info.annotation)) or {info.annotation}
            assert types <= {str, int, float, type(None)}, (field, info.annotation)
    # the tenant once, on the XDM resource; delivery has none
    assert "tenant" not in AepResource.model_fields
    assert _variable(XdmResource, "tenant") == "AEP_TENANT_ID"
    assert {"STRIPE_MAX_RPS", "STRIPE_CONCURRENCY", "AEP_SCOPES"} <= seen


def test_each_field_is_fed_from_its_own_variable_and_secrets_only_by_envvar(monkeypatch):
    _set_env(monkeypatch, FULL_ENV)
    resources = _resources_from_env()
    fed = {}
    for resource in resources.values():
        for field in type(resource).model_fields:
            value = getattr(resource, field)
            variable = _variable(type(resource), field)
            if variable == "STRIPE_AEP_DATA_DIR":
                continue  # read on load like the sensors do (test_config covers its checks)
            fed[variable] = value
            if field in ("max_rps", "rate_safety_factor", "endpoint_rps"):
                # Dagster's EnvVar has no float form: read and bounded on load
                assert value == float(FULL_ENV[variable]), variable
            else:
                assert _fed_by(value) == variable, (field, value)
    assert set(fed) == set(FULL_ENV)
    for name in SECRETS:
        assert _fed_by(fed[name]) == name
    shown = repr(resources) + "".join(str(r.model_dump()) for r in resources.values())
    for secret in (SECRET, TEST_KEY, LEDGER_PASSWORD):
        assert secret not in shown


@dg.asset
def settings_probe(stripe: StripeResource, xdm: XdmResource, aep: AepResource) -> dict:
    s, a = stripe.settings(), aep.settings()
    return {
        "max_rps": s.max_rps,
        "concurrency": s.concurrency,
        "lag": s.visibility_lag_seconds,
        "account": s.account,
        "in_flight": s.rates.max_in_flight,
        "allocation": s.rates.read_allocation,
        "safety": s.rates.safety_factor,
        "endpoint_rps": s.rates.endpoint_rps,
        "overrides": dict(s.rates.endpoint_rps_overrides),
        "budget_url_set": s.rates.budget_url is not None,
        "tenant": xdm.tenant_id(),
        "sandbox": a.sandbox,
        "scopes": a.scopes,
        "platform_url": a.platform_url,
        "aep_tenant": a.tenant_id,
    }


def _step_error(result):
    """The error that failed the step (Dagster wraps it: "Error occurred while executing op")."""
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error
    return error.cause or error


def _probe(resources) -> dict:
    result = dg.materialize([settings_probe], resources=resources)
    return result.output_for_node("settings_probe")


def test_a_run_resolves_the_variables_when_it_starts(monkeypatch):
    _set_env(monkeypatch, FULL_ENV)
    resources = _resources_from_env()
    # EnvVar fields are resolved at run start, not when the code location loaded
    monkeypatch.setenv("STRIPE_CONCURRENCY", "5")
    monkeypatch.setenv("AEP_TENANT_ID", "globex")
    got = _probe(resources)
    assert got == {
        "max_rps": 12.5,
        "concurrency": 5,
        "lag": 30,
        "account": "acct_1AbCdEfGh",
        "in_flight": 11,
        "allocation": 20000,
        "safety": 0.5,
        "endpoint_rps": 7.5,
        "overrides": {"GET /v1/charges": 9.0},
        "budget_url_set": True,
        "tenant": "globex",
        "sandbox": "dev-stripe",
        "scopes": ("openid", "AdobeID"),
        "platform_url": "http://127.0.0.1:3",
        "aep_tenant": None,  # delivery does not use the tenant
    }


def test_unset_optional_variables_leave_the_defaults(monkeypatch):
    required = ("STRIPE_API_KEY", "AEP_TENANT_ID", "AEP_CLIENT_ID", "AEP_CLIENT_SECRET")
    _set_env(monkeypatch, {n: FULL_ENV[n] for n in (*required, "AEP_ORG_ID")})
    monkeypatch.setenv("STRIPE_CONCURRENCY", "  ")  # blank counts as unset
    got = _probe(_resources_from_env())
    assert (got["max_rps"], got["concurrency"], got["lag"]) == (23.75, 24, 120)
    assert (got["in_flight"], got["allocation"], got["budget_url_set"]) == (None, None, False)
    assert (got["sandbox"], got["platform_url"]) == ("prod", "https://platform.adobe.io")


@pytest.mark.parametrize(
    "unset,message",
    [
        ("STRIPE_API_KEY", "STRIPE_API_KEY: not set. Set it to a secret key"),
        ("AEP_TENANT_ID", "AEP_TENANT_ID: not set. Set it to your AEP tenant id"),
        ("AEP_CLIENT_SECRET", "AEP_CLIENT_SECRET: not set"),
    ],
)
def test_an_unset_required_variable_fails_the_step_saying_what_to_set(monkeypatch, unset, message):
    _set_env(monkeypatch, {k: v for k, v in FULL_ENV.items() if k != unset})
    result = dg.materialize([settings_probe], resources=_resources_from_env(), raise_on_error=False)
    assert not result.success
    error = _step_error(result)
    assert error.cls_name == "ConfigError" and message in error.message


@pytest.mark.parametrize(
    "name,value,where",
    [
        ("STRIPE_CONCURRENCY", "100000", "step"),  # a whole number out of bounds: the builder
        ("STRIPE_VISIBILITY_LAG_SECONDS", "-1", "step"),
        ("STRIPE_MAX_RPS", "nan", "load"),  # floats are read on load
        ("STRIPE_RATE_SAFETY_FACTOR", "2", "load"),
        ("STRIPE_CONCURRENCY", "many", "run"),  # not an int: Dagster's EnvVar.int refuses the run
    ],
)
def test_a_bad_value_names_its_variable_before_any_request(monkeypatch, name, value, where):
    _set_env(monkeypatch, {**FULL_ENV, name: value})
    if where == "load":
        with pytest.raises(ConfigError) as exc:
            _resources_from_env()
        assert exc.value.variable == name
        return
    resources = _resources_from_env()
    if where == "run":
        # Dagster resolves EnvVar.int before any step starts, naming the variable (not its value)
        with pytest.raises(dg.DagsterInvalidConfigError) as err:
            _probe(resources)
        assert f'env variable "{name}" cannot be coerced into an int' in str(err.value)
        return
    result = dg.materialize([settings_probe], resources=resources, raise_on_error=False)
    error = _step_error(result)
    assert error.cls_name == "ConfigError" and f"ConfigError: {name}: " in error.message


# -- the tenant: one variable, one rule -----------------------------------------------------------


@pytest.mark.parametrize(
    "value,problem,fix",
    [
        (None, "not set", "without the leading underscore"),
        ("", "not set", "the local emulator uses `stripeaep`"),
        ("_acme", "'_acme' is not a tenant id", "Drop the leading underscore: AEP_TENANT_ID=acme"),
        ("Acme", "'Acme' is not a tenant id", "lowercase letters, digits and underscores"),
        ("acme-eu", "'acme-eu' is not a tenant id", "lowercase letters, digits and underscores"),
        ("acme\n", "contains a trailing newline", "Remove it"),
    ],
)
def test_the_tenant_is_checked_by_one_rule_everywhere(value, problem, fix):
    """XDM resource, AEP settings (command line) and `check_tenant` refuse alike, same words."""
    messages = []
    for check in (
        lambda: check_tenant(value),
        lambda: XdmResource(tenant=value).tenant_id(),
        # the command line: AepSettings checks a set tenant, `stripe-aep setup` requires one
        lambda: check_tenant(
            AepSettings.build(
                client_id="id", client_secret="s", org_id="ABC@AdobeOrg", tenant_id=value
            ).tenant_id
        ),
    ):
        with pytest.raises(ConfigError) as exc:
            check()
        assert exc.value.variable == "AEP_TENANT_ID"
        messages.append(str(exc.value))
    assert len(set(messages)) == 1, messages
    assert problem in messages[0] and fix in messages[0]


def test_the_tenant_rule_is_the_xdm_one():
    from stripe_aep.xdm.schemas import validate_tenant

    for value in ("acme", "acme_eu", "0acme", "_acme", "acme-eu", "ACME", "a" * 200):
        try:
            validate_tenant(value)
            valid = True
        except ValueError:
            valid = False
        try:
            check_tenant(value)
            checked = True
        except ConfigError:
            checked = False
        assert valid == checked, value


def test_setup_refuses_a_missing_tenant_before_any_request(monkeypatch, capsys):
    from stripe_aep.cli import main

    env = {k: v for k, v in FULL_ENV.items() if k.startswith("AEP_") and k != "AEP_TENANT_ID"}
    _set_env(monkeypatch, env)
    assert main(["setup"]) == 2
    assert "AEP_TENANT_ID: not set" in capsys.readouterr().err


# -- the fresh-data schedule's cron ---------------------------------------------------------------


def test_fresh_cron_is_checked_and_names_the_variable():
    assert fresh_cron_from_env({}) == "*/15 * * * *"
    assert fresh_cron_from_env({"STRIPE_AEP_FRESH_CRON": " "}) == "*/15 * * * *"
    assert fresh_cron_from_env({"STRIPE_AEP_FRESH_CRON": "* * * * *"}) == "* * * * *"
    assert fresh_cron_from_env({"STRIPE_AEP_FRESH_CRON": "5,35 */2 * * 1-5"}) == "5,35 */2 * * 1-5"
    for bad in ("every 5 minutes", "61 * * * *", "* * * *", "*/15 * * * *\n"):
        with pytest.raises(ConfigError) as exc:
            fresh_cron_from_env({"STRIPE_AEP_FRESH_CRON": bad})
        assert exc.value.variable == "STRIPE_AEP_FRESH_CRON", bad


def test_a_bad_fresh_cron_fails_the_code_location_at_load():
    env = {**os.environ, "STRIPE_AEP_FRESH_CRON": "*/15 * * *"}
    proc = subprocess.run(
        [sys.executable, "-c", "import stripe_aep.definitions"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert (
        "ConfigError: STRIPE_AEP_FRESH_CRON: '*/15 * * *' is not a cron expression" in proc.stderr
    )
