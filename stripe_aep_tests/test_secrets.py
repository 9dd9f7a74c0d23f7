"""Masking secrets (`stripe_aep.secrets`) and the client boundary: no transport exception leaves the
Stripe or AEP client with a secret in it, in its message or in anything chained to it."""

from __future__ import annotations

import base64
import json
import traceback
from urllib.parse import quote, quote_plus

import pytest
import requests

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.errors import AepError
from stripe_aep.aep.settings import AepSettings
from stripe_aep.config import StripeSettings
from stripe_aep.secrets import SecretMasker, describe_exception, secret_forms
from stripe_aep.stripe.client import StripeClient, StripeError, StripeTransportError
from stripe_aep_tests.conftest import TEST_KEY

SECRET = "p8e-Ab+Cd/Ef=Gh_ij9Kl"  # characters that URL-encoding and base64 both change


def _everything_shown(exc: BaseException) -> str:
    """What Python (and Dagster, which formats the same way) prints for an uncaught exception."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc.args)


def _plain_forms(secret: str) -> list[str]:
    core = secret.strip()
    return [
        core,
        quote(core, safe=""),
        quote_plus(core),
        base64.b64encode(core.encode()).decode().rstrip("="),
        base64.b64encode(f"client:{core}".encode()).decode()[8:-4],
    ]


@pytest.mark.parametrize("prefix", ["", "a", "ab", "abc", "user-id:"])
def test_basic_auth_base64_is_masked_at_every_alignment(prefix):
    masker = SecretMasker([SECRET])
    encoded = base64.b64encode(f"{prefix}{SECRET}:x".encode()).decode()
    masked = masker.mask(f"Authorization: Basic {encoded}")
    assert encoded not in masked and "***" in masked
    assert masker.contains_secret(encoded)


def test_every_form_is_masked_and_ordinary_text_is_not():
    masker = SecretMasker([SECRET])
    text = " | ".join(
        [
            f"raw {SECRET}",
            f"form client_secret={quote_plus(SECRET)}&scope=openid",
            f"url {quote(SECRET, safe='')}",
            f"json {json.dumps({'s': SECRET})}",
            f"repr {SECRET!r}",
            "the grant_type is client_credentials",
        ]
    )
    masked = masker.mask(text)
    for form in _plain_forms(SECRET) + [quote_plus(SECRET)]:
        assert form not in masked
    assert "the grant_type is client_credentials" in masked and masked.count("***") >= 5


def test_a_key_with_a_newline_is_masked_in_its_repr():
    key = TEST_KEY + "\n"
    masker = SecretMasker([key], hint=lambda _: "sk_test_…")
    header = f"'Bearer {key}'"
    masked = masker.mask(f"Invalid header value: {header!r} / {json.dumps(key)}")
    assert TEST_KEY not in masked and TEST_KEY[8:] not in masked and "sk_test_…" in masked
    assert TEST_KEY in secret_forms(key)
    assert SecretMasker([TEST_KEY]).mask(f"key body {TEST_KEY[8:]}") == "key body ***"


def test_describe_exception_walks_the_chain_masked():
    masker = SecretMasker([SECRET])
    try:
        try:
            raise ValueError(f"inner {quote_plus(SECRET)}")
        except ValueError as inner:
            raise requests.exceptions.InvalidURL(f"outer {SECRET}") from inner
    except requests.exceptions.InvalidURL as exc:
        text = describe_exception(exc, masker)
    assert text.startswith("InvalidURL: outer ***") and "<- ValueError: inner ***" in text
    assert SECRET not in text and quote_plus(SECRET) not in text


# -- the Stripe client -------------------------------------------------------------------------


def test_stripe_key_with_newline_raises_masked_without_chain(stripe_emulator):
    # Built without validation (which refuses it), to prove the boundary holds on its own.
    settings = StripeSettings(api_key=TEST_KEY + "\n", api_base=stripe_emulator.url, max_rps=500)
    client = StripeClient(settings, shared_limiter=False)
    with pytest.raises(StripeTransportError) as info:
        client.list_page("charges", {})
    exc = info.value
    shown = _everything_shown(exc)
    for form in _plain_forms(TEST_KEY):
        assert form not in shown
    assert "InvalidHeader" in str(exc) and "sk_test_…" in str(exc)
    assert exc.__cause__ is None and exc.__suppress_context__
    assert len(stripe_emulator.log) == 0


def test_stripe_transport_error_carrying_encoded_key_is_masked(stripe_settings, monkeypatch):
    client = StripeClient(stripe_settings, shared_limiter=False)
    basic = base64.b64encode(f"{TEST_KEY}:".encode()).decode()

    def failing_get(url, **kwargs):
        try:
            raise OSError(f"proxy said: Authorization: Basic {basic}")
        except OSError as low:
            raise requests.exceptions.InvalidJSONError(
                f"body {quote(TEST_KEY)} for {url}?key={TEST_KEY}"
            ) from low

    monkeypatch.setattr(client._session, "get", failing_get)
    with pytest.raises(StripeError) as info:
        client.list_page("charges", {})
    shown = _everything_shown(info.value)
    for form in _plain_forms(TEST_KEY) + [basic.rstrip("=")]:
        assert form not in shown
    assert "InvalidJSONError" in shown and "OSError" in shown  # the cause is described, masked


# -- the AEP client ----------------------------------------------------------------------------


def _aep_settings(url: str = "http://127.0.0.1:9") -> AepSettings:
    return AepSettings(
        client_id="clientid0123",
        client_secret=SECRET,
        org_id="ABC123@AdobeOrg",
        tenant_id="acme",
        ims_url=url,
        platform_url=url,
    )


class _BodyQuotingSession(requests.Session):
    """A transport that fails the way a proxy or adapter error does: quoting the request it got."""

    def send(self, request, **kwargs):
        raise requests.exceptions.InvalidJSONError(
            f"cannot send {request.method} {request.url}: body={request.body!r}"
        )


def test_ims_token_request_error_quoting_the_form_body_is_masked():
    client = AepClient(_aep_settings(), session=_BodyQuotingSession(), max_retries=0)
    with pytest.raises(AepError) as info:
        client.token_info()
    shown = _everything_shown(info.value)
    assert "client_secret=***" in shown  # the form body was quoted, URL-encoded, and masked
    for form in _plain_forms(SECRET):
        assert form not in shown
    assert info.value.__cause__ is None and info.value.__suppress_context__


class _TokenWithNewline(requests.Session):
    """IMS answers with a token that has a stray newline; the Platform call then cannot be sent."""

    TOKEN = "eyJhbGciOiJSUzI1NiJ9.SweepToken0123456789\n"

    def post(self, url, **kwargs):
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps({"access_token": self.TOKEN, "expires_in": 3600}).encode()
        return response


def test_platform_call_with_a_token_that_breaks_the_header_is_masked():
    client = AepClient(_aep_settings(), session=_TokenWithNewline(), max_retries=0)
    with pytest.raises(AepError) as info:
        client.get_stats()
    shown = _everything_shown(info.value)
    assert "InvalidHeader" in shown
    for form in _plain_forms(_TokenWithNewline.TOKEN):
        assert form not in shown
    assert info.value.__cause__ is None and info.value.__suppress_context__
