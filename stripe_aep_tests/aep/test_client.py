"""AepClient against a scripted gateway: tokens, retries, error messages, headers, secrets."""

from __future__ import annotations

import logging

import pytest

from stripe_aep.aep.client import (
    MAX_PUT_BYTES,
    AepClient,
    BatchState,
    BatchStatus,
    classify_status,
)
from stripe_aep.aep.errors import AepError, ConfigError, FileTooLargeError
from stripe_aep.aep.settings import DEFAULT_SCOPES, AepSettings
from stripe_aep_tests.aep.fake_gateway import CLIENT_ID, ORG_ID, SECRET, FakeGateway

BATCHES = "/data/foundation/import/batches"


@pytest.fixture
def gateway():
    fake = FakeGateway()
    with fake.serve() as server:
        fake.url = server.url
        yield fake


def make_client(gateway, *, secret=SECRET, client_id=CLIENT_ID, **kw) -> tuple[AepClient, list]:
    settings = AepSettings(
        client_id=client_id,
        client_secret=secret,
        org_id=ORG_ID,
        sandbox="dev-stripe",
        tenant_id="acme",
        ims_url=gateway.url,
        platform_url=gateway.url,
    )
    sleeps: list[float] = []
    kw.setdefault("sleep", sleeps.append)
    return AepClient(settings, **kw), sleeps


def all_text(client: AepClient, exc: BaseException | None, caplog) -> str:
    return "\n".join([repr(client), repr(client.settings), str(exc or ""), repr(exc), caplog.text])


def tokens_issued(gateway) -> list[str]:
    return [f"eyFAKE-token-{i}-abcdefghijklmnop" for i in range(1, gateway._n + 1)]


def assert_no_secret(text: str, gateway) -> None:
    assert SECRET not in text
    for token in tokens_issued(gateway):
        assert token not in text


# -- tokens ---------------------------------------------------------------------------------


def test_token_is_cached_across_calls(gateway):
    client, _ = make_client(gateway)
    for _ in range(5):
        client.get_stats()
    assert gateway.count("POST", "/ims/token/v3") == 1
    assert gateway.count("GET", "/data/foundation/schemaregistry/stats") == 5


def test_token_is_refreshed_before_it_expires(gateway):
    gateway.expires_in = 1000  # refresh 10 % (100 s) early
    now = [0.0]
    client, _ = make_client(gateway, clock=lambda: now[0])
    client.get_stats()
    now[0] = 899.0
    client.get_stats()
    assert gateway.count("POST", "/ims/token/v3") == 1
    now[0] = 901.0  # inside the early-refresh window, still before the real expiry
    client.get_stats()
    assert gateway.count("POST", "/ims/token/v3") == 2
    assert client.stats["token_refresh_on_401"] == 0


def test_refresh_margin_is_at_most_five_minutes(gateway):
    gateway.expires_in = 86399
    now = [0.0]
    client, _ = make_client(gateway, clock=lambda: now[0])
    client.get_stats()
    now[0] = 86399 - 301
    client.get_stats()
    assert gateway.count("POST", "/ims/token/v3") == 1
    now[0] = 86399 - 299
    client.get_stats()
    assert gateway.count("POST", "/ims/token/v3") == 2


def test_401_fetches_a_fresh_token_once_and_repeats_the_call(gateway):
    client, _ = make_client(gateway)
    client.get_stats()
    gateway.expire_all_tokens()
    client.get_stats()
    assert gateway.count("POST", "/ims/token/v3") == 2
    assert gateway.count("GET", "/data/foundation/schemaregistry/stats") == 3
    assert client.stats["token_refresh_on_401"] == 1


