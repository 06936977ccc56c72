"""Reading stored records back: which batches hold a range of sequence numbers, loading them (checksums
checked), choosing the newest or the first page of them, and merging tables of different schemas."""
from __future__ import annotations

import os
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from engine.codecs import json_texts
from engine.logstore.frames import Batch, Segment
from joey.errors import StoreReadError

Run = tuple[Segment, Batch, int, int]   # (segment, batch, first row in the batch, rows)


def runs(segments: list[Segment], lo: int, hi: int) -> Iterator[Run]:
    """A run for every stored record in [lo, hi), in sequence order."""
    for i, seg in enumerate(segments):
        upper = segments[i + 1].first_seq if i + 1 < len(segments) else seg.end_seq
        if upper <= lo or not seg.batches:
            continue
        if seg.first_seq >= hi:
            return
        j = max(0, bisect_right(seg.batches, lo, key=lambda b: b.first_seq) - 1)
        for batch in seg.batches[j:]:
            if batch.first_seq >= hi:
                return
            a, b = max(lo, batch.first_seq), min(hi, batch.end_seq)
            if a < b:
                yield seg, batch, a - batch.first_seq, b - a


def open_plan(directory: Path, wanted: Iterable[Run]) -> list[tuple[Segment, int, list[Run]]]:
    """Open each segment the runs need while the index lock is held, so a concurrent ack or drop that
    unlinks it cannot pull it away."""
    plan: list[tuple[Segment, int, list[Run]]] = []
    try:
        for run in wanted:
            if not plan or plan[-1][0] is not run[0]:
                plan.append((run[0], os.open(run[0].path, os.O_RDONLY), []))
            plan[-1][2].append(run)
    except OSError as exc:
        for _, fd, _ in plan:
            os.close(fd)
        raise StoreReadError(directory, f"cannot open {run[0].path.name}: {exc}") from exc
    return plan


def load(directory: Path, plan: list[tuple[Segment, int, list[Run]]]) -> tuple[list[pa.Table],
                                                                                list[tuple[Segment, Batch]]]:
    """One table per segment in the plan, and the batches that failed their checksum."""
    tables, bad = [], []
    for seg, fd, seg_runs in plan:
        try:
            lo = seg_runs[0][1].offset
            data = os.pread(fd, seg_runs[-1][1].offset + seg_runs[-1][1].length - lo, lo)
        except OSError as exc:
            raise StoreReadError(directory, f"cannot read {seg.path.name}: {exc}") from exc
        finally:
            os.close(fd)
        view = memoryview(data)
        batches = []
        for _, batch, first, n in seg_runs:
            payload = view[batch.offset - lo:batch.offset - lo + batch.length]
            if len(payload) != batch.length or zlib.crc32(payload) != batch.crc:
                bad.append((seg, batch))
                continue
            try:
                batches.append(pa.ipc.read_record_batch(pa.py_buffer(payload), seg.schema).slice(first, n))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowKeyError):
                bad.append((seg, batch))
        tables.append(pa.Table.from_batches(batches, seg.schema))
    return tables, bad


def newest(all_runs: list[Run], limit: int, max_bytes: int | None = None) -> list[Run]:
    """The runs covering the `limit` newest records, the oldest of them cut to fit; with `max_bytes`, no more
    records than fit in that many stored bytes (a record's share of its batch), one at least."""
    kept: list[Run] = []
    total, size = 0, 0.0
    for seg, batch, first, n in reversed(all_runs):
        take = min(n, limit - total)
        if max_bytes is not None:
            per_record = batch.length / batch.count
            take = min(take, max(int((max_bytes - size) // per_record), 0 if kept else 1))
            size += take * per_record
        if take <= 0:
            break
        kept.append((seg, batch, first + n - take, take))
        total += take
        if total >= limit:
            break
    return kept[::-1]


def first_page(all_runs: Iterator[Run], max_records: int) -> list[Run]:
    """The leading runs with consecutive sequence numbers and one schema, cut to `max_records`."""
    page: list[Run] = []
    total, next_seq = 0, None
    for seg, batch, first, n in all_runs:
        seq = batch.first_seq + first
        if page and (seq != next_seq or not seg.schema.equals(page[0][0].schema, check_metadata=True)):
            break
        take = min(n, max_records - total)
        page.append((seg, batch, first, take))
        total += take
        next_seq = seq + take
        if total == max_records:
            break
    return page


def merge(tables: list[pa.Table]) -> pa.Table:
    """One table of records of different schemas: missing columns become nulls and numeric types widen.

    A column whose types cannot be widened into one (a list in one record, a string in another: extra
    request columns are passed through as the client typed them) becomes the JSON text of each value, so
    whatever /infer accepted can always be read back.
    """
    try:
        return pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for f in table.schema:
            types.setdefault(f.name, set()).add(f.type)
    clashing = {name for name, found in types.items() if len(found) > 1 and not _widens(name, found)}
    try:
        return _concat_as_text(tables, clashing)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Widening pairwise does not always widen all at once: every column of differing types as text.
        return _concat_as_text(tables, {name for name, found in types.items() if len(found) > 1})


def _widens(name: str, found: set[pa.DataType]) -> bool:
    try:
        pa.unify_schemas([pa.schema([pa.field(name, t)]) for t in found], promote_options="permissive")
        return True
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False


def _concat_as_text(tables: list[pa.Table], names: set[str]) -> pa.Table:
    texts = []
    for table in tables:
        for i, f in enumerate(table.schema):
            if f.name in names:
                table = table.set_column(i, f.name, json_texts(table.column(i).combine_chunks()))
        texts.append(table)
    return pa.concat_tables(texts, promote_options="permissive").combine_chunks()
