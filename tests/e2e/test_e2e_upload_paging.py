"""Upload pages are bounded by bytes as well as records (issue 14, item 6): the uploader in this process against
a real `joey-ops` sends records whose count fits a page but whose size does not as several pages under
joey.opswire.MAX_PAGE_BYTES (each answered 2xx), and sets a record that no page can hold aside, counted,
while the records after it arrive."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from support.e2e import ops_records
from support.procs import wait_for

from engine.edge_client import EdgeClient
from engine.logstore import LogStore
from engine.uploader import Uploader
from joey.bundle import EdgeBundle
from joey.opswire import MAX_PAGE_BYTES


def record(number: int, text_bytes: int) -> pa.Table:
    """One record shaped as the engine logs it, carrying `text_bytes` of text (its size as JSON, near enough)."""
    return pa.table({"time": pa.array([1_713_880_452_318], pa.int64()),
                     "in.tensor": pa.FixedSizeListArray.from_arrays(pa.array([float(number)] * 2), 2),
                     "in.note": pa.array(["n" * text_bytes]),
                     "out.variable": pa.FixedSizeListArray.from_arrays(pa.array(np.float32([number / 1000])), 1),
                     "metadata.partition": pa.array(["whatever"])})


def test_large_records_go_in_pages_under_the_byte_limit_and_an_oversize_one_is_set_aside(ops, add_edge, tmp_path):
    bundle, persist = add_edge("edge-paging"), tmp_path / "persist"
    # Five records of a third of a page each (one page by count, far more than one by bytes), and between them
    # one larger than a whole page.
    sizes = {0: MAX_PAGE_BYTES // 3, 1: MAX_PAGE_BYTES // 3, 2: MAX_PAGE_BYTES + 1024, 3: MAX_PAGE_BYTES // 3,
             4: MAX_PAGE_BYTES // 3, 5: MAX_PAGE_BYTES // 3}
    with LogStore(persist / "logs") as store, EdgeClient(EdgeBundle.decode(bundle), persist) as client:
        for number, size in sizes.items():
            store.append(record(number, size))
        up = Uploader(store, client, page_size=1000, rejected_dir=persist / "rejected", rejected_capacity=2**30,
                      retry_first=0.05, retry_max=0.2)
        up.start()
        try:
            wait_for("every record done with", lambda: store.stats().cursor == len(sizes), timeout=120)
        finally:
            up.stop()
        status = up.status()
    held = ops_records(ops, partition="edge-paging")
    assert sorted(int(r["in.tensor"][0]) for r in held) == [0, 1, 3, 4, 5]
    assert status["records_uploaded"] == 5 and status["pages_uploaded"] >= 3
    assert status["records_rejected"] == 0 and status["retries"] == 0   # Ops took every page it was sent
    assert status["records_too_large"] == 1
    assert status["set_aside"]["records"] == 1
    assert [p.name for p in (persist / "rejected").iterdir()] == [f"{2:020d}-{2:020d}.arrow"]
