"""Slow clients cost a socket, not the loop (issue 14, item 5): 300 connections that trickle a request header
byte by byte neither starve GET /health nor make the engine spin, and each is closed once its header deadline
(JOEY_HEADER_TIMEOUT) has passed; a body that stops arriving is dropped after JOEY_BODY_TIMEOUT."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import requests
from support.engine import start_engine

from engine.settings import from_env
from joey.errors import ConfigError

SLOW_CLIENTS = 300
# Header deadline for the engine under test: short, so the test sees the slow sockets closed.
HEADER_TIMEOUT_S = "3"
BODY_TIMEOUT_S = "2"
# The engine may spend at most this share of one CPU on the 300 trickling sockets (uvicorn's h11 parses each
# byte; unbounded, the loop spun at 97 %).
MAX_CPU_SHARE = 0.25


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def is_closed(sock: socket.socket) -> bool:
    """Whether the engine has closed this connection (EOF or reset), without waiting for it."""
    sock.setblocking(False)
    try:
        return sock.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:   # reset by the peer
        return True


def trickle(socks: list[socket.socket], rounds: int, pause: float) -> None:
    """One more header byte on every open socket, `rounds` times, `pause` seconds apart."""
    for _ in range(rounds):
        for s in socks:
            try:
                s.send(b"x")
            except OSError:
                pass   # closed by the engine: what the deadline is for
        time.sleep(pause)


def test_slow_headers_neither_starve_health_nor_spin_the_engine(published, tmp_path):
    eng = start_engine(published["pipeline_url"], tmp_path / "persist", JOEY_HEADER_TIMEOUT=HEADER_TIMEOUT_S,
                       JOEY_BODY_TIMEOUT=BODY_TIMEOUT_S)
    host, port = eng.url.removeprefix("http://").split(":")
    socks = []
    try:
        for _ in range(SLOW_CLIENTS):
            s = socket.create_connection((host, int(port)))
            s.send(b"GET /health HTTP/1.1\r\nHost: engine\r\nX-Slow: ")
            socks.append(s)
        before, started = cpu_seconds(eng.proc.pid), time.monotonic()
        trickle(socks, rounds=10, pause=0.1)
        # Every slow client is still within its deadline here, and yet the engine answers.
        assert eng.get("/health").json() == {"status": "ok"}
        cpu = cpu_seconds(eng.proc.pid) - before
        share = cpu / (time.monotonic() - started)
        assert share < MAX_CPU_SHARE, f"the engine used {cpu:.2f}s of CPU on {SLOW_CLIENTS} slow sockets"
        trickle(socks, rounds=30, pause=0.1)   # past the header deadline
        open_ones = [s for s in socks if not is_closed(s)]
        assert not open_ones, f"{len(open_ones)} of {SLOW_CLIENTS} slow connections outlived the header deadline"
        assert eng.get("/health").status_code == 200
    finally:
        for s in socks:
            s.close()
        eng.stop()


def test_a_stalled_body_is_dropped_and_the_engine_serves_on(published, tmp_path):
    eng = start_engine(published["pipeline_url"], tmp_path / "persist", JOEY_HEADER_TIMEOUT=HEADER_TIMEOUT_S,
                       JOEY_BODY_TIMEOUT=BODY_TIMEOUT_S)
    host, port = eng.url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port))) as s:
            s.send(b"POST /infer HTTP/1.1\r\nHost: engine\r\nContent-Type: application/vnd.apache.arrow.file\r\n"
                   b"Content-Length: 1000\r\n\r\n" + b"A" * 10)
            s.settimeout(30)
            answer = s.recv(4096)
            while chunk := s.recv(4096):   # the engine ends the connection: it does not wait for the body forever
                answer += chunk
        assert b" 500 " not in answer.split(b"\r\n", 1)[0], answer[:200]
        assert "Traceback" not in eng.log_text()
        assert requests.get(eng.url + "/health", timeout=30).status_code == 200
    finally:
        eng.stop()


def test_connection_settings_are_read_and_checked():
    env = {"PIPELINE_URL": "r.example.com/joey/pipelines/p:1"}
    defaults = from_env(env)
    assert (defaults.header_timeout, defaults.body_timeout, defaults.keep_alive_timeout,
            defaults.max_connections) == (10.0, 30.0, 5, 1000)
    tuned = from_env({**env, "JOEY_HEADER_TIMEOUT": "2.5", "JOEY_BODY_TIMEOUT": "7", "JOEY_KEEP_ALIVE_TIMEOUT": "1",
                      "JOEY_MAX_CONNECTIONS": "64"})
    assert (tuned.header_timeout, tuned.body_timeout, tuned.keep_alive_timeout, tuned.max_connections) == (
        2.5, 7.0, 1, 64)
    for name, bad in [("JOEY_HEADER_TIMEOUT", "0"), ("JOEY_BODY_TIMEOUT", "soon"), ("JOEY_KEEP_ALIVE_TIMEOUT", "1.5"),
                      ("JOEY_MAX_CONNECTIONS", "-3")]:
        with pytest.raises(ConfigError, match=name):
            from_env({**env, name: bad})