def test_second_401_fails_with_a_hint_instead_of_looping(gateway, caplog):
    gateway.reject_all_tokens = True
    client, sleeps = make_client(gateway)
    with caplog.at_level(logging.DEBUG), pytest.raises(AepError) as err:
        client.get_stats()
    assert gateway.count("GET", "/data/foundation/schemaregistry/stats") == 2
    assert gateway.count("POST", "/ims/token/v3") == 2
    assert sleeps == []
    e = err.value
    assert e.status == 401 and e.code == "401013"
    assert "AEP_CLIENT_SECRET" in str(e) and "AEP_CLIENT_ID" in str(e)
    assert e.request_id is None or isinstance(e.request_id, str)
    assert_no_secret(all_text(client, e, caplog), gateway)


def test_wrong_secret_says_which_variable_and_does_not_retry(gateway, caplog):
    client, sleeps = make_client(gateway, secret="wrong-secret-value-0000")
    with caplog.at_level(logging.DEBUG), pytest.raises(AepError) as err:
        client.get_stats()
    assert gateway.count("POST", "/ims/token/v3") == 1
    assert gateway.count("GET") == 0
    assert sleeps == []
    e = err.value
    assert e.code == "invalid_client"
    assert "AEP_CLIENT_SECRET" in e.hint
    assert "wrong-secret-value-0000" not in all_text(client, e, caplog)


def test_unknown_client_id_names_aep_client_id(gateway):
    client, _ = make_client(gateway, client_id="not-a-client")
    with pytest.raises(AepError) as err:
        client.token_info()
    assert "AEP_CLIENT_ID" in err.value.hint
    assert gateway.count("POST", "/ims/token/v3") == 1


def test_token_request_sends_the_configured_scopes(gateway):
    client, _ = make_client(gateway)
    info = client.token_info()
    assert 86000 < info.expires_in_s <= 86399
    assert client.settings.scopes == DEFAULT_SCOPES


# -- headers and retries --------------------------------------------------------------------


def test_every_platform_call_carries_the_four_adobe_headers(gateway):
    client, _ = make_client(gateway)
    gateway.add("POST", BATCHES, 201, {"id": "b1", "status": "loading"})
    gateway.add("GET", "/data/foundation/catalog/batches/b1", 200, {"b1": {"status": "loading"}})
    client.create_batch("ds1", external_id="x1")
    client.upload_file("b1", "ds1", "xdm/charges/a.parquet", b"PAR1data")
    client.complete_batch("b1")
    client.get_batch("b1")
    client.list_tenant_resources("schemas")
    client.list_identity_namespaces()
    platform = [r for r in gateway.requests if r.path != "/ims/token/v3"]
    assert len(platform) == 6
    for r in platform:
        assert r.headers["authorization"].startswith("Bearer eyFAKE-token-")
        assert r.headers["x-api-key"] == CLIENT_ID
        assert r.headers["x-gw-ims-org-id"] == ORG_ID
        assert r.headers["x-sandbox-name"] == "dev-stripe"
    put = next(r for r in platform if r.method == "PUT")
    assert put.path == f"{BATCHES}/b1/datasets/ds1/files/xdm/charges/a.parquet"
    assert put.headers["content-type"] == "application/octet-stream"
    assert put.body_len == 8
    complete = next(r for r in platform if r.method == "POST" and r.path == f"{BATCHES}/b1")
    assert complete.query == "action=COMPLETE"
    listing = next(r for r in platform if r.path.endswith("/tenant/schemas"))
    assert listing.headers["accept"] == "application/vnd.adobe.xed-id+json"


def test_put_is_retried_on_503_with_backoff(gateway):
    client, sleeps = make_client(gateway)
    path = f"{BATCHES}/b1/datasets/ds1/files/f.parquet"
    gateway.add("PUT", path, 503, {"message": "Service Unavailable"})
    gateway.add("PUT", path, 503, None)
    client.upload_file("b1", "ds1", "f.parquet", b"x" * 100)
    assert gateway.count("PUT", path) == 3
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # exponential with jitter
    assert client.stats["retries"] == 2


def test_retry_after_is_honoured(gateway):
    client, sleeps = make_client(gateway)
    gateway.add("GET", "/data/foundation/catalog/batches/b1", 429, {}, {"Retry-After": "7"})
    gateway.add("GET", "/data/foundation/catalog/batches/b1", 200, {"b1": {"status": "success"}})
    assert client.get_batch("b1").state is BatchState.DONE
    assert sleeps == [7.0]


