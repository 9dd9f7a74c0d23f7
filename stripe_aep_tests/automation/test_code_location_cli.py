"""The code location as Dagster's own tools see it: both validators pass, with nothing to ignore.

`dagster definitions validate -w workspace.yaml` is what `make dev` and a deployment load;
`dg check defs` reads `[tool.dg]` in pyproject.toml. Neither may print a Dagster beta/preview
warning (the project filters the ones it opted into, in stripe_aep/__init__.py), and every asset
has an owner and a description.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "AEP_", "DAGSTER_"))}
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env.update(
        DAGSTER_HOME=str(tmp_path),
        VIRTUAL_ENV=str(BIN.parent),  # as an activated venv: dg warns otherwise
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        STRIPE_API_KEY="sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        AEP_TENANT_ID="stripeaep",
        PYTHONWARNINGS="default",  # show every warning the code location raises
    )
    return env


def _run(cmd, tmp_path) -> str:
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


@pytest.mark.parametrize(
    "cmd",
    [
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        [str(BIN / "dg"), "check", "defs"],
    ],
    ids=["dagster-definitions-validate", "dg-check-defs"],
)
def test_validators_pass_without_beta_or_preview_warnings(cmd, tmp_path):
    out = _run(cmd, tmp_path)
    assert "BetaWarning" not in out and "PreviewWarning" not in out, out
    assert "backfill_policy" not in out, out
    if cmd[-1] == "defs":
        assert "All definitions loaded successfully." in out, out
    else:
        assert "All code locations passed validation." in out, out


def test_the_filter_is_narrow():
    """Only the named parameter is silenced: another beta warning still shows."""
    import warnings

    import stripe_aep  # noqa: F401  (installs the filter)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        import importlib

        importlib.reload(stripe_aep)
        ours = "Parameter `backfill_policy` of function `asset` is currently in beta"
        warnings.warn(ours, dg.BetaWarning, stacklevel=1)
        warnings.warn(
            "Parameter `something_else` is currently in beta", dg.BetaWarning, stacklevel=1
        )
    assert [str(w.message) for w in caught] == ["Parameter `something_else` is currently in beta"]


def test_every_asset_has_an_owner_and_a_description():
    from stripe_aep.definitions import RESOURCES, defs

    graph = defs.resolve_asset_graph()
    keys = list(graph.materializable_asset_keys)
    # stripe/events + 3 layers per selected resource (25 by default)
    assert len(keys) == 1 + 3 * len(RESOURCES)
    for key in keys:
        node = graph.get(key)
        assert node.owners == ["team:stripe-aep"], key
        assert node.description and len(node.description) > 40, key
    for check in graph.asset_check_keys:
        assert graph.get(check).description, check
