"""Settings that cannot work are refused by the CLI and the resources before any API call."""

from __future__ import annotations

import datetime as dt

import pytest

from stripe_aep.cli import main
from stripe_aep.config import ConfigError
from stripe_aep.resources import XdmResource
from stripe_aep_tests.conftest import TEST_KEY


def _clear(monkeypatch):
    for name in (
        "STRIPE_API_KEY",
        "STRIPE_API_BASE",
        "STRIPE_START_DATE",
        "STRIPE_AEP_DATA_DIR",
        "AEP_CLIENT_ID",
        "AEP_CLIENT_SECRET",
        "AEP_ORG_ID",
    ):
        monkeypatch.delenv(name, raising=False)


def test_demo_refuses_a_data_dir_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "demo"
    target.write_text("a file")
    assert main(["demo", "--data-dir", str(target), "--days", "1"]) == 2
    err = capsys.readouterr().err
    assert "configuration error: --data-dir" in err and "not a folder" in err


def test_doctor_reports_start_date_and_data_folder_before_any_call(
    tmp_path, monkeypatch, capsys, stripe_emulator
):
    _clear(monkeypatch)
    (tmp_path / "data").write_text("a file")
    future = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)
    monkeypatch.setenv("STRIPE_START_DATE", future.isoformat())
    monkeypatch.setenv("STRIPE_AEP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STRIPE_API_KEY", TEST_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.url)
    monkeypatch.setenv("STRIPE_MAX_RPS", "inf")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] STRIPE_START_DATE: STRIPE_START_DATE:" in out and "in the future" in out
    assert "[FAIL] data folder: STRIPE_AEP_DATA_DIR:" in out and "not a folder" in out
    assert "[FAIL] stripe settings: STRIPE_MAX_RPS: 'inf' is not a finite number" in out
    assert len(stripe_emulator.log) == 0


def test_doctor_with_a_newline_in_the_key_says_so_without_showing_it(monkeypatch, capsys, tmp_path):
    _clear(monkeypatch)
    monkeypatch.setenv("STRIPE_AEP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STRIPE_API_KEY", TEST_KEY + "\n")
    assert main(["doctor"]) == 1
    captured = capsys.readouterr()
    assert "STRIPE_API_KEY: the value contains a trailing newline" in captured.out
    assert TEST_KEY[8:] not in captured.out + captured.err
    assert f"[ok  ] data folder: {tmp_path / 'data'} writable" in captured.out


def test_xdm_tenant_with_a_newline_is_refused():
    with pytest.raises(ConfigError) as exc:
        XdmResource(tenant="acme\n").tenant_id()
    assert exc.value.variable == "AEP_TENANT_ID" and "trailing newline" in str(exc.value)
    assert XdmResource(tenant="acme").tenant_id() == "acme"


def test_demo_table_reconciles_every_layer_over_the_whole_range(
    tmp_path, capsys, aep_source_selection
):
    """`make demo`'s table: per resource of the selection, the Stripe objects of every day of the
    range (each day's own materialization) = XDM rows = rows AEP wrote, nothing quarantined, every
    check passed. (Pinned to AEP's six: the emulator serves disputes and invoices only once their
    generators exist; the demo's default is every resource of the catalog.)"""
    RESOURCES = aep_source_selection

    assert main(["demo", "--data-dir", str(tmp_path / "demo"), "--days", "2"]) == 0
    out = capsys.readouterr().out
    table = {}
    for line in out.splitlines():
        cells = line.split()
        # The result table's rows (the setup lines above it name resources too, with dataset ids).
        if len(cells) == 6 and cells[0] in RESOURCES and all(c.isdigit() for c in cells[1:]):
            table[cells[0]] = [int(c) for c in cells[1:]]
    assert set(table) == set(RESOURCES), out
    for resource, (objects, rows, quarantined, batches, written) in table.items():
        assert objects == rows == written and objects > 0, (resource, table[resource])
        assert quarantined == 0 and batches >= 1, (resource, table[resource])
    checks = 3 * len(RESOURCES)  # two on each XDM asset, one on each AEP asset
    assert f"asset checks: {checks} of {checks} passed" in out
    # Then five objects change in Stripe, and the next tick of today delivers them as versions.
    tick = {}
    for line in out.split("what changed in Stripe, as versions", 1)[1].splitlines():
        cells = line.split()
        if len(cells) == 5 and cells[0] in RESOURCES and all(c.isdigit() for c in cells[1:]):
            tick[cells[0]] = [int(c) for c in cells[1:]]
    assert set(tick) == set(RESOURCES), out
    changed = {r: (versions, tombstones) for r, (versions, tombstones, _, _) in tick.items()}
    assert changed["customers"] == (1, 1), out  # one edited, one deleted
    assert changed["prices"] == (1, 0), out  # deactivated
    assert changed["charges"] == (1, 0), out  # refunded
    assert changed["subscriptions"] == (0, 1), out  # canceled: customer.subscription.deleted
    for resource, (_, _, rows, written) in tick.items():
        assert rows == written, (resource, tick[resource])
