"""Versions in XDM: the change layer (`changes/<resource>/<day>/`) converted beside the listing layer.

Change files are built here with `RawPartition(..., layer="changes").write` and the line format of
docs/change-capture.md (the object as the pinned API version renders it, plus one `_change` key).
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from stripe_aep.lake import Lake
from stripe_aep.stripe.rawstore import RawPartition, day_bounds
from stripe_aep.xdm.resources import mapping_for
from stripe_aep.xdm_lake import CHANGES_PREFIX, XdmPartition
from stripe_aep_tests.xdm.conftest import API_VERSION, TENANT, jsonl, sample

DAY = dt.date(2026, 11, 20)
START, END = day_bounds(DAY)
FETCHED = START + 500
META = {"api_version": API_VERSION, "account": "acct_1", "fetched_at": FETCHED}


def customer(oid: str, created: int, **fields) -> dict:
    c = sample("customers")
    c.update(id=oid, created=created, **fields)
    return c


def change_line(
    obj: dict, time: int, *, event_id=None, event_type=None, source="event", deleted=False
) -> bytes:
    line = {
        **obj,
        "_change": {
            "time": time,
            "event_id": event_id,
            "event_type": event_type,
            "source": source,
            "deleted": deleted,
        },
    }
    return json.dumps(line, separators=(",", ":")).encode()


def rows(lake: Lake, xdm: XdmPartition) -> list[dict]:
    out = []
    for part in xdm.parts():
        out.extend(pq.read_table(lake.full_path(part.path)).to_pylist())
    return out


def convert_all(xdm: XdmPartition) -> None:
    pending = xdm.pending(TENANT)
    known = xdm.kept_ids(TENANT, exclude={p.stem for p in pending})
    for item in pending:
        xdm.convert(item.raw, TENANT, known)


@pytest.fixture
def lake(tmp_path):
    return Lake(str(tmp_path))


def test_listing_and_change_rows_carry_their_version_fields(lake, tmp_path):
    listing = RawPartition(lake, "customers", DAY)
    listing.write(
        START,
        START + 100,
        [json.dumps(customer(f"cus_{i}", START + i)).encode() for i in (1, 2)],
        META,
    )
    old = START - 40 * 86400  # created long before the day: normal for a version
    changes = RawPartition(lake, "customers", DAY, layer="changes")
    changes.write(
        START + 1000,
        START + 2000,
        [
            change_line(
                customer("cus_1", START + 1, email="new@example.com"),
                START + 1200,
                event_id="evt_1",
                event_type="customer.updated",
            ),
            change_line(
                customer("cus_old", old, email="old@example.com"),
                START + 1300,
                event_id="evt_2",
                event_type="customer.deleted",
                deleted=True,
            ),
            change_line(
                customer("cus_2", START + 2),
                START + 1500,
                source="refetch",
                event_id="evt_3",
                event_type="customer.updated",
            ),
        ],
        {"api_version": API_VERSION, "account": "acct_1"},
    )
    xdm = XdmPartition(lake, "customers", DAY)
    convert_all(xdm)
    manifests = xdm.manifests()
    change_stem = f"{CHANGES_PREFIX}{START + 1000}-{START + 2000}"
    assert set(manifests) == {f"{START}-{START + 100}", change_stem}
    assert manifests[change_stem].layer == "changes"
    assert (manifests[change_stem].rows, manifests[change_stem].duplicates) == (3, 0)
    assert (manifests[change_stem].versions, manifests[change_stem].tombstones) == (3, 1)
    assert manifests[change_stem].quarantined == 0  # cus_old's created is outside the day
    # Parts, manifest and (no) quarantine of the change file are named apart from the listing's.
    assert all(p.path.rsplit("/", 1)[1].startswith(change_stem) for p in xdm.parts()[1:])
    total = sum(m.rows + m.quarantined + m.duplicates for m in manifests.values())
    assert total == xdm.raw_objects() == 5

    got = [r[f"_{TENANT}"]["stripe"] | {"_id": r["_id"]} for r in rows(lake, xdm)]
    by = [(s["id"], s["versionSource"]) for s in got]
    assert by == [
        ("cus_1", "list"),
        ("cus_2", "list"),
        ("cus_1", "event"),
        ("cus_old", "event"),
        ("cus_2", "refetch"),
    ]
    ms = lambda t: dt.datetime.fromtimestamp(t, tz=dt.UTC)  # noqa: E731
    listing_row, change_row, tombstone = got[0], got[2], got[3]
    assert listing_row["versionTime"] == ms(FETCHED)
    assert (listing_row["versionEventId"], listing_row["versionEventType"]) == (None, None)
    assert listing_row["deleted"] is False
    assert change_row["versionTime"] == ms(START + 1200)
    assert (change_row["versionEventId"], change_row["versionEventType"]) == (
        "evt_1",
        "customer.updated",
    )
    assert change_row["deleted"] is False and tombstone["deleted"] is True
    # Every version has its own deterministic _id; the _change key lands nowhere else.
    assert len({s["_id"] for s in got}) == 5
    assert got[0]["_id"].startswith("cus_1-") and got[2]["_id"].startswith("cus_1-")
    first_ids = [s["_id"] for s in got]
    for part in xdm.parts():
        (tmp_path / part.path).unlink()
    convert_all(xdm)
    assert [r["_id"] for r in rows(lake, xdm)] == first_ids


def test_listing_without_fetched_at_falls_back_to_the_window_end(lake):
    listing = RawPartition(lake, "customers", DAY)
    listing.write(
        START,
        START + 100,
        [json.dumps(customer("cus_1", START + 1)).encode()],
        {"api_version": API_VERSION},
    )
    xdm = XdmPartition(lake, "customers", DAY)
    convert_all(xdm)
    [row] = rows(lake, xdm)
    assert row[f"_{TENANT}"]["stripe"]["versionTime"] == dt.datetime.fromtimestamp(
        START + 100, tz=dt.UTC
    )


def test_change_lines_without_change_facts_are_quarantined_naming_the_key(lake, tmp_path):
    changes = RawPartition(lake, "customers", DAY, layer="changes")
    no_key = json.dumps(customer("cus_9", START)).encode()
    bad_source = change_line(customer("cus_8", START), START + 10, source="guess")
    good = change_line(customer("cus_7", START), START + 10)
    twice = change_line(customer("cus_7", START), START + 11)
    changes.write(
        START, START + 100, [no_key, bad_source, good, twice], {"api_version": API_VERSION}
    )
    xdm = XdmPartition(lake, "customers", DAY)
    convert_all(xdm)
    [manifest] = xdm.manifests().values()
    assert (manifest.rows, manifest.quarantined, manifest.duplicates) == (1, 2, 1)
    lines = [json.loads(x) for x in (tmp_path / manifest.quarantine).read_text().splitlines()]
    reasons = {q["id"]: (q["reason"], q["field"]) for q in lines}
    assert reasons["cus_9"] == ("missing_change_field", "_change.time")
    assert reasons["cus_8"] == ("not_in_enum", "_change.source")
    assert manifest.quarantine.rsplit("/", 1)[1].startswith(CHANGES_PREFIX)


def test_listing_duplicates_still_dropped_but_versions_of_listed_ids_are_rows(lake):
    listing = RawPartition(lake, "customers", DAY)
    c1 = json.dumps(customer("cus_1", START + 1)).encode()
    listing.write(START, START + 100, [c1, c1], META)  # a repeated listing line: a duplicate
    changes = RawPartition(lake, "customers", DAY, layer="changes")
    changes.write(
        START,
        START + 100,
        [change_line(customer("cus_1", START + 1), START + 900)],
        {"api_version": API_VERSION},
    )
    xdm = XdmPartition(lake, "customers", DAY)
    convert_all(xdm)
    ids = [r[f"_{TENANT}"]["stripe"]["id"] for r in rows(lake, xdm)]
    assert ids == ["cus_1", "cus_1"]
    manifests = xdm.manifests()
    assert sum(m.duplicates for m in manifests.values()) == 1
    # Converting the listing again (mapping changed, say) does not count the version against it.
    assert xdm.kept_ids(TENANT) == {"cus_1"}


def test_change_key_is_not_a_mapping_input_and_every_resource_converts_a_version(convert):
    for resource in (
        "charges",
        "refunds",
        "subscriptions",
        "customers",
        "prices",
        "balance_transactions",
    ):
        assert not any(i.path.startswith("_change") for i in mapping_for(resource).inputs())
        obj = sample(resource)
        line = json.loads(
            change_line(obj, obj["created"] + 10, event_id="evt_x", event_type="x.updated")
        )
        run = convert(jsonl([line]), resource, changes=True)
        assert run.result.rows == 1, (resource, run.quarantine)
        stripe = run.rows()[0][f"_{TENANT}"]["stripe"]
        assert stripe["versionEventId"] == "evt_x" and stripe["versionSource"] == "event"
