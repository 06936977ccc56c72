"""The end-of-session thread check, a pytest plugin (tests/conftest.py imports its hook): a non-daemon thread
left running would hang the interpreter's exit, and CI until its time-out, so the run fails at once instead,
naming each such thread with its stack.

An idle concurrent.futures worker is no such thread (the executor's exit handler ends it), and is not waited
for: joining one only sits out the join's time-out, ten seconds per idle worker at the end of every run.
"""
from __future__ import annotations

import linecache
import os
import sys
import threading
import time
import traceback

# How long stragglers (a server thread still shutting down) get to end, all of them together.
GRACE_S = 10.0


def _idle_pool_worker(frame) -> bool:
    """An idle concurrent.futures worker (waiting for work) ends by itself at exit; a busy one would not."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_worker" and code.co_filename.endswith(os.path.join("concurrent", "futures", "thread.py")):
            return "work_queue.get" in linecache.getline(code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return False


def _busy(threads: list[threading.Thread]) -> list[threading.Thread]:
    frames = sys._current_frames()
    return [t for t in threads if t.is_alive() and not _idle_pool_worker(frames.get(t.ident))]


def pytest_unconfigure(config):
    """Wait a little for stragglers, then name what is still running, with its stack, and exit non-zero."""
    deadline = time.monotonic() + GRACE_S
    alive = _busy([t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon])
    # Polled rather than joined one by one: a pool worker that finishes its task goes idle, it does not end.
    while alive and time.monotonic() < deadline:
        alive[0].join(0.05)
        alive = _busy(alive)
    if alive:
        frames = sys._current_frames()
        print(f"\nTHREAD LEAK: {len(alive)} non-daemon thread(s) still running after the tests:", file=sys.stderr)
        for t in alive:
            print(f"--- {t.name}", file=sys.stderr)
            traceback.print_stack(frames.get(t.ident), file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(3)
