"""Scenario 12 (engine) — hostile request bodies against a real engine: the body limit ±32 bytes (declared
and streamed), a gzip bomb, 150k-deep JSON, a corpus of malformed Arrow and pandas-records JSON, and seeded
byte-flips of a valid Arrow file. Pass: every answer is 200 or 4xx (never 5xx, never a dropped connection),
/health stays 200, the engine still infers correctly afterwards, and its RSS grows by less than RSS_SLACK."""
from __future__ import annotations

import gzip
import io
import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
import requests
from support.engine import ARROW_FILE, ARROW_STREAM, RECORDS, encode, features, start_engine, tensor_table
from support.reliability import rss_bytes

LIMIT = 1 * 2**20            # JOEY_MAX_BODY for this engine
RSS_SLACK = 256 * 2**20      # the whole corpus may not grow the engine by more than this
FLIPS = 300                  # seeded single-byte mutants of a valid Arrow file


@pytest.fixture(scope="module")
def engine(published, tmp_path_factory):
    eng = start_engine(published["pipeline_url"], tmp_path_factory.mktemp("bad-input"), JOEY_MAX_BODY="1Mi")
    yield eng
    eng.stop()


def send(engine, body, content_type: str, **headers) -> requests.Response:
    r = requests.post(engine.url + "/infer", data=body, headers={"Content-Type": content_type, **headers},
                      timeout=60)
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code != 200:
        assert "error" in r.json()
    assert requests.get(engine.url + "/health", timeout=10).status_code == 200
    return r


def json_of_size(size: int) -> bytes:
    """A valid pandas-records body of exactly `size` bytes (padded with JSON whitespace)."""
    body = json.dumps([{"tensor": [0.5] * 29}]).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


@pytest.mark.parametrize("delta", [-32, -1, 0, 1, 32])
@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
def test_body_limit_plus_minus_32_bytes(engine, delta, streamed):
    body = json_of_size(LIMIT + delta)
    data = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if streamed else body
    r = send(engine, data, RECORDS)
    assert r.status_code == (200 if delta <= 0 else 413), r.text[:200]


