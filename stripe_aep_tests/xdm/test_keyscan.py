"""The metadata key scan: finds every key, refuses what it cannot vouch for, and conversion keeps
every metadata pair whichever parse (declared keys or inferred keys) a block takes."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest

from stripe_aep.xdm import convert_jsonl
from stripe_aep.xdm.convert import listing_version
from stripe_aep.xdm.keyscan import scan_object_keys
from stripe_aep_tests.xdm.conftest import API_VERSION, TENANT, jsonl, run_convert, sample

NS = f"_{TENANT}"


def lines(*texts: str) -> pa.Array:
    return pa.array([t.encode() + b"\n" for t in texts], pa.large_binary())


def test_scan_collects_keys_at_any_depth_and_marks_rows_with_objects():
    scan = scan_object_keys(
        lines(
            '{"id":"a","metadata":{"x":"1","y":"q\\"}"},"source":{"metadata":{"w":"2"}}}',
            '{"id":"b"}',
            '{"metadata" : null}',
            '{"metadata":{}}',
            '{"metadata": {"k\\u00e9" : "v"}}',
        ),
        "metadata",
    )
    assert scan is not None
    assert sorted(scan.keys) == ["k\u00e9", "w", "x", "y"]
    assert scan.rows_with_object.tolist() == [True, False, False, True, True]


@pytest.mark.parametrize(
    "text",
    [
        '{"metadata":{"n":1}}',  # a number
        '{"metadata":{"a":{"b":"c"}}}',  # nested
        '{"metadata":"text"}',  # not an object
        '{"kind":"metadata"}',  # the word as a string value
    ],
)
def test_scan_refuses_what_is_not_a_flat_object_of_strings(text):
    assert scan_object_keys(lines(text), "metadata") is None


def test_scan_ignores_longer_keys_ending_in_the_name():
    scan = scan_object_keys(
        lines('{"x_metadata":{"a":{"deep":1}},"metadata":{"k":"v"}}'), "metadata"
    )
    assert scan is not None and scan.keys == ("k",)


def convert_charges(tmp_path, objects: list) -> tuple[list[dict], list[dict]]:
    run = run_convert(tmp_path, jsonl(objects), "charges")
    assert run.result.reconciled
    return run.rows(), run.quarantine


def test_metadata_kept_when_keys_are_written_with_escapes(tmp_path):
    plain = sample("charges")
    plain.update(id="ch_plain", metadata={"a": "1"})
    escaped = sample("charges")
    escaped["metadata"] = {}
    text = jsonl([escaped]).decode().strip()
    # The key `metadata` itself written with an escape: the token search cannot see it.
    text = text.replace('"metadata":{}', '"meta\\u0064ata":{"hidden":"yes"}')
    rows, quarantined = convert_charges(tmp_path, [plain, text])
    assert quarantined == []
    assert [r[NS]["charge"]["metadata"] for r in rows] == [[("a", "1")], [("hidden", "yes")]]


def test_metadata_kept_next_to_nested_metadata_and_unusual_blocks(tmp_path):
    objects = []
    for i in range(50):
        c = sample("charges")
        c["id"] = f"ch_{i:03d}"
        c["metadata"] = {f"k{i % 5}": str(i), "shared": "s"}
        c["source"] = {"id": f"card_{i}", "object": "card", "metadata": {f"src{i % 3}": "x"}}
        objects.append(c)
    objects[7]["description"] = 'says "metadata" in words'
    rows, quarantined = convert_charges(tmp_path, objects)
    assert quarantined == []
    assert [r[NS]["charge"]["metadata"] for r in rows] == [
        sorted(o["metadata"].items()) for o in objects
    ]


def test_an_error_while_reading_is_raised_not_hung():
    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            self.calls += 1
            if self.calls > 1:
                raise OSError("disk gone")
            data = jsonl([sample("charges")])
            b[: len(data)] = data
            return len(data)

    with pytest.raises(OSError, match="disk gone"):
        convert_jsonl(
            Failing(),
            resource="charges",
            tenant=TENANT,
            account=None,
            api_version=API_VERSION,
            open_output=lambda i: io.BytesIO(),
            quarantine=io.BytesIO(),
            block_bytes=1 << 20,
            version=listing_version(1_700_000_000),
        )
