"""The uploader in this process against a real `joey-ops`: a stop leaves the store and Ops agreeing, and the
set-aside directory keeps to its bound. (The engine-process tests cover everything else.)"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from support.e2e import ops_records, rows_of
from support.procs import wait_for

from engine.edge_client import EdgeClient
from engine.logstore import LogStore
from engine.uploader import Uploader
from joey.bundle import EdgeBundle


def records(first: int, n: int) -> pa.Table:
    """n records shaped as the engine logs them; in.tensor holds the record's number, so each is distinct."""
    ids = np.arange(first, first + n, dtype=np.float32)
    return pa.table({"time": pa.array(np.full(n, 1_713_880_452_318, np.int64)),
                     "in.tensor": pa.FixedSizeListArray.from_arrays(pa.array(np.repeat(ids, 2)), 2),
                     "out.variable": pa.FixedSizeListArray.from_arrays(pa.array(ids / 1000), 1),
                     "metadata.partition": pa.array(["whatever"] * n)})


def uploader(store: LogStore, bundle: str, persist, *, page_size: int, rejected_capacity: int = 2**20) -> Uploader:
    return Uploader(store, EdgeClient(EdgeBundle.decode(bundle), persist, timeout=10), page_size=page_size,
                    rejected_dir=persist / "rejected", rejected_capacity=rejected_capacity,
                    retry_first=0.05, retry_max=0.2)


def test_a_stop_mid_stream_leaves_no_half_state(ops, add_edge, tmp_path):
    bundle, persist = add_edge("edge-up-01"), tmp_path / "persist"
    with LogStore(persist / "logs") as store:
        for i in range(20):
            store.append(records(50 * i, 50))
        first = uploader(store, bundle, persist, page_size=10)
        first.start()
        wait_for("uploads under way", lambda: first.status()["records_uploaded"] >= 200)
        first.stop()
        # Everything Ops holds is acknowledged locally and nothing more: the page in flight was finished.
        assert len(ops_records(ops)) == store.stats().cursor == first.status()["records_uploaded"] < 1000
        assert first.status()["state"] == "stopped"

        second = uploader(store, bundle, persist, page_size=10)
        second.start()
        try:
            wait_for("the rest uploaded", lambda: store.stats().cursor == 1000)
        finally:
            second.stop()
    held = ops_records(ops)
    assert len(held) == 1000
    assert rows_of(r["in.tensor"] for r in held) == rows_of(records(0, 1000).column("in.tensor").to_pylist())


def test_set_aside_pages_keep_to_their_bound(ops, add_edge, tmp_path):
    bundle, persist = add_edge("edge-up-02"), tmp_path / "persist"
    with LogStore(persist / "logs") as store:
        up = uploader(store, bundle, persist, page_size=100, rejected_capacity=1)   # room for the newest only
        up.start()
        try:
            wait_for("enrolled", lambda: up.status()["enrolled"])
            with ops.client() as c:
                c.remove_edge("edge-up-02")
            for i in range(4):
                store.append(records(10 * i, 10))
                up.notify()
                wait_for(f"page {i} set aside", lambda: up.status()["pages_rejected"] == i + 1)
            status = up.status()
        finally:
            up.stop()
        assert store.stats().cursor == 40 and store.stats().records_stored == 0
    assert status["records_rejected"] == 40 and status["records_set_aside_deleted"] == 30
    assert status["set_aside"]["files"] == 1 and status["set_aside"]["records"] == 10
    assert [p.name for p in (persist / "rejected").iterdir()] == [f"{30:020d}-{39:020d}.arrow"]
