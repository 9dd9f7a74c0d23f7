import pytest

from stripe_aep.lake import Lake


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    lake = Lake(str(tmp_path))
    with pytest.raises(RuntimeError), lake.write_atomic("a/b.bin") as out:
        out.write(b"partial")
        raise RuntimeError("crash")
    assert not lake.exists("a/b.bin")
    assert list((tmp_path / "a").iterdir()) == []


def test_compressed_round_trip_and_listing(tmp_path):
    lake = Lake(str(tmp_path))
    with lake.write_atomic("x/1.jsonl.zst", compression="zstd") as out:
        out.write(b'{"a":1}\n')
    lake.write_json("x/1.meta.json", {"n": 1})
    assert [f.path for f in lake.list_files("x")] == ["x/1.jsonl.zst", "x/1.meta.json"]
    assert lake.open_input("x/1.jsonl.zst", compression="zstd").read() == b'{"a":1}\n'
    assert lake.read_json("x/1.meta.json") == {"n": 1}
    assert lake.list_files("missing") == []
