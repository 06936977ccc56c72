"""The engine's HTTP/1.1 connections: uvicorn's httptools protocol (llhttp, in C) with deadlines and a bound on
the request head, so that a slow or oversized client costs a socket, never the event loop.

uvicorn bounds idle kept-alive connections (timeout_keep_alive) and the connections served at once
(limit_concurrency: past it, requests are answered 503), but its httptools protocol has no deadline for a
request that arrives slowly and no bound on its head. This protocol adds, as nginx has them
(client_header_timeout, client_body_timeout, large_client_header_buffers):

- the header deadline: a request line and headers must be complete within `header_timeout` seconds of the
  connection opening (or of the previous answer, on a kept-alive connection), however they trickle in;
- the body deadline: while a body is read, at most `body_timeout` seconds may pass between two reads;
- the head bound: a request line plus headers longer than `max_head_bytes` is answered 400 and closed.

A deadline closes the connection: a request that never fully arrived has no one waiting for an answer. A
handler that was reading the body then sees the client gone; `quiet_disconnects` keeps that out of the error log.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("engine")

# What the client is sending now, which decides the deadline armed.
_HEAD, _BODY, _DONE = "headers", "body", None


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and the head bound of the module docstring."""

    header_timeout = 10.0
    body_timeout = 30.0
    max_head_bytes = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None   # what the armed timer is a deadline for
        self._receiving: str | None = _HEAD    # what the parser is in the middle of
        self._head_size = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._receiving is _HEAD and self._head_size > self.max_head_bytes:
            self._refuse_head()
        self._watch()

    def on_message_begin(self) -> None:
        self._receiving, self._head_size = _HEAD, 0
        super().on_message_begin()

    # llhttp hands over the URL and headers piece by piece as they arrive, so a head that never ends is seen.
    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_size > self.max_head_bytes:
            self._refuse_head()
            return
        self._receiving = _BODY
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._receiving is _BODY:   # not after a refused head: no request cycle was started for it
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._receiving is _BODY:
            self._receiving = _DONE
            super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._receiving is _DONE and not self.pipeline:   # kept alive: now waiting for the next request
            self._receiving = _HEAD
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _refuse_head(self) -> None:
        self._receiving = _DONE
        if not self.transport.is_closing():
            self.send_400_response("Request head too large.")

    def _watch(self) -> None:
        """Arm the deadline for what the connection now waits for from the client, if anything."""
        if self.transport.is_closing():
            self._disarm()
        elif self._receiving is _HEAD:
            if self._waiting_for != _HEAD:   # set once per request: trickled bytes do not extend it
                self._arm(_HEAD, self.header_timeout)
        elif self._receiving is _BODY:
            self._arm(_BODY, self.body_timeout)   # restarted by every read
        else:   # the request is in; the handler may take as long as it takes
            self._disarm()

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._waiting_for = what
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._waiting_for = None, None

    def _expired(self) -> None:
        what, self._timer = self._waiting_for, None
        if what == _BODY and self.flow.read_paused:   # we stopped reading (the handler is behind), not the client
            self._arm(_BODY, self.body_timeout)
            return
        self._waiting_for = None
        if not self.transport.is_closing():
            log.debug("Closing a connection from %s: its request %s did not arrive in time", self.client, what)
            self.transport.close()


def with_deadlines(header_timeout: float, body_timeout: float, max_head_bytes: int) -> type[DeadlineProtocol]:
    """The protocol class for uvicorn.Config(http=...), with these deadlines in seconds and this head bound."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"header_timeout": header_timeout,
                                                          "body_timeout": body_timeout,
                                                          "max_head_bytes": max_head_bytes})


def quiet_disconnects(app: ASGIApp) -> ASGIApp:
    """`app`, with a client that went away mid-request (a body deadline, or just gone) logged at debug level
    instead of as an application error with a traceback: nobody is left to answer."""
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except ClientDisconnect:
            log.debug("%s %s: the client went away before its request was read", scope.get("method"),
                      scope.get("path"))
    return wrapped
