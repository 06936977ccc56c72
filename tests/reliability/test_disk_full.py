"""Scenario 5 — ENOSPC on /persist while the engine serves: a real tmpfs mounted as the engine's persistent
directory, filled to the last block. Pass: /health and /ready stay 200; /infer answers 200 or the documented
507 (JSON error naming LOCAL_INFERENCE_STORAGE), never anything else, and a 507's records are not kept; once
space is freed inference succeeds again; after a restart the store holds every record that got a 200, once,
and counts nothing lost. The store-level ENOSPC cases are in tests/engine/test_logstore_recovery.py."""
from __future__ import annotations

import subprocess

import pytest
import requests
from support.engine import ARROW_FILE, start_engine
from support.reliability import ids_of_table, numbered_body

from engine.logstore import LogStore

VOLUME = "8m"


@pytest.fixture()
def persist(tmp_path):
    """A real tmpfs (root needed, as on the project's machines), the engine's JOEY_PERSIST_DIR."""
    mnt = tmp_path / "persist"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs for the ENOSPC test (root needed): {done.stderr}"
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(path) -> None:
    """Write zeros until the volume refuses, leaving not one free block."""
    with open(path, "wb", buffering=0) as f:
        with pytest.raises(OSError):
            while True:
                f.write(bytes(4096))


def infer(engine, first_id: int, rows: int = 20) -> int:
    r = requests.post(engine.url + "/infer", data=numbered_body(first_id, rows),
                      headers={"Content-Type": ARROW_FILE}, timeout=60)
    assert r.status_code in (200, 507), (r.status_code, r.text)
    if r.status_code == 507:
        assert "LOCAL_INFERENCE_STORAGE" in r.json()["error"] or "full" in r.json()["error"]
    assert engine.get("/health").status_code == 200
    assert engine.get("/ready").status_code == 200
    return r.status_code


def test_a_full_persist_volume_while_serving(published, persist):
    engine = start_engine(published["pipeline_url"], persist)
    ok: list[int] = []
    refused: list[int] = []
    try:
        for i in range(5):                                    # normal service
            assert infer(engine, 1000 * i) == 200
            ok.extend(range(1000 * i, 1000 * i + 20))
        fill(persist / "filler")
        for i in range(5, 25):                                # the volume is full
            (ok if infer(engine, 1000 * i) == 200 else refused).extend(range(1000 * i, 1000 * i + 20))
        assert refused, "a full volume must refuse some appends"
        (persist / "filler").unlink()                         # space comes back
        for i in range(25, 30):
            assert infer(engine, 1000 * i) == 200
            ok.extend(range(1000 * i, 1000 * i + 20))
    finally:
        assert engine.stop() == 0
    with LogStore(persist / "logs") as store:
        ids = ids_of_table(store.read())
        stats = store.stats()
    assert sorted(ids) == sorted(ok) and len(ids) == len(set(ids))
    assert not set(ids) & set(refused)
    assert stats.records_lost == 0 and stats.records_stored == len(ok)


def test_a_restart_on_a_full_volume_serves_the_cached_pipeline(published, persist):
    engine = start_engine(published["pipeline_url"], persist)
    assert infer(engine, 0) == 200
    engine.stop()
    fill(persist / "filler")
    engine = start_engine(published["pipeline_url"], persist)
    try:
        assert infer(engine, 100) in (200, 507)
    finally:
        engine.stop()
