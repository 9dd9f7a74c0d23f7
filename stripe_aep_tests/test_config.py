import pytest

from stripe_aep.config import ConfigError, StripeSettings, parse_start_date, redact_key

KEY = "sk_test_51AbCdEfGhIjKlMnOpQrStUv"


def test_missing_key_names_the_variable():
    with pytest.raises(ConfigError) as exc:
        StripeSettings.from_env({})
    assert exc.value.variable == "STRIPE_API_KEY"
    assert "STRIPE_API_KEY" in str(exc.value)


def test_malformed_key_is_redacted_in_the_error():
    with pytest.raises(ConfigError) as exc:
        StripeSettings.from_env({"STRIPE_API_KEY": "pk_test_abcdefghijklmnop"})
    assert "pk_test_abcdefghijklmnop" not in str(exc.value)
    assert "STRIPE_API_KEY" in str(exc.value)


@pytest.mark.parametrize(
    "name,value",
    [
        ("STRIPE_MAX_RPS", "fast"),
        ("STRIPE_MAX_RPS", "-3"),
        ("STRIPE_ACCOUNT", "account-1"),
        ("STRIPE_API_BASE", "ftp://x"),
        ("STRIPE_CONCURRENCY", "0"),
        ("STRIPE_VISIBILITY_LAG_SECONDS", "soon"),
    ],
)
def test_bad_values_name_their_variable(name, value):
    with pytest.raises(ConfigError) as exc:
        StripeSettings.from_env({"STRIPE_API_KEY": KEY, name: value})
    assert exc.value.variable == name


def test_malformed_start_date_names_the_variable():
    with pytest.raises(ConfigError) as exc:
        parse_start_date("2025-13-45")
    assert "STRIPE_START_DATE" in str(exc.value)


def test_defaults_stay_below_stripe_limits():
    test = StripeSettings.from_env({"STRIPE_API_KEY": KEY})
    live = StripeSettings.from_env({"STRIPE_API_KEY": "rk_live_" + "x" * 24})
    assert test.max_rps < 25 and live.max_rps < 100
    assert test.api_base == "https://api.stripe.com"


def test_key_never_in_repr():
    settings = StripeSettings.from_env({"STRIPE_API_KEY": KEY})
    assert KEY not in repr(settings)
    assert redact_key(KEY).endswith(KEY[-4:]) and KEY not in redact_key(KEY)


# -- secrets and credentials: strict, and never echoed ----------------------------------------

import datetime as dt  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import dagster as dg  # noqa: E402

from stripe_aep.aep.settings import AepSettings  # noqa: E402
from stripe_aep.config import (  # noqa: E402
    CONCURRENCY_BOUNDS,
    MAX_RPS_BOUNDS,
    VISIBILITY_LAG_BOUNDS,
    check_data_dir,
    data_dir_from_env,
)

AEP_ENV = {
    "AEP_CLIENT_ID": "0123456789abcdef0123456789abcdef",
    "AEP_CLIENT_SECRET": "p8e-Secret-Value-0123456789",
    "AEP_ORG_ID": "5C1328435BF324E90A49402A@AdobeOrg",
    "AEP_SANDBOX": "prod",
    "AEP_TENANT_ID": "acme",
}


@pytest.mark.parametrize(
    "value,problem",
    [
        (KEY + "\n", "a trailing newline (character 33 of 33)"),
        (KEY + "\r\n", "a carriage return (character 33 of 34)"),
        (" " + KEY, "a leading space (character 1 of 33)"),
        (KEY[:10] + "\t" + KEY[10:], "a tab (character 11 of 33)"),
        (KEY[:10] + "\x07" + KEY[10:], "a control character U+0007 (character 11 of 33)"),
        (KEY + "\u200b", "a trailing invisible format character U+200B (character 33 of 33)"),
        (KEY[:10] + "é" + KEY[10:], "a non-ASCII character U+00E9 (character 11 of 33)"),
    ],
)
def test_stripe_key_with_whitespace_or_control_characters_is_refused_without_echo(value, problem):
    with pytest.raises(ConfigError) as exc:
        StripeSettings.from_env({"STRIPE_API_KEY": value})
    message = str(exc.value)
    assert exc.value.variable == "STRIPE_API_KEY"
    assert f"contains {problem}" in message
    for part in (KEY, KEY[8:], KEY[8:20], KEY[12:]):
        assert part not in message


@pytest.mark.parametrize(
    "name,value,secret",
    [
        ("AEP_CLIENT_SECRET", "p8e-Secret-Value-0123456789\n", "Secret-Value-0123456789"),
        ("AEP_CLIENT_SECRET", "p8e-Secret\x1bValue-0123456789", "Value-0123456789"),
        ("AEP_CLIENT_ID", "0123456789abcdef0123456789abcdef ", "0123456789abcdef0123"),
        ("AEP_ORG_ID", "5C1328435BF324E90A49402A@AdobeOrg\n", "5C1328435BF324E90A49402A"),
        ("AEP_SANDBOX", "prod\n", None),
        ("AEP_TENANT_ID", "acme\t", None),
        ("AEP_IMS_URL", "https://ims-na1.adobelogin.com\n", None),
        ("AEP_PLATFORM_URL", " https://platform.adobe.io", None),
    ],
)
def test_aep_settings_with_whitespace_or_control_characters_are_refused(name, value, secret):
    with pytest.raises(ConfigError) as exc:
        AepSettings.from_env({**AEP_ENV, name: value})
    assert exc.value.variable == name
    assert "contains a" in str(exc.value) and "character" in str(exc.value)
    if secret:
        assert secret not in str(exc.value)


