"""Fixtures for the sensor tests: a persistent test instance, a data folder."""

from __future__ import annotations

import dagster as dg
import pytest


@pytest.fixture
def instance():
    # build_sensor_context needs a persistent instance (an ephemeral one is refused)
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("STRIPE_AEP_DATA_DIR", str(folder))
    return folder
