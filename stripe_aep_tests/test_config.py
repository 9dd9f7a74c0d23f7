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
