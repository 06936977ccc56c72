"""The edge engine's local inference-log store: records kept under /persist until Ops acknowledges them.

    store.py    LogStore: the public methods, opening (recovery) and the index
    frames.py   the segment file format: frame headers, encoding a table, scanning a file
    writer.py   group-commit appends, segment rotation and the bounds that drop the oldest segments
    reader.py   finding, loading and merging stored records
    state.py    state.json (cursor and counters) and the reserve file

docs/logstore.md describes the format and the guarantees.
"""
from engine.logstore.frames import FILE_MAGIC, FRAME_MAGIC, HEADER_SIZE
from engine.logstore.store import MAX_SEGMENTS, SEGMENT_BYTES, LogStore, Page, StoreStats, Window
from joey.errors import StoreReadError, StoreWriteError

__all__ = ["FILE_MAGIC", "FRAME_MAGIC", "HEADER_SIZE", "MAX_SEGMENTS", "SEGMENT_BYTES", "LogStore", "Page",
           "StoreReadError", "StoreStats", "StoreWriteError", "Window"]