def test_retries_give_up_after_max_retries(gateway):
    client, sleeps = make_client(gateway, max_retries=3)
    for _ in range(5):
        gateway.add("POST", f"{BATCHES}/b1", 502, {"message": "bad gateway"})
    with pytest.raises(AepError) as err:
        client.complete_batch("b1")
    assert gateway.count("POST", f"{BATCHES}/b1") == 4
    assert len(sleeps) == 3
    assert err.value.status == 502 and "retried" in err.value.hint


def test_batch_creation_is_never_retried(gateway):
    client, sleeps = make_client(gateway)
    gateway.add("POST", BATCHES, 503, {"message": "unavailable"})
    with pytest.raises(AepError) as err:
        client.create_batch("ds1", external_id="ext-1")
    assert gateway.count("POST", BATCHES) == 1
    assert sleeps == []
    assert err.value.status == 503


def test_network_errors_are_retried_only_for_idempotent_calls():
    settings = AepSettings(
        client_id=CLIENT_ID,
        client_secret=SECRET,
        org_id=ORG_ID,
        ims_url="http://127.0.0.1:9",  # discard port: connection refused
        platform_url="http://127.0.0.1:9",
    )
    sleeps: list[float] = []
    client = AepClient(settings, sleep=sleeps.append, max_retries=2, timeout=(0.5, 0.5))
    with pytest.raises(AepError) as err:
        client.token_info()
    assert len(sleeps) == 2
    assert "AEP_IMS_URL" in err.value.hint
    assert SECRET not in str(err.value)


def test_non_idempotent_network_error_is_not_retried(gateway):
    client, sleeps = make_client(gateway)
    client.token_info()
    client.settings = AepSettings(  # same token cache, unreachable Platform
        client_id=CLIENT_ID,
        client_secret=SECRET,
        org_id=ORG_ID,
        ims_url=gateway.url,
        platform_url="http://127.0.0.1:9",
    )
    with pytest.raises(AepError) as err:
        client.create_batch("ds1", external_id="e")
    assert sleeps == []
    assert "not retried" in str(err.value)


