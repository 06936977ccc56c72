"""engine.logstore on real files: round trips, paging, the capacity bound, concurrent appends. Damage, a full disk
and SIGKILL are in test_logstore_recovery.py."""
from __future__ import annotations

import random
import threading

import pyarrow as pa
import pytest
from support.logstore import ids_of, records, segments

from engine.logstore import LogStore

# ------------------------------------------------------------------------------------------ round trips

def test_append_read_round_trip_keeps_values_and_order(tmp_path):
    store = LogStore(tmp_path / "logs")
    first, second = records(range(0, 3)), records(range(3, 8))
    store.append(first)
    store.append(second)
    assert store.read().equals(pa.concat_tables([first, second]))
    assert ids_of(store.read(limit=2)) == [6, 7]
    assert ids_of(store.read(limit=100)) == list(range(8))
    assert store.read(limit=0).num_rows == 0
    assert store.stats().records_stored == 8 and store.stats().next_seq == 8
    store.append(records([]))
    assert store.stats().next_seq == 8


def test_records_survive_reopen_and_sequence_numbers_continue(tmp_path):
    with LogStore(tmp_path) as store:
        store.append(records(range(5)))
    with LogStore(tmp_path) as store:
        assert ids_of(store.read()) == list(range(5))
        store.append(records(range(5, 9)))
        assert store.stats().next_seq == 9
    with LogStore(tmp_path) as store:
        assert ids_of(store.read()) == list(range(9))
        assert store.stats().records_lost == 0
        page = store.next_page(100)
        assert (page.seq_start, page.seq_end) == (0, 9)


def test_schema_metadata_and_dictionaries_do_not_split_segments(tmp_path):
    store = LogStore(tmp_path)
    store.append(records([0]).replace_schema_metadata({"pandas": "a"}))
    store.append(records([1]).replace_schema_metadata({"pandas": "b"}))
    coded = pa.table({"id": pa.array([2, 3], pa.int64()), "label": pa.array(["x", "y"]).dictionary_encode()})
    store.append(coded)
    assert len(segments(tmp_path)) == 2
    table = store.read()
    assert table.schema.field("label").type == pa.string()
    assert table["label"].to_pylist() == [None, None, "x", "y"]


# ---------------------------------------------------------------------------------------------- paging

def test_pages_follow_the_cursor_and_the_cursor_survives_reopen(tmp_path):
    store = LogStore(tmp_path)
    for lo, hi in ((0, 30), (30, 170), (170, 250)):
        store.append(records(range(lo, hi)))
    page = store.next_page(100)
    assert (page.seq_start, page.seq_end) == (0, 100) and ids_of(page.table) == list(range(100))
    assert store.next_page(100) == page  # unchanged until acknowledged
    store.ack(page.seq_end)
    store.close()

    store = LogStore(tmp_path)
    assert store.stats().cursor == 100 and store.stats().records_acked == 100
    page = store.next_page(100)
    assert (page.seq_start, page.seq_end) == (100, 200) and ids_of(page.table) == list(range(100, 200))
    assert ids_of(store.read()) == list(range(100, 250))
    store.ack(200)
    page = store.next_page(100)
    assert (page.seq_start, page.seq_end) == (200, 250)
    store.ack(250)
    assert store.next_page(100) is None
    assert store.read().num_rows == 0
    s = store.stats()
    assert (s.records_stored, s.records_acked, s.cursor, s.bytes_stored) == (0, 250, 250, 0)
    assert segments(tmp_path) == []
    store.ack(120)  # an old acknowledgement repeated is harmless
    with pytest.raises(ValueError, match="records stop at 250"):
        store.ack(251)
    store.close()
    with LogStore(tmp_path) as store:
        store.append(records([250]))
        assert store.next_page(10).seq_start == 250


def test_acknowledged_segments_are_deleted(tmp_path):
    store = LogStore(tmp_path, segment_bytes=1)  # every append its own segment
    for i in range(4):
        store.append(records(range(10 * i, 10 * i + 10)))
    assert len(segments(tmp_path)) == 4
    page = store.next_page(25)
    assert (page.seq_start, page.seq_end) == (0, 25) and ids_of(page.table) == list(range(25))
    store.ack(25)
    assert [p.name for p in segments(tmp_path)] == [f"{20:020d}.seg", f"{30:020d}.seg"]
    assert ids_of(store.read()) == list(range(25, 40))


