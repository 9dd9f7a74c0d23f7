"""The `stripe-aep` command: schemas export, setup (idempotent), doctor, emulate."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import requests

from stripe_aep.catalog import RESOURCE_NAMES as RESOURCES
from stripe_aep.cli import main
from stripe_aep.emulators.aep_api import AepEmulator
from stripe_aep_tests.aep.conftest import env_for
from stripe_aep_tests.conftest import AEP_SOURCE_RESOURCES, TEST_KEY


def test_schemas_export_writes_payloads_per_resource(tmp_path, capsys):
    assert main(["schemas", "export", "--tenant", "acme", "--out", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    assert written
    for resource in RESOURCES:
        schema = json.loads((tmp_path / resource / "schema.json").read_text())
        field_group = json.loads((tmp_path / resource / "fieldgroup.json").read_text())
        assert schema["allOf"] and "_acme" in json.dumps(field_group)


@pytest.fixture
def aep_env(monkeypatch, aep_source_selection):
    with AepEmulator() as aep:
        env = env_for(aep)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yield aep


def test_setup_twice_changes_nothing_and_prints_dataset_ids(aep_env, capsys):
    assert main(["setup"]) == 0
    first = capsys.readouterr().out
    before = aep_env.state
    assert main(["setup"]) == 0
    second = capsys.readouterr().out
    after = aep_env.state
    ids = re.findall(r"\b[0-9a-f]{24}\b", first)
    assert len(ids) == len(AEP_SOURCE_RESOURCES)  # the selection's datasets
    assert ids == re.findall(r"\b[0-9a-f]{24}\b", second)
    assert len(after.datasets) == len(before.datasets) == len(AEP_SOURCE_RESOURCES)
    assert len(after.schemas) == len(before.schemas)


def test_doctor_says_what_is_missing(aep_env, stripe_emulator, monkeypatch, capsys):
    monkeypatch.setenv("STRIPE_API_KEY", TEST_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.url)
    assert main(["doctor"]) == 1  # no datasets yet
    out = capsys.readouterr().out
    assert "[ok  ] stripe charges" in out
    assert "stripe-aep setup" in out
    assert main(["setup"]) == 0
    assert main(["doctor"]) == 0
    monkeypatch.setenv("AEP_CLIENT_SECRET", "wrong-secret-value")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "AEP_CLIENT_SECRET" in out and "wrong-secret-value" not in out


def test_emulate_serves_both_emulators(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stripe_aep.cli",
            "emulate",
            "--stripe-port",
            "0",
            "--aep-port",
            "0",
            "--days",
            "2",
            "--charges-per-day",
            "20",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        urls = {}
        for line in proc.stdout:
            m = re.search(r"(Stripe|AEP) emulator listening on (http://\S+)", line)
            if m:
                urls[m.group(1)] = m.group(2)
            if len(urls) == 2:
                break
        page = requests.get(
            f"{urls['Stripe']}/v1/charges",
            headers={"Authorization": f"Bearer {TEST_KEY}"},
            timeout=10,
        ).json()
        assert page["object"] == "list" and len(page["data"]) == 10
        events = requests.get(
            f"{urls['Stripe']}/v1/events",
            headers={"Authorization": f"Bearer {TEST_KEY}"},
            timeout=10,
        ).json()
        assert events["data"] and {e["object"] for e in events["data"]} == {"event"}
        assert requests.get(f"{urls['AEP']}/_emulator/health", timeout=10).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
