import datetime as dt

import pytest

from stripe_aep.lake import Lake
from stripe_aep.stripe.rawstore import (
    DamagedRawFile,
    RawPartition,
    day_bounds,
    merge_intervals,
    read_objects,
    subtract,
)

DAY = dt.date(2026, 11, 20)
START, END = day_bounds(DAY)


def _line(i, created):
    return f'{{"id":"ch_{i}","created":{created}}}'.encode()


def test_intervals():
    assert merge_intervals([(5, 8), (0, 3), (3, 5), (10, 12)]) == [(0, 8), (10, 12)]
    assert subtract(0, 20, [(0, 8), (10, 12)]) == [(8, 10), (12, 20)]
    assert subtract(0, 5, []) == [(0, 5)]


def test_cursor_and_gaps_derive_from_files(tmp_path):
    part = RawPartition(Lake(str(tmp_path)), "charges", DAY)
    assert part.cursor() == START
    part.write(START, START + 100, [_line(1, START + 5)], {})
    part.write(START + 200, START + 300, [_line(2, START + 250)], {})
    assert part.cursor() == START + 100
    assert part.gaps(START + 1000) == [(START + 100, START + 200), (START + 300, START + 1000)]
    assert part.gaps(END + 5000)[-1] == (START + 300, END)


def test_merge_supersedes_parts_and_never_doubles(tmp_path):
    lake = Lake(str(tmp_path))
    part = RawPartition(lake, "charges", DAY)
    a = part.write(START, START + 100, [_line(1, START + 5)], {})
    b = part.write(START + 100, START + 200, [_line(2, START + 150), _line(3, START + 150)], {})
    # A crash after the merged file but before the parts are deleted: simulate by re-writing them.
    merged = part.merge([a, b], {})
    assert [f.path for f in part.files()] == [merged.path]
    part.write(START, START + 100, [_line(1, START + 5)], {})  # stale part reappears
    assert [f.path for f in part.files()] == [merged.path]  # superseded, ignored
    ids = [o["id"] for f in part.files() for o in read_objects(lake, f)]
    assert sorted(ids) == ["ch_1", "ch_2", "ch_3"]
    assert lake.read_json(merged.meta_path)["objects"] == 3
    assert part.cleanup_superseded() == 1


def test_refresh_files_add_without_claiming_coverage(tmp_path):
    part = RawPartition(Lake(str(tmp_path)), "charges", DAY)
    part.write(START, START + 100, [_line(1, START + 5)], {})
    part.write(START, START + 100, [_line(9, START + 7)], {}, refresh=123)
    assert part.coverage() == [(START, START + 100)]
    assert part.ids() == {"ch_1", "ch_9"}


def _damaged_partition(tmp_path):
    lake = Lake(str(tmp_path))
    part = RawPartition(lake, "charges", DAY)
    lines = [_line(i, START + 5 + i) for i in range(2000)]
    a = part.write(START, START + 3600, lines, {"api_version": "v"})
    b = part.write(START + 3600, START + 7200, [_line(9000, START + 4000)], {})
    return lake, part, a, b


def test_meta_records_the_compressed_size(tmp_path):
    lake, part, a, _ = _damaged_partition(tmp_path)
    meta = part.read_meta(a)
    assert meta["bytes"] == (tmp_path / a.path).stat().st_size > 0
    assert meta["objects"] == 2000 and meta["api_version"] == "v"
    assert part.inspect(deep=True) == []


def test_truncated_file_is_set_aside_and_its_window_is_a_gap_again(tmp_path, caplog):
    lake, part, a, b = _damaged_partition(tmp_path)
    path = tmp_path / a.path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    [damage] = part.inspect()
    assert damage.file == a and "truncated" in damage.reason
    healed = part.heal()
    assert [d.file for d in healed] == [a]
    message = healed[0].message()
    assert a.path in message and "re-fetches it" in message and "stripe/charges" in message
    assert a.path in caplog.text  # the warning names the file
    assert part.coverage() == [(START + 3600, START + 7200)]
    assert part.gaps(END)[0] == (START, START + 3600)
    # Kept for inspection, out of the partition.
    moved = tmp_path / healed[0].moved_to
    assert moved.exists() and moved.with_name(a.stem + ".meta.json").exists()
    assert not path.exists() and not (tmp_path / a.meta_path).exists()
    assert [f.path for f in part.files()] == [b.path]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_bytes(b'{"objects": 3'), "is not valid JSON"),
        (lambda p: p.write_bytes(b"\x00\xff garbage"), "is not valid JSON"),
        (lambda p: p.write_text('{"gte": 1}'), "has no object count"),
        (lambda p: p.unlink(), "is missing"),
    ],
)
def test_bad_sidecar_names_the_file_and_heals(tmp_path, damage, reason):
    lake, part, a, _ = _damaged_partition(tmp_path)
    damage(tmp_path / a.meta_path)
    with pytest.raises(DamagedRawFile) as info:
        part.read_meta(a)
    assert str(tmp_path / a.meta_path) in str(info.value) and reason in str(info.value)
    assert "re-fetches its window" in str(info.value)
    [healed] = part.heal()
    assert healed.file == a and reason in healed.reason and a.meta_path in healed.reason
    assert part.gaps(END)[0] == (START, START + 3600)


def test_same_size_garbage_is_found_by_the_deep_check(tmp_path):
    lake, part, a, _ = _damaged_partition(tmp_path)
    path = tmp_path / a.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    assert part.inspect() == []  # the size is right: only decompression can tell
    [damage] = part.inspect(deep=True)
    assert damage.file == a and "cannot be read" in damage.reason


def test_damaged_merged_file_gives_way_to_the_parts_it_superseded(tmp_path):
    lake, part, a, b = _damaged_partition(tmp_path)
    a_bytes, b_bytes = (tmp_path / a.path).read_bytes(), (tmp_path / b.path).read_bytes()
    a_meta, b_meta = (tmp_path / a.meta_path).read_bytes(), (tmp_path / b.meta_path).read_bytes()
    merged = part.merge([a, b], {})
    # A crash before the parts were deleted leaves them superseded; then the merged file is cut.
    for f, data, meta in ((a, a_bytes, a_meta), (b, b_bytes, b_meta)):
        (tmp_path / f.path).write_bytes(data)
        (tmp_path / f.meta_path).write_bytes(meta)
    (tmp_path / merged.path).write_bytes((tmp_path / merged.path).read_bytes()[:100])
    assert [d.file for d in part.heal()] == [merged]
    assert [f.path for f in part.files()] == [a.path, b.path]
    assert part.gaps(END) == [(START + 7200, END)]
    ids = [o["id"] for f in part.files() for o in read_objects(lake, f)]
    assert len(ids) == len(set(ids)) == 2001


def test_sidecar_without_size_is_checked_once_by_reading_then_records_it(tmp_path):
    lake, part, a, _ = _damaged_partition(tmp_path)
    meta = part.read_meta(a)
    del meta["bytes"]
    lake.write_json(a.meta_path, meta)  # as written before sizes were recorded
    assert part.inspect() == []
    assert part.read_meta(a)["bytes"] == (tmp_path / a.path).stat().st_size
    # A legacy file cut at a frame boundary is caught by its line count.
    lake.write_json(a.meta_path, {**meta, "objects": 2001})
    [damage] = part.inspect()
    assert damage.reason == "holds 2000 lines, 2001 were written"