@pytest.mark.parametrize(
    ("status", "code", "variable"),
    [
        (403, "403003", "AEP_CLIENT_ID"),
        (403, "403000", "AEP_CLIENT_ID"),
        (400, "400003", "AEP_ORG_ID"),
        (403, "403025", "AEP_ORG_ID"),
    ],
)
def test_gateway_codes_become_fix_hints(gateway, caplog, status, code, variable):
    client, sleeps = make_client(gateway)
    gateway.add(
        "GET", "/data/foundation/catalog/dataSets/ds1", status, {"error_code": code, "message": "m"}
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(AepError) as err:
        client.get_dataset("ds1")
    e = err.value
    assert e.code == code and e.status == status
    assert variable in e.hint and variable in str(e)
    assert e.request_id == "req-fake-123" and "req-fake-123" in str(e)
    assert sleeps == []
    assert_no_secret(all_text(client, e, caplog), gateway)


def test_plain_403_names_the_sandbox(gateway):
    client, _ = make_client(gateway)
    gateway.add("GET", "/data/foundation/catalog/dataSets/ds1", 403, {"title": "Forbidden"})
    with pytest.raises(AepError) as err:
        client.get_dataset("ds1")
    assert "AEP_SANDBOX" in err.value.hint and "dev-stripe" in err.value.hint


def test_files_over_256_mib_are_refused_before_any_request(gateway):
    client, _ = make_client(gateway)
    with pytest.raises(FileTooLargeError) as err:
        client.upload_file("b1", "ds1", "big.parquet", lambda: None, size=MAX_PUT_BYTES + 1)
    assert "256" in str(err.value)
    assert gateway.requests == []


def test_dataset_lookup_returns_none_on_404(gateway):
    client, _ = make_client(gateway)
    gateway.add("GET", "/data/foundation/catalog/dataSets/nope", 404, {"message": "not found"})
    assert client.get_dataset("nope") is None


def test_dataset_create_parses_the_catalog_answer(gateway):
    client, _ = make_client(gateway)
    gateway.add(
        "POST", "/data/foundation/catalog/dataSets", 201, ["@/dataSets/5c8c3c555033b814b69f947f"]
    )
    assert (
        client.create_dataset({"name": "x", "schemaRef": {"id": "s"}}) == "5c8c3c555033b814b69f947f"
    )


def test_list_batches_filters_by_external_id_even_if_the_server_does_not(gateway):
    client, _ = make_client(gateway)
    gateway.add(
        "GET",
        "/data/foundation/catalog/batches",
        200,
        {
            "b1": {
                "status": "loading",
                "externalId": "mine",
                "relatedObjects": [{"type": "dataSet", "id": "ds1"}],
            },
            "b2": {
                "status": "success",
                "externalId": "other",
                "relatedObjects": [{"type": "dataSet", "id": "ds1"}],
            },
        },
    )
    found = client.list_batches(dataset_id="ds1", external_id="mine")
    assert [b.batch_id for b in found] == ["b1"]
    q = next(r for r in gateway.requests if r.path == "/data/foundation/catalog/batches").query
    assert "externalId=mine" in q and "dataSet=ds1" in q


def _tagged(dataset: str, group: str, created: int) -> dict:
    return {
        "status": "success",
        "created": created,
        "tags": {"stripeAepGroup": [group]},
        "relatedObjects": [{"type": "dataSet", "id": dataset}],
    }


def test_list_batches_tagged_pages_until_a_short_page_and_rechecks_the_filters(gateway):
    client, _ = make_client(gateway)
    path = "/data/foundation/catalog/batches"
    page1 = {f"b{i:03d}": _tagged("ds1", "xdm/charges/2026-11-20", i) for i in range(100)}
    # a server ignoring the filters would hand back another group's and another dataset's batches
    page2 = {
        "b100": _tagged("ds1", "xdm/charges/2026-11-20", 100),
        "other-group": _tagged("ds1", "xdm/charges/2026-11-21", 101),
        "other-dataset": _tagged("ds2", "xdm/charges/2026-11-20", 102),
    }
    gateway.add("GET", path, 200, page1)
    gateway.add("GET", path, 200, page2)
    found = client.list_batches_tagged(
        dataset_id="ds1", tags={"stripeAepGroup": "xdm/charges/2026-11-20"}
    )
    assert [b.batch_id for b in found] == [f"b{i:03d}" for i in range(101)]
    queries = [r.query for r in gateway.requests if r.path == path]
    assert len(queries) == 2  # the short second page ends the listing
    for start, q in zip((0, 100), queries, strict=True):
        assert "dataSet=ds1" in q and "limit=100" in q and f"start={start}" in q
        assert "tags=stripeAepGroup%3Axdm%2Fcharges%2F2026-11-20" in q
        assert "orderBy=asc%3Acreated" in q


def test_list_batches_tagged_never_decides_on_a_partial_listing(gateway):
    client, _ = make_client(gateway)
    path = "/data/foundation/catalog/batches"
    for page in range(2):
        gateway.add("GET", path, 200, {f"p{page}-{i}": _tagged("ds1", "g", i) for i in range(100)})
    with pytest.raises(AepError, match="partial listing"):
        client.list_batches_tagged(dataset_id="ds1", tags={"stripeAepGroup": "g"}, max_pages=2)
    with pytest.raises(ValueError, match="cannot be expressed"):
        client.list_batches_tagged(dataset_id="ds1", tags={"stripeAepGroup": "a,b"})


def test_create_batch_sends_tags_as_arrays_of_strings():
    body = AepClient.create_batch_body("ds1", external_id="e1", tags={"t": ["a", "b"]})
    assert body["tags"] == {"t": ["a", "b"]} and body["externalId"] == "e1"
    assert "tags" not in AepClient.create_batch_body("ds1", external_id="e1")


# -- status rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("success", BatchState.DONE),
        ("active", BatchState.DONE),
        ("failed", BatchState.FAILED),
        ("failure", BatchState.FAILED),
        ("aborted", BatchState.FAILED),
        ("abandoned", BatchState.FAILED),
        ("stalled", BatchState.ALERT),
        ("loading", BatchState.PENDING),
        ("processing", BatchState.PENDING),
        ("staging", BatchState.PENDING),
        ("retrying", BatchState.PENDING),
        ("queued", BatchState.PENDING),
    ],
)
def test_catalog_status_rule(status, state):
    assert classify_status(status) is state
    assert classify_status(status.upper()) is state


