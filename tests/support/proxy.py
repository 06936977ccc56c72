"""A real HTTP proxy on loopback that forwards to one upstream and lets a test decide, request by request,
what the client gets: the upstream's answer (optionally altered), a made-up status, silence, or a connection
cut after the upstream has already acted. Used in front of the registry (tampering) and of joey-ops (faults).
"""
from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support.procs import free_port

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te",
               "trailer", "upgrade"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]   # lower-case names
    body: bytes


@dataclass
class Response:
    status: int
    headers: dict[str, str]   # lower-case names, hop-by-hop ones removed
    body: bytes


@dataclass(frozen=True)
class Forward:
    """Relay the upstream's answer, after `alter` (if any) rewrote it; `after` runs once the upstream has
    answered and before the client hears anything (e.g. to kill the client right there)."""

    alter: Callable[[Request, Response], Response] | None = None
    after: Callable[[Request, Response], None] | None = None


@dataclass(frozen=True)
class Answer:
    """Answer without asking the upstream."""

    status: int
    body: bytes = b'{"status": 0, "error": "InjectedFault", "message": "injected by the test proxy"}'
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


@dataclass(frozen=True)
class Hang:
    """Say nothing for `seconds`, then cut the connection (a client timeout, if its timeout is shorter)."""

    seconds: float


@dataclass(frozen=True)
class ForwardThenCut:
    """Let the upstream act on the request, then cut the connection before the client hears the answer."""


Decision = Forward | Answer | Hang | ForwardThenCut


@dataclass(frozen=True)
class Seen:
    at: float                    # time.monotonic() when the request arrived
    request: Request
    decision: Decision
    upstream: Response | None    # what the upstream answered, when it was asked


class Proxy:
    def __init__(self, upstream: str, decide: Callable[[Request], Decision] | None = None):
        self.upstream = upstream                      # HOST:PORT
        self.decide = decide or (lambda _: Forward())
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="test-proxy", daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self, path_part: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path_part in s.request.path]

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _upstream(self, req: Request) -> Response:
        host, _, port = self.upstream.partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            headers = {k: v for k, v in req.headers.items() if k not in _HOP_BY_HOP}
            headers["host"] = self.upstream
            conn.request(req.method, req.path, body=req.body if req.body or req.method != "GET" else None,
                         headers=headers)
            r = conn.getresponse()
            body = r.read()
            kept = {k.lower(): v for k, v in r.getheaders() if k.lower() not in _HOP_BY_HOP}
            return Response(r.status, kept, body)
        finally:
            conn.close()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:   # quiet: the test asserts on `seen` instead
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self.close_connection = True

            def _handle(self) -> None:
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                              self._body())
                arrived = time.monotonic()
                decision = proxy.decide(req)
                upstream = None
                try:
                    if isinstance(decision, Answer):
                        self._send(decision.status, decision.headers, decision.body)
                    elif isinstance(decision, Hang):
                        time.sleep(decision.seconds)
                        self.close_connection = True
                    elif isinstance(decision, ForwardThenCut):
                        upstream = proxy._upstream(req)
                        self.close_connection = True
                    else:
                        resp = upstream = proxy._upstream(req)
                        if decision.after is not None:
                            decision.after(req, resp)
                        if decision.alter is not None:
                            resp = decision.alter(req, resp)
                        self._send(resp.status, resp.headers, resp.body)
                except (BrokenPipeError, ConnectionResetError):   # the client is gone (killed, timed out)
                    self.close_connection = True
                finally:
                    proxy._record(Seen(arrived, req, decision, upstream))

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return Handler
