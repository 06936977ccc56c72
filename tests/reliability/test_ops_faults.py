"""Scenario 6 — Ops failing 30% of the time, and a permanent refusal, through a fault-injecting proxy in front
of a real joey-ops.

An engine (EDGE_BUNDLE naming the proxy) serves 300 numbered inferences while the proxy fails, at random
(seeded), 30% of /edge/join and /edge/logs calls: 500, 502, 503, 429 with Retry-After, the connection cut after
Ops stored the page (the edge never hears it), or silence then a cut. One page is refused with a 400 every time.
Pass: every record answered 200 is in Ops or in the set-aside file, none in both, none twice in Ops; the
refused page was sent exactly once, set aside whole and counted; every retryable fault was retried (counted);
no retry came sooner than Retry-After.

Capped backoff and real timeouts are measured on the uploader itself (engine/uploader.py, in this process, with
a short timeout and a 50 ms..400 ms backoff so the cap is reached in seconds): waits grow, then stay between
half and all of the cap.
"""
from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.ipc as ipc
from support.engine import ARROW_FILE, start_engine
from support.procs import wait_for
from support.proxy import Answer, Forward, ForwardThenCut, Hang, Request
from support.reliability import (
    add_edge,
    ids_of_page,
    ids_of_table,
    numbered_body,
    ops_behind_proxy,
    ops_ids,
    page_seq_start,
)

from engine.edge_client import EdgeClient
from engine.logstore import LogStore
from engine.uploader import Uploader
from joey.bundle import EdgeBundle

INFERENCES = 300
FAULT_RATE = 0.3
REFUSED = Answer(400, json.dumps({"status": 400, "error": "BadRequest", "message": "injected permanent refusal",
                                  "hint": None}).encode())

FAULTS = [Answer(500), Answer(502), Answer(503),
          Answer(429, headers={"content-type": "application/json", "retry-after": "1"}), ForwardThenCut(), Hang(0.5)]


def test_thirty_percent_faults_and_a_permanent_refusal(published, tmp_path):
    rng = random.Random(6)
    poisoned: dict[str, int] = {}
    lock = threading.Lock()

    def decide(req: Request):
        if req.method != "POST" or not req.path.startswith("/edge/"):
            return Forward()
        with lock:
            if req.path == "/edge/logs":
                seq_start = page_seq_start(req.body)
                if not poisoned and seq_start >= 40:
                    poisoned["seq_start"] = seq_start
                if seq_start == poisoned.get("seq_start"):
                    return REFUSED
            if rng.random() < FAULT_RATE:
                return rng.choice(FAULTS)
        return Forward()

    with ops_behind_proxy(tmp_path / "ops", decide) as (ops, proxy):
        bundle = add_edge(ops, published, "flaky")
        persist = tmp_path / "persist"
        engine = start_engine(published["pipeline_url"], persist, EDGE_BUNDLE=bundle,
                              PLATEAU_PAGE_SIZE="10", LOCAL_INFERENCE_STORAGE="64Mi")
        try:
            def one(i: int) -> int | None:
                r = engine.post("/infer", numbered_body(i), ARROW_FILE)
                return i if r.status_code == 200 else None

            with ThreadPoolExecutor(3) as pool:
                answered = {i for i in pool.map(one, range(INFERENCES)) if i is not None}
            status = wait_for("every record delivered or set aside", lambda: (
                (s := engine.get("/status").json())["logs"]["records_stored"] == 0
                and s["upload"]["state"] in ("idle", "refused") and s), timeout=120, every=0.2)
        finally:
            engine.stop()
        in_ops = ops_ids(ops, "edge-pipeline", "flaky")

    assert answered == set(range(INFERENCES))
    (aside,) = list((persist / "rejected").iterdir())
    rejected = ids_of_table(ipc.open_file(pa.memory_map(str(aside))).read_all())
    assert len(in_ops) == len(set(in_ops)), "Ops holds a record twice"
    assert not set(in_ops) & set(rejected)
    assert set(in_ops) | set(rejected) == answered, f"lost: {sorted(answered - set(in_ops) - set(rejected))}"

    logs_calls = sorted(proxy.requests("/edge/logs"), key=lambda c: c.at)   # recorded as they end
    refused_calls = [s for s in logs_calls if s.decision is REFUSED]
    assert len(refused_calls) == 1, "a refused page is set aside, never sent again"
    assert rejected == ids_of_page(refused_calls[0].request.body)
    up = status["upload"]
    assert up["pages_rejected"] == 1 and up["records_rejected"] == len(rejected)
    assert up["set_aside"]["files"] == 1 and up["set_aside"]["records"] == len(rejected)

    injected = [s for s in logs_calls if not isinstance(s.decision, Forward) and s.decision is not REFUSED]
    assert len(injected) >= 10 and up["retries"] == len(injected)
    assert any(isinstance(s.decision, ForwardThenCut) for s in injected), "no page was cut after Ops stored it"
    for s in (s for s in injected if isinstance(s.decision, Answer) and s.decision.status == 429):
        later = [t.at for t in logs_calls if t.at > s.at]
        assert not later or later[0] - s.at >= 1.0, "a retry came before Retry-After"
    print(f"\nOps faults: {len(logs_calls)} uploads, {len(injected)} faults injected "
          f"({', '.join(sorted({type(s.decision).__name__ for s in injected}))}), {len(set(in_ops))} records in Ops, "
          f"{len(rejected)} set aside, retries {up['retries']}")