def test_batch_status_carries_adobe_errors_and_metrics():
    st = BatchStatus.from_catalog(
        "b9",
        {
            "status": "failed",
            "externalId": "e9",
            "relatedObjects": [{"type": "dataSet", "id": "ds9"}],
            "errors": [
                {"code": "INGEST-1211-400", "description": "bad type", "recordCount": 3},
                {"code": "106", "description": "Dataset file is empty."},
            ],
            "metrics": {"inputRecordCount": 10, "outputRecordCount": 7, "failedRecordCount": 3},
        },
    )
    assert st.state is BatchState.FAILED
    assert [(e.code, e.record_count) for e in st.errors] == [("INGEST-1211-400", 3), ("106", None)]
    assert (st.metrics.records_read, st.metrics.records_written, st.metrics.records_failed) == (
        10,
        7,
        3,
    )
    assert st.dataset_id == "ds9" and st.external_id == "e9"


# -- settings -------------------------------------------------------------------------------

GOOD_ENV = {
    "AEP_CLIENT_ID": CLIENT_ID,
    "AEP_CLIENT_SECRET": SECRET,
    "AEP_ORG_ID": ORG_ID,
}


def test_settings_defaults_and_repr_hide_the_secret():
    s = AepSettings.from_env(GOOD_ENV)
    assert s.sandbox == "prod"
    assert s.ims_url == "https://ims-na1.adobelogin.com"
    assert s.platform_url == "https://platform.adobe.io"
    assert s.scopes == DEFAULT_SCOPES
    assert s.tenant_id is None
    assert SECRET not in repr(s) and SECRET not in str(s)
    s2 = AepSettings.from_env(
        {**GOOD_ENV, "AEP_SCOPES": "openid, AdobeID", "AEP_TENANT_ID": "acme"}
    )
    assert s2.scopes == ("openid", "AdobeID") and s2.tenant_id == "acme"


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"AEP_CLIENT_ID": ""}, "AEP_CLIENT_ID"),
        ({"AEP_CLIENT_SECRET": ""}, "AEP_CLIENT_SECRET"),
        ({"AEP_ORG_ID": ""}, "AEP_ORG_ID"),
        ({"AEP_ORG_ID": "ABCDEF0123456789"}, "AEP_ORG_ID"),
        ({"AEP_SANDBOX": "Prod Sandbox"}, "AEP_SANDBOX"),
        ({"AEP_TENANT_ID": "_acme"}, "AEP_TENANT_ID"),
        ({"AEP_IMS_URL": "ims-na1.adobelogin.com"}, "AEP_IMS_URL"),
        ({"AEP_PLATFORM_URL": "ftp://x"}, "AEP_PLATFORM_URL"),
        ({"AEP_SCOPES": "openid,bad scope"}, "AEP_SCOPES"),
    ],
)
def test_settings_errors_name_the_variable(override, variable):
    with pytest.raises(ConfigError) as err:
        AepSettings.from_env({**GOOD_ENV, **override})
    assert err.value.variable == variable
    assert str(err.value).startswith(variable)
    assert SECRET not in str(err.value)


def test_tenant_with_underscore_suggests_the_fix():
    with pytest.raises(ConfigError) as err:
        AepSettings.from_env({**GOOD_ENV, "AEP_TENANT_ID": "_acme"})
    assert "AEP_TENANT_ID=acme" in str(err.value)
