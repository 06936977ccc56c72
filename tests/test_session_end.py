"""The end of a test run (tests/support/threads.py): prompt after idle pool workers, failing on a running
non-daemon thread. Each case is a real pytest run in a subprocess with only that plugin loaded."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SUPPORT_PARENT = Path(__file__).resolve().parent
# Six idle workers cost a minute before the fix (ten seconds of join each); the run itself takes a second or two.
IDLE_WORKERS = """
from concurrent.futures import ThreadPoolExecutor
POOL = ThreadPoolExecutor(max_workers=6)

def test_uses_a_pool_it_never_shuts_down():
    # each task waits for all six: six workers, idle once the map is done
    barrier = __import__("threading").Barrier(6)
    assert list(POOL.map(lambda _: barrier.wait() >= 0, range(6))) == [True] * 6
"""
BUSY_THREAD = """
import threading
STOP = threading.Event()

def hold():
    STOP.wait()

def test_leaves_a_thread_running():
    threading.Thread(target=hold, name="left-running").start()
"""


def _pytest(tmp_path: Path, source: str, timeout: float) -> subprocess.CompletedProcess:
    (tmp_path / "test_case.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(SUPPORT_PARENT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "support.threads",
                           "--rootdir", str(tmp_path), "-c", os.devnull, "test_case.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def test_idle_pool_workers_do_not_hold_up_the_end(tmp_path):
    out = _pytest(tmp_path, IDLE_WORKERS, timeout=40)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "THREAD LEAK" not in out.stderr


def test_a_running_non_daemon_thread_fails_the_run_naming_it(tmp_path):
    out = _pytest(tmp_path, BUSY_THREAD, timeout=120)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "THREAD LEAK: 1 non-daemon thread(s)" in out.stderr and "--- left-running" in out.stderr
    assert "STOP.wait" in out.stderr   # its stack
