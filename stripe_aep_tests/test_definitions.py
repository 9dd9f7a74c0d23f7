"""The code location: the keys, groups and partitions outside tooling relies on."""

import dagster as dg

from stripe_aep.config import RESOURCES
from stripe_aep.definitions import defs
from stripe_aep.partitions import daily_partitions


def test_definitions_load_and_keys_are_exact():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    expected = {f"{layer}/{r}" for layer in ("stripe", "xdm", "aep") for r in RESOURCES}
    assert keys == expected | {"stripe/events"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name == key.path[0]
        assert node.partitions_def == daily_partitions
        assert node.backfill_policy is not None
        assert node.backfill_policy.max_partitions_per_run == 31
        if key.path[0] == "stripe":
            # one run lists the events first: today's listings ask them (the probe)
            parents = {p.to_user_string() for p in node.parent_keys}
            assert parents == (set() if key.path[1] == "events" else {"stripe/events"})
        else:
            expected_parents = {f"{'stripe' if key.path[0] == 'xdm' else 'xdm'}/{key.path[1]}"}
            if key.to_user_string() == "xdm/refunds":  # the customer of older-version refunds
                expected_parents.add("stripe/charges")
            assert {p.to_user_string() for p in node.parent_keys} == expected_parents


def test_partitions_are_utc_days_with_today():
    assert daily_partitions.timezone == "UTC"
    assert daily_partitions.end_offset == 1
    import datetime as dt

    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert daily_partitions.get_last_partition_key() == today


def test_extraction_steps_share_the_stripe_pool():
    for asset in defs.assets:
        if asset.key.path[0] == "stripe":
            assert asset.op.pool == "stripe_api"
            assert asset.op.description or asset.descriptions_by_key[asset.key]


def test_workspace_loads_with_the_dagster_cli(tmp_path):
    """What `make dev` and a deployment do: load the code location from workspace.yaml."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((root / "dagster.yaml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stripe_aep" in proc.stdout + proc.stderr
