"""engine.logstore on real files: round trips, paging, the capacity bound, corruption, ENOSPC, SIGKILL."""
from __future__ import annotations

import errno
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from engine.logstore import HEADER_SIZE, LogStore, StoreWriteError

ROOT = Path(__file__).resolve().parents[2]


def records(ids, version: str = "v1", width: int = 4) -> pa.Table:
    """Inference records shaped like the engine's, with an `id` column the tests follow."""
    ids = list(ids)
    n = len(ids)
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "time": pa.array([1713880461579 + i for i in ids], pa.int64()),
        "in.tensor": pa.array([[float(i)] * width for i in ids], pa.list_(pa.float32())),
        "out.variable": pa.array([[i / 2] for i in ids], pa.list_(pa.float32())),
        "anomaly.count": pa.array([0] * n, pa.int64()),
        "metadata.last_model": pa.array(['{"model_name":"ccfraud","model_sha":"e22a"}'] * n),
        "metadata.pipeline_version": pa.array([version] * n),
        "metadata.elapsed": pa.array([[1067541, 21209776]] * n, pa.list_(pa.int64())),
        "metadata.dropped": pa.array([[]] * n, pa.list_(pa.string())),
        "metadata.partition": pa.array(["edge-1"] * n),
    })


def ids_of(table: pa.Table) -> list[int]:
    return table["id"].to_pylist() if table.num_rows else []


def assert_identity(store: LogStore) -> None:
    s = store.stats()
    assert s.next_seq == s.records_acked + s.records_dropped + s.records_lost + s.records_stored, s


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def frames(path: Path) -> list[tuple[int, int, int, int]]:
    """(offset, kind, first_seq, count) of each frame, walking the documented format."""
    data = path.read_bytes()
    out, pos = [], 8
    while pos + HEADER_SIZE <= len(data):
        _, _, kind, length, first, count, _ = struct.unpack_from("<4sIB3xIQII", data, pos)
        out.append((pos, kind, first, count))
        pos += HEADER_SIZE + length
    return out


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


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

def five_batches(directory: Path) -> Path:
    with LogStore(directory) as store:
        for i in range(5):
            store.append(records(range(10 * i, 10 * i + 10)))
    [seg] = segments(directory)
    return seg


def reopen_and_check(directory: Path, ids: list[int], lost: int, next_seq: int) -> None:
    for _ in range(2):  # counting is the same on every open: recovery never double-counts
        with LogStore(directory) as store:
            assert ids_of(store.read()) == ids
            s = store.stats()
            assert (s.records_lost, s.next_seq, s.records_stored) == (lost, next_seq, len(ids))
            assert_identity(store)
    with LogStore(directory) as store:
        store.append(records([1000]))
        assert store.stats().next_seq == next_seq + 1
        assert ids_of(store.read(limit=1)) == [1000]
    with LogStore(directory) as store:
        assert store.stats().records_lost == lost and ids_of(store.read()) == ids + [1000]


def test_torn_tail_loses_only_the_last_batch(tmp_path):
    seg = five_batches(tmp_path)
    last = frames(seg)[-1][0]
    os.truncate(seg, last + HEADER_SIZE + 20)
    reopen_and_check(tmp_path, list(range(40)), lost=10, next_seq=50)


def test_torn_header_at_the_tail_is_a_write_that_never_happened(tmp_path):
    seg = five_batches(tmp_path)
    os.truncate(seg, frames(seg)[-1][0] + 7)
    # Nothing on disk names those records: their append cannot have returned, so the numbers are reused.
    reopen_and_check(tmp_path, list(range(40)), lost=0, next_seq=40)


def test_zeroed_length_skips_exactly_that_batch(tmp_path):
    seg = five_batches(tmp_path)
    third = frames(seg)[3][0]  # frame 0 is the schema
    patch(seg, third + 12, b"\0\0\0\0")
    reopen_and_check(tmp_path, list(range(20)) + list(range(30, 50)), lost=10, next_seq=50)


@pytest.mark.parametrize("where", ["payload crc field", "payload byte"])
def test_flipped_bit_skips_exactly_that_batch(tmp_path, where):
    seg = five_batches(tmp_path)
    second = frames(seg)[2][0]
    offset = second + 28 if where == "payload crc field" else second + HEADER_SIZE + 100
    data = bytearray(seg.read_bytes())
    data[offset] ^= 0x10
    seg.write_bytes(bytes(data))
    reopen_and_check(tmp_path, list(range(10)) + list(range(20, 50)), lost=10, next_seq=50)


