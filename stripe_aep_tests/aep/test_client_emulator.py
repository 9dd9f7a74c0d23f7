"""AepClient against the AEP emulator: token lifecycle and gateway checks as the emulator enforces them."""

from __future__ import annotations

import logging

import pytest

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.errors import AepError
from stripe_aep_tests.aep.conftest import settings_for


def test_expired_tokens_are_replaced_once(aep, aep_client):
    aep_client.get_stats()
    assert aep.state.tokens_issued == 1
    aep.faults.expire_all_tokens = True
    assert aep_client.get_stats()["tenantId"] == "stripeaep"
    assert aep.state.tokens_issued == 2
    assert aep_client.stats["token_refresh_on_401"] == 1


def test_short_lived_tokens_are_refreshed_before_expiry(aep):
    aep.faults.token_expires_in = 100
    now = [1000.0]
    client = AepClient(settings_for(aep), clock=lambda: now[0])
    client.get_stats()
    now[0] += 91  # past 90 % of the lifetime
    client.get_stats()
    assert aep.state.tokens_issued == 2
    assert client.stats["token_refresh_on_401"] == 0
    client.close()


def test_wrong_secret_costs_one_token_request(aep, caplog):
    client = AepClient(settings_for(aep, client_secret="wrong-wrong-wrong"), backoff_base_s=0.01)
    with caplog.at_level(logging.DEBUG), pytest.raises(AepError) as err:
        client.list_batches()
    assert client.stats["requests"] == 1 and client.stats["retries"] == 0
    assert aep.state.tokens_issued == 0
    assert "AEP_CLIENT_SECRET" in str(err.value)
    for text in (str(err.value), repr(err.value), caplog.text, repr(client)):
        assert "wrong-wrong-wrong" not in text and aep.identity.client_secret not in text
    client.close()


def test_wrong_client_id_is_caught_by_ims(aep):
    client = AepClient(settings_for(aep, client_id="someone-else"))
    with pytest.raises(AepError) as err:
        client.get_stats()
    assert "AEP_CLIENT_ID" in err.value.hint
    client.close()


def test_missing_batch_is_a_404_error_with_adobes_message(aep, aep_client):
    with pytest.raises(AepError) as err:
        aep_client.get_batch("0123456789abcdef0123456789abcdef")
    assert err.value.status == 404
    assert "not found" in str(err.value).lower()
    assert err.value.code == "CATALOG-404"