def test_stripe_account_with_a_newline_is_refused():
    with pytest.raises(ConfigError) as exc:
        StripeSettings.from_env({"STRIPE_API_KEY": KEY, "STRIPE_ACCOUNT": "acct_1AbCdEfGh\n"})
    assert exc.value.variable == "STRIPE_ACCOUNT" and "trailing newline" in str(exc.value)


@pytest.mark.parametrize(
    "name,value",
    [
        ("STRIPE_API_BASE", "https://sk_live_abc:x@api.stripe.com"),
        ("AEP_PLATFORM_URL", "https://user:p8e-secret@platform.adobe.io"),
    ],
)
def test_urls_carrying_credentials_are_refused_without_echo(name, value):
    with pytest.raises(ConfigError) as exc:
        if name.startswith("AEP_"):
            AepSettings.from_env({**AEP_ENV, name: value})
        else:
            StripeSettings.from_env({"STRIPE_API_KEY": KEY, name: value})
    assert exc.value.variable == name and "credentials" in str(exc.value)
    assert "sk_live_abc" not in str(exc.value) and "p8e-secret" not in str(exc.value)


def test_redact_key_never_shows_more_than_a_short_tail():
    assert redact_key(KEY) == "sk_test_…StUv"
    assert redact_key(KEY + "\n") == "sk_test_…"  # not a plain tail: nothing of it is shown
    assert redact_key("p8e-Secret-Value-0123456789") == "…6789"


# -- numbers: finite and bounded ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name,value",
    [
        ("STRIPE_MAX_RPS", "nan"),
        ("STRIPE_MAX_RPS", "inf"),
        ("STRIPE_MAX_RPS", "-inf"),
        ("STRIPE_MAX_RPS", "1e300"),
        ("STRIPE_MAX_RPS", "0"),
        ("STRIPE_MAX_RPS", "0.01"),
        ("STRIPE_MAX_RPS", "1000.5"),
        ("STRIPE_CONCURRENCY", "129"),
        ("STRIPE_CONCURRENCY", "1000000000"),
        ("STRIPE_CONCURRENCY", "1.5"),
        ("STRIPE_CONCURRENCY", "9" * 5000),
        ("STRIPE_VISIBILITY_LAG_SECONDS", "-1"),
        ("STRIPE_VISIBILITY_LAG_SECONDS", "86401"),
        ("STRIPE_VISIBILITY_LAG_SECONDS", "nan"),
        ("STRIPE_VISIBILITY_LAG_SECONDS", "1e9"),
    ],
)
def test_numbers_that_cannot_work_are_refused_naming_the_variable_and_range(name, value):
    with pytest.raises(ConfigError) as exc:
        StripeSettings.from_env({"STRIPE_API_KEY": KEY, name: value})
    assert exc.value.variable == name
    low, high = {
        "STRIPE_MAX_RPS": MAX_RPS_BOUNDS,
        "STRIPE_CONCURRENCY": CONCURRENCY_BOUNDS,
        "STRIPE_VISIBILITY_LAG_SECONDS": VISIBILITY_LAG_BOUNDS,
    }[name]
    assert f"from {low:g} to {high:g}" in str(exc.value)
    assert len(str(exc.value)) < 400  # a huge value is not echoed whole


def test_the_bounds_themselves_are_accepted():
    low = StripeSettings.from_env(
        {
            "STRIPE_API_KEY": KEY,
            "STRIPE_MAX_RPS": "0.1",
            "STRIPE_CONCURRENCY": "1",
            "STRIPE_VISIBILITY_LAG_SECONDS": "0",
        }
    )
    high = StripeSettings.from_env(
        {
            "STRIPE_API_KEY": KEY,
            "STRIPE_MAX_RPS": "1000",
            "STRIPE_CONCURRENCY": "128",
            "STRIPE_VISIBILITY_LAG_SECONDS": "86400",
        }
    )
    assert (low.max_rps, low.concurrency, low.visibility_lag_seconds) == (0.1, 1, 0)
    assert (high.max_rps, high.concurrency, high.visibility_lag_seconds) == (1000, 128, 86400)


# -- dates ---------------------------------------------------------------------------------------


def test_start_date_in_the_future_or_before_stripe_is_refused():
    today = dt.date(2026, 12, 1)
    assert parse_start_date("2026-12-01", today=today) == today
    with pytest.raises(ConfigError) as exc:
        parse_start_date("2026-12-02", today=today)
    assert "STRIPE_START_DATE" in str(exc.value) and "future" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        parse_start_date("0001-01-01", today=today)
    assert "STRIPE_START_DATE" in str(exc.value) and "2010-01-01" in str(exc.value)


