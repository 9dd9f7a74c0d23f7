"""The code location: the keys, groups and partitions outside tooling relies on."""

import os
import subprocess
import sys

import dagster as dg

from stripe_aep.catalog import DEFAULT_RESOURCES, event_type_passes, stripe_resource
from stripe_aep.config import RESOURCES_VARIABLE, selected_resources
from stripe_aep.definitions import RESOURCES, defs, selected_assets
from stripe_aep.partitions import daily_partitions


def _keys(definitions: dg.Definitions) -> set[str]:
    """The keys of the assets the definitions materialize (not the stubs of undefined parents)."""
    graph = definitions.resolve_asset_graph()
    return {k.to_user_string() for k in graph.materializable_asset_keys}


def test_the_code_location_moves_the_selection_by_default_every_resource():
    assert RESOURCES == selected_resources() == DEFAULT_RESOURCES
    assert len(DEFAULT_RESOURCES) == 8
    keys = _keys(defs)
    assert keys == {f"{layer}/{r}" for layer in ("stripe", "xdm", "aep") for r in RESOURCES} | {
        "stripe/events"
    }
    assert len(keys) == 3 * 8 + 1


def test_a_selection_of_two_resources_has_exactly_their_assets_and_their_event_types():
    selection = ("charges", "customers")
    definitions = dg.Definitions(assets=selected_assets(selection), resources=defs.resources)
    dg.Definitions.validate_loadable(definitions)
    assert _keys(definitions) == {
        "stripe/events",
        "stripe/charges",
        "stripe/customers",
        "xdm/charges",
        "xdm/customers",
        "aep/charges",
        "aep/customers",
    }
    graph = definitions.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == set(graph.materializable_asset_keys)  # no stub
    (events,) = [a for a in definitions.assets if a.key == dg.AssetKey(["stripe", "events"])]
    asked = events.metadata_by_key[events.key]["event_types"].split(", ")
    assert asked == [t for types in event_type_passes(selection) for t in types]
    assert set(asked) == {t for r in selection for t in stripe_resource(r).requested_event_types}
    assert not any(t.startswith(("price.", "refund.", "customer.subscription.")) for t in asked)


def test_a_bad_selection_fails_when_the_code_location_loads_naming_the_variable():
    env = {**os.environ, RESOURCES_VARIABLE: "charges,payouts"}
    proc = subprocess.run(
        [sys.executable, "-c", "import stripe_aep.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode != 0
    assert RESOURCES_VARIABLE in proc.stderr and "'payouts'" in proc.stderr
    assert "disputes" in proc.stderr  # the valid names are listed


def test_definitions_load_and_every_asset_is_wired_as_documented():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == set(graph.materializable_asset_keys)
    for key in graph.materializable_asset_keys:
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
            if key.path[0] == "xdm":  # e.g. the customer of older-version refunds: their charges
                expected_parents |= {
                    f"stripe/{r}" for r in stripe_resource(key.path[1]).lookup_resources
                }
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
