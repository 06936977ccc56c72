"""Scenarios 1 and 2 — delivery to Ops across kill -9.

1. 20 runs of one engine (same /persist, same edge) each killed with SIGKILL at a random moment while 50
   numbered inferences are in flight and the uploader sends small pages: 1,000 inferences in all. Then one
   clean run drains the store. Pass: every record that got a 200 is in Ops (or still in the local store), Ops
   holds no record twice and nothing that was never inferred.
2. The kill lands exactly between Ops committing a page and the edge recording it: a proxy in front of Ops
   kills the engine once Ops has answered 200 and before the engine hears it. Pass: the cursor on disk did not
   move; after a restart the same page is sent again, Ops answers it as all duplicates, the cursor passes it
   once, and Ops holds each record once.
"""
from __future__ import annotations

import json
import random
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import requests
from support.engine import ARROW_FILE, start_engine
from support.procs import free_port, start, wait_for, wait_http
from support.proxy import Forward, Request, Response
from support.reliability import add_edge, ids_of_table, numbered_body, ops_behind_proxy, ops_ids, start_ops

from engine.logstore import LogStore

RUNS = 20
PER_RUN = 50
CLIENTS = 4
EDGE_ENV = {"PLATEAU_PAGE_SIZE": "7", "LOCAL_INFERENCE_STORAGE": "64Mi"}


def launch(published: dict, persist, bundle: str, log_name: str):
    """An engine process that may be killed at any time: (proc, url), once it is ready."""
    port = free_port()
    log = persist.parent / f"{log_name}.log"
    env = {"EDGE_BUNDLE": bundle, "JOEY_PERSIST_DIR": str(persist), "JOEY_PLAIN_HTTP": "true",
           "PYTHONUNBUFFERED": "1", **EDGE_ENV}
    proc = start([sys.executable, "-m", "engine", "--host", "127.0.0.1", "--port", str(port)], log, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/ready", ok=(200,), timeout=90, proc=proc, log=log)
    return proc, url


def drain(published, persist, bundle) -> dict:
    """A clean run that sends everything still stored, then stops: the final /status."""
    engine = start_engine(published["pipeline_url"], persist, EDGE_BUNDLE=bundle, **EDGE_ENV)
    try:
        def drained():
            s = engine.get("/status").json()
            return s if s["logs"]["records_stored"] == 0 and s["upload"]["state"] == "idle" else None
        return wait_for("the store to drain", drained, timeout=60)
    finally:
        assert engine.stop() == 0


def test_kill9_at_random_points_loses_and_duplicates_nothing(published, tmp_path):
    ops = start_ops(tmp_path / "ops")
    try:
        bundle = add_edge(ops, published, "crashy")
        persist = tmp_path / "persist"
        rng = random.Random(20)
        answered: set[int] = set()
        for run in range(RUNS):
            proc, url = launch(published, persist, bundle, f"run-{run}")
            kill_after = rng.randint(0, PER_RUN)   # answers to wait for before the kill; 0..all
            done = threading.Semaphore(0)
            ok: list[int] = []

            def one(i: int) -> None:
                first = run * PER_RUN + i
                try:
                    r = requests.post(url + "/infer", data=numbered_body(first),
                                      headers={"Content-Type": ARROW_FILE}, timeout=30)
                    if r.status_code == 200:
                        ok.append(first)
                except requests.ConnectionError:
                    pass
                done.release()

            with ThreadPoolExecutor(CLIENTS) as pool:
                for i in range(PER_RUN):
                    pool.submit(one, i)
                for _ in range(kill_after):
                    done.acquire()
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            answered |= set(ok)
        final = drain(published, persist, bundle)
        in_ops = ops_ids(ops, "edge-pipeline", "crashy")
    finally:
        ops.stop()
    with LogStore(persist / "logs") as store:
        local = set(ids_of_table(store.read()))
    assert len(in_ops) == len(set(in_ops)), "Ops holds a record twice"
    assert answered <= set(in_ops) | local, f"answered but lost: {sorted(answered - set(in_ops) - local)[:20]}"
    assert set(in_ops) <= set(range(RUNS * PER_RUN)), "Ops holds a record nobody inferred"
    assert len(answered) >= RUNS * PER_RUN // 4
    print(f"\nkill -9 x{RUNS}: {RUNS * PER_RUN} inferences sent, {len(answered)} answered 200, {len(in_ops)} in Ops "
          f"({len(set(in_ops) - answered)} logged but killed before answering), 0 duplicates; store: "
          f"{json.dumps(final['logs'])}, uploads: pages {final['upload']['pages_uploaded']}")


def test_kill_between_ops_commit_and_local_ack(published, tmp_path):
    victim: dict = {}
    lock = threading.Lock()

    def decide(req: Request):
        if req.path == "/edge/logs":
            def after(_: Request, resp: Response) -> None:
                with lock:
                    if "seq_start" in victim or resp.status != 200 or json.loads(resp.body)["seq_start"] < 5:
                        return
                    victim.update(json.loads(resp.body))
                victim["proc"].send_signal(signal.SIGKILL)   # before the engine hears Ops' answer
                victim["proc"].wait()
            return Forward(after=after)
        return Forward()

    with ops_behind_proxy(tmp_path / "ops", decide) as (ops, proxy):
        bundle = add_edge(ops, published, "torn")
        persist = tmp_path / "persist"
        proc, url = launch(published, persist, bundle, "first")
        victim["proc"] = proc
        for i in range(30):
            try:
                requests.post(url + "/infer", data=numbered_body(i), headers={"Content-Type": ARROW_FILE},
                              timeout=30)
            except requests.ConnectionError:
                break
        proc.wait(30)
        page = (victim["seq_start"], victim["seq_end"])
        assert victim["stored"] == page[1] - page[0] + 1 and victim["duplicates"] == 0
        with LogStore(persist / "logs") as store:
            assert store.stats().cursor <= page[0], "the cursor moved before Ops' answer arrived"
            produced = store.stats().next_seq

        final = drain(published, persist, bundle)
        in_ops = ops_ids(ops, "edge-pipeline", "torn")
    sends = [json.loads(s.upstream.body) for s in proxy.requests("/edge/logs") if s.upstream is not None
             and s.upstream.status == 200]
    covering = [a for a in sends if a["seq_start"] <= page[0] <= a["seq_end"]]
    assert len(covering) == 2, "the page must be sent exactly once more (with what was appended since)"
    resent = covering[1]
    assert resent["seq_start"] == page[0] and resent["duplicates"] == page[1] - page[0] + 1
    assert resent["stored"] == resent["seq_end"] - page[1]
    assert final["logs"]["cursor"] == produced and final["logs"]["records_acked"] == produced
    assert len(in_ops) == len(set(in_ops)) == produced
