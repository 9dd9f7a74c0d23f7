"""Shared helpers for the XDM tests: sample objects and a conversion runner on local files."""

from __future__ import annotations

import copy
import io
import json
import pathlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stripe_aep.catalog import stripe_resource
from stripe_aep.xdm import ConversionResult, convert_jsonl
from stripe_aep.xdm.convert import listing_version
from stripe_aep_tests.paths import STRIPE_SPECS

SPECS = STRIPE_SPECS
TENANT = "stripeaep"
API_VERSION = "2026-06-24.dahlia"
#: When the listing of the test lines was fetched (their version time).
FETCHED_AT = 1_780_000_000


def load_samples(name: str) -> dict[str, dict]:
    return json.loads((SPECS / name).read_text())["resources"]


FIXTURES3 = load_samples("fixtures3.json")
SAMPLES_2023 = load_samples("samples-2023.json")


def sample(resource: str, which: str = "fixtures3") -> dict:
    source = FIXTURES3 if which == "fixtures3" else SAMPLES_2023
    return copy.deepcopy(source[stripe_resource(resource).object_name])


def samples(resource: str) -> list[dict]:
    """Stripe's sample object of the resource, and Adobe's 2023 one where it has one (Adobe's
    Stripe source documents the six objects it moves)."""
    object_name = stripe_resource(resource).object_name
    return [sample(resource)] + (
        [sample(resource, "samples-2023")] if object_name in SAMPLES_2023 else []
    )


def jsonl(objects: list) -> bytes:
    out = []
    for o in objects:
        out.append(o if isinstance(o, str) else json.dumps(o, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode()


@dataclass
class Run:
    result: ConversionResult
    paths: list[pathlib.Path]
    quarantine: list[dict]

    def table(self) -> pa.Table:
        if not self.paths:
            return pa.table({})
        return pa.concat_tables([pq.read_table(p) for p in self.paths])

    def rows(self) -> list[dict]:
        return self.table().to_pylist() if self.paths else []


def run_convert(
    tmp_path: pathlib.Path,
    data: bytes,
    resource: str,
    *,
    account: str | None = None,
    **kwargs,
) -> Run:
    paths: list[pathlib.Path] = []
    out_dir = tmp_path / f"out-{resource}-{len(list(tmp_path.iterdir()))}"
    out_dir.mkdir()

    def open_output(i: int) -> pa.NativeFile:
        path = out_dir / f"part-{i:05d}.parquet"
        paths.append(path)
        return pa.OSFile(str(path), "wb")

    q = io.BytesIO()
    if not kwargs.get("changes"):
        kwargs.setdefault("version", listing_version(FETCHED_AT))
    result = convert_jsonl(
        pa.BufferReader(data),
        resource=resource,
        tenant=TENANT,
        account=account,
        api_version=API_VERSION,
        open_output=open_output,
        quarantine=q,
        **kwargs,
    )
    quarantine = [json.loads(line) for line in q.getvalue().splitlines()]
    return Run(result, paths, quarantine)


@pytest.fixture
def convert(tmp_path):
    def _run(data: bytes, resource: str, **kwargs) -> Run:
        return run_convert(tmp_path, data, resource, **kwargs)

    return _run