def test_backoff_grows_to_its_cap_and_a_timeout_is_retried(published, tmp_path):
    """The uploader in this process against a real joey-ops behind the proxy: 14 failures in a row (503s,
    then silences longer than the 0.3 s timeout), then success."""
    calls = {"n": 0}
    script = [Answer(503)] * 10 + [Hang(0.6)] * 4

    def decide(req: Request):
        if req.path != "/edge/logs":
            return Forward()
        calls["n"] += 1
        return script[calls["n"] - 1] if calls["n"] <= len(script) else Forward()

    first, cap = 0.05, 0.4
    with ops_behind_proxy(tmp_path / "ops", decide) as (ops, proxy):
        bundle = EdgeBundle.decode(add_edge(ops, published, "backoff"))
        with LogStore(tmp_path / "logs") as store:
            store.append(ids_table(range(5)))
            uploader = Uploader(store, EdgeClient(bundle, tmp_path / "persist", timeout=0.3), page_size=10,
                                rejected_dir=tmp_path / "rejected", rejected_capacity=2**20,
                                retry_first=first, retry_max=cap)
            uploader.start()
            try:
                wait_for("delivery", lambda: store.stats().records_stored == 0, timeout=60)
            finally:
                uploader.stop()
            status = uploader.status()
        in_ops = ops_ids(ops, "edge-pipeline", "backoff")
    calls_seen = sorted(proxy.requests("/edge/logs"), key=lambda c: c.at)   # recorded as they end; sort by arrival
    assert [c.decision for c in calls_seen] == script + [Forward()]
    # wait i follows failure i+1, counted from the end of that attempt (a Hang holds it for the 0.3 s timeout)
    ends = [c.at + (0.3 if isinstance(c.decision, Hang) else 0.0) for c in calls_seen[:-1]]
    waits = [b.at - a for a, b in zip(ends, calls_seen[1:])]
    for i, w in enumerate(waits):
        ceiling = min(cap, first * 2 ** i)
        assert ceiling / 2 - 0.02 <= w <= ceiling + 0.15, (i, w, ceiling)
    assert status["retries"] == len(script) and status["records_uploaded"] == 5
    assert sorted(in_ops) == list(range(5))


def ids_table(ids) -> pa.Table:
    """A table shaped like the engine's records, as far as ids_of_records needs: `in.tensor` lists."""
    return pa.table({"in.tensor": pa.array([[float(i)] + [0.0] * 28 for i in ids], pa.list_(pa.float32()))})