@pytest.mark.parametrize("content_type", [ARROW_FILE, RECORDS])
def test_a_gzip_bomb_is_not_inflated(engine, content_type):
    """1 GiB of zeros in ~1 MiB of gzip, marked Content-Encoding: gzip: the engine takes bodies as sent."""
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", compresslevel=9) as z:
        chunk = bytes(2**20)
        for _ in range(1024):
            z.write(chunk)
    assert len(bomb.getvalue()) < LIMIT
    before = rss_bytes(engine.proc.pid)
    r = send(engine, bomb.getvalue(), content_type, **{"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert rss_bytes(engine.proc.pid) - before < RSS_SLACK


def test_150k_deep_json(engine):
    for body in (b"[" * 150_000 + b"]" * 150_000, b'[{"tensor":' + b"[" * 150_000 + b"]" * 150_000 + b"}]",
                 b'{"a":' * 150_000 + b"1" + b"}" * 150_000):
        assert send(engine, body, RECORDS).status_code == 400


def _arrow_file(table: pa.Table) -> bytes:
    return encode(table, ARROW_FILE)


def _variable_list_table(rows: int = 8) -> pa.Table:
    """`tensor` as list<float> (not fixed-size): its offsets buffer is there to be damaged."""
    x = features(rows, seed=11)
    return pa.table({"tensor": pa.array([list(map(float, r)) for r in x], pa.list_(pa.float32()))})


def _patch(data: bytes, old: bytes, new: bytes) -> bytes:
    at = data.find(old)
    assert at >= 0, "pattern not found in the Arrow body"
    return data[:at] + new + data[at + len(new):]


def malformed_arrow() -> dict[str, tuple[bytes, str]]:
    good = _arrow_file(tensor_table(features(8, seed=3)))
    corpus = {
        "empty": (b"", ARROW_FILE),
        "magic only": (b"ARROW1\0\0", ARROW_FILE),
        "truncated at 10": (good[:10], ARROW_FILE),
        "truncated at half": (good[:len(good) // 2], ARROW_FILE),
        "truncated footer": (good[:-7], ARROW_FILE),
        "stream sent as file": (encode(tensor_table(features(4)), ARROW_STREAM), ARROW_FILE),
        "file sent as stream": (good, ARROW_STREAM),
        "json sent as arrow": (b'[{"tensor": [1]}]', ARROW_FILE),
        "zero rows": (_arrow_file(tensor_table(features(0))), ARROW_FILE),
        "zero columns": (_arrow_file(pa.table({})), ARROW_FILE),
        "zero columns, rows": (_arrow_file(pa.Table.from_batches([pa.RecordBatch.from_pydict({})])), ARROW_FILE),
        "wrong width": (_arrow_file(tensor_table(features(4, width=28))), ARROW_FILE),
        "strings": (_arrow_file(pa.table({"tensor": pa.array([["a"] * 29] * 3)})), ARROW_FILE),
        "scalar column": (_arrow_file(pa.table({"tensor": pa.array([1.0, 2.0])})), ARROW_FILE),
        "wrong column name": (_arrow_file(tensor_table(features(4), name="other")), ARROW_FILE),
        "nulls": (_arrow_file(pa.table({"tensor": pa.array([None, [1.0] * 29], pa.list_(pa.float32()))})),
                  ARROW_FILE),
        "ragged": (_arrow_file(pa.table({"tensor": pa.array([[1.0] * 29, [1.0] * 3], pa.list_(pa.float32()))})),
                   ARROW_FILE),
        "struct": (_arrow_file(pa.table({"tensor": pa.array([{"a": 1}])})), ARROW_FILE),
    }
    # The footer's schema, cut: the file's own directory of record batches is damaged.
    corpus["footer cut"] = (good[:-16] + good[-10:], ARROW_FILE)
    return corpus


MALFORMED_JSON = {
    "object": b'{"tensor": [1.0]}',
    "number": b"1",
    "string": b'"tensor"',
    "null": b"null",
    "empty list": b"[]",
    "list of lists": b"[[1.0, 2.0]]",
    "mixed keys": json.dumps([{"tensor": [0.5] * 29}, {"other": [0.5] * 29}]).encode(),
    "strings for numbers": json.dumps([{"tensor": ["0.5"] * 29}]).encode(),
    "numbers and strings": json.dumps([{"tensor": [0.5] * 28 + ["x"]}]).encode(),
    "NaN literal": b'[{"tensor": [NaN' + b", 0.5" * 28 + b"]}]",
    "Infinity literal": b'[{"tensor": [Infinity' + b", 0.5" * 28 + b"]}]",
    "huge exponent": b'[{"tensor": [1e999' + b", 0.5" * 28 + b"]}]",
    "truncated": json.dumps([{"tensor": [0.5] * 29}]).encode()[:-5],
    "trailing garbage": json.dumps([{"tensor": [0.5] * 29}]).encode() + b"xyz",
    "invalid utf-8": b'[{"tensor": "\xff\xfe"}]',
    "lone surrogate": b'[{"tensor": "\\ud800"}]',
    "int overflow": b'[{"tensor": [' + b"9" * 400 + b", 0.5" * 28 + b"]}]",
}
# Today a 500 (the engine survives it); kept apart so the rest of the corpus stays a strict check.
INT_OVERFLOW = {"int64 overflow": json.dumps([{"tensor": [2**63] + [1] * 28}]).encode(),
                "mixed int widths": json.dumps([{"tensor": [-1] + [1] * 28}, {"tensor": [2**63] + [1] * 28}]).encode()}


@pytest.mark.parametrize("name", sorted(malformed_arrow()))
def test_malformed_arrow_is_a_4xx(engine, name):
    body, content_type = malformed_arrow()[name]
    assert send(engine, body, content_type).status_code != 200


@pytest.mark.parametrize("name", sorted(MALFORMED_JSON))
def test_malformed_records_json_is_a_4xx(engine, name):
    assert send(engine, MALFORMED_JSON[name], RECORDS).status_code != 200


@pytest.mark.parametrize("name", sorted(INT_OVERFLOW))
def test_integers_beyond_int64_are_a_400(engine, name):
    r = requests.post(engine.url + "/infer", data=INT_OVERFLOW[name], headers={"Content-Type": RECORDS}, timeout=60)
    assert r.status_code == 400, r.text


def test_duplicate_json_keys_take_the_last_value(engine):
    """Not an error: orjson (like Python's json) keeps the last of duplicate keys; documented."""
    last = features(1, seed=2)[0].tolist()
    body = ('[{"tensor": ' + json.dumps([9.0] * 29) + ', "tensor": ' + json.dumps(last) + "}]").encode()
    (record,) = send(engine, body, RECORDS).json()
    np.testing.assert_allclose(record["in"]["tensor"], np.float32(last))


def mutants(good: bytes, n: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """`n` seeded single-byte mutants of `good`, split into (those pyarrow refuses or fully validates, those
    it decodes into arrays that fail full validation: offsets or lengths pointing outside their buffers)."""
    rng = random.Random(seed)
    sound, invalid = [], []
    for _ in range(n):
        data = bytearray(good)
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
        (invalid if _decodes_invalid(bytes(data)) else sound).append(bytes(data))
    return sound, invalid


def _decodes_invalid(body: bytes) -> bool:
    try:
        table = ipc.open_file(pa.py_buffer(body)).read_all()
    except (pa.ArrowException, OSError, ValueError):
        return False
    try:
        table.validate(full=True)
    except pa.ArrowException:
        return True
    return False


def test_seeded_byte_flips_of_a_valid_arrow_file(engine):
    """Every single-byte mutant of a valid body answers 200 or 4xx; RSS stays bounded over the run."""
    sound = [m for good in (_arrow_file(_variable_list_table(4)), _arrow_file(tensor_table(features(4, seed=3))))
             for m in mutants(good, FLIPS // 2, seed=12)[0]]
    before = rss_bytes(engine.proc.pid)
    statuses: dict[int, int] = {}
    for body in sound:
        status = send(engine, body, ARROW_FILE).status_code
        statuses[status] = statuses.get(status, 0) + 1
    assert set(statuses) <= {200, 400}, statuses
    assert statuses.get(400, 0) > 0 and statuses.get(200, 0) > 0
    assert rss_bytes(engine.proc.pid) - before < RSS_SLACK


def corrupt_offsets() -> dict[str, bytes]:
    varlist = _arrow_file(_variable_list_table())
    offsets = np.arange(9, dtype=np.int32) * 29
    bad = {"huge": np.array([0, 2**30] + [2**31 - 1] * 7, np.int32), "negative": -offsets,
           "decreasing": offsets[::-1].copy()}
    return {name: _patch(varlist, offsets.tobytes(), values.tobytes()) for name, values in bad.items()}


def test_arrow_whose_offsets_point_outside_its_buffers_is_a_400(published, tmp_path):
    """Its own engine: today one such body kills the process."""
    invalid = list(corrupt_offsets().values())
    invalid += mutants(_arrow_file(_variable_list_table(4)), FLIPS // 2, seed=12)[1]
    eng = start_engine(published["pipeline_url"], tmp_path / "persist")
    try:
        for body in invalid:
            r = requests.post(eng.url + "/infer", data=body, headers={"Content-Type": ARROW_FILE}, timeout=60)
            assert r.status_code == 400, r.text[:200]
        assert eng.get("/health").status_code == 200
    finally:
        eng.stop()


def test_the_engine_still_answers_correctly_after_the_corpus(engine):
    x = features(3, seed=21)
    r = engine.infer(tensor_table(x))
    assert len(r.json()) == 3
    assert requests.get(engine.url + "/ready", timeout=10).status_code == 200
