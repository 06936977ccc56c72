"""The engine's background loops: a thread that runs a step, pauses, runs it again, and stops cleanly.

The log uploader and the in-line updater are each one Worker. A step answers how long to pause before the next
one (a pause only stop() cuts short) or IDLE (sleep until wake()); `Backoff` gives the capped, jittered pauses
after failures in a row. stop() lets the step in flight finish, within the time the caller allows.
"""
from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

log = logging.getLogger("engine")

IDLE = None   # a step's answer: nothing to do until wake()


class Backoff:
    """Capped exponential backoff: after `failures` failures in a row, between half and all of
    min(maximum, first * 2**failures) (the jitter spreads edges that lost Ops together), and never below a
    server's Retry-After."""

    def __init__(self, first: float, maximum: float):
        self.first, self.maximum = first, maximum

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        ceiling = min(self.maximum, self.first * 2 ** min(failures, 32))
        return max(random.uniform(ceiling / 2, ceiling), retry_after or 0.0)


class Worker:
    """A daemon thread calling `step` until stop(). `first_pause`: seconds before the first step.
    `on_exit(error)` runs last on the thread: error is what ended it (a step raised), or None after stop()."""

    def __init__(self, name: str, step: Callable[[], float | None], *,
                 on_exit: Callable[[BaseException | None], None], first_pause: float = 0.0):
        self.name = name
        self._step, self._on_exit, self._first_pause = step, on_exit, first_pause
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """End an IDLE wait now (new work has arrived); a pause after a failure is not cut short."""
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end and wait up to `timeout` seconds for the step in flight; whether it ended."""
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            pause: float | None = self._first_pause
            while not self._stop.wait(pause or 0):
                self._wake.clear()   # before the step reads its work: anything added after it wakes us again
                pause = self._step()
                if pause is IDLE:
                    self._wake.wait()
        except Exception as e:  # noqa: BLE001 - a dead worker must say so; inference goes on regardless
            error = e
        self._on_exit(error)