def test_schema_change_starts_a_segment_and_read_merges(tmp_path):
    store = LogStore(tmp_path)
    store.append(records(range(3), width=2))
    extra = records(range(3, 5)).append_column("out.score", pa.array([[0.5], [0.7]], pa.list_(pa.float64())))
    store.append(extra)
    store.append(records(range(5, 6)))
    assert len(segments(tmp_path)) == 3
    table = store.read()
    assert ids_of(table) == list(range(6))
    assert table["out.score"].to_pylist() == [None, None, None, [0.5], [0.7], None]
    # A page never mixes schemas, so Ops receives each pipeline version's records as they were.
    assert (store.next_page(100).seq_start, store.next_page(100).seq_end) == (0, 3)
    store.ack(3)
    assert ids_of(store.next_page(100).table) == [3, 4]


def test_columns_whose_types_cannot_be_widened_are_read_as_json_text(tmp_path):
    """Whatever /infer accepted can be read back: extra columns pass through as the client typed them."""
    store = LogStore(tmp_path)
    store.append(pa.table({"id": [1], "out.variable": [[0.5]]}))
    store.append(pa.table({"id": [2], "out.variable": ["text"]}))
    store.append(pa.table({"id": [3], "out.variable": pa.array([None], pa.string())}))
    table = store.read()
    assert table["out.variable"].to_pylist() == ["[0.5]", '"text"', None]
    assert ids_of(store.read(limit=1)) == [3]


# --------------------------------------------------------------------------------------------- capacity

def test_capacity_drops_oldest_segments_and_keeps_the_identity(tmp_path):
    capacity = 40_000
    store = LogStore(tmp_path, capacity, segment_bytes=8_000)
    produced = acked = 0
    for i in range(120):
        store.append(records(range(produced, produced + 7)))
        produced += 7
        if i == 30:
            page = store.next_page(50)
            store.ack(page.seq_end)
            acked += page.seq_end - page.seq_start
        s = store.stats()
        assert s.bytes_stored <= capacity or len(segments(tmp_path)) == 1
        assert s.bytes_stored == sum(p.stat().st_size for p in segments(tmp_path))
        assert s.records_acked + s.records_dropped + s.records_stored == produced
        assert s.records_lost == 0
    s = store.stats()
    assert s.records_dropped > 0 and s.records_acked == acked
    kept = ids_of(store.read())
    assert kept == list(range(produced - len(kept), produced))  # the oldest went first
    store.close()
    with LogStore(tmp_path, capacity, segment_bytes=8_000) as again:
        assert again.stats() == s
        assert again.next_page(10).seq_start == produced - len(kept)


def test_dropping_overtakes_the_cursor_without_double_counting(tmp_path):
    store = LogStore(tmp_path, 20_000, segment_bytes=4_000)
    page = None
    for i in range(60):
        store.append(records(range(5 * i, 5 * i + 5)))
        if i == 0:
            page = store.next_page(5)
    assert store.stats().records_dropped > 0
    store.ack(page.seq_end)  # Ops confirms a page whose records were dropped meanwhile
    s = store.stats()
    assert s.cursor == 5 and s.records_acked == 0
    assert s.records_dropped + s.records_stored == 300
    assert store.next_page(5).seq_start == 300 - s.records_stored


# ------------------------------------------------------------------------------------------- corruption

def test_concurrent_appends_lose_nothing_and_never_share_a_sequence(tmp_path):
    store = LogStore(tmp_path, segment_bytes=64 * 1024)
    errors = []

    def writer(t):
        try:
            rng = random.Random(t)
            for i in range(40):
                n = rng.randint(1, 20)
                store.append(records([t * 100_000 + i * 100 + j for j in range(n)]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    expected = sum(sum(rng.randint(1, 20) for _ in range(40)) for rng in map(random.Random, range(16)))
    ids = ids_of(store.read())
    assert len(ids) == len(set(ids)) == expected == store.stats().next_seq
    for t in range(16):  # each thread's appends in its own order, each append contiguous
        mine = [i for i in ids if i // 100_000 == t]
        assert mine == sorted(mine)
    seen = []
    while (page := store.next_page(37)) is not None:
        assert page.table.num_rows == page.seq_end - page.seq_start
        seen.append((page.seq_start, page.seq_end))
        store.ack(page.seq_end)
    assert [a for a, _ in seen] == [0] + [b for _, b in seen[:-1]] and seen[-1][1] == expected


# ------------------------------------------------------------------------------------------------ ENOSPC
