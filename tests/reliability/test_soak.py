"""Scenario 14 — a bounded soak: a staged ramp of closed-loop clients (1, 2, 4, 8 keep-alive connections) finds
the engine's saturation throughput on this box, then a plateau paced at 80% of it. Pass: 0 5xx and 0 broken
connections over the whole run; RSS and open file descriptors flat over the plateau (generous bounds: RSS
grows by less than RSS_GROWTH between the plateau's first and last quarter, fds by at most FD_GROWTH).

CI runs about a minute. The long run (docs/reliability.md):
    JOEY_SOAK_SECONDS=600 .venv/bin/pytest tests/reliability/test_soak.py -s
"""
from __future__ import annotations

import http.client
import os
import statistics
import threading
import time
from urllib.parse import urlsplit

from support.engine import ARROW_FILE, start_engine
from support.reliability import numbered_body, open_fds, rss_bytes

STAGES = (1, 2, 4, 8)
STAGE_S = 4.0
PLATEAU_S = float(os.environ.get("JOEY_SOAK_SECONDS", "30"))
PLATEAU_CLIENTS = 8
ROWS = 10
RSS_GROWTH = 64 * 2**20
FD_GROWTH = 16


class Client:
    """One keep-alive connection; counts answers by status and broken connections."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.statuses: dict[int, int] = {}
        self.broken = 0

    def infer(self, body: bytes) -> None:
        try:
            self.conn.request("POST", "/infer", body=body, headers={"Content-Type": ARROW_FILE})
            r = self.conn.getresponse()
            r.read()
            self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
        except (OSError, http.client.HTTPException):
            self.broken += 1
            self.conn.close()


def run_clients(url: str, n: int, seconds: float, bodies: list[bytes], interval: float | None = None) -> list[Client]:
    """`n` clients for `seconds`: back to back (closed loop), or one request per `interval` each (paced)."""
    clients = [Client(url) for _ in range(n)]
    deadline = time.monotonic() + seconds

    def loop(c: Client, k: int) -> None:
        i, start = 0, time.monotonic()
        while time.monotonic() < deadline:
            if interval is not None:
                wait = start + i * interval - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            c.infer(bodies[(k + i) % len(bodies)])
            i += 1
        c.conn.close()

    threads = [threading.Thread(target=loop, args=(c, k)) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    return clients


def answered(clients: list[Client]) -> int:
    return sum(sum(c.statuses.values()) for c in clients)


def test_soak(published, tmp_path):
    engine = start_engine(published["pipeline_url"], tmp_path / "persist")
    pid = engine.proc.pid
    bodies = [numbered_body(i * ROWS, ROWS) for i in range(64)]
    everyone: list[Client] = []
    try:
        ramp = {}
        for n in STAGES:
            clients = run_clients(engine.url, n, STAGE_S, bodies)
            everyone += clients
            ramp[n] = answered(clients) / STAGE_S
        saturation = max(ramp.values())
        target = 0.8 * saturation
        samples: list[tuple[float, int, int]] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(1.0):
                samples.append((time.monotonic(), rss_bytes(pid), open_fds(pid)))

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.monotonic()
        plateau = run_clients(engine.url, PLATEAU_CLIENTS, PLATEAU_S, bodies, interval=PLATEAU_CLIENTS / target)
        elapsed = time.monotonic() - t0
        sampling.set()
        sampler.join()
        everyone += plateau
    finally:
        assert engine.stop() == 0

    statuses: dict[int, int] = {}
    for c in everyone:
        for s, k in c.statuses.items():
            statuses[s] = statuses.get(s, 0) + k
    assert set(statuses) == {200}, statuses
    assert sum(c.broken for c in everyone) == 0
    achieved = answered(plateau) / elapsed
    assert achieved > 0.3 * target, (achieved, target)   # real load; the rate itself is bench/'s business

    quarter = max(1, len(samples) // 4)
    first, last = samples[:quarter], samples[-quarter:]
    rss_first, rss_last = statistics.median(s[1] for s in first), statistics.median(s[1] for s in last)
    fds = [s[2] for s in samples]
    assert rss_last - rss_first < RSS_GROWTH, (rss_first, rss_last)
    assert max(fds) - min(fds) <= FD_GROWTH, fds
    print(f"\nsoak: ramp {', '.join(f'{n} clients {r:.0f} req/s' for n, r in ramp.items())}; plateau "
          f"{elapsed:.0f}s at {achieved:.0f} req/s (target {target:.0f}, {ROWS} rows each), "
          f"{sum(statuses.values())} requests all 200; RSS {rss_first / 2**20:.0f} -> {rss_last / 2**20:.0f} MiB; "
          f"fds {min(fds)}..{max(fds)}")
