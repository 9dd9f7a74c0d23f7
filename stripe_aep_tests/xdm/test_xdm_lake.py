"""The XDM layer on the lake: stale or damaged XDM is converted again, duplicates across the files of
a partition are dropped once, a damaged raw file is set aside and named."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

import stripe_aep.xdm.convert as convert_module
from stripe_aep.lake import Lake
from stripe_aep.stripe.rawstore import DamagedRawFile, RawPartition, day_bounds
from stripe_aep.xdm_lake import MissingXdmPart, XdmPartition
from stripe_aep_tests.xdm.conftest import API_VERSION, TENANT, sample

DAY = dt.date(2026, 11, 20)
START, END = day_bounds(DAY)
META = {"api_version": API_VERSION, "account": "acct_1"}


def _line(oid: str, created: int, **extra) -> bytes:
    c = sample("charges")
    c.update(id=oid, created=created, **extra)
    return json.dumps(c, separators=(",", ":")).encode()


def _ids(lake: Lake, xdm: XdmPartition, tenant: str = TENANT) -> list[str]:
    out = []
    for part in xdm.parts():
        table = pq.read_table(lake.full_path(part.path))
        out.extend(
            table.column(f"_{tenant}").combine_chunks().field("stripe").field("id").to_pylist()
        )
    return out


@pytest.fixture
def lake(tmp_path):
    return Lake(str(tmp_path))


def _convert_all(xdm: XdmPartition, tenant: str = TENANT) -> list[str]:
    pending = xdm.pending(tenant)
    known = xdm.kept_ids(tenant, exclude={p.raw.stem for p in pending})
    for item in pending:
        xdm.convert(item.raw, tenant, known)
    return [p.why for p in pending]


def test_manifest_records_tenant_mapping_and_counts(lake):
    raw = RawPartition(lake, "charges", DAY)
    raw.write(START, START + 100, [_line("ch_1", START + 1), _line("ch_2", START + 2)], META)
    xdm = XdmPartition(lake, "charges", DAY)
    assert _convert_all(xdm) == ["not converted yet"]
    [manifest] = xdm.manifests().values()
    assert manifest.tenant == TENANT
    assert manifest.mapping == convert_module.mapping_fingerprint("charges")
    assert manifest.mapping.startswith(f"v{convert_module.MAPPING_VERSION}-")
    assert (manifest.input_records, manifest.rows, manifest.duplicates) == (2, 2, 0)
    assert xdm.pending(TENANT) == []


def test_other_tenant_or_mapping_is_converted_again(lake, monkeypatch):
    raw = RawPartition(lake, "charges", DAY)
    raw.write(START, START + 100, [_line("ch_1", START + 1)], META)
    xdm = XdmPartition(lake, "charges", DAY)
    _convert_all(xdm, "oldtenant")
    assert _ids(lake, xdm, "oldtenant") == ["ch_1"]
    # AEP_TENANT_ID fixed: every file is converted again for the new tenant.
    assert _convert_all(xdm, TENANT) == ["converted for tenant 'oldtenant', now 'stripeaep'"]
    assert _ids(lake, xdm) == ["ch_1"]
    part = pq.read_table(lake.full_path(xdm.parts()[0].path))
    assert f"_{TENANT}" in part.column_names and "_oldtenant" not in part.column_names
    # A new mapping version: converted again too.
    monkeypatch.setattr(convert_module, "MAPPING_VERSION", convert_module.MAPPING_VERSION + 1)
    [why] = _convert_all(xdm)
    assert why.startswith("converted with mapping v") and "now v" in why
    assert xdm.pending(TENANT) == []


def test_missing_part_is_refused_for_delivery_then_converted_again(lake, tmp_path):
    raw = RawPartition(lake, "charges", DAY)
    raw.write(START, START + 100, [_line(f"ch_{i}", START + 1) for i in range(5)], META)
    xdm = XdmPartition(lake, "charges", DAY)
    _convert_all(xdm)
    [part] = xdm.parts()
    (tmp_path / part.path).unlink()
    with pytest.raises(MissingXdmPart) as info:
        xdm.parts()
    assert part.path in str(info.value) and "Materialize xdm/charges for 2026-11-20" in str(
        info.value
    )
    assert _convert_all(xdm) == [f"part {part.path} is missing"]
    assert sorted(_ids(lake, xdm)) == [f"ch_{i}" for i in range(5)]
    # A part cut short is caught the same way (its size differs from the manifest's).
    (tmp_path / part.path).write_bytes((tmp_path / part.path).read_bytes()[:50])
    [why] = _convert_all(xdm)
    assert f"part {part.path} has 50 bytes" in why
    assert len(_ids(lake, xdm)) == 5


def test_garbage_manifest_is_converted_again(lake, tmp_path):
    raw = RawPartition(lake, "charges", DAY)
    f = raw.write(START, START + 100, [_line("ch_1", START + 1)], META)
    xdm = XdmPartition(lake, "charges", DAY)
    _convert_all(xdm)
    (tmp_path / xdm.manifest_path(f)).write_text("{not json")
    assert xdm.manifests() == {}
    assert _convert_all(xdm) == ["its manifest is unreadable"]
    assert _ids(lake, xdm) == ["ch_1"]


def test_duplicates_across_files_are_dropped_once_and_reconverting_keeps_them(lake, tmp_path):
    raw = RawPartition(lake, "charges", DAY)
    a = raw.write(START, START + 100, [_line("ch_1", START + 1), _line("ch_2", START + 2)], META)
    b = raw.write(START + 100, START + 200, [_line("ch_3", START + 150)], META)
    # A refresh file that, against its contract, repeats ch_1 (and adds ch_4).
    refresh = raw.write(
        START, START + 100, [_line("ch_1", START + 1), _line("ch_4", START + 3)], META, refresh=7
    )
    xdm = XdmPartition(lake, "charges", DAY)
    _convert_all(xdm)
    assert sorted(_ids(lake, xdm)) == ["ch_1", "ch_2", "ch_3", "ch_4"]
    manifests = xdm.manifests()
    assert manifests[refresh.stem].duplicates == 1
    assert manifests[refresh.stem].duplicate_ids == ("ch_1",)
    total = sum(m.rows + m.quarantined + m.duplicates for m in manifests.values())
    assert total == xdm.raw_objects() == 5
    # Re-converting only the file that kept ch_1 keeps it there (the refresh file does not hold it).
    (tmp_path / xdm.parts()[0].path).unlink()
    _convert_all(xdm)
    assert sorted(_ids(lake, xdm)) == ["ch_1", "ch_2", "ch_3", "ch_4"]
    assert {a.stem, b.stem, refresh.stem} == set(xdm.manifests())


def test_fewer_parts_after_reconversion_leave_no_stale_part(lake, tmp_path):
    raw = RawPartition(lake, "charges", DAY)
    f = raw.write(START, START + 100, [_line("ch_1", START + 1)], META)
    xdm = XdmPartition(lake, "charges", DAY)
    _convert_all(xdm)
    stale = tmp_path / xdm.folder / f"{f.stem}.part1.parquet"
    stale.write_bytes(b"left by an older conversion")
    (tmp_path / xdm.parts()[0].path).unlink()
    _convert_all(xdm)
    assert not stale.exists()


def test_unreadable_raw_file_is_set_aside_and_named(lake, tmp_path):
    raw = RawPartition(lake, "charges", DAY)
    good = raw.write(START, START + 100, [_line("ch_1", START + 1)], META)
    bad = raw.write(
        START + 100, START + 200, [_line(f"ch_{i}", START + 150) for i in range(2, 300)], META
    )
    path = tmp_path / bad.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 32] = b"\x00" * 32  # same size: only reading tells
    path.write_bytes(bytes(data))
    xdm = XdmPartition(lake, "charges", DAY)
    known: set[str] = set()
    xdm.convert(good, TENANT, known)
    with pytest.raises(DamagedRawFile) as info:
        xdm.convert(bad, TENANT, known)
    message = str(info.value)
    assert bad.path in message and "cannot be read" in message and "re-fetches it" in message
    assert not path.exists() and [f.path for f in raw.files()] == [good.path]
    assert raw.coverage() == [(START, START + 100)]  # its window is a gap again
    assert not list((tmp_path / xdm.folder).glob(f"{bad.stem}*"))  # nothing half-written
    assert _ids(lake, xdm) == ["ch_1"]


def test_missing_quarantine_file_is_converted_again(lake, tmp_path):
    raw = RawPartition(lake, "charges", DAY)
    raw.write(
        START,
        START + 100,
        [_line("ch_1", START + 1), _line("ch_bad", START + 2, currency="xyz")],
        META,
    )
    xdm = XdmPartition(lake, "charges", DAY)
    _convert_all(xdm)
    [manifest] = xdm.manifests().values()
    (tmp_path / manifest.quarantine).unlink()
    assert _convert_all(xdm) == [f"quarantine file {manifest.quarantine} is missing"]
    [line] = (tmp_path / manifest.quarantine).read_text().splitlines()
    assert json.loads(line)["id"] == "ch_bad" and json.loads(line)["reason"] == "unknown_currency"


def test_manifest_of_an_older_version_is_read_and_converted_again(lake, tmp_path):
    """A manifest written before `layer`, `raw_identity`, `mapping`, `duplicates`, `versions`,
    `tombstones` and `duplicate_ids` were recorded (the keys of the first stripe-aep versions) is
    readable: the day's counts include it, and since it names no mapping its raw file is converted
    again into a manifest with every field."""
    raw = RawPartition(lake, "charges", DAY)
    f = raw.write(START, START + 100, [_line("ch_1", START + 1), _line("ch_2", START + 2)], META)
    xdm = XdmPartition(lake, "charges", DAY)
    _convert_all(xdm)
    [current] = xdm.manifests().values()
    path = tmp_path / xdm.manifest_path(f)
    on_disk = json.loads(path.read_text())
    old_keys = ("raw", "tenant", "input_records", "rows", "quarantined", "reasons", "quarantine")
    old = {k: on_disk[k] for k in (*old_keys, "parts", "converted_at")}
    path.write_text(json.dumps(old))

    [read] = xdm.manifests().values()
    assert (read.raw, read.layer, read.tenant) == (f.path, "stripe", TENANT)
    assert (read.mapping, read.raw_identity) == (None, None)
    assert (read.rows, read.duplicates, read.versions, read.tombstones) == (2, 0, 0, 0)
    assert read.parts == current.parts and read.duplicate_ids == ()
    assert xdm.parts() == list(current.parts)  # still deliverable until it is converted again
    mapping = convert_module.mapping_fingerprint("charges")
    assert _convert_all(xdm) == [f"converted with mapping None, now {mapping}"]
    [again] = xdm.manifests().values()
    assert again.mapping == mapping and again.raw_identity is not None
    assert set(json.loads(path.read_text())) == set(on_disk)  # the same keys as before
    assert _ids(lake, xdm) == ["ch_1", "ch_2"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: m.pop("parts"),
        lambda m: m.update(rows="2"),
        lambda m: m.update(rows=-1),
        lambda m: m.update(quarantined=True),
        lambda m: m["parts"][0].pop("bytes"),
        lambda m: m.update(reasons=["unknown_currency"]),
    ],
    ids=["no parts", "rows a string", "negative rows", "a bool count", "part size", "reasons"],
)
def test_malformed_manifest_is_not_trusted_and_converted_again(lake, tmp_path, damage):
    raw = RawPartition(lake, "charges", DAY)
    f = raw.write(START, START + 100, [_line("ch_1", START + 1)], META)
    xdm = XdmPartition(lake, "charges", DAY)
    _convert_all(xdm)
    path = tmp_path / xdm.manifest_path(f)
    manifest = json.loads(path.read_text())
    damage(manifest)
    path.write_text(json.dumps(manifest))
    assert xdm.manifests() == {}
    assert _convert_all(xdm) == ["its manifest is unreadable"]
    assert _ids(lake, xdm) == ["ch_1"]
