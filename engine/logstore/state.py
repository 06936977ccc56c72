"""The store's durable counters: state.json (cursor, floor, acked/dropped/lost), written atomically, and the
reserve file that lets it be rewritten on a full volume."""
from __future__ import annotations

import errno
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from joey.fsutil import write_atomic

log = logging.getLogger("engine.logstore")

STATE_FILE = "state.json"
# Space set aside so the cursor can still be written (and acknowledged segments deleted) on a full volume.
RESERVE_FILE = "reserve"
RESERVE_BYTES = 64 * 1024


@dataclass(frozen=True)
class State:
    """What state.json keeps. Every sequence number below max(cursor, floor) is counted in acked, dropped or
    lost, so acked + dropped + lost == max(cursor, floor)."""

    cursor: int
    floor: int
    acked: int
    dropped: int
    lost: int

    @property
    def start(self) -> int:
        return max(self.cursor, self.floor)


def load_state(directory: Path) -> State | None:
    path = directory / STATE_FILE
    try:
        raw = json.loads(path.read_bytes())
        state = State(**{k: int(raw[k]) for k in ("cursor", "floor", "acked", "dropped", "lost")})
        if min(asdict(state).values()) < 0 or state.acked + state.dropped + state.lost != state.start:
            raise ValueError("inconsistent counters")
        return state
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("inference log store %s: %s is unreadable (%s); starting from the oldest segment",
                  directory, STATE_FILE, exc)
        return None


def save_state(directory: Path, state: State) -> None:
    data = json.dumps({"format": 1, **asdict(state)}).encode()
    try:
        write_atomic(directory / STATE_FILE, data)
    except OSError as exc:
        reserve = directory / RESERVE_FILE
        if exc.errno != errno.ENOSPC or not reserve.exists():
            raise
        reserve.unlink()
        write_atomic(directory / STATE_FILE, data)
    fsync_dir(directory)


def ensure_reserve(directory: Path) -> None:
    reserve = directory / RESERVE_FILE
    if reserve.exists():
        return
    try:
        write_atomic(reserve, bytes(RESERVE_BYTES))
    except OSError as exc:
        log.warning("inference log store %s: cannot set aside %d bytes for the cursor: %s",
                    directory, RESERVE_BYTES, exc)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
