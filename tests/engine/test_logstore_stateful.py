"""engine.logstore against an in-memory model: appends, reads, pages, acks, crashes and reopens in any order."""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.logstore import LogStore


def records(first: int, n: int, version: int) -> pa.Table:
    table = pa.table({
        "id": pa.array(range(first, first + n), pa.int64()),
        "time": pa.array([1713880461579] * n, pa.int64()),
        "in.tensor": pa.array([[float(i)] * 4 for i in range(n)], pa.list_(pa.float32())),
        "metadata.pipeline_version": pa.array([f"v{version}"] * n),
    })
    if version == 2:  # a later pipeline version with one more output
        table = table.append_column("out.score", pa.array([[0.5]] * n, pa.list_(pa.float64())))
    return table


class LogStoreMachine(RuleBasedStateMachine):
    capacity: int | None = None
    segment_bytes = 3000

    def __init__(self):
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="logstore-"))
        self.store = self.open()
        self.versions: list[int] = []  # the pipeline version of each produced record; index = sequence
        self.acked = 0
        self.dropped = 0
        self.page = None

    def open(self) -> LogStore:
        return LogStore(self.directory, self.capacity, segment_bytes=self.segment_bytes)

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.directory)

    def suffix_start(self) -> int:
        """Without damage the stored records are exactly the newest ones, from this sequence on."""
        s = self.store.stats()
        return s.next_seq - s.records_stored

    @rule(n=st.integers(1, 25), version=st.sampled_from([1, 1, 1, 2]))
    def append(self, n, version):
        self.store.append(records(len(self.versions), n, version))
        self.versions += [version] * n
        if self.capacity is not None:
            s = self.store.stats()
            assert s.bytes_stored <= self.capacity or len(list(self.directory.glob("*.seg"))) == 1

    @rule(limit=st.none() | st.integers(0, 60))
    def read(self, limit):
        table = self.store.read(limit)
        expected = list(range(self.suffix_start(), len(self.versions)))
        if limit is not None:
            expected = expected[-limit:] if limit else []
        assert (table["id"].to_pylist() if table.num_rows else []) == expected

    @rule(max_records=st.integers(1, 80))
    def next_page(self, max_records):
        page = self.store.next_page(max_records)
        start = self.suffix_start()
        if start == len(self.versions):
            assert page is None
            return
        run = start
        while run < len(self.versions) and run - start < max_records and self.versions[run] == self.versions[start]:
            run += 1
        assert (page.seq_start, page.seq_end) == (start, run)
        assert page.table["id"].to_pylist() == list(range(start, run))
        self.page = page

    @precondition(lambda self: self.page is not None)
    @rule(part=st.sampled_from(["all", "half"]))
    def ack(self, part):
        end = self.page.seq_end if part == "all" else (self.page.seq_start + self.page.seq_end) // 2
        self.acked += max(0, end - max(self.suffix_start(), self.store.stats().cursor))
        self.store.ack(end)
        if part == "all":
            self.page = None

    @rule(junk=st.binary(max_size=48))
    def crash_and_reopen(self, junk):
        """Abandon the store as a killed process would, maybe with a torn write at the end of the newest file."""
        before = self.store.stats()
        newest = sorted(self.directory.glob("*.seg"))[-1:]
        for path in newest:
            with open(path, "ab") as f:
                f.write(junk)
        self.store = self.open()
        after = self.store.stats()
        grown = len(junk) if newest else 0
        assert after == dataclasses.replace(before, bytes_stored=before.bytes_stored + grown)

    @rule()
    def close_and_reopen(self):
        before = self.store.stats()
        self.store.close()
        self.store = self.open()
        assert self.store.stats() == before

    @invariant()
    def counters_add_up(self):
        s = self.store.stats()
        assert s.next_seq == len(self.versions)
        assert s.records_lost == 0
        assert s.records_acked == self.acked
        assert s.next_seq == s.records_acked + s.records_dropped + s.records_lost + s.records_stored
        assert s.records_dropped >= self.dropped
        self.dropped = s.records_dropped
        if self.capacity is None:
            assert s.records_dropped == 0
        assert self.suffix_start() >= s.cursor


class BoundedLogStoreMachine(LogStoreMachine):
    capacity = 5000
    segment_bytes = 1500


def extra_column(kind: str, n: int) -> pa.Array:
    """An extra request column as /infer passes it through: typed as the client sent it."""
    return {"int": pa.array([7] * n), "text": pa.array(["seven"] * n), "list": pa.array([[7.0, 0.5]] * n),
            "struct": pa.array([{"a": 7}] * n), "bool": pa.array([True] * n), "null": pa.nulls(n)}[kind]


class ExtraColumnsMachine(RuleBasedStateMachine):
    """Requests whose extra columns differ in type, in any order: appends, /logs queries (newest, with the
    `before` cursor), reopening. Reading never fails, and the segments stay within max_segments."""

    max_segments = 4

    def __init__(self):
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="logstore-extra-"))
        self.store = self.open()
        self.produced = 0

    def open(self) -> LogStore:
        return LogStore(self.directory, segment_bytes=100_000, max_segments=self.max_segments)

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.directory)

    def stored_from(self) -> int:
        s = self.store.stats()
        return s.next_seq - s.records_stored

    @rule(n=st.integers(1, 6), kind=st.sampled_from(["int", "text", "list", "struct", "bool", "null"]),
          name=st.sampled_from(["in.extra", "in.other"]))
    def append(self, n, kind, name):
        self.store.append(records(self.produced, n, 1).append_column(name, extra_column(kind, n)))
        self.produced += n

    @rule(limit=st.integers(1, 30), back=st.integers(0, 10))
    def query(self, limit, back):
        before = max(0, self.produced - back) if back else None
        window = self.store.newest(limit, before=before)
        end = self.produced if before is None else before
        start = max(self.stored_from(), end - limit)
        ids = window.table["id"].to_pylist() if window.table.num_rows else []
        assert ids == list(range(start, end)) if start < end else ids == []
        assert window.more == (start > self.stored_from() and start < end)

    @rule()
    def read_everything(self):
        table = self.store.read()
        assert (table["id"].to_pylist() if table.num_rows else []) == list(range(self.stored_from(), self.produced))

    @rule()
    def reopen(self):
        self.store.close()
        self.store = self.open()

    @invariant()
    def bounded_and_counted(self):
        s = self.store.stats()
        assert len(list(self.directory.glob("*.seg"))) <= self.max_segments
        assert s.next_seq == self.produced and s.records_lost == 0
        assert s.next_seq == s.records_acked + s.records_dropped + s.records_lost + s.records_stored


_settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
TestLogStore = LogStoreMachine.TestCase
TestLogStore.settings = _settings
TestBoundedLogStore = BoundedLogStoreMachine.TestCase
TestBoundedLogStore.settings = _settings
TestExtraColumns = ExtraColumnsMachine.TestCase
TestExtraColumns.settings = _settings
