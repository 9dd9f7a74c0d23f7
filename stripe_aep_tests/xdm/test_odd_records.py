"""Odd records: each is quarantined (naming its id and the real cause) or dropped as a duplicate,
and only that record: the rest of the input converts."""

from __future__ import annotations

import json

from stripe_aep.stripe.rawstore import day_bounds
from stripe_aep_tests.xdm.conftest import TENANT, jsonl, sample

NS = f"_{TENANT}"


def _charge(oid: str, created: int, **extra) -> dict:
    c = sample("charges")
    c.update(id=oid, created=created, **extra)
    return c


def _day_of(obj):
    import datetime as dt

    return dt.datetime.fromtimestamp(obj["created"], tz=dt.UTC).date()


def test_amount_beyond_2_53_is_out_of_range_on_its_field(convert):
    base = sample("charges")["created"]
    objects = [_charge("ch_big", base, amount=2**53 + 1), _charge("ch_ok", base)]
    run = convert(jsonl(objects), "charges")
    assert [r[NS]["stripe"]["id"] for r in run.rows()] == ["ch_ok"]
    [q] = run.quarantine
    assert (q["reason"], q["field"], q["id"]) == ("out_of_range", "amount", "ch_big")
    assert "9007199254740993" in q["detail"] and "2^53" in q["detail"]
    assert q["record"]["amount"] == 2**53 + 1  # the original, exactly
    assert run.result.reasons == {"out_of_range": 1}


def test_metadata_nested_3000_deep_quarantines_only_that_object(convert):
    base = sample("charges")["created"]
    deep = json.dumps(_charge("ch_deep", base))[:-1]
    deep += ',"metadata":' + '{"a":' * 3000 + '"x"' + "}" * 3000 + "}"
    objects = [_charge("ch_1", base), deep, _charge("ch_2", base)]
    run = convert(jsonl(objects), "charges")
    assert [r[NS]["stripe"]["id"] for r in run.rows()] == ["ch_1", "ch_2"]
    [q] = run.quarantine
    assert (q["reason"], q["id"]) == ("too_deeply_nested", "ch_deep")
    assert "nested too deeply" in q["detail"]
    assert q["record"] == deep  # kept verbatim (as a JSON string: no parser here can read it)
    assert (run.result.input_records, run.result.rows, run.result.quarantined) == (3, 2, 1)


def test_every_quarantine_line_names_the_object(convert):
    base = sample("charges")["created"]
    objects = [
        _charge("ch_cur", base, currency="xyz"),
        _charge("ch_amt", base, amount="12.00"),
        '{"id": "ch_broken", "created": ',
    ]
    run = convert(jsonl(objects), "charges")
    assert {q["id"]: q["reason"] for q in run.quarantine} == {
        "ch_cur": "unknown_currency",
        "ch_amt": "type_mismatch",
        "ch_broken": "invalid_json",
    }


def test_objects_outside_the_partition_day_are_quarantined(convert):
    base = sample("charges")["created"]
    start, end = day_bounds(_day_of({"created": base}))
    objects = [
        _charge("ch_before", start - 1),
        _charge("ch_first", start),
        _charge("ch_last", end - 1),
        _charge("ch_after", end),
    ]
    run = convert(jsonl(objects), "charges", day_window=(start, end))
    assert [r[NS]["stripe"]["id"] for r in run.rows()] == ["ch_first", "ch_last"]
    assert {q["id"]: q["reason"] for q in run.quarantine} == {
        "ch_before": "created_outside_partition",
        "ch_after": "created_outside_partition",
    }
    assert all(
        q["field"] == "created" and "outside the partition's day" in q["detail"]
        for q in run.quarantine
    )
    assert run.result.reconciled


def test_duplicate_ids_keep_the_first_copy_and_are_counted(convert):
    base = sample("charges")["created"]
    objects = [
        _charge("ch_a", base, amount=100),
        _charge("ch_b", base),
        _charge("ch_a", base, amount=200),  # a second copy, different content: dropped
        _charge("ch_known", base),  # already a row of another file of the partition
        _charge("ch_a", base, amount=300),
    ]
    known = {"ch_known"}
    run = convert(jsonl(objects), "charges", known_ids=known)
    rows = run.rows()
    assert [r[NS]["stripe"]["id"] for r in rows] == ["ch_a", "ch_b"]
    assert rows[0][NS]["charge"]["amount"] == 100  # the first copy is kept
    r = run.result
    assert (r.input_records, r.rows, r.quarantined, r.duplicates) == (5, 2, 0, 3)
    assert r.duplicate_ids == ["ch_a", "ch_known", "ch_a"]
    assert r.reconciled
    assert known == {"ch_known", "ch_a", "ch_b"}  # the caller's set learns the kept ids


def test_duplicates_on_the_slow_path_are_caught_too(convert):
    base = sample("charges")["created"]
    objects = [
        _charge("ch_a", base),
        _charge("ch_bad", base, amount="nope"),  # sends the block to the slow path
        _charge("ch_a", base),
    ]
    run = convert(jsonl(objects), "charges")
    assert [r[NS]["stripe"]["id"] for r in run.rows()] == ["ch_a"]
    assert (run.result.quarantined, run.result.duplicates) == (1, 1)
