"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending the same request again
as soon as its previous answer has arrived.

Written on asyncio streams rather than `requests` so that the client, pinned to the other core, costs a few
tens of microseconds a request and the server stays the bottleneck even at 64 connections.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

_TIMING = re.compile(rb"dur=([0-9.]+)")


@dataclass
class Load:
    """What one run measured: per-request client latencies (s), the engine's own Server-Timing (s) where the
    server sends one, the wall time of the run and the size of the last answer."""

    latencies: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    answer_bytes: int = 0

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else 0.0


def request_bytes(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(head).encode() + body


async def _connection(host: str, port: int, request: bytes, count: int, load: Load) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=2**24)
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            length, timing = 0, None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"server-timing":
                    timing = _TIMING.search(value)
            body = await reader.readexactly(length)
            load.latencies.append(time.perf_counter() - started)
            if status != b"200":
                raise RuntimeError(f"HTTP {status.decode()}: {body[:300]!r}")
            if timing:
                load.server.append(float(timing.group(1)) / 1e3)
            load.answer_bytes = length
    finally:
        writer.close()


async def _run(host: str, port: int, request: bytes, connections: int, total: int) -> Load:
    load = Load()
    per = [total // connections + (1 if i < total % connections else 0) for i in range(connections)]
    started = time.perf_counter()
    await asyncio.gather(*(_connection(host, port, request, n, load) for n in per if n))
    load.wall_s = time.perf_counter() - started
    return load


def run(host: str, port: int, path: str, body: bytes, headers: dict[str, str], *, connections: int,
        total: int) -> Load:
    """Send `total` requests over `connections` connections; the Load."""
    return asyncio.run(_run(host, port, request_bytes(host, port, path, body, headers), connections, total))