@pytest.mark.parametrize("victim", [0, 2])
def test_deleted_segment_is_counted_as_lost(tmp_path, victim):
    with LogStore(tmp_path, segment_bytes=1) as store:
        for i in range(5):
            store.append(records(range(10 * i, 10 * i + 10)))
    segments(tmp_path)[victim].unlink()
    kept = [i for i in range(50) if i // 10 != victim]
    reopen_and_check(tmp_path, kept, lost=10, next_seq=50)


def test_damaged_schema_frame_loses_that_segment(tmp_path):
    with LogStore(tmp_path, segment_bytes=1) as store:
        for i in range(3):
            store.append(records(range(10 * i, 10 * i + 10)))
    patch(segments(tmp_path)[1], 8 + HEADER_SIZE + 4, b"\xff")
    reopen_and_check(tmp_path, list(range(10)) + list(range(20, 30)), lost=10, next_seq=30)


def test_garbage_files_and_state_never_stop_an_open(tmp_path):
    five_batches(tmp_path)
    (tmp_path / f"{60:020d}.seg").write_bytes(random.Random(1).randbytes(5000))
    (tmp_path / "state.json").write_text("{not json")
    with LogStore(tmp_path) as store:
        assert ids_of(store.read()) == list(range(50))
        assert store.stats().records_lost == 10  # 50..59 lie between the intact segment and the garbage
        assert_identity(store)
        store.append(records([1000]))
        assert store.stats().next_seq == 61


def test_lost_state_file_takes_the_past_as_acknowledged(tmp_path):
    with LogStore(tmp_path, segment_bytes=1) as store:
        for i in range(3):
            store.append(records(range(10 * i, 10 * i + 10)))
        store.ack(10)
    (tmp_path / "state.json").unlink()
    with LogStore(tmp_path) as store:
        s = store.stats()
        assert (s.cursor, s.records_acked, s.records_stored, s.records_lost) == (10, 10, 20, 0)


def test_damage_found_while_open_is_skipped_and_counted(tmp_path):
    store = LogStore(tmp_path)
    for i in range(3):
        store.append(records(range(10 * i, 10 * i + 10)))
    [seg] = segments(tmp_path)
    patch(seg, frames(seg)[2][0] + HEADER_SIZE + 60, b"\xaa\xbb")
    assert ids_of(store.read()) == list(range(10)) + list(range(20, 30))
    assert store.stats().records_lost == 10
    page = store.next_page(100)
    assert (page.seq_start, page.seq_end) == (0, 10)
    assert_identity(store)


# ---------------------------------------------------------------------------------------------- threads

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

@pytest.fixture()
def small_volume(tmp_path):
    """A real 1 MiB tmpfs (needs root, as on the project's machines)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs for the ENOSPC test (root needed): {done.stderr}"
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_full_disk_raises_store_write_error_and_recovers_when_space_returns(small_volume):
    directory = small_volume / "logs"
    store = LogStore(directory, segment_bytes=64 * 1024)
    stored, failures = [], []
    for next_id in range(0, 40 * 1000, 40):  # on until the volume has refused three times
        batch = list(range(next_id, next_id + 40 if next_id % 120 else next_id + 1))
        try:
            store.append(records(batch, width=64))
            stored += batch
        except StoreWriteError as exc:
            failures.append(exc)
            if len(failures) == 3:
                break
    assert len(failures) == 3 and len(stored) > 200
    err = failures[0]
    assert err.errno == errno.ENOSPC and err.http_status == 507 and "LOCAL_INFERENCE_STORAGE" in err.hint
    assert ids_of(store.read()) == stored
    s = store.stats()
    assert (s.records_stored, s.records_lost, s.next_seq) == (len(stored), 0, len(stored))
    store.close()

    with open(small_volume / "filler", "wb", buffering=0) as filler:  # leave not one free block
        with pytest.raises(OSError):
            while True:
                filler.write(bytes(4096))
    with LogStore(directory, segment_bytes=64 * 1024) as store:
        assert ids_of(store.read()) == stored and store.stats().records_lost == 0
        page = store.next_page(len(stored) // 2)
        store.ack(page.seq_end)  # Ops took half: the cursor is written, their segments go, space returns
        store.append(records([5000, 5001], width=64))
        assert ids_of(store.read())[-2:] == [5000, 5001]
        assert store.stats().records_lost == 0
        assert_identity(store)


# ------------------------------------------------------------------------------------------------ kill -9

CHILD = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    import pyarrow as pa
    from engine.logstore import LogStore

    store = LogStore(Path(sys.argv[1]), segment_bytes=32 * 1024)
    base = int(sys.argv[2])
    lock = threading.Lock()

    def writer(t):
        i = 0
        while True:
            n = 1 + (i * 7 + t) % 40
            first = base + t * 1_000_000 + i * 100
            store.append(pa.table({"id": pa.array(range(first, first + n), pa.int64()),
                                   "x": pa.array([[1.5] * 16] * n, pa.list_(pa.float32()))}))
            with lock:
                print(first, n, flush=True)
            i += 1

    for t in range(4):
        threading.Thread(target=writer, args=(t,), daemon=True).start()
    threading.Event().wait()
""")


def append_size(first: int) -> int:
    """How many rows CHILD's append starting at id `first` had."""
    t, i = (first % 10_000_000) // 1_000_000, (first % 1_000_000) // 100
    return 1 + (i * 7 + t) % 40


def test_sigkill_never_loses_an_append_that_returned(tmp_path):
    directory = tmp_path / "logs"
    rng = random.Random()
    acknowledged: list[int] = []
    for round_ in range(3):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), str(round_ * 10_000_000)],
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT)
        lines = []
        for _ in range(rng.randint(20, 300)):  # the kill lands wherever the writers happen to be
            line = child.stdout.readline()
            assert line, "the appending child died on its own"
            lines.append(line)
        os.kill(child.pid, signal.SIGKILL)
        lines += child.stdout.read().splitlines(keepends=True)
        child.wait()
        acknowledged += [int(line.split()[0]) for line in lines if line.endswith("\n")]
        with LogStore(directory) as store:
            ids = ids_of(store.read())
            present = set(ids)
            assert len(ids) == len(present)
            for first in acknowledged:
                n = append_size(first)
                assert set(range(first, first + n)) <= present, f"append at id {first} lost after SIGKILL"
            for first in {i - i % 100 for i in ids}:  # every stored append is whole
                assert set(range(first, first + append_size(first))) <= present
            assert_identity(store)
            assert store.stats().records_stored == len(ids)
    assert len(acknowledged) >= 60
