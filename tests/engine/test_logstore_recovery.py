"""engine.logstore recovering on real files: corruption and lost files, ENOSPC on a real small volume, SIGKILL
mid-append. Every failure is counted, never double-counted, and never stops an open."""
from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.logstore import assert_identity, frames, ids_of, patch, records, segments

from engine.logstore import HEADER_SIZE, LogStore, StoreWriteError

ROOT = Path(__file__).resolve().parents[2]


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
