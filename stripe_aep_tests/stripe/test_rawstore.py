import datetime as dt

from stripe_aep.lake import Lake
from stripe_aep.stripe.rawstore import (
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
