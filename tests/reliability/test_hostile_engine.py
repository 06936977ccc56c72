"""Issue 14, engine side — requests that cost more than their size allows, against a real engine at its DEFAULT
limits (no JOEY_MAX_BODY override: the cases the bad-input suite's 1 MiB limit never sees). Pass: no 5xx,
/health answers after every case, and the engine's peak RSS grows by less than the case's bound, read from
/proc (VmHWM, the peak reset through clear_refs before each case), never from timings."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from support.engine import ARROW_FILE, RECORDS, encode, features, start_engine, tensor_table
from support.reliability import rss_bytes

from engine import limits
from engine.limits import Limits

MiB = 2**20
ROW = [0.5] * 29                      # one ccfraud feature row
LOGS_MAX_RECORDS = 10_000             # engine/limits.py defaults, as docs/reliability.md states them
MAX_JSON_BODY = 16 * MiB


@pytest.fixture(scope="module")
def engine(published, tmp_path_factory):
    eng = start_engine(published["pipeline_url"], tmp_path_factory.mktemp("hostile"))
    yield eng
    eng.stop()


def peak_growth(engine, send) -> tuple[requests.Response, int]:
    """(answer, bytes the engine's peak RSS rose above its RSS before) for one request `send()` makes."""
    Path(f"/proc/{engine.proc.pid}/clear_refs").write_text("5")   # resets VmHWM to the current RSS
    before = rss_bytes(engine.proc.pid)
    r = send()
    for line in Path(f"/proc/{engine.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert requests.get(engine.url + "/health", timeout=10).status_code == 200
    return r, peak - before


def post(engine, body, content_type=RECORDS, path="/infer", **headers):
    return lambda: requests.post(engine.url + path, data=body, headers={"Content-Type": content_type, **headers},
                                 timeout=120)


def test_rows_with_keys_of_their_own_are_not_a_rows_x_keys_table(engine):
    body = json.dumps([{"tensor": ROW, f"k{i}": 1} for i in range(4000)]).encode()   # 0.65 MiB
    r, grew = peak_growth(engine, post(engine, body))
    assert r.status_code == 400 and "JOEY_MAX_COLUMNS" in r.json()["error"], r.text[:300]
    assert grew < 64 * MiB


def test_a_row_with_300k_keys_is_refused_before_per_row_work(engine):
    row = {"tensor": ROW, **{f"k{i}": 1 for i in range(300_000)}}
    r, grew = peak_growth(engine, post(engine, json.dumps([row]).encode()))
    assert r.status_code == 400 and "JOEY_MAX_COLUMNS" in r.json()["error"], r.text[:300]
    assert grew < 160 * MiB     # orjson's dict of the one row; no column is built


@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
def test_a_63_mib_json_body_is_refused_cheaply(engine, streamed):
    body = b"[" + b",".join([b'{"t":0}'] * (63 * MiB // 8)) + b"]"
    data = iter([body[i:i + MiB] for i in range(0, len(body), MiB)]) if streamed else body
    r, grew = peak_growth(engine, post(engine, data))
    assert r.status_code == 413 and "JOEY_MAX_JSON_BODY" in r.json()["error"], r.text[:300]
    assert grew < 96 * MiB


def test_millions_of_tiny_records_under_the_json_limit_are_refused_before_parsing(engine):
    body = b"[" + b",".join([b'{"t":0}'] * ((MAX_JSON_BODY - 2) // 8)) + b"]"   # 2M objects in 16 MiB
    r, grew = peak_growth(engine, post(engine, body))
    assert r.status_code == 400 and "JOEY_MAX_ROWS" in r.json()["error"], r.text[:300]
    assert grew < 96 * MiB


def test_duplicate_arrow_column_names_are_a_400(engine):
    x = features(3)
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 29)
    table = pa.Table.from_arrays([column, column], names=["tensor", "tensor"])
    r, _ = peak_growth(engine, post(engine, encode(table, ARROW_FILE), ARROW_FILE))
    assert r.status_code == 400 and "'tensor' appears 2 times" in r.json()["error"], r.text[:300]


def test_a_value_beyond_float32_is_a_400_naming_column_and_row(engine):
    rows = [{"tensor": ROW}, {"tensor": ROW[:5] + [1e39] + ROW[6:]}]
    r, _ = peak_growth(engine, post(engine, json.dumps(rows).encode()))
    assert r.status_code == 400, r.text[:300]
    assert "column 'tensor', row 1" in r.json()["error"] and "float32" in r.json()["error"]


def test_huge_integers_in_an_unused_column_are_treated_alike(engine):
    answers = [peak_growth(engine, post(engine, json.dumps([{"tensor": ROW, "id": v}]).encode()))[0]
               for v in (2**63, 2**64)]
    assert [a.status_code for a in answers] == [200, 200], [a.text[:200] for a in answers]


def test_logs_answers_a_bounded_page_with_a_cursor_for_the_rest(engine):
    have = len(requests.post(engine.url + "/logs", data=b"{}", timeout=60).json())
    for seed in range(4):   # 12,000 more records
        requests.post(engine.url + "/infer", data=encode(tensor_table(features(3000, seed=seed)), ARROW_FILE),
                      headers={"Content-Type": ARROW_FILE}, timeout=60).raise_for_status()
    total = have + 12_000
    r, grew = peak_growth(engine, post(engine, b'{"limit": 1200000}', "application/json", path="/logs"))
    assert r.status_code == 200 and len(r.json()) == LOGS_MAX_RECORDS
    assert grew < 256 * MiB
    before = int(r.headers["Joey-Logs-Before"])
    rest = requests.post(engine.url + "/logs", data=json.dumps({"limit": 1200000, "before": before}), timeout=60)
    assert rest.status_code == 200 and len(rest.json()) == min(total - LOGS_MAX_RECORDS, LOGS_MAX_RECORDS)
    assert rest.json()[-1]["in"]["tensor"] != r.json()[0]["in"]["tensor"]


def test_extra_columns_of_differing_types_never_break_logs_even_across_restarts(published, tmp_path):
    eng = start_engine(published["pipeline_url"], tmp_path / "persist")
    try:
        for extra in (1, "text", [1, 2], {"a": 1}, None, 2.5):
            r = eng.post("/infer", json.dumps([{"tensor": ROW, "extra": extra}]).encode(), RECORDS)
            assert r.status_code == 200, r.text[:300]
        r = eng.post("/logs", b"{}", "application/json")
        assert r.status_code == 200, r.text[:300]
        assert len(r.json()) == 6
    finally:
        eng.stop()
    eng = start_engine(published["pipeline_url"], tmp_path / "persist")
    try:
        for accept in (None, ARROW_FILE):
            r = eng.post("/logs", b"{}", "application/json", accept=accept)
            assert r.status_code == 200, r.text[:300]
        assert requests.get(eng.url + "/status", timeout=10).json()["logs"]["records_stored"] == 6
    finally:
        eng.stop()



def test_the_cost_model_table_states_the_limits_in_code():
    """docs/reliability.md's Engine rows name every limit's variable with the default engine/limits.py has."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    engine_rows = docs.split("### Engine", 1)[1].split("\n#", 1)[0]
    for f in fields(Limits):
        value = getattr(Limits(), f.name)
        shown = f"{value // MiB} MiB" if f.name in ("max_json_body", "logs_max_bytes") else f"{value:,}"
        row = next((line for line in engine_rows.splitlines() if f"`{limits.variable(f.name)}`" in line), None)
        assert row is not None and f"| {shown} |" in row, (f.name, shown, row)
    assert (LOGS_MAX_RECORDS, MAX_JSON_BODY) == (Limits().logs_max_records, Limits().max_json_body)
