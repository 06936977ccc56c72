"""Scenario 9 — kill -9 of the engine while it writes the edge credential (engine/edge_client.py), at each step:
after Ops answered /edge/join and before anything is written, at the temp file's creation, just before the
rename, and after the attestation line. Pass: PERSIST/edge/credential.json is either absent or a whole
credential Ops accepts; a restart with a stored credential never presents the join token again; a restart
without one presents the spent token once, is refused ("already used", as docs/ops.md documents), keeps
serving and does not retry it."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from support.engine import ARROW_FILE, start_engine
from support.procs import free_port, start, wait_for
from support.reliability import add_edge, numbered_body, ops_behind_proxy, ops_ids, upload_status

from engine.edge_client import CREDENTIAL_FILE, Credential

KILLPOINT = Path(__file__).parent / "killpoint"
STEPS = ["mkdir", "open-tmp", "replace", "after"]


@pytest.fixture(scope="module")
def counted_ops(tmp_path_factory):
    """joey-ops whose bundles name a counting proxy in front of it."""
    with ops_behind_proxy(tmp_path_factory.mktemp("ops")) as pair:
        yield pair


def engine_env(bundle: str, persist: Path) -> dict:
    return {"EDGE_BUNDLE": bundle, "JOEY_PERSIST_DIR": str(persist), "JOEY_PLAIN_HTTP": "true",
            "PYTHONUNBUFFERED": "1"}


def crash_at(step: str, bundle: str, persist: Path, tmp_path: Path) -> None:
    """Start an engine that SIGKILLs itself at `step` of the credential write (or is killed after it)."""
    log = tmp_path / f"crash-{step}.log"
    env = engine_env(bundle, persist)
    if step != "after":
        env |= {"JOEY_TEST_KILL_AT": step, "PYTHONPATH": str(KILLPOINT)}
    proc = start([sys.executable, "-m", "engine", "--host", "127.0.0.1", "--port", str(free_port())], log, env=env)
    if step == "after":
        wait_for("attestation", lambda: "Node attestation was successful" in log.read_text(), timeout=60)
        proc.kill()
    assert proc.wait(60) == -9, log.read_text()


@pytest.mark.parametrize("step", STEPS)
def test_kill_during_the_credential_write(counted_ops, published, tmp_path, step):
    ops, proxy = counted_ops
    edge = f"crash-{step}"
    bundle = add_edge(ops, published, edge)
    persist = tmp_path / "persist"
    crash_at(step, bundle, persist, tmp_path)
    joins_before = len(proxy.requests("/edge/join"))
    assert joins_before >= 1

    path = persist / CREDENTIAL_FILE
    stored = Credential.load(path)   # raises if the file is there but not whole
    if path.exists():
        assert stored is not None and stored.edge == edge and len(stored.credential) >= 43
        assert set(json.loads(path.read_text())) == {"edge", "credential", "spiffe_id", "join_token_sha256",
                                                     "enrolled_at"}
    # Only a kill after the rename finds the file; a kill at any earlier step leaves none (never a torn one).
    assert path.exists() == (step == "after"), step

    engine = start_engine(published["pipeline_url"], persist, **engine_env(bundle, persist))
    try:
        state = wait_for("the uploader to settle",
                         lambda: upload_status(engine)["state"] in ("idle", "refused") and upload_status(engine))
        assert engine.post("/infer", numbered_body(9000 + STEPS.index(step)), ARROW_FILE).status_code == 200
        time.sleep(1.0)   # long enough for a retry, were there one
        joins_after = len(proxy.requests("/edge/join")) - joins_before
        if stored is not None:
            assert joins_after == 0, "a stored credential must be used, never the join token again"
            assert state["state"] == "idle" and state["enrolled"]
            wait_for("the record in Ops", lambda: 9000 + STEPS.index(step) in ops_ids(ops, "edge-pipeline", edge))
        else:
            # The trade went through before the kill: the token is spent and nothing holds the credential.
            assert joins_after == 1, "the spent token is presented once, and not retried"
            assert state["state"] == "refused" and "already used" in state["last_error"]
            assert engine.get("/health").status_code == 200
    finally:
        engine.stop()
    leftovers = [p.name for p in (persist / "edge").iterdir() if p.name != "credential.json"] \
        if (persist / "edge").exists() else []
    assert all(name.startswith(".credential.json.") and name.endswith(".tmp") for name in leftovers)
