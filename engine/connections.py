"""Deadlines for the engine's HTTP connections, so that a slow client costs a socket, never the event loop.

uvicorn bounds idle kept-alive connections (timeout_keep_alive), the size of a request head
(h11_max_incomplete_event_size) and the connections served at once (limit_concurrency: past it, requests are
answered 503), but it has no deadline for a request that arrives slowly. This h11 protocol adds two, as nginx
has them (client_header_timeout, client_body_timeout):

- the header deadline: a request line and headers must be complete within `header_timeout` seconds of the
  connection opening (or of the previous answer, on a kept-alive connection), however they trickle in;
- the body deadline: while a body is read, at most `body_timeout` seconds may pass between two reads.

Either closes the connection: a request that never fully arrived has no one waiting for an answer. A handler
that was reading the body then sees the client gone; `quiet_disconnects` keeps that out of the error log.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("engine")


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with the header and body deadlines of the module docstring (see `with_deadlines`)."""

    header_timeout = 10.0
    body_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None   # "headers" or "body": what the armed timer is a deadline for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()   # a kept-alive connection now waits for the next request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm the deadline for what the connection now waits for from the client, if anything."""
        if self.transport.is_closing():
            self._disarm()
        elif self.conn.their_state is h11.IDLE:
            if self._waiting_for != "headers":   # set once per request: trickled bytes do not extend it
                self._arm("headers", self.header_timeout)
        elif self.conn.their_state is h11.SEND_BODY:
            self._arm("body", self.body_timeout)   # restarted by every read
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
        if what == "body" and self.flow.read_paused:   # we stopped reading (the handler is behind), not the client
            self._arm("body", self.body_timeout)
            return
        self._waiting_for = None
        if not self.transport.is_closing():
            log.debug("Closing a connection from %s: its request %s did not arrive in time", self.client, what)
            self.transport.close()


def with_deadlines(header_timeout: float, body_timeout: float) -> type[DeadlineProtocol]:
    """The protocol class for uvicorn.Config(http=...), with these deadlines in seconds."""
    return type("DeadlineProtocol", (DeadlineProtocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})


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
