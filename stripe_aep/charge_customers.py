"""Charge id → customer id, from the raw charges on the lake: the customer identity of objects
that name their charge but not (or not always) their customer.

Why: the primary XDM identity of a refund or a dispute is its customer, but a dispute names only
its charge, and Stripe sends `customer` on refunds only since API version 2026-07-29.dahlia; the
customer is on the charge. Asking Stripe for it is the wrong way round: expanding `data.charge`
on a list is the kind of request Stripe's concurrency limiter sheds first, and one
`GET /v1/charges/{id}` per object costs a request per object (at 25 requests/s per endpoint,
~2,500 refunds a second become a 100-second tail). The charges are already on the lake
(`stripe/charges`, raw, exactly as Stripe sent them), so the conversion looks the customer up
there. The resources that need it say so in the catalog (`lookup_resources=("charges",)`).

How: one small Parquet sidecar per raw charges file, `index/charge_customers/<day>/<stem>.parquet`
with the columns `charge` and `customer` (charges without a customer are left out), built the
first time it is needed by reading only those two fields of the raw file. Raw files never change
once written (a merge writes a new file), so a sidecar is never stale; sidecars of files that are
no longer live (superseded by a merge) are ignored and removed. Loading the index for a conversion
run reads the sidecars of every day up to the newest day converted — a refund's or a dispute's
charge is never created after it — which is a few tens of bytes per charge. It finds them with two
recursive listings (the raw charges, the sidecars), so on an object store its listing cost is one
request per 1,000 keys, not two requests per day of history.
"""

from __future__ import annotations

import datetime as dt
import io
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from stripe_aep.lake import Lake
from stripe_aep.specs import stripe as stripe_specs
from stripe_aep.stripe.rawstore import RawFile, live_files, raw_files

INDEX_ROOT = "index/charge_customers"
SCHEMA = pa.schema([("charge", pa.string()), ("customer", pa.string())])


def carries_customer(object_name: str, api_version: str | None) -> bool:
    """True if `object_name` objects read at this API version carry `customer` (the vendored
    shape of that version has it: refunds since 2026-07-29.dahlia, disputes never). Unknown,
    missing or not-vendored-yet versions answer False: the lookup only fills nulls, so doing it
    when it was not needed costs time, never correctness."""
    if not api_version or not stripe_specs.is_api_version(api_version):
        return False
    try:
        shape = stripe_specs.shape_version(api_version)
    except ValueError:  # newer than every vendored shape
        return False
    return "customer" in stripe_specs.sample_object(object_name, shape)


class ChargeCustomerIndex:
    """Builds and reads the charge → customer sidecars of one lake."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def sidecar_path(self, day: dt.date, raw: RawFile) -> str:
        return f"{INDEX_ROOT}/{day.isoformat()}/{raw.stem}.parquet"

    def days(self, until: dt.date) -> list[dt.date]:
        """Days of `stripe/charges` on the lake, up to and including `until`."""
        return sorted(day for day in self._charges_files() if day <= until)

    def _charges_files(self) -> dict[dt.date, list[str]]:
        """Raw charges data files by day: one recursive listing of `stripe/charges/` (one
        request per 1,000 keys on an object store, not two per day of history)."""
        by_day: dict[dt.date, list[str]] = {}
        for f in self.lake.list_files("stripe/charges", suffix=".jsonl.zst", recursive=True):
            folder = f.path.split("/")[2]
            try:
                day = dt.date.fromisoformat(folder)
            except ValueError:
                continue
            by_day.setdefault(day, []).append(f.path)
        return by_day

    def pairs(self, until: dt.date) -> tuple[pa.Array, pa.Array]:
        """(charge ids, customer ids) of every live raw charge created up to `until`'s end.

        Builds the sidecars that are missing and removes those of files no longer live. Two
        recursive listings (raw charges, sidecars) whatever the number of days."""
        tables = []
        sidecars = {f.path for f in self.lake.list_files(INDEX_ROOT, ".parquet", recursive=True)}
        live: set[str] = set()
        for day, paths in sorted(self._charges_files().items()):
            if day > until:
                continue
            for raw in live_files(raw_files(paths)):
                path = self.sidecar_path(day, raw)
                live.add(path)
                if path not in sidecars:
                    self._build(path, raw)
                data = pa.BufferReader(self.lake.read_bytes(path))
                tables.append(pq.read_table(data, schema=SCHEMA))
        for stale in sorted(sidecars - live):
            if stale.split("/")[2] <= until.isoformat():  # ISO dates sort as strings
                self.lake.delete(stale)
        if not tables:
            return pa.array([], pa.string()), pa.array([], pa.string())
        table = pa.concat_tables(tables).combine_chunks()
        return table.column("charge").chunk(0), table.column("customer").chunk(0)

    def _build(self, path: str, raw: RawFile) -> None:
        table = _charge_customers(self.lake, raw)
        with self.lake.write_atomic(path) as out:
            pq.write_table(table, out, compression="zstd")


def _charge_customers(lake: Lake, raw: RawFile) -> pa.Table:
    """(charge, customer) of the charges of one raw file that have a customer."""
    with lake.open_input(raw.path, compression="zstd") as source:
        data = source.read()
    try:
        parsed = pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(block_size=16 * 1024**2),
            parse_options=pj.ParseOptions(
                explicit_schema=pa.schema([("id", pa.string()), ("customer", pa.string())]),
                unexpected_field_behavior="ignore",
            ),
        )
        charges, customers = parsed.column("id"), parsed.column("customer")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # An expanded customer (an object, not an id) or an odd line: read it the slow way.
        charges_list, customers_list = [], []
        for line in data.splitlines():
            if not line.strip():
                continue
            obj = json.loads(line)
            customer = obj.get("customer")
            charges_list.append(obj.get("id"))
            customers_list.append(customer.get("id") if isinstance(customer, dict) else customer)
        charges = pa.chunked_array([pa.array(charges_list, pa.string())])
        customers = pa.chunked_array([pa.array(customers_list, pa.string())])
    table = pa.table({"charge": charges, "customer": customers}, schema=SCHEMA)
    return table.filter(pc.and_(pc.is_valid(table["charge"]), pc.is_valid(table["customer"])))