def test_future_start_date_fails_the_code_location_at_load():
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    env = {**os.environ, "STRIPE_START_DATE": tomorrow.isoformat()}
    proc = subprocess.run(
        [sys.executable, "-c", "import stripe_aep.definitions"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "STRIPE_START_DATE" in proc.stderr and "in the future" in proc.stderr


# -- the data folder ---------------------------------------------------------------------------


def test_data_dir_that_is_a_file_is_refused_naming_the_variable(tmp_path):
    file = tmp_path / "data"
    file.write_text("not a folder")
    with pytest.raises(ConfigError) as exc:
        check_data_dir(str(file))
    assert exc.value.variable == "STRIPE_AEP_DATA_DIR"
    assert str(file) in str(exc.value) and "not a folder" in str(exc.value)


def test_data_dir_under_a_file_cannot_be_created(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError) as exc:
        check_data_dir(str(tmp_path / "f" / "data"))
    assert exc.value.variable == "STRIPE_AEP_DATA_DIR" and "cannot create" in str(exc.value)


def test_missing_data_dir_is_created_and_proven_writable(tmp_path):
    target = tmp_path / "a" / "b"
    assert check_data_dir(str(target)) == str(target)
    assert target.is_dir() and list(target.iterdir()) == []  # the write probe is gone


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission")
def test_read_only_data_dir_is_refused(tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o500)
    try:
        with pytest.raises(ConfigError) as exc:
            check_data_dir(str(target))
        assert "not writable" in str(exc.value)
    finally:
        target.chmod(0o700)


@pytest.mark.parametrize(
    "uri,ok",
    [
        ("s3://my-bucket/stripe/prod", True),
        ("gs://my_bucket.example", True),
        ("s3://My_Bucket/x", False),
        ("s3://", False),
        ("s3://key:secret@bucket/x", False),
        ("ftp://host/x", False),
        ("s3://bucket//x", False),
    ],
)
def test_object_store_uri_shape_is_checked(uri, ok):
    if ok:
        assert check_data_dir(uri) == uri
        assert data_dir_from_env({"STRIPE_AEP_DATA_DIR": uri}) == uri
        return
    with pytest.raises(ConfigError) as exc:
        check_data_dir(uri)
    assert exc.value.variable == "STRIPE_AEP_DATA_DIR" and "secret" not in str(exc.value)


def test_data_dir_with_a_newline_fails_at_load():
    with pytest.raises(ConfigError) as exc:
        data_dir_from_env({"STRIPE_AEP_DATA_DIR": "/srv/data\n"})
    assert "trailing newline" in str(exc.value)
    assert data_dir_from_env({"STRIPE_AEP_DATA_DIR": "/srv/my data"}) == "/srv/my data"


# -- refused at run start, before any API call -------------------------------------------------


def _raw_run(stripe_emulator, lake_root, **stripe_config):
    from stripe_aep.assets.raw import raw_assets
    from stripe_aep.resources import LakeResource, StripeResource
    from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY

    resources = {
        "stripe": StripeResource(
            api_key=TEST_KEY,
            api_base=stripe_emulator.url,
            visibility_lag_seconds=0,
            **stripe_config,
        ),
        "lake": LakeResource(root=str(lake_root)),
    }
    with pytest.raises(Exception) as exc:
        dg.materialize(raw_assets[:1], resources=resources, partition_key=ACCOUNT_START.isoformat())
    return str(exc.value) + "".join(str(c) for c in [exc.value.__cause__] if c)


def test_data_dir_that_is_a_file_fails_the_run_before_any_request(stripe_emulator, tmp_path):
    (tmp_path / "lake").write_text("a file")
    message = _raw_run(stripe_emulator, tmp_path / "lake", max_rps=1000.0)
    assert "STRIPE_AEP_DATA_DIR" in message and "not a folder" in message
    assert len(stripe_emulator.log) == 0


@pytest.mark.parametrize("name,value", [("max_rps", float("nan")), ("concurrency", 100000)])
def test_unbounded_numbers_fail_the_run_before_any_request(stripe_emulator, tmp_path, name, value):
    message = _raw_run(stripe_emulator, tmp_path / "lake", **{name: value})
    assert f"STRIPE_{name.upper()}" in message
    assert len(stripe_emulator.log) == 0
    assert not (tmp_path / "lake" / "stripe").exists()  # nothing fetched, nothing written


def test_executor_setting_is_checked_and_names_the_variable():
    from stripe_aep.config import executor_from_env

    assert executor_from_env({}) == "multiprocess"
    assert executor_from_env({"STRIPE_AEP_EXECUTOR": "in_process"}) == "in_process"
    with pytest.raises(ConfigError) as err:
        executor_from_env({"STRIPE_AEP_EXECUTOR": "threads"})
    assert "STRIPE_AEP_EXECUTOR" in str(err.value) and "multiprocess" in str(err.value)
