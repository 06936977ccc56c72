"""Edge observability end to end: `packager edge add` -> an engine started with that EDGE_BUNDLE -> inferences
-> the engine's uploader -> `joey-ops` -> `packager logs export`. Real processes on loopback throughout."""
from __future__ import annotations

import json
import time

import pyarrow.ipc as ipc
import pytest
from support.e2e import (
    PIPELINE,
    dataset,
    infer_all,
    ops_records,
    packager,
    rows_of,
    start_edge,
    upload_status,
    wait_records,
)
from support.procs import wait_for

from engine.edge_client import EdgeClient, OpsRejected
from joey.bundle import EdgeBundle


def test_a_thousand_inferences_reach_ops_once_and_export(ops, add_edge, tmp_path):
    bundle = add_edge("edge-e2e-01")
    x = dataset(1000, seed=1)
    eng = start_edge(bundle, tmp_path / "persist")
    try:
        started = time.monotonic()
        infer_all(eng, x)
        records = wait_records(ops, 1000)
        seconds = time.monotonic() - started
        status = wait_for("the engine counting 1000 uploaded", lambda: (s := eng.get("/status").json())
                          ["upload"]["records_uploaded"] == 1000 and s)
    finally:
        assert eng.stop() == 0
    print(f"\n1000 records inferred and uploaded in {seconds:.2f}s ({1000 / seconds:.0f} records/s, "
          f"{status['upload']['pages_uploaded']} pages)")

    assert len(records) == 1000
    assert {r["metadata.partition"] for r in records} == {"edge-e2e-01"}
    assert rows_of(r["in.tensor"] for r in records) == rows_of(x)
    assert "Node attestation was successful" in eng.log_text()
    upload = status["upload"]
    assert (upload["edge"], upload["enrolled"], upload["records_rejected"]) == ("edge-e2e-01", True, 0)
    assert upload["page_size"] == 100 and upload["pages_uploaded"] >= 10
    assert status["logs"]["records_acked"] == 1000 and status["logs"]["records_stored"] == 0

    out = json.loads(packager(["logs", "export", "--pipeline", PIPELINE, "--dir", str(tmp_path / "export"),
                               "--prefix", "edge-logs", "--json"], ops))
    assert [f.rsplit("/", 1)[-1] for f in out["files"]] == ["edge-logs-1.json"]
    lines = [json.loads(line) for line in (tmp_path / "export" / "edge-logs-1.json").read_text().splitlines()]
    assert len(lines) == 1000
    for line in lines:
        assert {"time", "in.tensor", "out.variable", "anomaly.count", "anomaly.likely_fraud",
                "metadata.partition", "metadata.pipeline_version", "metadata.last_model"} <= set(line)
        assert line["metadata.partition"] == "edge-e2e-01" and isinstance(line["time"], int)
    assert rows_of(line["in.tensor"] for line in lines) == rows_of(x)


def test_ops_outages_lose_and_duplicate_nothing(ops, add_edge, tmp_path):
    bundle = add_edge("edge-e2e-02")
    x = dataset(1000, seed=2)
    ops.stop()   # before the engine starts: enrollment has to wait, inference must not
    eng = start_edge(bundle, tmp_path / "persist")
    try:
        infer_all(eng, x[:300])
        assert upload_status(eng)["enrolled"] is False
        ops.start()   # same port, same database file
        infer_all(eng, x[300:700])
        wait_for("uploads flowing", lambda: upload_status(eng)["records_uploaded"] >= 300)
        ops.stop()
        infer_all(eng, x[700:])
        wait_for("the uploader retrying", lambda: upload_status(eng)["state"] == "retrying")
        ops.start()
        records = wait_records(ops, 1000)
        wait_for("the engine counting 1000 uploaded", lambda: upload_status(eng)["records_uploaded"] == 1000)
    finally:
        assert eng.stop() == 0
    assert len(ops_records(ops)) == 1000
    assert rows_of(r["in.tensor"] for r in records) == rows_of(x)
    log = eng.log_text()
    assert "cannot enroll now" in log and "Node attestation was successful" in log
    assert "cannot upload logs now" in log


def test_restart_reuses_the_credential_and_a_removed_edge_is_refused(ops, add_edge, tmp_path):
    name = "edge-e2e-03"
    bundle = add_edge(name)
    persist = tmp_path / "persist"
    x = dataset(130, seed=3)

    eng = start_edge(bundle, persist)
    try:
        infer_all(eng, x[:50])
        wait_records(ops, 50)
    finally:
        assert eng.stop() == 0
    assert "Node attestation was successful" in eng.log_text()

    # The token is spent: Ops refuses it now, so only an engine that does not present it again can upload.
    with EdgeClient(EdgeBundle.decode(bundle), tmp_path / "elsewhere") as other:
        with pytest.raises(OpsRejected, match="already used"):
            other.ensure_enrolled()

    eng = start_edge(bundle, persist)
    # The same bundle without the credential: refused once, logged once, and the engine serves regardless.
    stranger = start_edge(bundle, tmp_path / "no-credential")
    try:
        infer_all(eng, x[50:100])
        records = wait_records(ops, 100)
        log = eng.log_text()
        assert "reusing the credential" in log and "Node attestation was successful" not in log

        infer_all(stranger, x[:3])
        wait_for("the enrollment refused", lambda: upload_status(stranger)["state"] == "refused")
        assert "already used" in upload_status(stranger)["last_error"]

        packager(["edge", "remove", name], ops)
        infer_all(eng, x[100:130])   # still served
        status = wait_for("30 refused records set aside",
                          lambda: (s := upload_status(eng))["records_rejected"] == 30 and s)
        assert eng.get("/ready").status_code == 200
    finally:
        assert eng.stop() == 0
        assert stranger.stop() == 0

    assert rows_of(r["in.tensor"] for r in records) == rows_of(x[:100])
    assert status["set_aside"]["records"] == 30 and status["records_uploaded"] == 50
    refusals = [ln for ln in stranger.log_text().splitlines() if "Ops refused to enroll" in ln]
    assert len(refusals) == 1 and refusals[0].startswith("ERROR:") and "persistent volume" in refusals[0]

    files = sorted((persist / "rejected").glob("*.arrow"))
    assert len(files) == status["pages_rejected"] == status["set_aside"]["files"]
    tables = [ipc.open_file(f).read_all() for f in files]
    assert sum(t.num_rows for t in tables) == 30
    assert rows_of(v for t in tables for v in t.column("in.tensor").to_pylist()) == rows_of(x[100:130])
    why = json.loads(tables[0].schema.metadata[b"joey.rejected"])
    assert why["edge"] == name and "revoked" in why["reason"]
