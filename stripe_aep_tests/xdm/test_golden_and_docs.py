"""Golden XDM rows (one object per resource), the generated docs, and the package boundaries.

Regenerate golden files after an intended mapping change with
`UPDATE_GOLDEN=1 .venv/bin/pytest stripe_aep_tests/xdm/test_golden_and_docs.py` and review the diff.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib

import pytest

from stripe_aep.catalog import RESOURCE_NAMES as RESOURCES
from stripe_aep.xdm import column_schema, render_mapping_docs
from stripe_aep_tests.xdm.conftest import jsonl, sample

GOLDEN = pathlib.Path(__file__).parent / "golden"
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _json_ready(v):
    if isinstance(v, dict):
        return {k: _json_ready(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_ready(x) for x in v]
    if isinstance(v, tuple):
        return [_json_ready(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


@pytest.mark.parametrize("resource", RESOURCES)
def test_golden_row(convert, resource):
    run = convert(jsonl([sample(resource)]), resource, account="acct_golden")
    (row,) = run.rows()
    text = json.dumps(_json_ready(row), indent=2, sort_keys=False) + "\n"
    path = GOLDEN / f"{resource}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_committed_mapping_docs_are_up_to_date():
    committed = (ROOT / "docs" / "xdm-mapping.md").read_text()
    assert committed == render_mapping_docs(), (
        "docs/xdm-mapping.md is stale: run `python -m stripe_aep.xdm.docs docs/xdm-mapping.md`"
    )


def test_docs_list_every_column_and_the_key_decisions():
    docs = render_mapping_docs()
    for resource in RESOURCES:
        assert f"\n## {resource}\n" in docs
        names = [n for n, _, _ in column_schema(resource, "tenant")]
        assert len(names) > 10
        for name in names:
            assert f"`{name.replace('_tenant', '_{TENANT}', 1)}`" in docs
    for phrase in ("StripeCustomerId", "ISK", "UGX", "{{fieldgroup:<resource>}}", "klarna"):
        assert phrase in docs


def test_xdm_package_does_not_import_dagster():
    for path in (ROOT / "stripe_aep" / "xdm").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "dagster" for n in names), path
