"""Request and response bodies: Arrow IPC (file and stream) and pandas-records JSON, both ways.

    media.py    media types: Content-Type parsing, Accept negotiation
    decode.py   request bodies as one Arrow table, refused by shape before the work (engine/limits.py)
    answer.py   result tables as pandas-records JSON (column by column) or Arrow IPC
    numbers.py  JSON text of numeric arrays, floats laid out like Python's repr
"""
from engine.codecs.answer import SMALL_TABLE_ROWS, encode, json_texts, records_json
from engine.codecs.decode import decode_request, records_table
from engine.codecs.media import (
                                 ARROW_FILE,
                                 ARROW_STREAM,
                                 JSON,
                                 PANDAS_RECORDS,
                                 REQUEST_TYPES,
                                 RESPONSE_TYPES,
                                 MediaType,
                                 negotiate,
)
from engine.codecs.numbers import py_float

__all__ = ["ARROW_FILE", "ARROW_STREAM", "JSON", "PANDAS_RECORDS", "REQUEST_TYPES", "RESPONSE_TYPES",
           "SMALL_TABLE_ROWS", "MediaType", "decode_request", "encode", "json_texts", "negotiate", "py_float",
           "records_json", "records_table"]
